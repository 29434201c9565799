package gateway

import (
	"net/http"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted, err := ParsePrefixes("10.0.0.0/8, 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, peer string
		hdr        http.Header
		trusted    bool
		want       string
	}{
		{"no proxies configured: the header is ignored", "198.51.100.1:5000", http.Header{"X-Forwarded-For": {"1.2.3.4"}}, false, "198.51.100.1"},
		{"untrusted peer: the header is ignored", "198.51.100.1:5000", http.Header{"X-Forwarded-For": {"1.2.3.4"}}, true, "198.51.100.1"},
		{"trusted proxy", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, true, "203.0.113.9"},
		{"client-written hop before the real one", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"6.6.6.6, 203.0.113.9"}}, true, "203.0.113.9"},
		{"two trusted proxies", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"203.0.113.9, 192.0.2.7"}}, true, "203.0.113.9"},
		{"several header lines", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"6.6.6.6", "203.0.113.9"}}, true, "203.0.113.9"},
		{"Forwarded wins", "10.1.2.3:5000", http.Header{"Forwarded": {`for=203.0.113.9;proto=https, for="[2001:db8::1]:4711"`}, "X-Forwarded-For": {"6.6.6.6"}}, true, "2001:db8::1"},
		{"garbage stops the chain", "10.1.2.3:5000", http.Header{"X-Forwarded-For": {"unknown"}}, true, "10.1.2.3"},
		{"no header from a trusted proxy", "10.1.2.3:5000", http.Header{}, true, "10.1.2.3"},
	} {
		r := &http.Request{RemoteAddr: tt.peer, Header: tt.hdr}
		tr := trusted
		if !tt.trusted {
			tr = nil
		}
		if got := clientIP(r, tr); got != tt.want {
			t.Errorf("%s: clientIP = %s, want %s", tt.name, got, tt.want)
		}
	}
	if _, err := ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Error("ParsePrefixes accepted a bad prefix")
	}
}
