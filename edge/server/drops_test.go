package server_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
	"natter/natsconf"
)

// TestDroppedDeliveriesAreRecovered floods the edge's shared delivery queue
// (kept tiny here) so that NATS drops deliveries while room messages and
// dms flow: every acknowledged room message and dm still reaches its
// members and target, with no reconnect (never a silent gap).
func TestDroppedDeliveriesAreRecovered(t *testing.T) {
	ns := wstest.StartNATS(t).ClientURL()
	wstest.StartHandlers(t, ns, "all")
	srv := startEdge(t, server.Config{NATSURL: ns, Gateway: gateway.Config{
		Rate: -1, DispatchQueue: 4, GapCheckInterval: 200 * time.Millisecond,
	}})
	member := connect(t, srv, "member")
	member.join(t, "drops")
	bob := connect(t, srv, "bob")
	alice := connect(t, srv, "alice")
	alice.join(t, "drops")

	flood, err := nats.Connect(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	bcast := natsconf.MustSubjects(natsconf.DefaultPrefix).Broadcast()
	stop := make(chan struct{})
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = flood.Publish(bcast, []byte(`{"type":"broadcast","from":"flood","ts":1,"body":1}`))
			if i%1000 == 999 {
				_ = flood.Flush()
			}
		}
	}()

	const n = 40
	sends := durPipeline(t, alice.Client, "s", n, 8, func(i int) map[string]any {
		return map[string]any{"type": "send", "room": "drops", "body": i}
	})
	dms := durPipeline(t, alice.Client, "d", n, 8, func(i int) map[string]any {
		return map[string]any{"type": "dm", "to": "bob", "body": i}
	})
	close(stop)
	<-flooded

	want := map[uint64]bool{}
	for _, f := range sends {
		if f.Type() == "ack" {
			want[durSeq(f)] = true
		}
	}
	wantDMs := map[uint64]bool{}
	for _, f := range dms {
		if f.Type() == "ack" {
			wantDMs[durSeq(f)] = true
		}
	}
	t.Logf("%d sends and %d dms acknowledged while the queue overflowed", len(want), len(wantDMs))
	member.Timeout, bob.Timeout = 20*time.Second, 20*time.Second
	var last uint64
	for len(want) > 0 {
		f := member.Next(t)
		if f.Type() != "msg" {
			continue // broadcasts, presence
		}
		s := durSeq(f)
		if s <= last {
			t.Fatalf("member: msg %d after %d", s, last)
		}
		last = s
		delete(want, s)
	}
	for len(wantDMs) > 0 {
		f := bob.Next(t)
		if f.Type() == "dm" {
			delete(wantDMs, durSeq(f))
		}
		if f.Type() == "bye" {
			t.Fatalf("bob got %s", f)
		}
	}
}
