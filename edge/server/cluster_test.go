package server_test

import (
	"fmt"
	"slices"
	"testing"

	"natter/edge/server"
	"natter/edge/wstest"
)

// TestTwoEdges runs two production edges on one NATS server with one copy
// of the handlers, as separate processes would.
func TestTwoEdges(t *testing.T) {
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	edgeA := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
	edgeB := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
	if edgeA.NATS() != nil || edgeB.NATS() != nil {
		t.Fatal("a production edge started an embedded NATS server")
	}

	alice := connect(t, edgeA, "alice")
	bob := connect(t, edgeB, "bob")
	bobOnA := connect(t, edgeA, "bob")
	carol := connect(t, edgeB, "carol")
	for _, p := range []*peer{alice, bob, carol} {
		p.join(t, "lobby")
	}
	// Presence crosses edges.
	dave := connect(t, edgeA, "dave")
	dave.join(t, "lobby")
	for _, p := range []*peer{alice, bob, carol} {
		p.WaitFor(t, func(f wstest.Frame) bool {
			return f.Type() == "presence" && f.Str("user") == "dave" && f.Str("event") == "join"
		})
	}
	wantMembers(t, carol.members(t, "lobby"), "alice", "bob", "carol", "dave")

	// A message sent on edge A reaches the members on edge B, and the other
	// way round; every copy has the same seq.
	for _, from := range []*peer{alice, bob} {
		ack := from.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": "from " + from.user})
		seq, _ := ack.Uint("seq")
		for _, p := range []*peer{alice, bob, carol, dave} {
			m := p.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "msg" })
			if got, _ := m.Uint("seq"); got != seq || m.Str("from") != from.user {
				t.Fatalf("%s: want msg %d from %s, got %s", p.user, seq, from.user, m)
			}
		}
	}

	// dm across edges, to every connection of the target.
	ack := alice.request(t, "ack", map[string]any{"type": "dm", "to": "bob", "body": "psst"})
	if ack.Str("status") != "delivered" {
		t.Errorf("dm across edges: %s, want status delivered", ack)
	}
	for _, p := range []*peer{bob, bobOnA} {
		if f := p.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "dm" }); f.Str("from") != "alice" {
			t.Errorf("%s: got %s", p.user, f)
		}
	}

	// broadcast reaches every connection on every edge.
	eve := connect(t, edgeB, "eve") // in no room
	bob.request(t, "ack", map[string]any{"type": "broadcast", "body": "all hands"})
	for _, p := range []*peer{alice, bob, carol, dave, bobOnA, eve} {
		f := p.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "broadcast" })
		if f.Str("from") != "bob" || f.JSON("body") != `"all hands"` {
			t.Errorf("%s: got %s", p.user, f)
		}
		p.barrier(t) // once each
	}
}

// TestTwoRoomsHandlers runs two copies of the rooms handler: whichever copy
// answers, membership answers agree.
func TestTwoRoomsHandlers(t *testing.T) {
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "rooms")
	wstest.StartHandlers(t, ns.ClientURL(), "rooms")
	wstest.StartHandlers(t, ns.ClientURL(), "inbox", "broadcast")
	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
	observer := connect(t, srv, "observer")

	// One at a time: every answer is the members so far.
	var want []string
	for i := range 12 {
		p := connect(t, srv, fmt.Sprintf("u%02d", i))
		p.join(t, "lobby")
		want = append(want, p.user)
		for range 3 {
			wantMembers(t, observer.members(t, "lobby"), want...)
		}
	}

	// All at once, two connections per user (the same membership key
	// changed concurrently).
	var peers []*peer
	for i := range 8 {
		user := fmt.Sprintf("v%02d", i)
		peers = append(peers, connect(t, srv, user), connect(t, srv, user))
		want = append(want, user)
	}
	for _, p := range peers {
		if err := p.Send(map[string]any{"type": "join", "room": "lobby", "id": "j"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range peers {
		p.WaitFor(t, func(f wstest.Frame) bool {
			if f.Type() == "error" {
				t.Fatalf("%s: join failed: %s", p.user, f)
			}
			return f.Type() == "joined"
		})
	}
	slices.Sort(want)
	for range 5 {
		wantMembers(t, observer.members(t, "lobby"), want...)
	}

	// One connection of each v user leaves, all at once: they stay members.
	for i := 0; i < len(peers); i += 2 {
		_ = peers[i].Send(map[string]any{"type": "leave", "room": "lobby", "id": "l"})
	}
	for i := 0; i < len(peers); i += 2 {
		peers[i].WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "left" })
	}
	for range 5 {
		wantMembers(t, observer.members(t, "lobby"), want...)
	}
	// The other one leaves too: they are gone.
	for i := 1; i < len(peers); i += 2 {
		_ = peers[i].Send(map[string]any{"type": "leave", "room": "lobby", "id": "l"})
	}
	for i := 1; i < len(peers); i += 2 {
		peers[i].WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "left" })
	}
	want = slices.DeleteFunc(want, func(u string) bool { return u[0] == 'v' })
	for range 5 {
		wantMembers(t, observer.members(t, "lobby"), want...)
	}
}
