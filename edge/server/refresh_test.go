package server_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"natter/edge/auth"
	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
)

// refreshEdge is an edge that takes HS256 tokens with a leeway of 1 ms and
// checks expiry every 250 ms (a quarter of its idle timeout).
func refreshEdge(t *testing.T) (*server.Server, func(sub string, exp time.Time) string) {
	t.Helper()
	authn, err := auth.NewJWT(auth.JWTConfig{Secret: jwtSecret, Leeway: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Auth: authn, IdleTimeout: time.Second}})
	return srv, func(sub string, exp time.Time) string {
		return token(t, jwtSecret, jwt.MapClaims{"sub": sub, "exp": exp.Unix()})
	}
}

// TestTokenExpiryClosesConnection: at its token's expiry an open
// connection gets bye "expired" and is closed.
func TestTokenExpiryClosesConnection(t *testing.T) {
	srv, tok := refreshEdge(t)
	exp := time.Unix(time.Now().Add(2*time.Second).Unix(), 0) // exp has whole seconds
	c := wstest.Dial(t, wstest.URL(srv, "/ws?token="+tok("alice", exp)), nil)
	c.Expect(t, "welcome")
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Ping now and then: the edge's idle timeout is short here.
		_ = c.Send(map[string]any{"type": "ping"}) // fails once closed: the bye is read below
		f := c.Next(t)
		if f.Type() == "pong" {
			if time.Now().After(deadline) {
				t.Fatal("no bye expired")
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if f.Type() != "bye" || f.Str("code") != "expired" {
			t.Fatalf("want bye expired, got %s", f)
		}
		break
	}
	if time.Now().Before(exp) {
		t.Fatalf("closed before the token's expiry")
	}
	c.Closed(t)
}

// TestTokenRefreshKeepsConnection: a refresh with a fresh token of the same
// user is answered "refreshed" and the connection outlives the first
// token; a token of another user, or a bad one, is refused (forbidden) and
// changes nothing.
func TestTokenRefreshKeepsConnection(t *testing.T) {
	srv, tok := refreshEdge(t)
	exp := time.Now().Add(1500 * time.Millisecond)
	c := wstest.Dial(t, wstest.URL(srv, "/ws?token="+tok("alice", exp)), nil)
	c.Expect(t, "welcome")
	p := &peer{Client: c, user: "alice"}
	p.errorCode(t, "forbidden", map[string]any{"type": "refresh", "token": tok("mallory", time.Now().Add(time.Hour))})
	p.errorCode(t, "forbidden", map[string]any{"type": "refresh", "token": "not-a-token"})
	p.request(t, "refreshed", map[string]any{"type": "refresh", "token": tok("alice", time.Now().Add(time.Hour))})
	// Past the first token's expiry and a few expiry checks, the
	// connection still answers (time passing is the point here).
	for time.Now().Before(exp.Add(time.Second)) {
		p.request(t, "pong", map[string]any{"type": "ping"})
		time.Sleep(100 * time.Millisecond)
	}
	p.join(t, "lobby")
}
