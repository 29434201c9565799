// Package embeddedtest holds what the tests of natsconf's packages need
// of an embedded NATS server: one started in a temporary directory and
// stopped when the test ends, an in-process connection, a bounded context.
package embeddedtest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"natter/natsconf/embedded"
)

// StartServer starts an embedded server with JetStream (in tb.TempDir()
// unless cfg names a directory) and shuts it down in tb.Cleanup.
func StartServer(tb testing.TB, cfg embedded.Config) *server.Server {
	tb.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = tb.TempDir()
	}
	srv, err := embedded.Start(cfg)
	if err != nil {
		tb.Fatalf("embedded.Start: %v", err)
	}
	tb.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// ConnectInProcess connects to srv in-process and closes the connection
// in tb.Cleanup.
func ConnectInProcess(tb testing.TB, srv *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := embedded.Connect(srv, tb.Name())
	if err != nil {
		tb.Fatalf("embedded.Connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Context returns a context that ends after 30s or with the test.
func Context(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// PeerCount counts the servers ns has routes to (a route pool holds
// several connections to each); -1 when ns cannot tell.
func PeerCount(ns *server.Server) int {
	rz, err := ns.Routez(nil)
	if err != nil {
		return -1
	}
	peers := map[string]bool{}
	for _, r := range rz.Routes {
		peers[r.RemoteID] = true
	}
	return len(peers)
}

// WaitFor polls cond every 20ms until it holds (true) or d passes (false).
func WaitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
