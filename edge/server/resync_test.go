package server_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
	"natter/natsconf/embedded"
)

// TestResyncAfterNATSOutage: when the edge's NATS connection comes back
// after an outage longer than ResyncAfter, clients get bye "shutdown" (so
// they reconnect and rejoin, whatever the handlers forgot meanwhile).
func TestResyncAfterNATSOutage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir := t.TempDir()
	start := func() func() {
		ns, err := embedded.Start(embedded.Config{StoreDir: dir, Host: "127.0.0.1", Port: port})
		if err != nil {
			t.Fatal(err)
		}
		return func() { ns.Shutdown(); ns.WaitForShutdown() }
	}
	stop := start()
	srv := wstest.StartEdge(t, server.Config{
		NATSURL: "nats://127.0.0.1:" + strconv.Itoa(port),
		Gateway: gateway.Config{ResyncAfter: time.Millisecond},
	})
	c := wstest.Dial(t, wstest.URL(srv, "/ws?user=alice"), nil)
	c.Expect(t, "welcome")

	stop()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// The edge notices the loss on its own; its readiness says so.
		if err := srv.Ready(context.Background()); err != nil && strings.Contains(err.Error(), "NATS is not connected") {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	stop = start()
	t.Cleanup(stop)
	if bye := c.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "bye" }); bye.Str("code") != "shutdown" {
		t.Errorf("bye after the outage: %s, want code shutdown", bye)
	}
}
