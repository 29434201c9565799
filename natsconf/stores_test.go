package natsconf_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

func TestEmbeddedEnsureStores(t *testing.T) {
	srv := embeddedtest.StartServer(t, embedded.Config{DontListen: true})
	if srv.Addr() != nil {
		t.Fatalf("DontListen server listens on %v", srv.Addr())
	}
	if !srv.JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
	nc := embeddedtest.ConnectInProcess(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := embeddedtest.Context(t)
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
	srv := embeddedtest.StartServer(t, embedded.Config{DontListen: true})
	js, err := jetstream.New(embeddedtest.ConnectInProcess(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := embeddedtest.Context(t)
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
