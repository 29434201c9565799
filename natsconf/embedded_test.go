package natsconf_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/natsconf"
)

// startServer starts an embedded server with JetStream in t.TempDir() and
// shuts it down in t.Cleanup.
func startServer(tb testing.TB, cfg natsconf.EmbeddedConfig) *server.Server {
	tb.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = tb.TempDir()
	}
	srv, err := natsconf.StartEmbedded(cfg)
	if err != nil {
		tb.Fatalf("StartEmbedded: %v", err)
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
	nc, err := natsconf.ConnectEmbedded(srv, tb.Name())
	if err != nil {
		tb.Fatalf("ConnectEmbedded: %v", err)
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

func TestStartEmbeddedNeedsStoreDir(t *testing.T) {
	srv, err := natsconf.StartEmbedded(natsconf.EmbeddedConfig{DontListen: true})
	if err == nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		t.Fatal("StartEmbedded without StoreDir: no error")
	}
}

func TestEmbeddedEnsureStores(t *testing.T) {
	srv := startServer(t, natsconf.EmbeddedConfig{DontListen: true})
	if srv.Addr() != nil {
		t.Fatalf("DontListen server listens on %v", srv.Addr())
	}
	if !srv.JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
	nc := connectInProcess(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	subj := natsconf.MustSubjects("im")
	for i := range 2 {
		if err := natsconf.EnsureStores(ctx, js, subj, natsconf.StoreConfig{}); err != nil {
			t.Fatalf("EnsureStores #%d: %v", i+1, err)
		}
	}
	names := subj.StoreNames()

	streams := []struct {
		name       string
		subjects   []string
		maxMsgs    int64
		maxAge     time.Duration
		maxBytes   int64
		discard    jetstream.DiscardPolicy
		newPerSubj bool
	}{
		{names.Rooms, []string{"im.store.room.*"}, natsconf.DefaultRoomMaxMsgs, natsconf.DefaultRoomMaxAge, natsconf.DefaultRoomMaxBytes, jetstream.DiscardOld, false},
		{names.Inbox, []string{"im.store.user.*"}, natsconf.DefaultInboxMaxMsgs, natsconf.DefaultInboxMaxAge, natsconf.DefaultInboxMaxBytes, jetstream.DiscardOld, false},
		// Pending dms: a full user, or a full stream, refuses the newest.
		{subj.PendingStore(), []string{"im.store.pending.*"}, natsconf.DefaultInboxMaxMsgs, natsconf.DefaultInboxMaxAge, natsconf.DefaultInboxMaxBytes, jetstream.DiscardNew, true},
	}
	for _, want := range streams {
		st, err := js.Stream(ctx, want.name)
		if err != nil {
			t.Fatalf("stream %s: %v", want.name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := info.Config
		if !slices.Equal(c.Subjects, want.subjects) {
			t.Errorf("%s subjects = %q, want %q", want.name, c.Subjects, want.subjects)
		}
		if c.MaxMsgsPerSubject != want.maxMsgs || c.MaxAge != want.maxAge || c.MaxBytes != want.maxBytes {
			t.Errorf("%s limits = %d msgs/subject, %v, %d bytes; want %d, %v, %d",
				want.name, c.MaxMsgsPerSubject, c.MaxAge, c.MaxBytes, want.maxMsgs, want.maxAge, want.maxBytes)
		}
		if c.Duplicates != natsconf.DefaultDedupWindow || c.Replicas != 1 || c.Discard != want.discard || c.DiscardNewPerSubject != want.newPerSubj || !c.AllowDirect {
			t.Errorf("%s: duplicates %v, replicas %d, discard %v (new per subject %v), direct %v",
				want.name, c.Duplicates, c.Replicas, c.Discard, c.DiscardNewPerSubject, c.AllowDirect)
		}
	}
	rooms, err := js.Stream(ctx, names.Rooms)
	if err != nil {
		t.Fatal(err)
	}
	if rp := rooms.CachedInfo().Config.RePublish; rp == nil || rp.Source != "im.store.room.*" || rp.Destination != "im.room.{{wildcard(1)}}" {
		t.Errorf("rooms republish = %+v", rp)
	}

	for _, b := range []string{names.Members} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatalf("bucket %s: %v", b, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.History() != 1 || st.TTL() != 0 {
			t.Errorf("bucket %s: history %d, ttl %v; want 1, 0", b, st.History(), st.TTL())
		}
	}

	// A stored room message is republished on the room's live subject.
	live, err := subj.Room("lobby")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(live)
	if err != nil {
		t.Fatal(err)
	}
	store, err := subj.RoomStore("lobby")
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, store, []byte(`{"type":"msg"}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("republished message: %v", err)
	}
	if string(m.Data) != `{"type":"msg"}` || m.Header.Get(nats.JSSequence) != "1" || ack.Sequence != 1 {
		t.Errorf("republished %q seq %q (ack %d)", m.Data, m.Header.Get(nats.JSSequence), ack.Sequence)
	}
}

func TestEnsureStoresCustomLimits(t *testing.T) {
	srv := startServer(t, natsconf.EmbeddedConfig{DontListen: true})
	js, err := jetstream.New(connectInProcess(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	subj := natsconf.MustSubjects("app.v1")
	if err := natsconf.EnsureStores(ctx, js, subj, natsconf.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	// Changing limits later updates the streams in place.
	cfg := natsconf.StoreConfig{RoomMaxMsgs: 5, RoomMaxAge: time.Hour, InboxMaxMsgs: 3, DedupWindow: time.Minute}
	if err := natsconf.EnsureStores(ctx, js, subj, cfg); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, subj.StoreNames().Rooms)
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	if c.MaxMsgsPerSubject != 5 || c.MaxAge != time.Hour || c.Duplicates != time.Minute || c.MaxBytes != natsconf.DefaultRoomMaxBytes {
		t.Errorf("rooms config after update: %d, %v, %v, %d", c.MaxMsgsPerSubject, c.MaxAge, c.Duplicates, c.MaxBytes)
	}
	if c.Subjects[0] != "app.v1.store.room.*" {
		t.Errorf("rooms subjects = %q", c.Subjects)
	}
}

func TestEmbeddedTCP(t *testing.T) {
	srv := startServer(t, natsconf.EmbeddedConfig{Port: 0})
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
	srv := startServer(t, natsconf.EmbeddedConfig{DontListen: true})
	nc, err := natsconf.ConnectEmbedded(srv, "svc-name")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if nc.Opts.Name != "svc-name" || nc.Opts.MaxReconnect != -1 || nc.Opts.ReconnectBufSize != 64<<20 {
		t.Errorf("options: name %q, max reconnect %d, buf %d", nc.Opts.Name, nc.Opts.MaxReconnect, nc.Opts.ReconnectBufSize)
	}
}

func TestDrain(t *testing.T) {
	srv := startServer(t, natsconf.EmbeddedConfig{DontListen: true})
	nc := connectInProcess(t, srv)
	other := connectInProcess(t, srv)

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
	go func() { done <- natsconf.Drain(testContext(t), nc) }()
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
	srv := startServer(t, natsconf.EmbeddedConfig{DontListen: true})
	nc := connectInProcess(t, srv)
	other := connectInProcess(t, srv)

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
