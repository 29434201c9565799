package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"natter/edge/auth"
	"natter/edge/server"
	"natter/edge/wstest"
)

// TestMain fails the package when goroutines of the code under test are
// still running once every test (and its cleanup) has finished.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to wait for every goroutine running natter, gws
// or NATS code to end, and returns the stacks of those that did not.
func leakedGoroutines(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		var leaked []string
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "leakedGoroutines") || strings.Contains(g, "testing.(*M)") {
				continue
			}
			if strings.Contains(g, "natter/") || strings.Contains(g, "lxzan/gws") ||
				strings.Contains(g, "nats-io/") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		<-poll.C
	}
}

// peer is a connected client and who it is.
type peer struct {
	*wstest.Client
	user    string
	conn    string       // connection id from welcome
	welcome wstest.Frame // the welcome frame
}

// connect dials srv as user (development identity) and reads its welcome.
func connect(t testing.TB, srv *server.Server, user string) *peer {
	t.Helper()
	c := wstest.Dial(t, wstest.URL(srv, "/ws?user="+url.QueryEscape(user)), nil)
	w := c.Expect(t, "welcome")
	if w.Str("user") != user {
		t.Fatalf("welcome user = %q, want %q (%s)", w.Str("user"), user, w)
	}
	return &peer{Client: c, user: user, conn: w.Str("conn"), welcome: w}
}

// expect returns the next frame, which must be of type typ, skipping
// presence frames about p's own user: whether a connection hears its own
// user's presence is left open by the protocol (see joinRoom).
func (p *peer) expect(t testing.TB, typ string) wstest.Frame {
	t.Helper()
	for {
		f := p.Next(t)
		if f.Type() == "presence" && f.Str("user") == p.user && typ != "presence" {
			continue
		}
		if f.Type() != typ {
			t.Fatalf("%s: want a %q frame, got %s", p.user, typ, f)
		}
		return f
	}
}

// request sends cmd and checks the reply's type.
func (p *peer) request(t testing.TB, want string, cmd map[string]any) wstest.Frame {
	t.Helper()
	f := p.Request(t, cmd)
	if f.Type() != want {
		t.Fatalf("%s: %v: want %q, got %s", p.user, cmd, want, f)
	}
	return f
}

// join joins room and returns the joined frame.
func (p *peer) join(t testing.TB, room string) wstest.Frame {
	t.Helper()
	f := p.request(t, "joined", map[string]any{"type": "join", "room": room})
	if f.Str("room") != room {
		t.Fatalf("joined room = %q, want %q", f.Str("room"), room)
	}
	if _, ok := f.Uint("seq"); !ok {
		t.Fatalf("joined without a seq: %s", f)
	}
	return f
}

// errorCode sends cmd and checks that it fails with code.
func (p *peer) errorCode(t testing.TB, code string, cmd map[string]any) wstest.Frame {
	t.Helper()
	f := p.Request(t, cmd)
	if f.Type() != "error" || f.Str("code") != code {
		t.Fatalf("%s: %v: want error %q, got %s", p.user, cmd, code, f)
	}
	if f.Str("message") == "" {
		t.Errorf("error frame without a message: %s", f)
	}
	return f
}

// members asks for room's members.
func (p *peer) members(t testing.TB, room string) []string {
	t.Helper()
	f := p.request(t, "members", map[string]any{"type": "members", "room": room})
	if f.Str("room") != room {
		t.Fatalf("members room = %q, want %q", f.Str("room"), room)
	}
	users, ok := f.Strings("users")
	if !ok {
		t.Fatalf("members without a users list: %s", f)
	}
	return users
}

// barrier proves that nothing was queued for p before this point: it sends
// a ping and requires the very next frame to be its pong (presence frames
// about p's own user aside, see expect). Whatever the edge routed to p
// before (a message it should not get) would come first.
func (p *peer) barrier(t testing.TB) {
	t.Helper()
	id := fmt.Sprintf("barrier-%d", time.Now().UnixNano())
	if err := p.Send(map[string]any{"type": "ping", "id": id}); err != nil {
		t.Fatalf("send ping: %v", err)
	}
	f := p.expect(t, "pong")
	if f.Str("id") != id {
		t.Fatalf("%s: want only the pong %q, got %s", p.user, id, f)
	}
}

// wantMembers checks a members answer.
func wantMembers(t testing.TB, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("members = %q, want %q", got, want)
	}
}

// stubAuth is an Authenticator that takes the user from ?user= and grants
// fixed rights.
type stubAuth struct {
	rooms     []string
	broadcast bool
}

func (a stubAuth) Authenticate(r *http.Request) (auth.Identity, error) {
	user := r.URL.Query().Get("user")
	if user == "" {
		return auth.Identity{}, auth.ErrUnauthorized
	}
	return auth.Identity{User: user, Rooms: a.rooms, Broadcast: a.broadcast}, nil
}

// startEdge starts an edge with cfg (wstest.StartEdge).
func startEdge(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	return wstest.StartEdge(t, cfg)
}

// devEdge starts a development-mode edge (embedded NATS, every handler)
// with the default configuration.
func devEdge(t testing.TB) *server.Server {
	t.Helper()
	return startEdge(t, server.Config{})
}

// mustJSON returns v as compact JSON text.
func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
