package server_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
)

// pipelineEdge is an edge on its own NATS server with two copies of every
// handler, so the batches of one connection may go to either copy.
func pipelineEdge(t *testing.T, cfg gateway.Config) (*server.Server, string) {
	t.Helper()
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	cfg.Rate = -1
	return startEdge(t, server.Config{NATSURL: ns.ClientURL(), Gateway: cfg}), ns.ClientURL()
}

// TestPipelinedCommandsInOrderTwoHandlerCopies sends a burst of commands of
// several types without waiting for any reply: every command takes effect
// in the order sent and the replies come back in that order.
func TestPipelinedCommandsInOrderTwoHandlerCopies(t *testing.T) {
	srv, _ := pipelineEdge(t, gateway.Config{})
	member := connect(t, srv, "member")
	member.join(t, "r1")
	bob := connect(t, srv, "bob")
	alice := connect(t, srv, "alice")

	type step struct {
		cmd  map[string]any
		want string // reply type, or error code after "error:"
	}
	var steps []step
	add := func(want string, cmd map[string]any) { steps = append(steps, step{cmd, want}) }
	add("joined", map[string]any{"type": "join", "room": "r1"})
	for i := range 60 {
		add("ack", map[string]any{"type": "send", "room": "r1", "body": i})
	}
	add("members", map[string]any{"type": "members", "room": "r1"})
	for i := range 20 {
		add("ack", map[string]any{"type": "dm", "to": "bob", "body": i})
	}
	add("left", map[string]any{"type": "leave", "room": "r1"})
	add("error:not_member", map[string]any{"type": "send", "room": "r1", "body": "late"})
	add("pong", map[string]any{"type": "ping"})
	add("joined", map[string]any{"type": "join", "room": "r1"})
	for i := 60; i < 80; i++ {
		add("ack", map[string]any{"type": "send", "room": "r1", "body": i})
	}
	for i, s := range steps {
		s.cmd["id"] = fmt.Sprint("c", i)
		if err := alice.Send(s.cmd); err != nil {
			t.Fatal(err)
		}
	}
	var sendSeqs, dmSeqs []uint64
	for i, s := range steps {
		f := alice.Next(t)
		for f.Type() == "msg" || f.Type() == "presence" {
			f = alice.Next(t)
		}
		got := f.Type()
		if got == "error" {
			got += ":" + f.Str("code")
		}
		if got != s.want || f.Str("id") != fmt.Sprint("c", i) {
			t.Fatalf("reply %d: want %s to c%d, got %s", i, s.want, i, f)
		}
		switch {
		case s.want == "ack" && s.cmd["type"] == "send":
			sendSeqs = append(sendSeqs, durSeq(f))
		case s.want == "ack":
			dmSeqs = append(dmSeqs, durSeq(f))
		}
	}
	for _, seqs := range [][]uint64{sendSeqs, dmSeqs} {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Fatalf("seqs %v: not increasing in the order sent", seqs)
			}
		}
	}
	// The member gets the 80 messages in the order sent; bob the 20 dms.
	for i := range 80 {
		f := durNextMsg(t, member)
		if f.JSON("body") != fmt.Sprint(i) || durSeq(f) != sendSeqs[i] {
			t.Fatalf("member: message %d is %s, want body %d seq %d", i, f, i, sendSeqs[i])
		}
	}
	for i := range 20 {
		if f := bob.expect(t, "dm"); f.JSON("body") != fmt.Sprint(i) || durSeq(f) != dmSeqs[i] {
			t.Fatalf("bob: dm %d is %s, want body %d seq %d", i, f, i, dmSeqs[i])
		}
	}
	member.barrier(t)
	bob.barrier(t)
}

// TestPipelinedSendsHandlerCopyKilled: six senders pipeline sends (16 in
// flight each) while one of two handler copies is killed, with batches of
// the others in its hands: every acknowledged send is stored and delivered
// once, in seq order; each sender's first answers have increasing seqs in
// the order sent; a failed send ("unavailable") retried with its id is
// acknowledged and stored at most once.
func TestPipelinedSendsHandlerCopyKilled(t *testing.T) {
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	kill := startKillableHandlers(t, ns.ClientURL(), "all")
	srv := startEdge(t, server.Config{NATSURL: ns.ClientURL(), Gateway: gateway.Config{Rate: -1, RequestTimeout: 2 * time.Second}})
	const room, senders, n = "pipekill", 6, 300
	member := connect(t, srv, "member")
	member.join(t, room)

	type sent struct {
		sender *peer
		i      int
	}
	body := func(p *peer, i int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`"%s/%d"`, p.user, i)) }
	replies := make([][]wstest.Frame, senders)
	ps := make([]*peer, senders)
	for k := range ps {
		ps[k] = connect(t, srv, fmt.Sprint("sender", k))
		ps[k].join(t, room)
	}
	var wg sync.WaitGroup
	for k, p := range ps {
		wg.Go(func() {
			replies[k] = durPipeline(durBG{t}, p.Client, "p", n, 16, func(i int) map[string]any {
				if k == 0 && i == n/3 {
					kill() // the other senders have batches in flight
				}
				return map[string]any{"type": "send", "room": room, "body": body(p, i)}
			})
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	acked := map[uint64]sent{}
	failed := 0
	for k, p := range ps {
		var last uint64
		for i, f := range replies[k] {
			switch {
			case f.Type() == "ack":
				if s := durSeq(f); s <= last {
					t.Fatalf("%s: send %d acknowledged with seq %d after %d: not in the order sent", p.user, i, s, last)
				}
				last = durSeq(f)
				acked[last] = sent{p, i}
				continue
			case f.Str("code") != "unavailable":
				t.Fatalf("%s: send %d: want an ack or unavailable, got %s", p.user, i, f)
			}
			failed++
			r, _ := durReply(t, p.Client, fmt.Sprint("p-", i), map[string]any{"type": "send", "room": room, "body": body(p, i)})
			if r.Type() != "ack" {
				t.Fatalf("%s: retry of send %d: %s", p.user, i, r)
			}
			if prev, dup := acked[durSeq(r)]; dup {
				t.Fatalf("%s: retry of send %d acknowledged with seq %d of %s's send %d", p.user, i, durSeq(r), prev.sender.user, prev.i)
			}
			acked[durSeq(r)] = sent{p, i}
		}
	}
	t.Logf("%d sends, %d unavailable while a handler copy died, all acknowledged after retries", senders*n, failed)
	if len(acked) != senders*n {
		t.Fatalf("%d sends acknowledged, want %d", len(acked), senders*n)
	}
	// Every acknowledged send once, in seq order, with its body.
	var prev uint64
	for range senders * n {
		f := durNextMsg(t, member)
		s := durSeq(f)
		a, ok := acked[s]
		if !ok || s <= prev {
			t.Fatalf("member: seq %d after %d (unacknowledged, twice or out of order): %s", s, prev, f)
		}
		if f.JSON("body") != string(body(a.sender, a.i)) {
			t.Fatalf("member: seq %d carries %s, acknowledged for %s", s, f.JSON("body"), body(a.sender, a.i))
		}
		prev = s
	}
	member.barrier(t)
	if hist := durAllHistory(t, member, room); len(hist) != senders*n {
		t.Fatalf("history holds %d messages, want %d (each send once)", len(hist), senders*n)
	}
}

// TestTooManyRooms: a connection may be in MaxRooms rooms; one more join
// (pipelined or not) is answered too_many_rooms, and after a leave a join
// works again.
func TestTooManyRooms(t *testing.T) {
	srv := startEdge(t, server.Config{Gateway: gateway.Config{MaxRooms: 3, Rate: -1}})
	p := connect(t, srv, "alice")
	for i := range 5 {
		if err := p.Send(map[string]any{"type": "join", "room": fmt.Sprint("r", i), "id": fmt.Sprint("j", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		f := p.expect(t, map[bool]string{true: "joined", false: "error"}[i < 3])
		if f.Str("id") != fmt.Sprint("j", i) || (i >= 3 && f.Str("code") != "too_many_rooms") {
			t.Fatalf("join %d: got %s", i, f)
		}
	}
	p.join(t, "r0") // already in it: fine
	p.errorCode(t, "too_many_rooms", map[string]any{"type": "join", "room": "r9"})
	p.request(t, "left", map[string]any{"type": "leave", "room": "r1"})
	p.join(t, "r9")
}
