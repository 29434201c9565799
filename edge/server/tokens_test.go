package server_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"natter/edge/auth"
	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
)

// TestTokenChecksOnUpgrade: a token with a malformed rooms pattern, without
// exp, or for another audience or issuer is refused with 401 before the
// upgrade.
func TestTokenChecksOnUpgrade(t *testing.T) {
	authn, err := auth.NewJWT(auth.JWTConfig{Secret: jwtSecret, Audience: "natter", Issuer: "https://id.example"})
	if err != nil {
		t.Fatal(err)
	}
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Auth: authn}})
	exp := time.Now().Add(time.Hour).Unix()
	claims := func(kv ...any) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "exp": exp, "aud": "natter", "iss": "https://id.example"}
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	rooms := func(p ...string) jwt.MapClaims {
		return claims("natter", map[string]any{"rooms": p})
	}

	c := wstest.Dial(t, wstest.URL(srv, "/ws?token="+token(t, jwtSecret, rooms("team-*", "lobby"))), nil)
	if w := c.Expect(t, "welcome"); w.Str("user") != "alice" {
		t.Fatalf("welcome %s, want alice", w)
	}

	noExp := claims()
	delete(noExp, "exp")
	for name, cl := range map[string]jwt.MapClaims{
		"rooms team-a,*": rooms("team-a,*"),
		"rooms a*b":      rooms("a*b"),
		"rooms **":       rooms("**"),
		"rooms empty":    rooms(""),
		"rooms a.b":      rooms("lobby", "a.b"),
		"no exp":         noExp,
		"other audience": claims("aud", "chat"),
		"other issuer":   claims("iss", "https://evil.example"),
	} {
		if got := wstest.DialErr(t, wstest.URL(srv, "/ws?token="+token(t, jwtSecret, cl)), nil); got != http.StatusUnauthorized {
			t.Errorf("%s: HTTP %d, want 401", name, got)
		}
	}
}

// TestDemoPage: the demo page is served only with Config.Demo; the SDK
// always is.
func TestDemoPage(t *testing.T) {
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	status := func(srv *server.Server, path string) int {
		t.Helper()
		res, err := client.Get("http://" + srv.Addr().String() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	for _, demo := range []bool{false, true} {
		srv := startEdge(t, server.Config{Demo: demo})
		page := http.StatusNotFound
		if demo {
			page = http.StatusOK
		}
		for path, want := range map[string]int{
			"/natter.js": http.StatusOK,
			"/healthz":   http.StatusOK,
			"/":          page,
			"/app.js":    page,
			"/style.css": page,
		} {
			if got := status(srv, path); got != want {
				t.Errorf("Demo %v: GET %s: %d, want %d", demo, path, got, want)
			}
		}
	}
}
