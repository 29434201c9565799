package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"natter/edge/wstest"
)

func TestDM(t *testing.T) {
	srv := devEdge(t)
	// bob connects first: a dm right after a connect is TestDMRightAfterConnect.
	bob1 := connect(t, srv, "bob")
	bob2 := connect(t, srv, "bob")
	alice := connect(t, srv, "alice")
	alive(t, alice)

	var last uint64
	for i, body := range []any{"are you there?", map[string]any{"n": 2}} {
		before := time.Now()
		ack := alice.request(t, "ack", map[string]any{"type": "dm", "to": "bob", "body": body, "from": "mallory", "ts": 1})
		if ack.Str("status") != "delivered" {
			t.Errorf("dm to an online user: status %q, want delivered: %s", ack.Str("status"), ack)
		}
		seq, ok := ack.Uint("seq")
		if !ok || seq <= last {
			t.Fatalf("dm %d: seq %v after %d, want increasing: %s", i, ack.Get("seq"), last, ack)
		}
		last = seq
		// Every connection of the target gets it, from the server's
		// idea of the sender.
		for _, p := range []*peer{bob1, bob2} {
			f := p.expect(t, "dm")
			if f.Str("from") != "alice" || f.Str("to") != "bob" || f.JSON("body") != mustJSON(t, body) {
				t.Fatalf("bob: want dm from alice to bob with body %s, got %s", mustJSON(t, body), f)
			}
			if got, _ := f.Uint("seq"); got != seq {
				t.Fatalf("bob: dm seq %d, want the ack's %d", got, seq)
			}
			if ts, ok := f.Int("ts"); !ok || ts < before.UnixMilli() || ts > time.Now().UnixMilli() {
				t.Fatalf("bob: dm ts %v not the server's time: %s", f.Get("ts"), f)
			}
		}
	}
	// The sender's connection does not get a copy.
	alice.barrier(t)

	// A dm with a user id of every valid character.
	odd := connect(t, srv, "Org:x_y-9")
	alive(t, odd)
	alice.request(t, "ack", map[string]any{"type": "dm", "to": "Org:x_y-9", "body": 1})
	odd.expect(t, "dm")
}

// TestDMRightAfterConnect sends a dm to a user whose connection has just
// opened, many times: each must be acknowledged "delivered" and arrive once.
func TestDMRightAfterConnect(t *testing.T) {
	const rounds = 50
	srv := devEdge(t)
	alice := connect(t, srv, "alice")
	failures := 0
	for i := range rounds {
		user := fmt.Sprint("bob", i)
		bob := connect(t, srv, user)
		ack := alice.Request(t, map[string]any{"type": "dm", "to": user, "body": i})
		if ack.Type() != "ack" || ack.Str("status") != "delivered" {
			t.Errorf("round %d: dm to %s, online since its welcome: want ack delivered, got %s", i, user, ack)
			failures++
		}
		if f, ok := bob.TryNext(wstest.DefaultTimeout); !ok || f.Type() != "dm" {
			t.Errorf("round %d: %s, online, did not get the dm within %v (got %s)", i, user, wstest.DefaultTimeout, f)
			failures++
		} else {
			// Up to the pong of a ping sent now, no second copy.
			if err := bob.Send(map[string]any{"type": "ping", "id": "after"}); err != nil {
				t.Fatal(err)
			}
			for f, ok := bob.TryNext(wstest.DefaultTimeout); ok && f.Type() != "pong"; f, ok = bob.TryNext(wstest.DefaultTimeout) {
				if f.Type() == "dm" {
					t.Errorf("round %d: %s got the dm twice: %s", i, user, f)
					failures++
				}
			}
		}
		_ = bob.Close()
		if failures > 3 {
			t.Fatalf("stopping after %d failures in %d rounds", failures, i+1)
		}
	}
}

// TestIdempotentDM retries a dm with the same id: acknowledged again with
// the same seq and status, delivered once.
func TestIdempotentDM(t *testing.T) {
	srv := devEdge(t)
	// bob connects first: a dm right after a connect is TestDMRightAfterConnect.
	bob := connect(t, srv, "bob")
	alice := connect(t, srv, "alice")
	alive(t, alice)
	dm := func(id string) (uint64, string) {
		t.Helper()
		if err := alice.Send(map[string]any{"type": "dm", "to": "bob", "id": id, "body": id}); err != nil {
			t.Fatal(err)
		}
		ack := alice.expect(t, "ack")
		if ack.Str("id") != id {
			t.Fatalf("want the ack of %s, got %s", id, ack)
		}
		seq, _ := ack.Uint("seq")
		return seq, ack.Str("status")
	}
	s1, st1 := dm("d1")
	s1again, st1again := dm("d1")
	if s1again != s1 || st1again != st1 {
		t.Errorf("retry acknowledged with seq %d status %q, want %d %q", s1again, st1again, s1, st1)
	}
	s2, _ := dm("d2")
	for _, want := range []uint64{s1, s2} {
		f := bob.expect(t, "dm")
		if got, _ := f.Uint("seq"); got != want {
			t.Fatalf("bob: want dm %d (the retry must not be delivered), got %s", want, f)
		}
	}
}

// TestDMOffline sends a dm to a user without a connection. PROTOCOL.md:
// error "offline" when offline storage is disabled, otherwise an ack with
// status "stored" (stored delivery itself is tested elsewhere).
func TestDMOffline(t *testing.T) {
	srv := devEdge(t)
	alice := connect(t, srv, "alice")
	f := alice.Request(t, map[string]any{"type": "dm", "to": "nobody", "body": "hello?"})
	switch {
	case f.Type() == "error" && f.Str("code") == "offline":
	case f.Type() == "ack" && f.Str("status") == "stored":
		t.Logf("offline storage is on: %s", f)
	default:
		t.Fatalf("dm to an offline user: want error offline or ack stored, got %s", f)
	}
	if f.Str("id") == "" {
		t.Errorf("reply does not echo the id: %s", f)
	}
}

func TestBroadcast(t *testing.T) {
	srv := devEdge(t)
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	guest := wstest.Dial(t, wstest.URL(srv, "/ws"), nil)
	guest.Expect(t, "welcome")
	bob.join(t, "lobby") // room membership plays no part

	before := time.Now()
	ack := alice.request(t, "ack", map[string]any{"type": "broadcast", "body": map[string]any{"notice": "maintenance"}, "from": "root"})
	if ack.Has("seq") {
		t.Errorf("broadcast ack with a seq: %s", ack)
	}
	after := time.Now()
	for name, c := range map[string]*wstest.Client{"alice": alice.Client, "bob": bob.Client, "guest": guest} {
		f := c.Expect(t, "broadcast")
		if f.Str("from") != "alice" || f.JSON("body") != `{"notice":"maintenance"}` {
			t.Errorf("%s: want broadcast from alice, got %s", name, f)
		}
		if ts, ok := f.Int("ts"); !ok || ts < before.UnixMilli() || ts > after.UnixMilli() {
			t.Errorf("%s: broadcast ts %v not the server's time", name, f.Get("ts"))
		}
	}
}

func TestPing(t *testing.T) {
	srv := devEdge(t)
	c := connect(t, srv, "alice")
	if err := c.Send(map[string]any{"type": "ping", "id": "p1"}); err != nil {
		t.Fatal(err)
	}
	if f := c.expect(t, "pong"); f.Str("id") != "p1" {
		t.Errorf("pong id = %q, want p1", f.Str("id"))
	}
	if err := c.Send(map[string]any{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
	if f := c.expect(t, "pong"); f.Has("id") {
		t.Errorf("pong to a ping without id has one: %s", f)
	}
	// A WebSocket ping is answered with its payload.
	if err := c.SendRaw(gws.OpcodePing, []byte("heartbeat")); err != nil {
		t.Fatal(err)
	}
	if got := string(c.Pong(t)); got != "heartbeat" {
		t.Errorf("pong payload = %q, want heartbeat", got)
	}
}
