package natsconf_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

func TestDrain(t *testing.T) {
	srv := embeddedtest.StartServer(t, embedded.Config{DontListen: true})
	nc := embeddedtest.ConnectInProcess(t, srv)
	other := embeddedtest.ConnectInProcess(t, srv)

	// A subscription holding messages finishes them before the drain ends.
	const n = 100
	release := make(chan struct{})
	handled := make(chan struct{}, n)
	if _, err := nc.Subscribe("work", func(*nats.Msg) {
		<-release
		handled <- struct{}{}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := other.Publish("work", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	// other's Flush means the server has routed all n to nc; nc's Flush
	// means nc has read them (its PONG comes after them).
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- natsconf.Drain(embeddedtest.Context(t), nc) }()
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Drain did not return")
	}
	if !nc.IsClosed() {
		t.Fatal("connection not closed after Drain")
	}
	if got := len(handled); got != n {
		t.Fatalf("%d of %d messages handled before Drain returned", got, n)
	}
	// Draining a closed or nil connection is a no-op.
	if err := natsconf.Drain(context.Background(), nc); err != nil {
		t.Fatalf("Drain of a closed connection: %v", err)
	}
	if err := natsconf.Drain(context.Background(), nil); err != nil {
		t.Fatalf("Drain(nil): %v", err)
	}
}

func TestDrainContextEnds(t *testing.T) {
	srv := embeddedtest.StartServer(t, embedded.Config{DontListen: true})
	nc := embeddedtest.ConnectInProcess(t, srv)
	other := embeddedtest.ConnectInProcess(t, srv)

	// A handler that blocks keeps the drain from finishing.
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	started := make(chan struct{}, 1)
	if _, err := nc.Subscribe("stuck", func(*nats.Msg) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-block
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := other.Publish("stuck", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never ran")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := natsconf.Drain(ctx, nc)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v, want context.DeadlineExceeded", err)
	}
	if !nc.IsClosed() {
		t.Fatal("connection not closed after Drain gave up")
	}
}

func TestRedactURLs(t *testing.T) {
	got := natsconf.RedactURLs("nats://edge:s3cret@n1:4222,nats://n2:4222, nats://u:p@n3:4222")
	if strings.Contains(got, "s3cret") || strings.Contains(got, ":p@") || !strings.Contains(got, "nats://n2:4222") {
		t.Errorf("RedactURLs = %q", got)
	}
}
