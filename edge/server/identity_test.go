package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"natter/edge/auth"
	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
)

func TestWelcome(t *testing.T) {
	srv := devEdge(t)
	a := wstest.Dial(t, wstest.URL(srv, "/ws?user=alice"), nil)
	b := wstest.Dial(t, wstest.URL(srv, "/ws?user=alice"), nil)
	wa := a.Expect(t, "welcome")
	wb := b.Expect(t, "welcome")
	for _, w := range []wstest.Frame{wa, wb} {
		if w.Str("user") != "alice" {
			t.Errorf("welcome user = %q, want alice: %s", w.Str("user"), w)
		}
		if w.Str("conn") == "" {
			t.Errorf("welcome without conn: %s", w)
		}
		// heartbeat is the interval to ping at: inside the 60s default
		// idle timeout.
		hb, ok := w.Int("heartbeat")
		if !ok || hb <= 0 || hb >= 60 {
			t.Errorf("welcome heartbeat = %v, want seconds in (0, 60): %s", w.Get("heartbeat"), w)
		}
	}
	if wa.Str("conn") == wb.Str("conn") {
		t.Errorf("two connections share the id %q", wa.Str("conn"))
	}
}

func TestDevelopmentIdentity(t *testing.T) {
	srv := devEdge(t)
	long := strings.Repeat("a", 129)
	accepted := []struct {
		query string
		user  string // "" means a guest id
	}{
		{"?user=alice", "alice"},
		{"?id=bob", "bob"},
		{"?user=alice&id=bob", "alice"},
		{"?id=bob&user=alice", "alice"},
		{"?user=alice&id=not.valid", "alice"}, // user wins; id is not looked at
		{"?user=&id=bob", "bob"},
		{"?user=A9:b_c-d", "A9:b_c-d"},
		{"?user=" + strings.Repeat("z", 128), strings.Repeat("z", 128)},
		{"", ""},
		{"?user=", ""},
		{"?user=&id=", ""},
	}
	guests := map[string]bool{}
	for _, tc := range accepted {
		c := wstest.Dial(t, wstest.URL(srv, "/ws"+tc.query), nil)
		w := c.Expect(t, "welcome")
		got := w.Str("user")
		switch {
		case tc.user != "" && got != tc.user:
			t.Errorf("%q: user = %q, want %q", tc.query, got, tc.user)
		case tc.user == "" && !strings.HasPrefix(got, "guest-"):
			t.Errorf("%q: user = %q, want a guest id", tc.query, got)
		case tc.user == "" && guests[got]:
			t.Errorf("%q: guest id %q given twice", tc.query, got)
		case tc.user == "":
			guests[got] = true
		}
		_ = c.Close()
	}

	refused := []string{
		"?user=a.b",
		"?id=a.b",
		"?user=" + long,
		"?user=a%20b",
		"?user=*",
		"?user=%3E",
		"?user=caf%C3%A9",
		"?user=&id=a.b",
	}
	for _, q := range refused {
		if got := wstest.DialErr(t, wstest.URL(srv, "/ws"+q), nil); got != http.StatusBadRequest {
			t.Errorf("%q: HTTP %d, want 400", q, got)
		}
	}
}

func TestOrigin(t *testing.T) {
	dev := devEdge(t)
	c := wstest.Dial(t, wstest.URL(dev, "/ws?user=alice"), http.Header{"Origin": {"https://anywhere.example"}})
	c.Expect(t, "welcome")

	srv := startEdge(t, server.Config{Gateway: gateway.Config{AllowedOrigins: []string{"https://chat.example.com"}}})
	for _, hdr := range []http.Header{nil, {"Origin": {"https://chat.example.com"}}} {
		c := wstest.Dial(t, wstest.URL(srv, "/ws?user=alice"), hdr)
		c.Expect(t, "welcome")
	}
	if got := wstest.DialErr(t, wstest.URL(srv, "/ws?user=alice"), http.Header{"Origin": {"https://evil.example"}}); got != http.StatusForbidden {
		t.Errorf("foreign origin: HTTP %d, want 403", got)
	}
}

var jwtSecret = []byte("0123456789abcdef0123456789abcdef")

func token(t testing.TB, key []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestProductionIdentity(t *testing.T) {
	authn, err := auth.NewJWT(auth.JWTConfig{Secret: jwtSecret})
	if err != nil {
		t.Fatal(err)
	}
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Auth: authn}})
	exp := time.Now().Add(time.Hour).Unix()

	// ?token= names the user; ?user= is ignored.
	tok := token(t, jwtSecret, jwt.MapClaims{"sub": "alice", "exp": exp})
	c := wstest.Dial(t, wstest.URL(srv, "/ws?user=mallory&token="+tok), nil)
	if w := c.Expect(t, "welcome"); w.Str("user") != "alice" {
		t.Errorf("token user: welcome %s, want alice", w)
	}
	// Authorization: Bearer, as mini-programs send it.
	tok = token(t, jwtSecret, jwt.MapClaims{"sub": "bob", "exp": exp})
	c = wstest.Dial(t, wstest.URL(srv, "/ws"), http.Header{"Authorization": {"Bearer " + tok}})
	if w := c.Expect(t, "welcome"); w.Str("user") != "bob" {
		t.Errorf("bearer user: welcome %s, want bob", w)
	}

	refused := map[string]struct {
		query  string
		status int
	}{
		"no token":        {"?user=alice", http.StatusUnauthorized},
		"expired":         {"?token=" + token(t, jwtSecret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()}), http.StatusUnauthorized},
		"bad signature":   {"?token=" + token(t, []byte("another secret, also 32 bytes long!!"), jwt.MapClaims{"sub": "alice", "exp": exp}), http.StatusUnauthorized},
		"garbage":         {"?token=not-a-token", http.StatusUnauthorized},
		"bad user in sub": {"?token=" + token(t, jwtSecret, jwt.MapClaims{"sub": "a.b", "exp": exp}), http.StatusBadRequest},
	}
	for name, tc := range refused {
		if got := wstest.DialErr(t, wstest.URL(srv, "/ws"+tc.query), nil); got != tc.status {
			t.Errorf("%s: HTTP %d, want %d", name, got, tc.status)
		}
	}

	// The natter claim limits rooms and broadcast.
	tok = token(t, jwtSecret, jwt.MapClaims{"sub": "carol", "exp": exp, "natter": map[string]any{"rooms": []string{"lobby", "team-*"}, "broadcast": false}})
	carol := &peer{Client: wstest.Dial(t, wstest.URL(srv, "/ws?token="+tok), nil), user: "carol"}
	carol.expect(t, "welcome")
	carol.join(t, "lobby")
	carol.join(t, "team-red")
	carol.errorCode(t, "forbidden", map[string]any{"type": "join", "room": "secret"})
	carol.errorCode(t, "forbidden", map[string]any{"type": "broadcast", "body": "hi"})

	tok = token(t, jwtSecret, jwt.MapClaims{"sub": "dave", "exp": exp, "natter": map[string]any{"broadcast": true}})
	dave := &peer{Client: wstest.Dial(t, wstest.URL(srv, "/ws?token="+tok), nil), user: "dave"}
	dave.expect(t, "welcome")
	dave.join(t, "secret") // no rooms: any room
	dave.request(t, "ack", map[string]any{"type": "broadcast", "body": "hi"})
}

// TestForbidden uses a stub Authenticator granting rooms "team-*" and no
// broadcast.
func TestForbidden(t *testing.T) {
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Auth: stubAuth{rooms: []string{"team-*"}}}})
	c := connect(t, srv, "alice")
	c.errorCode(t, "forbidden", map[string]any{"type": "join", "room": "lobby"})
	c.errorCode(t, "forbidden", map[string]any{"type": "members", "room": "lobby"})
	c.join(t, "team-a")
	c.members(t, "team-b") // the right to join is enough, membership is not needed
	c.errorCode(t, "forbidden", map[string]any{"type": "broadcast", "body": "hello"})
	// A refused join leaves the connection out of the room.
	c.errorCode(t, "not_member", map[string]any{"type": "send", "room": "lobby", "body": "x"})
	if got := wstest.DialErr(t, wstest.URL(srv, "/ws"), nil); got != http.StatusUnauthorized {
		t.Errorf("stub refusal: HTTP %d, want 401", got)
	}
}
