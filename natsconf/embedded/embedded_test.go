package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/natsconf"
	"natter/natsconf/embedded"
)

// startServer starts an embedded server with JetStream in t.TempDir() and
// shuts it down in t.Cleanup.
func startServer(tb testing.TB, cfg embedded.Config) *server.Server {
	tb.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = tb.TempDir()
	}
	srv, err := embedded.Start(cfg)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// connectInProcess connects to srv in-process and closes it in t.Cleanup.
func connectInProcess(tb testing.TB, srv *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := embedded.Connect(srv, tb.Name())
	if err != nil {
		tb.Fatalf("Connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func TestStartNeedsStoreDir(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{DontListen: true})
	if err == nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		t.Fatal("Start without StoreDir: no error")
	}
}

func TestEmbeddedTCP(t *testing.T) {
	srv := startServer(t, embedded.Config{Port: 0})
	if srv.Addr() == nil {
		t.Fatal("server does not listen")
	}
	url := srv.ClientURL()
	nc, err := natsconf.Connect(url, "tcp-test")
	if err != nil {
		t.Fatalf("Connect(%s): %v", url, err)
	}
	t.Cleanup(nc.Close)
	if got := nc.ConnectedUrl(); got != url {
		t.Errorf("connected to %q, want %q", got, url)
	}
	sub, err := nc.SubscribeSync("ping")
	if err != nil {
		t.Fatal(err)
	}
	// A second, in-process connection reaches the TCP one.
	other := connectInProcess(t, srv)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := other.Publish("ping", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "x" {
		t.Fatalf("NextMsg = %v, %v", m, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsconf.EnsureStores(testContext(t), js, natsconf.MustSubjects("im"), natsconf.StoreConfig{}); err != nil {
		t.Fatalf("EnsureStores over TCP: %v", err)
	}
}

func TestServiceOptions(t *testing.T) {
	srv := startServer(t, embedded.Config{DontListen: true})
	nc, err := embedded.Connect(srv, "svc-name")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if nc.Opts.Name != "svc-name" || nc.Opts.MaxReconnect != -1 || nc.Opts.ReconnectBufSize != 64<<20 {
		t.Errorf("options: name %q, max reconnect %d, buf %d", nc.Opts.Name, nc.Opts.MaxReconnect, nc.Opts.ReconnectBufSize)
	}
}
