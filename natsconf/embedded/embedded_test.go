package embedded_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

func TestStartNeedsStoreDir(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{DontListen: true})
	if err == nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		t.Fatal("Start without StoreDir: no error")
	}
}

func TestEmbeddedTCP(t *testing.T) {
	srv := embeddedtest.StartServer(t, embedded.Config{Port: 0})
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
	other := embeddedtest.ConnectInProcess(t, srv)
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
	if err := natsconf.EnsureStores(embeddedtest.Context(t), js, natsconf.MustSubjects("im"), natsconf.StoreConfig{}); err != nil {
		t.Fatalf("EnsureStores over TCP: %v", err)
	}
}

func TestServiceOptions(t *testing.T) {
	srv := embeddedtest.StartServer(t, embedded.Config{DontListen: true})
	nc, err := embedded.Connect(srv, "svc-name")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if nc.Opts.Name != "svc-name" || nc.Opts.MaxReconnect != -1 || nc.Opts.ReconnectBufSize != 64<<20 {
		t.Errorf("options: name %q, max reconnect %d, buf %d", nc.Opts.Name, nc.Opts.MaxReconnect, nc.Opts.ReconnectBufSize)
	}
}
