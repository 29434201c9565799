package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"natter/edge/devmode"
	"natter/edge/server"
	"natter/edge/wstest"
)

// The test certificate: self-signed ECDSA P-256 for 127.0.0.1, ::1 and
// localhost, valid for 20 years, made with
//
//	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
//	  -keyout key.pem -out cert.pem -days 7305 -subj "/CN=natter test" \
//	  -addext "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" \
//	  -addext "basicConstraints=critical,CA:FALSE" \
//	  -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=serverAuth"
const (
	testCert = "../../testdata/tls/cert.pem"
	testKey  = "../../testdata/tls/key.pem"
)

// trustTestCert returns a TLS config that trusts only the test certificate.
func trustTestCert(t testing.TB) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(testCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", testCert)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func TestTLS(t *testing.T) {
	srv := startEdge(t, server.Config{TLSCert: testCert, TLSKey: testKey})
	trust := trustTestCert(t)

	c := &peer{Client: wstest.DialWith(t, wstest.SecureURL(srv, "/ws?user=alice"), wstest.Options{TLS: trust}), user: "alice"}
	c.expect(t, "welcome")
	c.join(t, "lobby")
	c.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": "over tls"})
	c.expect(t, "msg")

	// By name too.
	byName := trust.Clone()
	byName.ServerName = "localhost"
	c2 := wstest.DialWith(t, wstest.SecureURL(srv, "/ws?user=bob"), wstest.Options{TLS: byName})
	c2.Expect(t, "welcome")

	// https for the health check.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: trust}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + srv.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("https /healthz: %s", resp.Status)
	}

	// A client that does not trust the certificate does not connect.
	if _, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS12}); err == nil {
		t.Error("TLS handshake succeeded without trusting the test certificate")
	}
}

func TestHealthz(t *testing.T) {
	srv := devEdge(t)
	resp, err := http.Get("http://" + srv.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("/healthz: %s %q, want 200 ok", resp.Status, body)
	}
	http.DefaultClient.CloseIdleConnections()
}

// startOwnEdge starts a development edge that the test shuts down itself
// (wstest.StartEdge would shut it down again in cleanup; see
// TestShutdownTwice). Cleanup only checks that it was.
func startOwnEdge(t *testing.T) *server.Server {
	t.Helper()
	cfg := server.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: wstest.QuietLogger(), Local: devmode.Start}
	srv, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func TestShutdown(t *testing.T) {
	srv := startOwnEdge(t)
	shut := false
	t.Cleanup(func() {
		if !shut {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}
	})
	alice := connect(t, srv, "alice")
	alice2 := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	alice.join(t, "lobby")
	bob.join(t, "lobby")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut = true
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	for _, p := range []*peer{alice, alice2, bob} {
		bye := p.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "bye" })
		if bye.Str("code") != "shutdown" || bye.Str("message") == "" {
			t.Errorf("%s: want bye shutdown with a message, got %s", p.user, bye)
		}
		if code := p.Closed(t); code != 1001 {
			t.Errorf("%s: close code %d, want 1001 (going away)", p.user, code)
		}
	}
	if _, err := http.Get("http://" + srv.Addr().String() + "/healthz"); err == nil {
		t.Error("the edge still serves HTTP after Shutdown")
	}
}

// TestShutdownTwice: a second Shutdown must not panic (net/http's and the
// gateway's Shutdown both tolerate it).
func TestShutdownTwice(t *testing.T) {
	srv := startOwnEdge(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("second Shutdown panicked: %v", p)
		}
	}()
	_ = srv.Shutdown(ctx)
}

// TestStartZeroConfig starts a development edge with the zero Config, whose
// values are documented defaults.
func TestStartZeroConfig(t *testing.T) {
	srv := wstest.StartEdge(t, server.Config{})
	c := connect(t, srv, "alice")
	c.join(t, "lobby")
}

func TestWSPath(t *testing.T) {
	srv := startEdge(t, server.Config{WSPath: "/chat"})
	c := wstest.Dial(t, wstest.URL(srv, "/chat?user=alice"), nil)
	c.Expect(t, "welcome")
	if got := wstest.DialErr(t, wstest.URL(srv, "/ws?user=alice"), nil); got != http.StatusNotFound {
		t.Errorf("/ws with WSPath /chat: HTTP %d, want 404", got)
	}
}
