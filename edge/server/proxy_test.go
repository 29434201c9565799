package server_test

import (
	"net/http"
	"net/netip"
	"testing"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
)

// TestTrustedProxyClientAddress: behind a trusted proxy, the per-address
// connection cap counts the address the proxy forwards, not the proxy's.
func TestTrustedProxyClientAddress(t *testing.T) {
	srv := startEdge(t, server.Config{Gateway: gateway.Config{
		MaxConnsPerIP:  1,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}})
	from := func(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }
	a := wstest.Dial(t, wstest.URL(srv, "/ws?user=a"), from("203.0.113.1"))
	a.Expect(t, "welcome")
	b := wstest.Dial(t, wstest.URL(srv, "/ws?user=b"), from("203.0.113.2"))
	b.Expect(t, "welcome")
	if code := wstest.DialErr(t, wstest.URL(srv, "/ws?user=c"), from("203.0.113.1")); code != http.StatusTooManyRequests {
		t.Fatalf("second connection from 203.0.113.1 behind the proxy: HTTP %d, want 429", code)
	}

	// Without trusting the proxy, the header means nothing: every client
	// shares the socket's address.
	plain := startEdge(t, server.Config{Gateway: gateway.Config{MaxConnsPerIP: 1}})
	c := wstest.Dial(t, wstest.URL(plain, "/ws?user=a"), from("203.0.113.1"))
	c.Expect(t, "welcome")
	if code := wstest.DialErr(t, wstest.URL(plain, "/ws?user=b"), from("203.0.113.2")); code != http.StatusTooManyRequests {
		t.Fatalf("untrusted X-Forwarded-For was believed: HTTP %d, want 429", code)
	}
}
