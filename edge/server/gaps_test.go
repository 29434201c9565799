package server_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"natter/edge/gateway"
	"natter/edge/server"
)

// loseOnce is a gateway.Config.LoseRoomMessage that drops the live copies
// of the room messages whose send index is in lose (counted from 1 in the
// order they arrive), each once.
type loseOnce struct {
	mu   sync.Mutex
	n    int
	lose map[int]bool
	lost []uint64
}

func (l *loseOnce) drop(_ string, seq uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if l.lose[l.n] {
		l.lost = append(l.lost, seq)
		return true
	}
	return false
}

// gapsCheck has a member receive n messages sent by a sender and checks
// they come exactly once, in seq order, each with prev the seq before.
func gapsCheck(t *testing.T, cfg gateway.Config, n int) {
	t.Helper()
	srv := startEdge(t, server.Config{Gateway: cfg})
	member := connect(t, srv, "member")
	joined := member.join(t, "gaps")
	sender := connect(t, srv, "sender")
	sender.join(t, "gaps")
	var seqs []uint64
	for i := range n {
		seqs = append(seqs, durSeq(sender.request(t, "ack", map[string]any{"type": "send", "room": "gaps", "body": i})))
	}
	prev := durSeq(joined)
	for i := range n {
		f := durNextMsg(t, member)
		if durSeq(f) != seqs[i] || f.JSON("body") != fmt.Sprint(i) {
			t.Fatalf("member: message %d is %s, want seq %d", i, f, seqs[i])
		}
		if p, ok := f.Uint("prev"); !ok || p != prev {
			t.Fatalf("member: message %d has prev %v, want %d: %s", i, f.Get("prev"), prev, f)
		}
		prev = seqs[i]
	}
	member.barrier(t)
}

// TestGapLiveMessageLostIsFilled: a room message lost on its way to the
// edge (dropped by a test hook) is fetched and delivered in its place, in
// order, exactly once, without the client doing anything.
func TestGapLiveMessageLostIsFilled(t *testing.T) {
	l := &loseOnce{lose: map[int]bool{3: true, 4: true, 9: true}}
	gapsCheck(t, gateway.Config{LoseRoomMessage: l.drop, GapCheckInterval: time.Hour}, 12)
	if len(l.lost) != 3 {
		t.Fatalf("the hook dropped %d messages, want 3", len(l.lost))
	}
}

// TestGapLostAtTailIsFilledByCheck: the last message of a burst is lost, so
// no later message reveals the gap: the periodic check of the room's
// latest seq does.
func TestGapLostAtTailIsFilledByCheck(t *testing.T) {
	l := &loseOnce{lose: map[int]bool{5: true}}
	gapsCheck(t, gateway.Config{LoseRoomMessage: l.drop, GapCheckInterval: 50 * time.Millisecond}, 5)
	if len(l.lost) != 1 {
		t.Fatalf("the hook dropped %d messages, want 1", len(l.lost))
	}
}
