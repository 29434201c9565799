package server_test

// Live room delivery across the loss of a NATS node, end to end: three
// clustered NATS nodes in this process (wstest.Cluster), two edges on
// different nodes, two copies of the handlers on their own connections
// with every store at 3 replicas. Two senders on edge A keep sending to a
// room with members on both edges (the senders are members too), retrying
// an unanswered send with the same id, while one node is killed. Every
// member must receive every acknowledged message exactly once, in seq
// order, each one's prev the seq before, without reconnecting; history
// must hold every acknowledged send once.

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
	"natter/natsconf"
)

// nodeLossPlan says which node each process connects to first and which
// node dies; the edges and handlers have the others in their URL lists.
type nodeLossPlan struct {
	edgeA, edgeB int
	handlers     [2]int
	kill         int
	crash        bool // cut the node off (kill -9), else stop it cleanly
	// loseThenKill: edge B loses the live copy of a message (a test hook
	// drops it and holds edge B's dispatcher), and the node dies right
	// after the next message has reached edge B: edge B sees the gap
	// while the node's streams fail over.
	loseThenKill bool
	what         string // the killed node, for the logs
}

// nodeLossAck is one acknowledged send.
type nodeLossAck struct {
	sender    *peer
	id, body  string
	seq       uint64
	first, at time.Time // the first attempt, the ack
	errors    []string  // what the attempts before the ack got
}

// liveSeqs records the seqs of the room messages that reach an edge live
// (a gateway.Config.LoseRoomMessage that loses nothing).
type liveSeqs struct {
	mu   sync.Mutex
	seen map[uint64]int
}

func (l *liveSeqs) observe(_ string, seq uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[seq]++
	return false
}

// nodeLossMember is what one member received.
type nodeLossMember struct {
	p      *peer
	joined uint64         // seq of its joined frame
	msgs   []wstest.Frame // in the order received
	other  []wstest.Frame // neither msg nor presence: a bye, an error
	closed bool           // the connection closed
	last   uint64
	target atomic.Uint64 // read until a msg with this seq came (0: not yet known)
	quit   atomic.Bool   // stop reading now
	done   chan struct{}
}

func (m *nodeLossMember) take(f wstest.Frame) {
	switch f.Type() {
	case "msg":
		m.msgs = append(m.msgs, f)
		m.last = max(m.last, durSeq(f))
	case "presence":
	default:
		m.other = append(m.other, f)
	}
}

// read takes m's frames until it has the target seq, its connection
// closes or deadline passes.
func (m *nodeLossMember) read(deadline time.Time) {
	for {
		if t := m.target.Load(); t != 0 && m.last >= t {
			return
		}
		if m.quit.Load() || time.Now().After(deadline) {
			return
		}
		f, ok := m.p.TryNext(100 * time.Millisecond)
		if !ok {
			select {
			case <-m.p.Done():
				m.closed = true
				return
			default:
				continue
			}
		}
		m.take(f)
	}
}

// nodeLossWait bounds how long a send may take to be acknowledged (its
// retries included) and how long the whole stretch of sends around the
// kill may take. Acknowledgements pause for the leader election, 5-8 s on
// an idle machine (the test logs it); the bound is loose because CI
// machines are small and busy.
const nodeLossWait = 60 * time.Second

// nodeLossCheck runs the scenario of plan (chosen knowing the rooms
// stream's leader) and checks what every member got.
func nodeLossCheck(t *testing.T, plan func(roomsLeader int) nodeLossPlan) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	const (
		room           = "nodeloss"
		acksBeforeKill = 150
		acksAfterKill  = 300              // and at least 50 of each sender's
		sendEvery      = time.Millisecond // each sender waits for its ack too
	)
	start := time.Now()
	c := wstest.StartCluster(t)
	stores := natsconf.StoreConfig{Replicas: 3}
	c.EnsureStores(t, stores)
	pl := plan(c.StreamLeader(t, natsconf.MustSubjects(natsconf.DefaultPrefix).StoreNames().Rooms))
	for _, n := range pl.handlers {
		c.StartHandlers(t, n, stores, "all")
	}
	live := [2]*liveSeqs{{seen: map[uint64]int{}}, {seen: map[uint64]int{}}}
	var (
		lossArmed  atomic.Bool
		lossOnce   sync.Once
		lost       = make(chan uint64, 1)
		crashed    = make(chan struct{})
		crashOnce  sync.Once
		endCrashed = func() { crashOnce.Do(func() { close(crashed) }) }
	)
	defer endCrashed()
	hookB := live[1].observe
	if pl.loseThenKill {
		hookB = func(room string, seq uint64) bool {
			fire := false
			if lossArmed.Load() {
				lossOnce.Do(func() { fire = true })
			}
			if !fire {
				return live[1].observe(room, seq)
			}
			lost <- seq
			select { // the next message queues up behind this one meanwhile
			case <-crashed:
			case <-time.After(20 * time.Second):
			}
			return true
		}
	}
	edgeA := c.StartEdge(t, pl.edgeA, server.Config{Gateway: gateway.Config{Rate: -1, LoseRoomMessage: live[0].observe}})
	edgeB := c.StartEdge(t, pl.edgeB, server.Config{Gateway: gateway.Config{Rate: -1, LoseRoomMessage: hookB}})
	names := natsconf.MustSubjects(natsconf.DefaultPrefix).StoreNames()
	t.Logf("edge A on n%d, edge B on n%d, handlers on n%d and n%d; killing n%d (%s); leaders: %s; set up in %v",
		pl.edgeA+1, pl.edgeB+1, pl.handlers[0]+1, pl.handlers[1]+1, pl.kill+1, pl.what,
		c.Leaders(t, names.Rooms, names.Inbox, "KV_"+names.Members), time.Since(start).Round(time.Millisecond))

	var members, senders []*nodeLossMember
	join := func(srv *server.Server, user string) *nodeLossMember {
		p := connect(t, srv, user)
		return &nodeLossMember{p: p, joined: durSeq(p.join(t, room)), done: make(chan struct{})}
	}
	members = append(members, join(edgeA, "memberA"), join(edgeB, "memberB1"), join(edgeB, "memberB2"))
	senders = append(senders, join(edgeA, "sender0"), join(edgeA, "sender1"))
	readDeadline := time.Now().Add(nodeLossWait + time.Minute)
	for _, m := range members {
		go func() {
			defer close(m.done)
			m.read(readDeadline)
		}()
	}
	// However the test ends, the readers end before the clients close.
	defer func() {
		for _, m := range members {
			m.quit.Store(true)
			<-m.done
		}
	}()

	acks := make(chan nodeLossAck, 1<<15)
	stop := make(chan struct{})
	var stopOnce sync.Once
	var wg sync.WaitGroup
	halt := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	defer halt()
	for _, m := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bt := durBG{t}
			p := m.p
			p.Timeout = 20 * time.Second // a reply may take the edge's RequestTimeout, with nothing before it
			tick := time.NewTicker(sendEvery)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				a := nodeLossAck{sender: p, id: fmt.Sprint("n", i), body: fmt.Sprintf(`"%s/%d"`, p.user, i), first: time.Now()}
				for {
					f, before := durReply(bt, p.Client, a.id, map[string]any{"type": "send", "room": room, "body": json.RawMessage(a.body)})
					for _, b := range before {
						m.take(b)
					}
					if f.Type() == "ack" && durSeq(f) != 0 {
						a.seq, a.at = durSeq(f), time.Now()
						break
					}
					a.errors = append(a.errors, fmt.Sprintf("%s (%s) after %v", f.Str("code"), f.Str("message"), time.Since(a.first).Round(time.Millisecond)))
					if f.Type() != "error" || f.Str("code") != "unavailable" {
						bt.Fatalf("%s %s: want an ack or an unavailable error, got %s", p.user, a.id, f)
					}
					if time.Since(a.first) > nodeLossWait {
						bt.Fatalf("%s %s: not acknowledged within %v: %v", p.user, a.id, nodeLossWait, a.errors)
					}
					time.Sleep(20 * time.Millisecond) // a client's backoff
				}
				acks <- a
			}
		}()
	}

	var all []nodeLossAck
	var killAt time.Time
	var lostSeq uint64 // loseThenKill: the seq edge B lost
	kill := func() {
		killAt = time.Now()
		if pl.crash {
			c.Crash(pl.kill)
		} else {
			c.Shutdown(pl.kill)
		}
		endCrashed()
	}
	after := map[*peer]int{}
	deadline := time.NewTimer(nodeLossWait)
	defer deadline.Stop()
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-poll.C:
			if t.Failed() { // a sender gave up
				t.FailNow()
			}
		case lostSeq = <-lost:
		case a := <-acks:
			all = append(all, a)
			if !killAt.IsZero() && a.at.After(killAt) {
				after[a.sender]++
				after[nil]++
			}
			if killAt.IsZero() && lostSeq != 0 && a.seq > lostSeq {
				// The next message is stored, so republished to edge B
				// before this ack: let it arrive there.
				time.Sleep(50 * time.Millisecond)
				kill()
			}
		case <-deadline.C:
			t.Fatalf("%d acks, %d after the kill (%v)", len(all), after[nil], after)
		}
		if killAt.IsZero() && len(all) == acksBeforeKill {
			if pl.loseThenKill {
				lossArmed.Store(true)
			} else {
				kill()
			}
		}
		if after[nil] >= acksAfterKill && after[senders[0].p] >= 50 && after[senders[1].p] >= 50 {
			break
		}
	}
	halt()
	for len(acks) > 0 {
		all = append(all, <-acks)
	}
	if t.Failed() {
		t.FailNow()
	}

	// The longest pause of acknowledgements: between the last ack before
	// the kill and the acks after it, in any sender; and the longest any
	// one send waited for its ack (its retries included).
	var times []time.Time
	var longestSend nodeLossAck
	retried := 0
	for _, a := range all {
		times = append(times, a.at)
		if a.at.Sub(a.first) > longestSend.at.Sub(longestSend.first) {
			longestSend = a
		}
		if len(a.errors) > 0 {
			retried++
		}
	}
	slices.SortFunc(times, func(x, y time.Time) int { return x.Compare(y) })
	var pause time.Duration
	var pauseFrom time.Time
	for i := 1; i < len(times); i++ {
		if times[i].After(killAt) && times[i].Sub(times[i-1]) > pause {
			pause, pauseFrom = times[i].Sub(times[i-1]), times[i-1]
		}
	}
	tries := "no error"
	if e := longestSend.errors; len(e) > 0 {
		tries = fmt.Sprintf("%d errors, first %s, last %s", len(e), e[0], e[len(e)-1])
	}
	t.Logf("%d sends acknowledged (%d after the kill), %d of them retried; longest pause of acks after killing n%d (%s): %v, from %v after the kill; longest wait of one send: %v (%s %s: %s)",
		len(all), after[nil], retried, pl.kill+1, pl.what, pause.Round(time.Millisecond), pauseFrom.Sub(killAt).Round(time.Millisecond),
		longestSend.at.Sub(longestSend.first).Round(time.Millisecond), longestSend.sender.user, longestSend.id, tries)

	acked := map[uint64]nodeLossAck{}
	var maxAcked uint64
	for _, a := range all {
		if prev, dup := acked[a.seq]; dup {
			t.Errorf("seq %d acknowledged for %s %s and %s %s", a.seq, prev.sender.user, prev.id, a.sender.user, a.id)
		}
		acked[a.seq] = a
		maxAcked = max(maxAcked, a.seq)
	}

	// What live delivery lost on the way to each edge, and the gap
	// logic filled in.
	for k, l := range live {
		l.mu.Lock()
		var filled []uint64
		for s := range acked {
			if l.seen[s] == 0 {
				filled = append(filled, s)
			}
		}
		l.mu.Unlock()
		slices.Sort(filled)
		t.Logf("edge %c: %d of %d acknowledged messages did not arrive live (filled from history): %v", 'A'+k, len(filled), len(acked), filled[:min(len(filled), 20)])
	}

	// Every member: every acknowledged message once, in seq order, each
	// prev the seq before (the joined seq for the first), nothing else,
	// and no bye: the WebSocket stayed up.
	for _, m := range members {
		m.target.Store(maxAcked)
	}
	for _, m := range senders {
		m.target.Store(maxAcked)
		m.read(readDeadline)
	}
	for _, m := range members {
		<-m.done
	}
	for _, m := range append(members, senders...) {
		nodeLossMemberCheck(t, m, acked)
	}

	// History holds every acknowledged send once, and nothing else.
	reader := connect(t, edgeB, "reader")
	hist := durAllHistory(t, reader, room)
	bodies := map[string]int{}
	for _, h := range hist {
		bodies[h.body()]++
		a, ok := acked[h.Seq]
		switch {
		case !ok:
			t.Errorf("history has %d (%s), never acknowledged", h.Seq, h.body())
		case h.body() != a.body || h.From != a.sender.user:
			t.Errorf("history %d is %s from %s, acknowledged for %s from %s", h.Seq, h.body(), h.From, a.body, a.sender.user)
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
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// nodeLossMemberCheck checks what m received against the acknowledged
// sends.
func nodeLossMemberCheck(t *testing.T, m *nodeLossMember, acked map[uint64]nodeLossAck) {
	t.Helper()
	who := m.p.user
	if m.closed {
		t.Errorf("%s: the WebSocket closed (code %d %q)", who, m.p.Closed(t), m.p.CloseReason())
	}
	for _, f := range m.other {
		t.Errorf("%s: got %s", who, f)
	}
	bad := 0
	report := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 5 {
			t.Errorf(who+": "+format, args...)
		}
	}
	got := map[uint64]bool{}
	prev := m.joined
	for _, f := range m.msgs {
		s := durSeq(f)
		if s <= prev {
			report("msg %d after %d (twice or out of order)", s, prev)
		}
		if p, ok := f.Uint("prev"); !ok || p != prev {
			report("msg %d has prev %v, want %d (the seq received before): %s", s, f.Get("prev"), prev, f)
		}
		a, ok := acked[s]
		switch {
		case !ok:
			report("msg %d was never acknowledged: %s", s, f)
		case f.Str("from") != a.sender.user || f.JSON("body") != a.body:
			report("msg %d is %s, acknowledged for %s %s", s, f, a.sender.user, a.body)
		}
		got[s] = true
		prev = max(prev, s)
	}
	var missing []uint64
	for s := range acked {
		if !got[s] {
			missing = append(missing, s)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("%s: %d acknowledged messages never delivered: %v", who, len(missing), missing[:min(len(missing), 20)])
	}
	if bad > 5 {
		t.Errorf("%s: %d problems in all", who, bad)
	}
}

// TestNodeLossOfEdgesNodeKeepsLiveDelivery: the NATS node that edge B
// (and one handler copy) is connected to dies (cut off at once, as by
// kill -9) while messages flow. Edge B reconnects to another node by
// itself; its members stay connected and get every acknowledged message
// once, in order, the ones republished while it was away filled in from
// history. The rooms stream's leader is on another node.
func TestNodeLossOfEdgesNodeKeepsLiveDelivery(t *testing.T) {
	nodeLossCheck(t, func(leader int) nodeLossPlan {
		b, a := (leader+1)%3, (leader+2)%3
		return nodeLossPlan{edgeA: a, edgeB: b, handlers: [2]int{b, leader}, kill: b, crash: true, what: "edge B's node, crashed"}
	})
}

// TestNodeLossOfRoomsLeaderKeepsLiveDelivery: the node that leads the rooms
// stream (and holds one handler copy's connection) dies (cut off at once,
// as by kill -9) while messages flow. Sends fail with "unavailable" until
// the two others elect a leader; the retries with the same id are stored
// once, and the members on both edges (on the other nodes) get every
// acknowledged message once, in order, without reconnecting.
func TestNodeLossOfRoomsLeaderKeepsLiveDelivery(t *testing.T) {
	nodeLossCheck(t, func(leader int) nodeLossPlan {
		a, b := (leader+1)%3, (leader+2)%3
		return nodeLossPlan{edgeA: a, edgeB: b, handlers: [2]int{leader, a}, kill: leader, crash: true, what: "the IM_ROOMS leader, crashed"}
	})
}

// TestNodeShutdownOfRoomsLeaderKeepsLiveDelivery is the same with the
// leader's node stopped cleanly: nats-server hands the leadership over
// before it goes, so the pause is short.
func TestNodeShutdownOfRoomsLeaderKeepsLiveDelivery(t *testing.T) {
	nodeLossCheck(t, func(leader int) nodeLossPlan {
		a, b := (leader+1)%3, (leader+2)%3
		return nodeLossPlan{edgeA: a, edgeB: b, handlers: [2]int{leader, a}, kill: leader, what: "the IM_ROOMS leader, shut down"}
	})
}

// TestNodeLossOfEdgesNodeLeadingRooms: edge B's node, which also leads the
// rooms stream, dies (cut off, as by kill -9): edge B reconnects at once
// and checks its rooms while the stream has no leader yet.
func TestNodeLossOfEdgesNodeLeadingRooms(t *testing.T) {
	nodeLossCheck(t, func(leader int) nodeLossPlan {
		a := (leader + 1) % 3
		return nodeLossPlan{edgeA: a, edgeB: leader, handlers: [2]int{leader, a}, kill: leader, crash: true, what: "edge B's node, leading IM_ROOMS, crashed"}
	})
}

// TestNodeLossOfRoomsLeaderDuringGapFill: edge B lost the live copy of a
// message, and the rooms stream's leader dies just as the next message
// reveals the gap: edge B fills it from history while the stream fails
// over (reads fail for a few seconds), and its members stay connected.
func TestNodeLossOfRoomsLeaderDuringGapFill(t *testing.T) {
	nodeLossCheck(t, func(leader int) nodeLossPlan {
		a, b := (leader+1)%3, (leader+2)%3
		return nodeLossPlan{edgeA: a, edgeB: b, handlers: [2]int{leader, a}, kill: leader, crash: true, loseThenKill: true,
			what: "the IM_ROOMS leader, crashed as edge B sees a gap"}
	})
}
