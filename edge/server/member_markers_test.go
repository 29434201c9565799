package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
	"natter/handlers/registry"
	"natter/handlers/runtime"
	"natter/natsconf"
)

// TestSweepPurgesMemberMarkers joins and leaves 250 rooms: each left room
// leaves a deletion marker in the members bucket, which the rooms
// handler's sweep purges (markers older than one sweep), so the bucket's
// stream ends up holding only the live memberships, which keep working.
func TestSweepPurgesMemberMarkers(t *testing.T) {
	const rooms = 250
	ns := wstest.StartNATS(t)
	hnc, err := natsconf.Connect(ns.ClientURL(), "markers-handlers")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hnc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	set, err := registry.Start(ctx, hnc, runtime.Config{SweepInterval: 50 * time.Millisecond, Logger: wstest.QuietLogger()}, natsconf.StoreConfig{}, registry.All)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Stop)
	js, err := jetstream.New(hnc)
	if err != nil {
		t.Fatal(err)
	}
	kvStream, err := js.Stream(ctx, "KV_"+natsconf.MustSubjects("im").StoreNames().Members)
	if err != nil {
		t.Fatal(err)
	}
	msgs := func() uint64 {
		t.Helper()
		info, err := kvStream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL(), Gateway: gateway.Config{Rate: -1}})
	alice := connect(t, srv, "alice")
	alice.join(t, "stay")
	for i := range rooms {
		room := fmt.Sprint("r", i)
		alice.join(t, room)
		alice.request(t, "left", map[string]any{"type": "leave", "room": room})
	}
	// Also a room left and joined again: its key is live.
	alice.request(t, "left", map[string]any{"type": "leave", "room": "stay"})
	alice.join(t, "stay")

	deadline := time.Now().Add(10 * time.Second)
	for n := msgs(); n != 1; n = msgs() {
		if time.Now().After(deadline) {
			t.Fatalf("members bucket holds %d messages after the sweeps, want 1 (the live membership)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantMembers(t, alice.members(t, "stay"), "alice")
	alice.request(t, "ack", map[string]any{"type": "send", "room": "stay", "body": "still here"})
	alice.join(t, "r7")
	wantMembers(t, alice.members(t, "r7"), "alice")
	if n := msgs(); n != 2 {
		t.Fatalf("members bucket holds %d messages after a join, want 2", n)
	}
}
