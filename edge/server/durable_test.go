package server_test

// Durable messaging: history, join with since, bursts, idempotent send and
// dm, stored dms, and a handler copy killed under load. Every test starts
// its own servers on loopback with data in t.TempDir(); every wait is for a
// frame (or an ack from a goroutine) with a deadline.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
	"natter/handlers/registry"
	hruntime "natter/handlers/runtime"
	"natter/natsconf"
)

// durBG lets a goroutine started by a test use helpers that fail with
// t.Fatalf (wstest's reading methods): the failure is reported with Errorf
// and only that goroutine ends, as t.FailNow must not be called outside
// the test's goroutine.
type durBG struct{ testing.TB }

func (b durBG) Fatalf(format string, args ...any) {
	b.TB.Helper()
	b.TB.Errorf(format, args...)
	runtime.Goexit()
}

func (b durBG) Fatal(args ...any) {
	b.TB.Helper()
	b.TB.Error(args...)
	runtime.Goexit()
}

func (b durBG) FailNow() {
	b.TB.Fail()
	runtime.Goexit()
}

// durSeq returns a frame's seq, 0 when it has none.
func durSeq(f wstest.Frame) uint64 {
	s, _ := f.Uint("seq")
	return s
}

// durPipeline sends n commands on c without waiting for each reply, with at
// most window of them unanswered, and returns the replies (ack or error),
// reply i answering command i. Command i gets the id prefix-i. Other frames
// (msg, presence, dm) are read and dropped: a member that pipelines reads
// its deliveries as fast as its acks.
func durPipeline(t testing.TB, c *wstest.Client, prefix string, n, window int, cmd func(i int) map[string]any) []wstest.Frame {
	t.Helper()
	replies := make([]wstest.Frame, n)
	got, next := 0, 0
	for got < n {
		for next < n && next-got < window {
			m := cmd(next)
			m["id"] = fmt.Sprintf("%s-%d", prefix, next)
			if err := c.Send(m); err != nil {
				t.Fatalf("send %v: %v", m, err)
			}
			next++
		}
		f := c.Next(t)
		if f.Type() != "ack" && f.Type() != "error" {
			continue
		}
		if want := fmt.Sprintf("%s-%d", prefix, got); f.Str("id") != want {
			t.Fatalf("reply %s: want the reply to %s (replies in command order)", f, want)
		}
		replies[got] = f
		got++
	}
	return replies
}

// durAckSeqs checks that every reply is an ack with a seq, seqs strictly
// increasing, and returns the seqs.
func durAckSeqs(t testing.TB, replies []wstest.Frame) []uint64 {
	t.Helper()
	seqs := make([]uint64, len(replies))
	for i, f := range replies {
		s, ok := f.Uint("seq")
		if f.Type() != "ack" || !ok || s == 0 {
			t.Fatalf("reply %d: want an ack with a seq, got %s", i, f)
		}
		if i > 0 && s <= seqs[i-1] {
			t.Fatalf("reply %d: seq %d after %d, want increasing", i, s, seqs[i-1])
		}
		seqs[i] = s
	}
	return seqs
}

// durReply sends cmd with the given id and returns the frame that carries
// the id (the reply), and the frames that came before it.
func durReply(t testing.TB, c *wstest.Client, id string, cmd map[string]any) (wstest.Frame, []wstest.Frame) {
	t.Helper()
	cmd["id"] = id
	if err := c.Send(cmd); err != nil {
		t.Fatalf("send %v: %v", cmd, err)
	}
	var before []wstest.Frame
	for {
		f := c.Next(t)
		if f.Str("id") == id && f.Type() != "msg" && f.Type() != "dm" {
			return f, before
		}
		before = append(before, f)
	}
}

// durKeepSending calls send(bt, p, i) for i = 0, 1, … over and over, in a
// goroutine of its own for each peer, until halt is called. halt waits for
// the goroutines to end and may be called more than once: defer it. send
// reports failures on bt (see durBG).
func durKeepSending(t testing.TB, peers []*peer, send func(bt testing.TB, p *peer, i int)) (halt func()) {
	stop := make(chan struct{})
	var stopOnce sync.Once
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bt := durBG{t}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				send(bt, p, i)
			}
		}()
	}
	return func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
}

// durStored is a "msg" frame as history returns it.
type durStored struct {
	Seq  uint64          `json:"seq"`
	Type string          `json:"type"`
	Room string          `json:"room"`
	From string          `json:"from"`
	TS   int64           `json:"ts"`
	Body json.RawMessage `json:"body"`
}

func (m durStored) body() string {
	var b bytes.Buffer
	if json.Compact(&b, m.Body) != nil {
		return string(m.Body)
	}
	return b.String()
}

// durHistory asks for a room's history with cmd's fields (type and room are
// filled in) and returns its messages, checked to be msg frames of room,
// oldest first. The messages list must be a list, never null.
func durHistory(t testing.TB, p *peer, room string, cmd map[string]any) []durStored {
	t.Helper()
	if cmd == nil {
		cmd = map[string]any{}
	}
	cmd["type"], cmd["room"] = "history", room
	f := p.request(t, "history", cmd)
	if f.Str("room") != room {
		t.Fatalf("history room = %q, want %q: %s", f.Str("room"), room, f)
	}
	raw := f.JSON("messages")
	if len(raw) == 0 || raw[0] != '[' {
		t.Fatalf("history %v: messages is %q, want a list: %s", cmd, raw, f)
	}
	var msgs []durStored
	if err := json.Unmarshal([]byte(raw), &msgs); err != nil {
		t.Fatalf("history %v: %v: %s", cmd, err, f)
	}
	for i, m := range msgs {
		if m.Type != "msg" || m.Room != room || m.Seq == 0 || m.From == "" || m.TS == 0 {
			t.Fatalf("history %v: message %d is not a msg of %s with seq, from and ts: %s", cmd, i, room, f)
		}
		if i > 0 && m.Seq <= msgs[i-1].Seq {
			t.Fatalf("history %v: seq %d after %d: not oldest first", cmd, m.Seq, msgs[i-1].Seq)
		}
	}
	return msgs
}

func durStoredSeqs(msgs []durStored) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// durAllHistory reads a room's whole history paging forward with after.
func durAllHistory(t testing.TB, p *peer, room string) []durStored {
	t.Helper()
	var all []durStored
	after := uint64(0)
	for {
		page := durHistory(t, p, room, map[string]any{"after": after, "limit": 500})
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
}

// durNextMsg returns p's next frame, which must be a msg; presence frames are
// skipped.
func durNextMsg(t testing.TB, p *peer) wstest.Frame {
	t.Helper()
	for {
		f := p.Next(t)
		switch f.Type() {
		case "presence":
			continue
		case "msg":
			return f
		}
		t.Fatalf("%s: want a msg, got %s", p.user, f)
	}
}

// durWantMsg checks that p's next msg (presence skipped) has seq and body.
func durWantMsg(t testing.TB, p *peer, seq uint64, body string) {
	t.Helper()
	f := durNextMsg(t, p)
	if durSeq(f) != seq || (body != "" && f.JSON("body") != body) {
		t.Fatalf("%s: want msg %d with body %s, got %s", p.user, seq, body, f)
	}
}

func TestDurableHistory(t *testing.T) {
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Rate: -1}})
	alice := connect(t, srv, "alice")
	alice.join(t, "hist")
	alice.join(t, "other")
	reader := connect(t, srv, "reader") // never joins: history needs no membership

	// 660 sends, one in five to another room: the stream's seqs of hist
	// are not contiguous. 528 in hist: more than the 500 clamp.
	const n = 660
	room := func(i int) string {
		if i%5 == 4 {
			return "other"
		}
		return "hist"
	}
	replies := durPipeline(t, alice.Client, "h", n, 64, func(i int) map[string]any {
		return map[string]any{"type": "send", "room": room(i), "body": map[string]any{"i": i}}
	})
	all := durAckSeqs(t, replies)
	var seqs []uint64
	bodies := map[uint64]string{}
	for i, s := range all {
		if room(i) == "hist" {
			seqs = append(seqs, s)
			bodies[s] = fmt.Sprintf(`{"i":%d}`, i)
		}
	}
	if len(seqs) <= 500 {
		t.Fatalf("only %d messages in hist", len(seqs))
	}
	check := func(what string, got []durStored, want []uint64) {
		t.Helper()
		if !slices.Equal(durStoredSeqs(got), want) {
			t.Fatalf("%s: seqs %v, want %v", what, durStoredSeqs(got), want)
		}
		for _, m := range got {
			if m.From != "alice" || m.body() != bodies[m.Seq] {
				t.Fatalf("%s: message %d from %s body %s, want from alice body %s", what, m.Seq, m.From, m.body(), bodies[m.Seq])
			}
		}
	}
	last := func(k int) []uint64 { return seqs[len(seqs)-k:] }

	check("default limit", durHistory(t, reader, "hist", nil), last(50))
	check("limit 10", durHistory(t, reader, "hist", map[string]any{"limit": 10}), last(10))
	check("limit 500", durHistory(t, reader, "hist", map[string]any{"limit": 500}), last(500))
	check("limit 1000 (clamped)", durHistory(t, reader, "hist", map[string]any{"limit": 1000}), last(500))
	check("limit 1", durHistory(t, reader, "hist", map[string]any{"limit": 1}), last(1))

	// Backward with before, 37 at a time: no gap, no overlap, down to the
	// first message.
	var back [][]durStored
	before := uint64(0)
	for page := 0; ; page++ {
		cmd := map[string]any{"limit": 37}
		if page > 0 {
			cmd["before"] = before
		}
		msgs := durHistory(t, reader, "hist", cmd)
		if len(msgs) == 0 {
			break
		}
		if len(msgs) > 37 {
			t.Fatalf("page %d has %d messages, limit 37", page, len(msgs))
		}
		if page > 0 && msgs[len(msgs)-1].Seq >= before {
			t.Fatalf("page %d before %d ends at %d", page, before, msgs[len(msgs)-1].Seq)
		}
		if len(msgs) < 37 && msgs[0].Seq != seqs[0] {
			t.Fatalf("short page %d starts at %d, not at the first message %d", page, msgs[0].Seq, seqs[0])
		}
		back = append(back, msgs)
		before = msgs[0].Seq
		if page > len(seqs) {
			t.Fatal("paging backward does not end")
		}
	}
	var joined []durStored
	for i := len(back) - 1; i >= 0; i-- {
		joined = append(joined, back[i]...)
	}
	check("before pages, joined", joined, seqs)
	check("before the first", durHistory(t, reader, "hist", map[string]any{"before": seqs[0]}), nil)
	check("before the second", durHistory(t, reader, "hist", map[string]any{"before": seqs[1]}), seqs[:1])
	// before a seq of the other room: the hist messages below it.
	for i, s := range all {
		if room(i) == "other" && i > 100 {
			k, _ := slices.BinarySearch(seqs, s)
			check("before a seq of another room", durHistory(t, reader, "hist", map[string]any{"before": s, "limit": 20}), seqs[k-20:k])
			break
		}
	}

	// Forward with after, 100 at a time.
	var fwd []durStored
	after := uint64(0)
	for page := 0; ; page++ {
		msgs := durHistory(t, reader, "hist", map[string]any{"after": after, "limit": 100})
		if len(msgs) == 0 {
			break
		}
		if len(msgs) > 100 || msgs[0].Seq <= after {
			t.Fatalf("page after %d: %d messages from %d", after, len(msgs), msgs[0].Seq)
		}
		fwd = append(fwd, msgs...)
		after = msgs[len(msgs)-1].Seq
		if page > len(seqs) {
			t.Fatal("paging forward does not end")
		}
	}
	check("after pages, joined", fwd, seqs)
	check("after 0, default limit", durHistory(t, reader, "hist", map[string]any{"after": 0}), seqs[:50])
	check("after 0, limit 1000 (clamped)", durHistory(t, reader, "hist", map[string]any{"after": 0, "limit": 1000}), seqs[:500])
	check("after the latest", durHistory(t, reader, "hist", map[string]any{"after": seqs[len(seqs)-1]}), nil)

	// An empty room: an empty list, not null.
	f := reader.request(t, "history", map[string]any{"type": "history", "room": "empty"})
	if got := f.JSON("messages"); got != "[]" {
		t.Errorf("history of an empty room: messages %s, want []: %s", got, f)
	}
	check("empty room before", durHistory(t, reader, "empty", map[string]any{"before": 5}), nil)
	check("empty room after", durHistory(t, reader, "empty", map[string]any{"after": 0}), nil)
	reader.barrier(t)
}

// TestDurableHistoryRights: history needs the right to join the room, not
// membership.
func TestDurableHistoryRights(t *testing.T) {
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Auth: stubAuth{rooms: []string{"team-*"}}}})
	carol := connect(t, srv, "carol")
	dave := connect(t, srv, "dave")
	carol.join(t, "team-x")
	var seqs []uint64
	for i := range 3 {
		seqs = append(seqs, durSeq(carol.request(t, "ack", map[string]any{"type": "send", "room": "team-x", "body": i})))
	}
	got := durHistory(t, dave, "team-x", nil) // dave is not a member
	if !slices.Equal(durStoredSeqs(got), seqs) {
		t.Fatalf("dave: history of team-x %v, want %v", durStoredSeqs(got), seqs)
	}
	if f := dave.request(t, "history", map[string]any{"type": "history", "room": "team-y"}); f.JSON("messages") != "[]" {
		t.Errorf("history of an empty allowed room: %s", f)
	}
	dave.errorCode(t, "forbidden", map[string]any{"type": "history", "room": "lobby"})
	dave.errorCode(t, "forbidden", map[string]any{"type": "history", "room": "lobby", "before": 2})
	dave.errorCode(t, "forbidden", map[string]any{"type": "history", "room": "lobby", "after": 0})
	// Nor does a member of an allowed room read a forbidden one.
	carol.errorCode(t, "forbidden", map[string]any{"type": "history", "room": "team"})
}

// TestDurableJoinSince: a reader that was away catches up with join since:
// joined, then exactly the missed messages in seq order, then live ones,
// none twice.
func TestDurableJoinSince(t *testing.T) {
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Rate: -1}})
	const room = "since"
	w1, w2 := connect(t, srv, "w1"), connect(t, srv, "w2")
	w1.join(t, room)
	w2.join(t, room)
	w1.join(t, "elsewhere")
	reader := connect(t, srv, "reader")
	reader.join(t, room)

	send := func(p *peer, room string, body any) uint64 {
		t.Helper()
		f, _ := durReply(t, p.Client, fmt.Sprint(body), map[string]any{"type": "send", "room": room, "body": body})
		if f.Type() != "ack" || durSeq(f) == 0 {
			t.Fatalf("%s: want an ack, got %s", p.user, f)
		}
		return durSeq(f)
	}
	var seen uint64
	for i := range 5 {
		s := send(w1, room, fmt.Sprint("before-", i))
		durWantMsg(t, reader, s, fmt.Sprintf(`"before-%d"`, i))
		seen = s
	}
	reader.barrier(t)
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}

	// While it is away: 40 messages from two writers, and messages in
	// another room in between (seqs with gaps).
	type sent struct {
		seq  uint64
		body string
	}
	var missed []sent
	for i := range 40 {
		p := []*peer{w1, w2}[i%2]
		b := fmt.Sprint("away-", i)
		missed = append(missed, sent{send(p, room, b), `"` + b + `"`})
		if i%10 == 3 {
			send(w1, "elsewhere", fmt.Sprint("gap-", i))
		}
	}

	back := connect(t, srv, "reader")
	j := back.request(t, "joined", map[string]any{"type": "join", "room": room, "since": seen})
	if got := durSeq(j); got != missed[len(missed)-1].seq {
		t.Errorf("joined seq %d, want the room's latest %d", got, missed[len(missed)-1].seq)
	}
	for _, m := range missed {
		durWantMsg(t, back, m.seq, m.body)
	}
	// Then live ones.
	for i := range 3 {
		b := fmt.Sprint("live-", i)
		durWantMsg(t, back, send(w2, room, b), `"`+b+`"`)
	}
	back.barrier(t)

	// since = the latest: nothing replayed; since beyond it: nothing either.
	again := connect(t, srv, "reader")
	latest := durSeq(again.request(t, "joined", map[string]any{"type": "join", "room": room, "since": 1 << 40}))
	again.barrier(t)
	third := connect(t, srv, "reader")
	third.request(t, "joined", map[string]any{"type": "join", "room": room, "since": latest})
	third.barrier(t)
	s := send(w1, room, "last")
	for _, p := range []*peer{back, again, third} {
		durWantMsg(t, p, s, `"last"`)
		p.barrier(t)
	}
}

// TestDurableJoinSinceUnderLoad joins readers with since=0 while three
// writers keep sending: each reader must get every seq from 1 to the last
// acknowledged one exactly once, in increasing order, whatever the seam
// between replay and live delivery.
func TestDurableJoinSinceUnderLoad(t *testing.T) {
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Rate: -1}})
	const (
		room    = "seam"
		writers = 3
		total   = 900 // acks to collect before the writers stop
	)
	joinAt := []int{40, 150, 300, 450, 600, 750} // a reader joins after this many acks

	ps := make([]*peer, writers)
	for w := range ps {
		ps[w] = connect(t, srv, fmt.Sprint("writer", w))
		ps[w].join(t, room)
	}
	acks := make(chan uint64, 1<<14)
	halt := durKeepSending(t, ps, func(bt testing.TB, p *peer, i int) {
		f, _ := durReply(bt, p.Client, fmt.Sprint("w", i), map[string]any{"type": "send", "room": room, "body": i})
		if f.Type() != "ack" || durSeq(f) == 0 {
			bt.Fatalf("%s: want an ack, got %s", p.user, f)
		}
		acks <- durSeq(f)
	})
	defer halt()

	var acked []uint64
	var readers []*peer
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for len(acked) < total {
		select {
		case s := <-acks:
			acked = append(acked, s)
		case <-deadline.C:
			t.Fatalf("only %d acks from the writers", len(acked))
		}
		if len(readers) < len(joinAt) && len(acked) == joinAt[len(readers)] {
			r := connect(t, srv, fmt.Sprint("reader", len(readers)))
			if err := r.Send(map[string]any{"type": "join", "room": room, "since": 0, "id": "j"}); err != nil {
				t.Fatal(err)
			}
			readers = append(readers, r)
		}
	}
	halt()
	for len(acks) > 0 {
		acked = append(acked, <-acks)
	}
	slices.Sort(acked)
	maxSeq := acked[len(acked)-1]
	for i, s := range acked {
		if s != uint64(i+1) {
			t.Fatalf("acked seqs are not 1..%d: %d at %d", maxSeq, s, i)
		}
	}

	for _, r := range readers {
		r.Timeout = 15 * time.Second
		f := r.WaitFor(t, func(f wstest.Frame) bool { return f.Type() != "presence" })
		if f.Type() != "joined" || f.Str("id") != "j" {
			t.Fatalf("%s: want joined first, got %s", r.user, f)
		}
		var got []uint64
		counts := map[uint64]int{}
		disorder := 0
		for len(got) == 0 || got[len(got)-1] < maxSeq {
			m := durNextMsg(t, r)
			s := durSeq(m)
			if len(got) > 0 && s <= got[len(got)-1] {
				disorder++
			}
			counts[s]++
			got = append(got, s)
		}
		var dups, missing []uint64
		for s := uint64(1); s <= maxSeq; s++ {
			switch counts[s] {
			case 0:
				missing = append(missing, s)
			case 1:
			default:
				dups = append(dups, s)
			}
		}
		if len(dups) > 0 || len(missing) > 0 || disorder > 0 {
			t.Errorf("%s (joined with since=0 at seq %d): %d msgs for seqs 1..%d; %d out of order; received twice or more: %v; missing: %v",
				r.user, durSeq(f), len(got), maxSeq, disorder, dups, missing)
			continue
		}
		r.barrier(t)
	}
}

// TestDurableJoinSinceManyPages replays more than one page (500) of stored
// messages.
func TestDurableJoinSinceManyPages(t *testing.T) {
	const n = 1200
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Rate: -1}})
	w := connect(t, srv, "bulk")
	w.join(t, "bulk")
	seqs := durAckSeqs(t, durPipeline(t, w.Client, "b", n, 100, func(i int) map[string]any {
		return map[string]any{"type": "send", "room": "bulk", "body": i}
	}))

	for _, from := range []int{0, 599, n - 1} {
		since := uint64(0)
		if from > 0 {
			since = seqs[from]
		}
		r := connect(t, srv, fmt.Sprint("reader", from))
		j := r.request(t, "joined", map[string]any{"type": "join", "room": "bulk", "since": since})
		if durSeq(j) != seqs[n-1] {
			t.Errorf("joined seq %d, want %d", durSeq(j), seqs[n-1])
		}
		first := 0
		if from > 0 {
			first = from + 1
		}
		for i := first; i < n; i++ {
			durWantMsg(t, r, seqs[i], fmt.Sprint(i))
		}
		r.barrier(t)
	}
}

// TestDurableBurst sends 10,000 room messages from 4 pipelining senders; a
// reading member gets them all, in seq order, each once.
func TestDurableBurst(t *testing.T) {
	const senders, each = 4, 2500
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Rate: -1}})
	member := connect(t, srv, "member")
	member.join(t, "burst")
	ps := make([]*peer, senders)
	for k := range ps {
		ps[k] = connect(t, srv, fmt.Sprint("sender", k))
		ps[k].join(t, "burst")
	}

	acked := make([][]uint64, senders)
	var wg sync.WaitGroup
	defer wg.Wait()
	start := time.Now()
	for k, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bt := durBG{t}
			acked[k] = durAckSeqs(bt, durPipeline(bt, p.Client, "s", each, 64, func(i int) map[string]any {
				return map[string]any{"type": "send", "room": "burst", "body": map[string]any{"s": k, "i": i}}
			}))
		}()
	}

	// The member reads while they send. A loaded machine may pause
	// deliveries for a while: the deadline is per frame.
	member.Timeout = 30 * time.Second
	type delivered struct {
		seq  uint64
		from string
		i    int
	}
	var msgs []delivered
	for len(msgs) < senders*each {
		f := durNextMsg(t, member)
		var body struct{ S, I int }
		if err := json.Unmarshal([]byte(f.JSON("body")), &body); err != nil {
			t.Fatalf("member: bad body: %s", f)
		}
		msgs = append(msgs, delivered{durSeq(f), f.Str("from"), body.I})
	}
	wg.Wait()
	t.Logf("%d messages from %d senders delivered in %v", len(msgs), senders, time.Since(start))
	if t.Failed() {
		return
	}
	next := map[string]int{}
	for i, m := range msgs {
		if i > 0 && m.seq <= msgs[i-1].seq {
			t.Fatalf("member: message %d has seq %d after %d", i, m.seq, msgs[i-1].seq)
		}
		if m.i != next[m.from] {
			t.Fatalf("member: message %d of %s is its #%d, want #%d (one connection's messages in order)", i, m.from, m.i, next[m.from])
		}
		next[m.from]++
	}
	var all []uint64
	for _, a := range acked {
		all = append(all, a...)
	}
	slices.Sort(all)
	got := make([]uint64, len(msgs))
	for i, m := range msgs {
		got[i] = m.seq
	}
	if !slices.Equal(got, all) {
		t.Fatalf("member's seqs are not the acknowledged ones")
	}
	member.barrier(t)
}

// TestDurableIdempotency: a send or dm repeated with the same id is
// acknowledged with the same seq and delivered once; the same id from
// another user is another message.
func TestDurableIdempotency(t *testing.T) {
	srv := devEdge(t)
	alice := connect(t, srv, "alice")
	member := connect(t, srv, "member")
	alice.join(t, "idem")
	member.join(t, "idem")

	// send twice back to back, then once more after the acks.
	cmd := func() map[string]any {
		return map[string]any{"type": "send", "room": "idem", "id": "s1", "body": "once"}
	}
	for range 2 {
		if err := alice.Send(cmd()); err != nil {
			t.Fatal(err)
		}
	}
	var acks []wstest.Frame
	msgs := 0
	for len(acks) < 2 {
		switch f := alice.Next(t); f.Type() {
		case "ack":
			acks = append(acks, f)
		case "msg":
			msgs++
		case "presence":
		default:
			t.Fatalf("alice: unexpected %s", f)
		}
	}
	s1 := durSeq(acks[0])
	if s1 == 0 || durSeq(acks[1]) != s1 || acks[0].Str("id") != "s1" || acks[1].Str("id") != "s1" {
		t.Fatalf("two sends with id s1: acks %s and %s, want the same seq", acks[0], acks[1])
	}
	ack, skipped := durReply(t, alice.Client, "s1", cmd())
	for _, f := range skipped {
		if f.Type() == "msg" {
			msgs++
		}
	}
	if ack.Type() != "ack" || durSeq(ack) != s1 {
		t.Fatalf("third send with id s1: %s, want ack seq %d", ack, s1)
	}
	durWantMsg(t, member, s1, `"once"`)
	member.barrier(t)
	for msgs < 1 {
		durNextMsg(t, alice)
		msgs++
	}
	alice.barrier(t)
	if msgs != 1 {
		t.Fatalf("alice got her message %d times", msgs)
	}

	dm := func(from *peer, id, to string) wstest.Frame {
		t.Helper()
		f, _ := durReply(t, from.Client, id, map[string]any{"type": "dm", "to": to, "body": id})
		if f.Type() != "ack" || durSeq(f) == 0 {
			t.Fatalf("%s: dm %s: want an ack, got %s", from.user, id, f)
		}
		return f
	}
	// dm, stored: twice back to back, then again: same seq, stored.
	for range 2 {
		if err := alice.Send(map[string]any{"type": "dm", "to": "bob", "id": "d1", "body": "d1"}); err != nil {
			t.Fatal(err)
		}
	}
	a1 := alice.WaitFor(t, func(f wstest.Frame) bool { return f.Type() != "presence" })
	a2 := alice.WaitFor(t, func(f wstest.Frame) bool { return f.Type() != "presence" })
	a3 := dm(alice, "d1", "bob")
	d1 := durSeq(a1)
	for _, a := range []wstest.Frame{a1, a2, a3} {
		if a.Type() != "ack" || a.Str("id") != "d1" || durSeq(a) != d1 || a.Str("status") != "stored" {
			t.Fatalf("dm d1 to offline bob: %s, want ack seq %d status stored", a, d1)
		}
	}
	bob := connect(t, srv, "bob")
	if f := bob.expect(t, "dm"); durSeq(f) != d1 || f.Str("from") != "alice" {
		t.Fatalf("bob: want the stored dm %d, got %s", d1, f)
	}
	bob.barrier(t)
	// A retry after it was delivered: same seq, delivered, not again.
	if a := dm(alice, "d1", "bob"); durSeq(a) != d1 || a.Str("status") != "delivered" {
		t.Errorf("dm d1 retried after delivery: %s, want seq %d status delivered", a, d1)
	}
	bob.barrier(t)

	// dm, delivered: the retry has the same seq and says delivered.
	b1 := dm(alice, "d2", "bob")
	b2 := dm(alice, "d2", "bob")
	if b1.Str("status") != "delivered" || b2.Str("status") != "delivered" || durSeq(b2) != durSeq(b1) {
		t.Fatalf("dm d2 to online bob twice: %s then %s, want the same seq, delivered", b1, b2)
	}
	if f := bob.expect(t, "dm"); durSeq(f) != durSeq(b1) {
		t.Fatalf("bob: want dm %d, got %s", durSeq(b1), f)
	}
	bob.barrier(t)

	// Another user with the same ids: other messages.
	carol := connect(t, srv, "carol")
	carol.join(t, "idem")
	c1, _ := durReply(t, carol.Client, "s1", map[string]any{"type": "send", "room": "idem", "body": "carol's"})
	if c1.Type() != "ack" || durSeq(c1) == s1 || durSeq(c1) == 0 {
		t.Fatalf("carol's send with id s1: %s, want a new seq (not %d)", c1, s1)
	}
	durWantMsg(t, member, durSeq(c1), `"carol's"`)
	cd := dm(carol, "d1", "bob")
	if cd.Str("status") != "delivered" {
		t.Errorf("carol's dm d1: %s, want delivered", cd)
	}
	if f := bob.expect(t, "dm"); durSeq(f) != durSeq(cd) || f.Str("from") != "carol" {
		t.Fatalf("bob: want carol's dm %d, got %s", durSeq(cd), f)
	}
	bob.barrier(t)
	member.barrier(t)
}

// TestDurableStoredDMs: dms to an offline user are stored and delivered, in
// order and once, to its first connection; a dm to an online user reaches
// every connection.
func TestDurableStoredDMs(t *testing.T) {
	srv := devEdge(t)
	alice := connect(t, srv, "alice")
	var seqs []uint64
	for i := range 3 {
		f := alice.request(t, "ack", map[string]any{"type": "dm", "to": "bob", "body": map[string]any{"n": i}})
		if f.Str("status") != "stored" {
			t.Fatalf("dm %d to offline bob: %s, want status stored", i, f)
		}
		if len(seqs) > 0 && durSeq(f) <= seqs[len(seqs)-1] {
			t.Fatalf("dm %d: seq %d after %d", i, durSeq(f), seqs[len(seqs)-1])
		}
		seqs = append(seqs, durSeq(f))
	}

	before := time.Now()
	bob1 := connect(t, srv, "bob")
	for i, s := range seqs {
		f := bob1.Next(t) // right after welcome, nothing in between
		if f.Type() != "dm" || durSeq(f) != s || f.Str("from") != "alice" || f.Str("to") != "bob" || f.JSON("body") != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("bob: want stored dm %d (seq %d), got %s", i, s, f)
		}
		if ts, _ := f.Int("ts"); ts == 0 || ts > before.UnixMilli() {
			t.Errorf("stored dm ts %d: want the time it was sent, before bob connected (%d)", ts, before.UnixMilli())
		}
	}
	bob1.barrier(t)

	// A later connection gets none of them again.
	bob2 := connect(t, srv, "bob")
	bob2.barrier(t)
	bob1.barrier(t)

	// Online: delivered, to every connection.
	f := alice.request(t, "ack", map[string]any{"type": "dm", "to": "bob", "body": "live"})
	if f.Str("status") != "delivered" || durSeq(f) <= seqs[2] {
		t.Fatalf("dm to online bob: %s, want status delivered and seq > %d", f, seqs[2])
	}
	for _, p := range []*peer{bob1, bob2} {
		if d := p.expect(t, "dm"); durSeq(d) != durSeq(f) || d.JSON("body") != `"live"` {
			t.Fatalf("bob: want the live dm %d, got %s", durSeq(f), d)
		}
		p.barrier(t)
	}
	// Once delivered live, it is not stored: a new connection gets nothing.
	bob3 := connect(t, srv, "bob")
	bob3.barrier(t)
}

// TestDurableDMWhileConnecting sends dms to an online user while other
// connections of that user keep opening (each opening makes the inbox
// handler look for stored dms): every dm is acknowledged "delivered" and
// reaches the connection that stays online exactly once.
func TestDurableDMWhileConnecting(t *testing.T) {
	const dms, churn = 100, 40
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Rate: -1}})
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		bt := durBG{t}
		for range churn {
			c := wstest.Dial(bt, wstest.URL(srv, "/ws?user=bob"), nil)
			c.Expect(bt, "welcome")
			if err := c.Close(); err != nil {
				bt.Errorf("close: %v", err)
			}
		}
	}()
	var seqs []uint64
	bad := 0
	for i := range dms {
		f, _ := durReply(t, alice.Client, fmt.Sprint("dm-", i), map[string]any{"type": "dm", "to": "bob", "body": i})
		if f.Type() != "ack" || f.Str("status") != "delivered" {
			bad++
			if bad <= 5 {
				t.Errorf("dm %d to online bob while bob connects: %s, want ack delivered", i, f)
			}
		}
		if s := durSeq(f); s > 0 {
			seqs = append(seqs, s)
		}
	}
	wg.Wait()
	if bad > 0 {
		t.Errorf("%d of %d dms not acknowledged as delivered", bad, dms)
	}
	counts := map[uint64]int{}
	bob.Timeout = 10 * time.Second
	for _, want := range seqs {
		for counts[want] == 0 {
			f := bob.expect(t, "dm")
			counts[durSeq(f)]++
		}
	}
	bob.barrier(t)
	twice := 0
	for s, n := range counts {
		if n > 1 {
			twice++
			if twice <= 5 {
				t.Errorf("bob got dm %d %d times", s, n)
			}
		}
	}
	if twice > 0 {
		t.Errorf("%d of %d dms delivered more than once to the same connection", twice, len(seqs))
	}
}

// startKillableHandlers starts a copy of the named handlers on a NATS
// connection of its own and returns a func that kills it: the connection is
// closed abruptly, as when the process dies (commands in flight get no
// reply). Whatever is left is stopped in cleanup.
func startKillableHandlers(t testing.TB, url string, names ...string) (kill func()) {
	t.Helper()
	nc, err := natsconf.Connect(url, "killable-handlers")
	if err != nil {
		t.Fatalf("connect handlers: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	set, err := registry.Start(ctx, nc, hruntime.Config{Logger: wstest.QuietLogger()}, natsconf.StoreConfig{}, names...)
	if err != nil {
		nc.Close()
		t.Fatalf("start handlers %v: %v", names, err)
	}
	var once sync.Once
	kill = func() { once.Do(nc.Close) }
	t.Cleanup(func() {
		kill()
		set.Stop()
	})
	return kill
}

// TestDurableFailover kills one of two copies of the handlers while two
// senders keep sending: every acknowledged send is stored and delivered
// once; every other one got an "unavailable" error, and a retry with the
// same id stores it at most once.
func TestDurableFailover(t *testing.T) {
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	kill := startKillableHandlers(t, ns.ClientURL(), "all")
	srv := startEdge(t, server.Config{
		NATSURL: ns.ClientURL(),
		Gateway: gateway.Config{Rate: -1, RequestTimeout: 2 * time.Second},
	})
	const room = "failover"
	member := connect(t, srv, "member")
	member.join(t, room)

	type result struct {
		sender    *peer
		id, body  string
		reply     wstest.Frame
		afterKill bool
	}
	const senders = 2
	ps := make([]*peer, senders)
	for k := range ps {
		ps[k] = connect(t, srv, fmt.Sprint("sender", k))
		ps[k].join(t, room)
	}
	results := make(chan result, 1<<14)
	halt := durKeepSending(t, ps, func(bt testing.TB, p *peer, i int) {
		id := fmt.Sprint("f", i)
		body := fmt.Sprintf(`"%s/%d"`, p.user, i)
		f, _ := durReply(bt, p.Client, id, map[string]any{"type": "send", "room": room, "body": json.RawMessage(body)})
		results <- result{sender: p, id: id, body: body, reply: f}
	})
	defer halt()

	var killDone bool
	var all []result
	acksAfterKill := 0
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for acksAfterKill < 200 {
		select {
		case r := <-results:
			r.afterKill = killDone
			all = append(all, r)
			if killDone && r.reply.Type() == "ack" {
				acksAfterKill++
			}
		case <-deadline.C:
			t.Fatalf("%d replies, %d acks after the kill", len(all), acksAfterKill)
		}
		if !killDone && len(all) == 150 {
			kill()
			killDone = true
		}
	}
	halt()
	for len(results) > 0 {
		r := <-results
		r.afterKill = true
		all = append(all, r)
	}

	acked := map[uint64]result{}
	var failed []result
	for _, r := range all {
		switch {
		case r.reply.Type() == "ack" && durSeq(r.reply) > 0:
			if prev, dup := acked[durSeq(r.reply)]; dup {
				t.Errorf("seq %d acknowledged for %s %s and %s %s", durSeq(r.reply), prev.sender.user, prev.id, r.sender.user, r.id)
			}
			acked[durSeq(r.reply)] = r
		case r.reply.Type() == "error" && r.reply.Str("code") == "unavailable":
			failed = append(failed, r)
		default:
			t.Errorf("%s %s: want an ack or an unavailable error, got %s", r.sender.user, r.id, r.reply)
		}
	}
	t.Logf("%d sends, %d failed during the kill of one handler copy: %v", len(all), len(failed), func() []string {
		var s []string
		for _, r := range failed {
			s = append(s, fmt.Sprintf("%s %s (answered after the kill: %v): %s", r.sender.user, r.id, r.afterKill, r.reply.Str("message")))
		}
		return s
	}())

	// Retry the failed ones with the same id: acknowledged, and stored
	// once even if the killed copy had stored it before dying.
	var lastBeforeRetry uint64
	for s := range acked {
		lastBeforeRetry = max(lastBeforeRetry, s)
	}
	for _, r := range failed {
		f, _ := durReply(t, r.sender.Client, r.id, map[string]any{"type": "send", "room": room, "body": json.RawMessage(r.body)})
		if f.Type() != "ack" {
			t.Fatalf("retry of %s %s: %s", r.sender.user, r.id, f)
		}
		if prev, dup := acked[durSeq(f)]; dup {
			t.Errorf("retry of %s %s acknowledged with seq %d of %s %s", r.sender.user, r.id, durSeq(f), prev.sender.user, prev.id)
		}
		acked[durSeq(f)] = r
		t.Logf("retry of %s %s: %s (stored by the killed copy before it died: %v)", r.sender.user, r.id, f, durSeq(f) < lastBeforeRetry)
	}

	// The member got every acknowledged send, once, in seq order, and
	// nothing else.
	var maxAcked uint64
	for s := range acked {
		maxAcked = max(maxAcked, s)
	}
	got := map[uint64]wstest.Frame{}
	var last uint64
	for last < maxAcked {
		f := durNextMsg(t, member)
		s := durSeq(f)
		if _, dup := got[s]; dup || s <= last {
			t.Fatalf("member: msg %d after %d (twice or out of order): %s", s, last, f)
		}
		got[s], last = f, s
	}
	member.barrier(t)
	for s, r := range acked {
		f, ok := got[s]
		if !ok {
			t.Errorf("acknowledged %s %s (seq %d) never delivered", r.sender.user, r.id, s)
			continue
		}
		if f.Str("from") != r.sender.user || f.JSON("body") != r.body {
			t.Errorf("seq %d: delivered %s, acknowledged for %s %s", s, f, r.sender.user, r.body)
		}
	}
	for s, f := range got {
		if _, ok := acked[s]; !ok {
			t.Errorf("member got seq %d, never acknowledged: %s", s, f)
		}
	}

	// History holds every send exactly once.
	reader := connect(t, srv, "reader")
	hist := durAllHistory(t, reader, room)
	bodies := map[string]int{}
	for _, m := range hist {
		bodies[m.body()]++
		r, ok := acked[m.Seq]
		if !ok {
			t.Errorf("history has %d (%s), never acknowledged", m.Seq, m.body())
			continue
		}
		if m.body() != r.body || m.From != r.sender.user {
			t.Errorf("history %d is %s from %s, acknowledged for %s from %s", m.Seq, m.body(), m.From, r.body, r.sender.user)
		}
	}
	if len(hist) != len(acked) {
		t.Errorf("history has %d messages, %d acknowledged", len(hist), len(acked))
	}
	for b, n := range bodies {
		if n != 1 {
			t.Errorf("history has %s %d times", b, n)
		}
	}
}

// TestDurableJoinSinceReplayFails: when the replay of a join with since
// fails (the history handler answers an error), the client is told so in
// an error that names the join (its id): otherwise it cannot tell that the
// live messages that follow come after a gap.
func TestDurableJoinSinceReplayFails(t *testing.T) {
	ns := wstest.StartNATS(t)
	subj := natsconf.MustSubjects(natsconf.DefaultPrefix)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A stand-in rooms handler: join succeeds (the room has messages up
	// to seq 7), history fails as a store outage would.
	joinSubject, _ := subj.Command("join")
	historySubject, _ := subj.Command("history")
	if _, err := nc.Subscribe(joinSubject, func(m *nats.Msg) {
		var cmd struct{ ID, Room string }
		_ = json.Unmarshal(m.Data, &cmd)
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(natsconf.HeaderOp, natsconf.OpSubscribe)
		reply.Header.Set(natsconf.HeaderRoom, cmd.Room)
		reply.Data = fmt.Appendf(nil, `{"type":"joined","id":%q,"room":%q,"seq":7}`, cmd.ID, cmd.Room)
		_ = m.RespondMsg(reply)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(historySubject, func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"type":"error","code":"unavailable","message":"message store unavailable"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	srv := startEdge(t, server.Config{NATSURL: ns.ClientURL()})
	c := connect(t, srv, "reader")
	if err := c.Send(map[string]any{"type": "join", "room": "r", "since": 2, "id": "j1"}); err != nil {
		t.Fatal(err)
	}
	if f := c.expect(t, "joined"); f.Str("id") != "j1" {
		t.Fatalf("want joined j1, got %s", f)
	}
	f := c.expect(t, "error")
	if f.Str("code") != "unavailable" {
		t.Errorf("replay failure: %s, want code unavailable", f)
	}
	if f.Str("id") != "j1" {
		t.Errorf("replay of join j1 (since 2, room at seq 7) failed with %s: the error does not carry the join's id, "+
			"so the client cannot tell that seqs 3..7 were never replayed", f)
	}
}
