package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServesTheSDKAndThePage(t *testing.T) {
	h := Handler(WithDemo())
	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/natter.js", "text/javascript; charset=utf-8", "export function connect("},
		{"/", "text/html; charset=utf-8", "<script type=\"module\" src=\"/app.js\">"},
		{"/app.js", "text/javascript; charset=utf-8", "from '/natter.js'"},
		{"/style.css", "text/css; charset=utf-8", "body"},
	} {
		res := get(t, h, http.MethodGet, tc.path, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d", tc.path, res.StatusCode)
		}
		if got := res.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", tc.path, got)
		}
		if b := body(t, res); !strings.Contains(b, tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
	}
}

func TestPageHeaders(t *testing.T) {
	res := get(t, Handler(WithDemo()), http.MethodGet, "/", nil)
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "connect-src 'self' ws: wss:"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if got := get(t, Handler(), http.MethodGet, "/natter.js", nil).Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("natter.js: Access-Control-Allow-Origin %q, want *", got)
	}
}

func TestHeadAndRevalidation(t *testing.T) {
	h := Handler(WithDemo())
	res := get(t, h, http.MethodHead, "/natter.js", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("HEAD: status %d", res.StatusCode)
	}
	if b := body(t, res); b != "" {
		t.Errorf("HEAD returned a body of %d bytes", len(b))
	}
	etag := res.Header.Get("ETag")
	if etag == "" || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, res.Header.Get("Cache-Control"))
	}
	res = get(t, h, http.MethodGet, "/natter.js", map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", res.StatusCode)
	}
	if other := get(t, h, http.MethodGet, "/app.js", nil).Header.Get("ETag"); other == etag {
		t.Errorf("two files share the ETag %s", etag)
	}
}

// Without WithDemo only the SDK is served.
func TestSDKOnly(t *testing.T) {
	h := Handler()
	res := get(t, h, http.MethodGet, "/natter.js", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body(t, res), "export function connect(") {
		t.Errorf("GET /natter.js: status %d, want 200 and the SDK", res.StatusCode)
	}
	if got := res.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("natter.js: Access-Control-Allow-Origin %q, want *", got)
	}
	for _, path := range []string{"/", "/index.html", "/app.js", "/style.css"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			if res := get(t, h, method, path, nil); res.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s without the demo: status %d, want 404", method, path, res.StatusCode)
			}
		}
	}
}

func TestRefuses(t *testing.T) {
	h := Handler(WithDemo())
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/missing.js", http.StatusNotFound},
		{http.MethodGet, "/static/natter.js", http.StatusNotFound},
		{http.MethodGet, "/../web.go", http.StatusNotFound},
		{http.MethodGet, "/web.go", http.StatusNotFound},
		{http.MethodGet, "/natter.js/", http.StatusNotFound},
		{http.MethodGet, "/test/", http.StatusNotFound},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/natter.js", http.StatusMethodNotAllowed},
	} {
		res := get(t, h, tc.method, tc.path, nil)
		if res.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, res.StatusCode, tc.status)
		}
	}
	if got := get(t, h, http.MethodPost, "/", nil).Header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("405 Allow %q", got)
	}
}

// The handler works mounted the way the edge mounts it, next to other routes.
func TestMounted(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.Handle("GET /", Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, want := range map[string]string{"/healthz": "ok\n", "/natter.js": "export class Client"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b := body(t, res)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(b, want) {
			t.Errorf("GET %s: %d, body lacks %q", path, res.StatusCode, want)
		}
	}
}
