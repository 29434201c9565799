package wstest

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"natter/edge/devmode"
	"natter/edge/server"
	"natter/handlers/registry"
	"natter/handlers/runtime"
	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

// ShutdownTimeout bounds the Shutdown of an edge and the stop of handlers
// in cleanup.
const ShutdownTimeout = 10 * time.Second

// QuietLogger returns a logger that discards everything: tests stay quiet
// unless they fail.
func QuietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// StartNATS starts an embedded NATS server with JetStream, storing in a
// t.TempDir() and listening on a random loopback port (its ClientURL is what
// edges and handlers connect to). It is shut down in cleanup.
func StartNATS(t testing.TB) *natsserver.Server {
	t.Helper()
	return embeddedtest.StartServer(t, embedded.Config{Host: "127.0.0.1", Port: 0, ServerName: "wstest"})
}

// StartEdge starts an edge with cfg, filling in Addr "127.0.0.1:0" (a random
// loopback port), DataDir t.TempDir() and a quiet logger when they are
// empty. With cfg.NATSURL empty the edge runs in development mode (an
// embedded NATS and every handler in-process). The edge is shut down in
// cleanup, with ShutdownTimeout; a test may shut it down itself first.
func StartEdge(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = QuietLogger()
	}
	if cfg.Local == nil {
		cfg.Local = devmode.Start
	}
	srv, err := server.Start(cfg)
	if err != nil {
		t.Fatalf("wstest: start edge: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		// A panicking Shutdown fails this test, not the whole binary.
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("wstest: edge Shutdown panicked: %v", p)
			}
		}()
		// A second Shutdown (the test shut the edge down itself) may
		// report that; only a shutdown that did not finish is a failure.
		if err := srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("wstest: edge shutdown did not finish in %v", ShutdownTimeout)
		}
	})
	return srv
}

// StartHandlers connects to the NATS server at url and starts the named
// handlers on that connection (registry names, or "all"), making sure the
// JetStream stores exist. Each call is a separate copy, as a separate
// `handlers` process would be: call it twice to run two copies sharing the
// work through their queue groups. The handlers are stopped and their
// connection drained in cleanup.
func StartHandlers(t testing.TB, url string, names ...string) {
	t.Helper()
	nc, err := natsconf.Connect(url, "wstest-handlers")
	if err != nil {
		t.Fatalf("wstest: connect handlers to %s: %v", url, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	set, err := registry.Start(ctx, nc, runtime.Config{Logger: QuietLogger()}, natsconf.StoreConfig{}, names...)
	if err != nil {
		nc.Close()
		t.Fatalf("wstest: start handlers %v: %v", names, err)
	}
	t.Cleanup(func() {
		set.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := natsconf.Drain(ctx, nc); err != nil {
			t.Errorf("wstest: drain handlers' connection: %v", err)
		}
	})
}

// URL returns the ws:// URL of srv for pathAndQuery, for example
// URL(srv, "/ws?user=alice").
func URL(srv *server.Server, pathAndQuery string) string {
	return "ws://" + srv.Addr().String() + pathAndQuery
}

// SecureURL returns the wss:// URL of srv (an edge with a certificate) for
// pathAndQuery.
func SecureURL(srv *server.Server, pathAndQuery string) string {
	return "wss://" + srv.Addr().String() + pathAndQuery
}
