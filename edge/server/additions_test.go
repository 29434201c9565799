package server_test

import (
	"fmt"
	"testing"
	"time"

	"natter/edge/gateway"
	"natter/edge/wstest"
)

// quietFor fails the test when p receives a frame of type typ within d
// (frames of other types are skipped).
func (p *peer) quietFor(t testing.TB, typ string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		f, ok := p.TryNext(left)
		if !ok {
			return
		}
		if f.Type() == typ {
			t.Fatalf("%s (%s): want no %q frame, got %s", p.user, p.conn, typ, f)
		}
	}
}

func isTyping(room, user string) func(wstest.Frame) bool {
	return func(f wstest.Frame) bool {
		return f.Type() == "typing" && f.Str("room") == room && f.Str("user") == user
	}
}

// TestTyping: a typing indicator reaches the room's other member
// connections (the sender's user's other connections included), never the
// sending one; at most one per user and room goes out every 2 s, the others
// are acknowledged and dropped; only members may send one.
func TestTyping(t *testing.T) {
	srv := devEdge(t) // one handler process: its throttle is per process
	alice := connect(t, srv, "alice")
	alice2 := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	carol := connect(t, srv, "carol")
	for _, p := range []*peer{alice, alice2, bob} {
		p.join(t, "lobby")
	}
	typing := map[string]any{"type": "typing", "room": "lobby"}
	if ack := alice.request(t, "ack", typing); ack.Str("id") == "" {
		t.Fatalf("typing ack without the id: %s", ack)
	}
	for _, p := range []*peer{alice2, bob} {
		f := p.WaitFor(t, isTyping("lobby", "alice"))
		if len(f.Fields) != 3 {
			t.Errorf("%s: typing frame with other fields: %s", p.user, f)
		}
	}
	alice.quietFor(t, "typing", 500*time.Millisecond)

	// Sooner than 2 s: acknowledged, not forwarded.
	alice.request(t, "ack", typing)
	bob.quietFor(t, "typing", 500*time.Millisecond)
	// Another user is counted apart.
	bob.request(t, "ack", typing)
	alice.WaitFor(t, isTyping("lobby", "bob"))
	// After 2 s it goes out again.
	time.Sleep(2 * time.Second)
	alice.request(t, "ack", typing)
	bob.WaitFor(t, isTyping("lobby", "alice"))

	carol.errorCode(t, "not_member", typing)
	carol.errorCode(t, "bad_room", map[string]any{"type": "typing", "room": "a.b"})
	// Nothing was stored.
	h := carol.request(t, "history", map[string]any{"type": "history", "room": "lobby"})
	if h.JSON("messages") != "[]" {
		t.Errorf("typing stored something: %s", h)
	}
}

// TestTypingTwoHandlerCopies: with two copies of every handler, a typing
// indicator reaches the room's other connections, not the sender's.
func TestTypingTwoHandlerCopies(t *testing.T) {
	srv, _ := pipelineEdge(t, gateway.Config{})
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	for _, p := range []*peer{alice, bob} {
		p.join(t, "lobby")
	}
	alice.request(t, "ack", map[string]any{"type": "typing", "room": "lobby"})
	bob.WaitFor(t, isTyping("lobby", "alice"))
	alice.quietFor(t, "typing", 300*time.Millisecond)
}

// TestSendNoEcho: a send with "echo":false reaches every member connection
// but the sending one, including its user's other connections; it is
// stored like any other.
func TestSendNoEcho(t *testing.T) {
	srv, _ := pipelineEdge(t, gateway.Config{}) // two copies of every handler
	alice := connect(t, srv, "alice")
	alice2 := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	for _, p := range []*peer{alice, alice2, bob} {
		p.join(t, "lobby")
	}
	ack := alice.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": "quiet", "echo": false})
	seq, _ := ack.Uint("seq")
	for _, p := range []*peer{alice2, bob} {
		m := p.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "msg" })
		if got, _ := m.Uint("seq"); got != seq || m.JSON("body") != `"quiet"` {
			t.Fatalf("%s: want msg %d, got %s", p.user, seq, m)
		}
	}
	// echo true (or absent) is echoed as before: the first msg alice sees
	// is this one.
	ack2 := alice.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": "loud", "echo": true})
	seq2, _ := ack2.Uint("seq")
	if m := alice.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "msg" }); m.JSON("body") != `"loud"` {
		t.Fatalf("alice: want only her echoed msg %d, got %s", seq2, m)
	}
	for _, p := range []*peer{alice2, bob} {
		if m := p.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "msg" }); m.JSON("body") != `"loud"` {
			t.Fatalf("%s: want msg %d, got %s", p.user, seq2, m)
		}
	}
	h := bob.request(t, "history", map[string]any{"type": "history", "room": "lobby"})
	if msgs, _ := h.Get("messages").([]any); len(msgs) != 2 {
		t.Fatalf("history: want both messages, got %s", h)
	}
	// Batched sends (pipelined) keep their own echo choice each.
	for i, echo := range []bool{false, true, false} {
		if err := alice.Send(map[string]any{"type": "send", "room": "lobby", "body": i, "echo": echo, "id": "p" + string(rune('0'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	var echoed []string
	for acks := 0; acks < 3; {
		f := alice.Next(t)
		switch f.Type() {
		case "ack":
			acks++
		case "msg":
			echoed = append(echoed, f.JSON("body"))
		}
	}
	for _, p := range []*peer{bob, alice2} {
		for i := range 3 {
			m := p.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "msg" })
			if m.JSON("body") != string(rune('0'+i)) {
				t.Fatalf("%s: want msg %d, got %s", p.user, i, m)
			}
		}
	}
	alice.quietFor(t, "ack", 300*time.Millisecond)
	for {
		f, ok := alice.TryNext(200 * time.Millisecond)
		if !ok {
			break
		}
		if f.Type() == "msg" {
			echoed = append(echoed, f.JSON("body"))
		}
	}
	if len(echoed) != 1 || echoed[0] != "1" {
		t.Fatalf("alice: echoed %v, want only [1]", echoed)
	}
}

// TestReadReceipts: read positions move forward only, reach the user's
// other connections, and unread counts follow them.
func TestReadReceipts(t *testing.T) {
	srv, _ := pipelineEdge(t, gateway.Config{}) // two copies of every handler
	alice := connect(t, srv, "alice")
	alice2 := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	alice.join(t, "lobby")
	alice.join(t, "other")
	bob.join(t, "lobby")
	bob.join(t, "other")
	var seqs []uint64
	for _, body := range []string{"1", "2", "3"} {
		ack := bob.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": body})
		s, _ := ack.Uint("seq")
		seqs = append(seqs, s)
	}
	bob.request(t, "ack", map[string]any{"type": "send", "room": "other", "body": "x"})

	unread := func(p *peer) map[string]any {
		t.Helper()
		f := p.request(t, "unread", map[string]any{"type": "unread"})
		rooms, ok := f.Get("rooms").(map[string]any)
		if !ok {
			t.Fatalf("unread without rooms: %s", f)
		}
		return rooms
	}
	wantUnread := func(p *peer, want map[string]float64) {
		t.Helper()
		got := unread(p)
		if len(got) != len(want) {
			t.Fatalf("%s: unread %v, want %v", p.user, got, want)
		}
		for r, n := range want {
			if fmt.Sprint(got[r]) != fmt.Sprint(n) {
				t.Fatalf("%s: unread %v, want %v", p.user, got, want)
			}
		}
	}
	wantUnread(alice, map[string]float64{"lobby": 3, "other": 1})

	read := func(p *peer, room string, seq uint64) uint64 {
		t.Helper()
		ack := p.request(t, "ack", map[string]any{"type": "read", "room": room, "seq": seq})
		got, ok := ack.Uint("seq")
		if !ok || ack.Str("room") != room {
			t.Fatalf("read ack: %s", ack)
		}
		return got
	}
	if got := read(alice, "lobby", seqs[1]); got != seqs[1] {
		t.Fatalf("read position %d, want %d", got, seqs[1])
	}
	f := alice2.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "read" })
	if got, _ := f.Uint("seq"); got != seqs[1] || f.Str("room") != "lobby" || f.Str("user") != "alice" {
		t.Fatalf("alice2: read frame %s, want lobby at %d", f, seqs[1])
	}
	wantUnread(alice, map[string]float64{"lobby": 1, "other": 1})
	// Backwards: nothing moves, nobody is told.
	if got := read(alice, "lobby", seqs[0]); got != seqs[1] {
		t.Fatalf("read back to %d: position %d, want it kept at %d", seqs[0], got, seqs[1])
	}
	// Beyond the room's latest: the latest.
	if got := read(alice2, "lobby", 1<<40); got != seqs[2] {
		t.Fatalf("read past the end: position %d, want %d", got, seqs[2])
	}
	f = alice.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "read" })
	if got, _ := f.Uint("seq"); got != seqs[2] {
		t.Fatalf("alice: read frame %s, want seq %d", f, seqs[2])
	}
	alice.quietFor(t, "read", 300*time.Millisecond)  // the backward read told nobody
	alice2.quietFor(t, "read", 300*time.Millisecond) // nor its own
	wantUnread(alice, map[string]float64{"lobby": 0, "other": 1})
	// Per user: bob read nothing. Rooms the user left are not counted.
	wantUnread(bob, map[string]float64{"lobby": 3, "other": 1})
	bob.request(t, "left", map[string]any{"type": "leave", "room": "other"})
	wantUnread(bob, map[string]float64{"lobby": 3})

	alice.errorCode(t, "bad_frame", map[string]any{"type": "read", "room": "lobby"})
	alice.errorCode(t, "bad_room", map[string]any{"type": "read", "room": "a.b", "seq": 1})
}
