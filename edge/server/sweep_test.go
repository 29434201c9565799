package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"natter/edge/server"
	"natter/edge/wstest"
	"natter/handlers/registry"
	"natter/handlers/runtime"
	"natter/natsconf"
)

// TestSweepForgetsDeadEdges: memberships held by an edge that is gone
// (crashed: no disconnect events) are forgotten after two sweeps, with a
// presence leave; those of a live edge stay.
func TestSweepForgetsDeadEdges(t *testing.T) {
	ns := wstest.StartNATS(t)
	hnc, err := natsconf.Connect(ns.ClientURL(), "sweep-handlers")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hnc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	set, err := registry.Start(ctx, hnc, runtime.Config{SweepInterval: 50 * time.Millisecond, Logger: wstest.QuietLogger()}, natsconf.StoreConfig{}, registry.All)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)

	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
	live := wstest.Dial(t, wstest.URL(srv, "/ws?user=alice"), nil)
	live.Expect(t, "welcome")
	if f := live.Request(t, map[string]any{"type": "join", "room": "lobby"}); f.Type() != "joined" {
		t.Fatalf("join: %s", f)
	}

	// A connection of an edge that crashed: joined through NATS with an
	// edge id nobody answers for.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	subject := natsconf.MustSubjects("im")
	join, _ := subject.Command("join")
	reply, err := nc.RequestMsg(&nats.Msg{Subject: join, Header: nats.Header{
		natsconf.HeaderConn: {"ghostconn"}, natsconf.HeaderUser: {"ghost"}, natsconf.HeaderEdge: {"deadedge"},
	}, Data: []byte(`{"type":"join","room":"lobby"}`)}, 5*time.Second)
	if err != nil || reply.Header.Get(natsconf.HeaderOp) != natsconf.OpSubscribe {
		t.Fatalf("ghost join: %v %v", reply, err)
	}
	live.WaitFor(t, func(f wstest.Frame) bool {
		return f.Type() == "presence" && f.Str("user") == "ghost" && f.Str("event") == "join"
	})

	// The sweep removes the ghost and tells the room; alice stays.
	live.WaitFor(t, func(f wstest.Frame) bool {
		return f.Type() == "presence" && f.Str("user") == "ghost" && f.Str("event") == "leave"
	})
	users, _ := live.Request(t, map[string]any{"type": "members", "room": "lobby"}).Strings("users")
	if len(users) != 1 || users[0] != "alice" {
		t.Errorf("members after the sweep: %v, want [alice]", users)
	}
}
