package server_test

import (
	"fmt"
	"testing"
	"time"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
)

// checkMsg checks a delivered room message.
func checkMsg(t testing.TB, f wstest.Frame, room, from string, seq uint64, body string, notBefore, notAfter time.Time) {
	t.Helper()
	if f.Type() != "msg" || f.Str("room") != room || f.Str("from") != from || f.JSON("body") != body {
		t.Fatalf("want msg in %s from %s with body %s, got %s", room, from, body, f)
	}
	if got, ok := f.Uint("seq"); !ok || got != seq {
		t.Fatalf("msg seq = %v, want %d: %s", f.Get("seq"), seq, f)
	}
	ts, ok := f.Int("ts")
	if !ok || ts < notBefore.UnixMilli() || ts > notAfter.UnixMilli() {
		t.Fatalf("msg ts = %v, want unix ms in [%d, %d]: %s", f.Get("ts"), notBefore.UnixMilli(), notAfter.UnixMilli(), f)
	}
}

func TestJoinSendMsg(t *testing.T) {
	srv := devEdge(t)
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")

	j := alice.join(t, "lobby")
	if seq, _ := j.Uint("seq"); seq != 0 {
		t.Errorf("joined a new room: seq %d, want 0", seq)
	}
	if j.Str("id") == "" {
		t.Errorf("joined does not echo the id: %s", j)
	}
	bob.join(t, "lobby")
	if p := alice.expect(t, "presence"); p.Str("user") != "bob" || p.Str("event") != "join" || p.Str("room") != "lobby" {
		t.Fatalf("alice: want presence join of bob, got %s", p)
	}

	// from and ts are the server's, whatever the client sends.
	before := time.Now()
	ack := alice.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": map[string]any{"text": "hi"}, "from": "mallory", "ts": 1})
	seq, ok := ack.Uint("seq")
	if !ok || seq == 0 {
		t.Fatalf("ack without a seq: %s", ack)
	}
	after := time.Now()
	checkMsg(t, alice.expect(t, "msg"), "lobby", "alice", seq, `{"text":"hi"}`, before, after)
	checkMsg(t, bob.expect(t, "msg"), "lobby", "alice", seq, `{"text":"hi"}`, before, after)

	// Any JSON value is a body.
	for _, body := range []any{"text", 42, []any{1, "two"}, nil, true} {
		before := time.Now()
		ack := bob.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": body})
		s, _ := ack.Uint("seq")
		if s <= seq {
			t.Fatalf("seq %d after %d: not increasing", s, seq)
		}
		seq = s
		want := mustJSON(t, body)
		for _, p := range []*peer{alice, bob} {
			checkMsg(t, p.expect(t, "msg"), "lobby", "bob", seq, want, before, time.Now())
		}
	}

	// A later joiner learns the latest seq.
	carol := connect(t, srv, "carol")
	if got, _ := carol.join(t, "lobby").Uint("seq"); got != seq {
		t.Errorf("carol joined with seq %d, want the room's latest %d", got, seq)
	}
	// Rooms are separate: a message to another room reaches only its members.
	carol.join(t, "other")
	carol.request(t, "ack", map[string]any{"type": "send", "room": "other", "body": "elsewhere"})
	if m := carol.expect(t, "msg"); m.Str("room") != "other" {
		t.Fatalf("carol: want the msg in other, got %s", m)
	}
	alice.expect(t, "presence") // carol joined lobby
	alice.barrier(t)
	bob.expect(t, "presence")
	bob.barrier(t)
}

// TestMessageOrder sends 200 messages from one connection without waiting
// and checks they are acknowledged and delivered in order.
func TestMessageOrder(t *testing.T) {
	const n = 200
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Rate: -1}})
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	bob.join(t, "lobby")

	// Commands of one connection are handled in order: a send right
	// behind its join, not waited for, finds the connection a member.
	for _, cmd := range []map[string]any{
		{"type": "join", "room": "lobby", "id": "j"},
		{"type": "send", "room": "lobby", "id": "s", "body": "first"},
	} {
		if err := alice.Send(cmd); err != nil {
			t.Fatal(err)
		}
	}
	if f := alice.expect(t, "joined"); f.Str("id") != "j" {
		t.Fatalf("want joined j, got %s", f)
	}
	var acks, msgs []wstest.Frame
	for len(acks) < 1 || len(msgs) < 1 {
		f := alice.Next(t)
		switch f.Type() {
		case "ack":
			acks = append(acks, f)
		case "msg":
			msgs = append(msgs, f)
		case "presence":
		default:
			t.Fatalf("alice: want ack and msg of the first send, got %s", f)
		}
	}
	first, _ := acks[0].Uint("seq")
	bob.expect(t, "presence")
	bob.expect(t, "msg")

	for i := range n {
		if err := alice.Send(map[string]any{"type": "send", "room": "lobby", "id": fmt.Sprint("m", i), "body": i}); err != nil {
			t.Fatal(err)
		}
	}
	acks, msgs = nil, nil
	for len(acks) < n || len(msgs) < n {
		f := alice.Next(t)
		switch f.Type() {
		case "ack":
			acks = append(acks, f)
		case "msg":
			msgs = append(msgs, f)
		default:
			t.Fatalf("alice: unexpected %s", f)
		}
	}
	var bobs []wstest.Frame
	for range n {
		bobs = append(bobs, bob.expect(t, "msg"))
	}
	last := first
	for i := range n {
		ack := acks[i]
		if ack.Str("id") != fmt.Sprint("m", i) {
			t.Fatalf("ack %d has id %q: acks out of order", i, ack.Str("id"))
		}
		seq, _ := ack.Uint("seq")
		if seq <= last {
			t.Fatalf("ack %d: seq %d after %d", i, seq, last)
		}
		last = seq
		for who, m := range map[string]wstest.Frame{"alice": msgs[i], "bob": bobs[i]} {
			if got, _ := m.Uint("seq"); got != seq || m.JSON("body") != fmt.Sprint(i) {
				t.Fatalf("%s: message %d is %s, want seq %d body %d", who, i, m, seq, i)
			}
		}
	}
}

func TestLeave(t *testing.T) {
	srv := devEdge(t)
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	alice.join(t, "lobby")
	bob.join(t, "lobby")
	alice.expect(t, "presence")

	left := bob.request(t, "left", map[string]any{"type": "leave", "room": "lobby"})
	if left.Str("room") != "lobby" {
		t.Errorf("left room = %q, want lobby", left.Str("room"))
	}
	if p := alice.expect(t, "presence"); p.Str("user") != "bob" || p.Str("event") != "leave" {
		t.Fatalf("alice: want presence leave of bob, got %s", p)
	}
	alice.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": "bob is gone"})
	alice.expect(t, "msg")
	// bob gets nothing more from the room.
	bob.barrier(t)
	bob.errorCode(t, "not_member", map[string]any{"type": "send", "room": "lobby", "body": "still here?"})
	alice.barrier(t)
}

func TestMembers(t *testing.T) {
	srv := devEdge(t)
	// Ids with ':' are valid; the membership store must keep them apart.
	const room = "team:red"
	alice1 := connect(t, srv, "alice")
	alice2 := connect(t, srv, "alice")
	bob := connect(t, srv, "org:bob")
	carol := connect(t, srv, "carol")
	dave := connect(t, srv, "dave") // never joins

	wantMembers(t, dave.members(t, room))
	for _, p := range []*peer{carol, alice1, bob, alice2} {
		p.join(t, room)
	}
	// Sorted, unique (alice has two connections), and readable by a
	// non-member.
	wantMembers(t, dave.members(t, room), "alice", "carol", "org:bob")
	wantMembers(t, alice1.members(t, room), "alice", "carol", "org:bob")
	wantMembers(t, dave.members(t, "team"))

	// alice stays a member while one of her connections is in the room.
	alice1.request(t, "left", map[string]any{"type": "leave", "room": room})
	wantMembers(t, dave.members(t, room), "alice", "carol", "org:bob")
	// A connection that closes leaves its rooms: once carol has heard
	// alice leave, the members answer no longer has her.
	carol.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "presence" && f.Str("user") == "org:bob" })
	_ = alice2.Close()
	p := carol.WaitFor(t, func(f wstest.Frame) bool {
		return f.Type() == "presence" && f.Str("user") == "alice" && f.Str("event") == "leave"
	})
	if p.Str("room") != room {
		t.Errorf("presence room = %q, want %q", p.Str("room"), room)
	}
	wantMembers(t, dave.members(t, room), "carol", "org:bob")
}

func TestPresence(t *testing.T) {
	srv := devEdge(t)
	bob := connect(t, srv, "bob")
	bob.join(t, "lobby")
	alice1 := connect(t, srv, "alice")
	alice2 := connect(t, srv, "alice")

	presence := func(event string) {
		t.Helper()
		p := bob.expect(t, "presence")
		if p.Str("room") != "lobby" || p.Str("user") != "alice" || p.Str("event") != event {
			t.Fatalf("bob: want presence %s of alice in lobby, got %s", event, p)
		}
	}
	// First connection of alice joins: presence join.
	alice1.join(t, "lobby")
	presence("join")
	// Her second connection: no presence.
	alice2.join(t, "lobby")
	bob.barrier(t)
	// One of two leaves: no presence.
	alice1.request(t, "left", map[string]any{"type": "leave", "room": "lobby"})
	bob.barrier(t)
	// The last one leaves: presence leave.
	alice2.request(t, "left", map[string]any{"type": "leave", "room": "lobby"})
	presence("leave")

	// Again, the last connection going away by disconnecting.
	alice1.join(t, "lobby")
	presence("join")
	alice2.join(t, "lobby")
	bob.barrier(t)
	_ = alice1.Close()
	_ = alice2.Close()
	presence("leave")
	// Only the last connection's departure was announced.
	bob.barrier(t)
}

// TestIdempotentSend retries a send with the same id: acknowledged again
// with the same seq, delivered once.
func TestIdempotentSend(t *testing.T) {
	srv := devEdge(t)
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	alice.join(t, "lobby")
	bob.join(t, "lobby")
	alice.expect(t, "presence")

	send := func(id, body string) uint64 {
		t.Helper()
		if err := alice.Send(map[string]any{"type": "send", "room": "lobby", "id": id, "body": body}); err != nil {
			t.Fatal(err)
		}
		ack := alice.WaitFor(t, func(f wstest.Frame) bool { return f.Type() != "msg" })
		if ack.Type() != "ack" || ack.Str("id") != id {
			t.Fatalf("want ack %s, got %s", id, ack)
		}
		seq, _ := ack.Uint("seq")
		return seq
	}
	s1 := send("same", "once")
	if again := send("same", "once"); again != s1 {
		t.Errorf("retry acknowledged with seq %d, want %d", again, s1)
	}
	s2 := send("next", "twice")
	if m := bob.expect(t, "msg"); func() uint64 { s, _ := m.Uint("seq"); return s }() != s1 {
		t.Fatalf("bob: want msg %d, got %s", s1, m)
	}
	if m := bob.expect(t, "msg"); func() uint64 { s, _ := m.Uint("seq"); return s }() != s2 {
		t.Fatalf("bob: want msg %d (the retry must not be delivered), got %s", s2, m)
	}
	// Another user may use the same id.
	if other := func() uint64 {
		ack := bob.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": "mine"})
		s, _ := ack.Uint("seq")
		return s
	}(); other <= s2 {
		t.Errorf("bob's send got seq %d, want > %d", other, s2)
	}
	if err := bob.Send(map[string]any{"type": "send", "room": "lobby", "id": "same", "body": "bob's own"}); err != nil {
		t.Fatal(err)
	}
	ack := bob.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "ack" && f.Str("id") == "same" })
	if s, _ := ack.Uint("seq"); s == s1 {
		t.Errorf("bob's send with alice's id was taken for alice's retry (seq %d)", s)
	}
}

// TestIdempotencyKeyScope reuses one client id for commands that are not
// retries of each other: a send to another room, a dm to another user.
// PROTOCOL.md makes the id the key of a "retry"; a client that numbers its
// commands per connection ("1", "2" … as in the example) reuses ids after
// every reconnect, and a command to a different target is no retry.
func TestIdempotencyKeyScope(t *testing.T) {
	srv := devEdge(t)
	bob := connect(t, srv, "bob")
	carol := connect(t, srv, "carol")
	alice := connect(t, srv, "alice")
	alice.join(t, "r1")
	alice.join(t, "r2")
	bob.join(t, "r2")
	alice.expect(t, "presence")

	// reply sends cmd as alice and returns its ack or error.
	reply := func(cmd map[string]any) wstest.Frame {
		t.Helper()
		if err := alice.Send(cmd); err != nil {
			t.Fatal(err)
		}
		return alice.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "ack" || f.Type() == "error" })
	}
	a1 := reply(map[string]any{"type": "send", "room": "r1", "id": "1", "body": "to r1"})
	a2 := reply(map[string]any{"type": "send", "room": "r2", "id": "1", "body": "to r2"})
	s1, _ := a1.Uint("seq")
	if s2, _ := a2.Uint("seq"); s2 == s1 {
		t.Errorf("a send to r2 with the id of a send to r1 was taken for a retry: ack %s", a2)
	} else if m := bob.expect(t, "msg"); m.Str("room") != "r2" {
		t.Errorf("bob: want the msg in r2, got %s", m)
	}

	d1 := reply(map[string]any{"type": "dm", "to": "bob", "id": "d", "body": "for bob"})
	d2 := reply(map[string]any{"type": "dm", "to": "carol", "id": "d", "body": "for carol"})
	q1, _ := d1.Uint("seq")
	if q2, _ := d2.Uint("seq"); q2 == q1 {
		t.Errorf("a dm to carol with the id of a dm to bob was taken for a retry: ack %s", d2)
	} else if f := carol.expect(t, "dm"); f.Str("from") != "alice" {
		t.Errorf("carol: got %s", f)
	}
}

// TestJoinTwice joins a room twice on one connection: one membership, each
// message delivered once.
func TestJoinTwice(t *testing.T) {
	srv := devEdge(t)
	bob := connect(t, srv, "bob")
	bob.join(t, "lobby")
	alice := connect(t, srv, "alice")
	alice.join(t, "lobby")
	alice.join(t, "lobby")
	bob.expect(t, "presence")
	bob.barrier(t) // no second presence
	alice.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": "once"})
	alice.expect(t, "msg")
	alice.barrier(t)
	bob.expect(t, "msg")
	bob.barrier(t)
	// One leave is enough.
	alice.request(t, "left", map[string]any{"type": "leave", "room": "lobby"})
	if p := bob.expect(t, "presence"); p.Str("event") != "leave" {
		t.Fatalf("bob: want presence leave of alice, got %s", p)
	}
	wantMembers(t, bob.members(t, "lobby"), "bob")
}
