package natsconf_test

// Tests of the pending dm stream: it refuses the newest instead of dropping
// the oldest, and EnsureStores upgrades a deployment whose inbox stream
// still holds the pending subjects. Helpers are named pend….

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

// pendEntry publishes a pending entry as the inbox handler does.
func pendEntry(t *testing.T, js jetstream.JetStream, user string, seq uint64, data []byte) error {
	t.Helper()
	s := strconv.FormatUint(seq, 10)
	_, err := js.PublishMsg(embeddedtest.Context(t), &nats.Msg{Subject: "im.store.pending." + user, Data: data, Header: nats.Header{natsconf.HeaderSeq: {s}}},
		jetstream.WithMsgID("pending:"+s))
	return err
}

// pendSeqs reads the entries of subject in stream and returns their
// Natter-Seq headers.
func pendSeqs(t *testing.T, nc *nats.Conn, stream, subject string) []string {
	t.Helper()
	msgs, err := natsconf.NewReader(nc, stream).After(embeddedtest.Context(t), subject, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []string
	for _, m := range msgs {
		seqs = append(seqs, m.Header.Get(natsconf.HeaderSeq))
	}
	return seqs
}

// TestPendingStoreRefusesNewest: a user's pending dms beyond InboxMaxMsgs,
// and any beyond InboxMaxBytes for the whole stream, are refused (and
// recognised as such), and what is stored stays.
func TestPendingStoreRefusesNewest(t *testing.T) {
	srv := embeddedtest.StartServer(t, embedded.Config{DontListen: true})
	nc := embeddedtest.ConnectInProcess(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subj := natsconf.MustSubjects("im")
	if err := natsconf.EnsureStores(embeddedtest.Context(t), js, subj, natsconf.StoreConfig{InboxMaxMsgs: 3, InboxMaxBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	for i := range uint64(3) {
		if err := pendEntry(t, js, "bob", i+1, []byte("for bob")); err != nil {
			t.Fatalf("entry %d for bob: %v", i+1, err)
		}
	}
	err = pendEntry(t, js, "bob", 4, []byte("one too many"))
	if !natsconf.IsStoreFull(err) || !natsconf.IsSubjectFull(err) {
		t.Fatalf("bob's 4th pending entry: %v, want refused as per subject full", err)
	}
	// Others fill the stream's bytes: refused, bob's entries untouched.
	big := []byte(strings.Repeat("x", 8<<10))
	refused := 0
	for i := range 20 {
		err := pendEntry(t, js, fmt.Sprint("u", i), uint64(100+i), big)
		switch {
		case err == nil:
		case natsconf.IsStoreFull(err) && !natsconf.IsSubjectFull(err):
			refused++
		default:
			t.Fatalf("entry %d of 8 KiB: %v", i, err)
		}
	}
	if refused == 0 {
		t.Fatal("160 KiB of entries into a stream of 64 KiB: none refused")
	}
	if got := pendSeqs(t, nc, subj.PendingStore(), "im.store.pending.bob"); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Errorf("bob's pending entries after the others' flood: %q, want 1 2 3", got)
	}
	for _, e := range []error{nil, fmt.Errorf("nats: timeout"), &jetstream.APIError{ErrorCode: 10077, Description: "insufficient resources"}} {
		if natsconf.IsStoreFull(e) || natsconf.IsSubjectFull(e) {
			t.Errorf("%v taken for a full store", e)
		}
	}
}

// TestEnsureStoresUpgradesPending: an inbox stream as an older natter made
// it (pending entries on its own subjects) is updated in place: the pending
// subjects leave it, its dms stay, and its pending entries move to the
// pending stream with their frame and seq, so no stored dm is lost.
func TestEnsureStoresUpgradesPending(t *testing.T) {
	srv := embeddedtest.StartServer(t, embedded.Config{DontListen: true})
	nc := embeddedtest.ConnectInProcess(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := embeddedtest.Context(t)
	subj := natsconf.MustSubjects("im")
	names := subj.StoreNames()
	// The inbox stream of the previous release, with more pending entries
	// than one page of the move.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: names.Inbox, Subjects: []string{"im.store.user.*", "im.store.pending.*"},
		MaxMsgsPerSubject: 1000, Duplicates: 2 * time.Minute, AllowDirect: true,
	}); err != nil {
		t.Fatal(err)
	}
	const n = 300
	var dmSeqs []uint64
	for i := range n {
		frame := fmt.Appendf(nil, `{"type":"dm","n":%d}`, i)
		ack, err := js.Publish(ctx, "im.store.user.bob", frame)
		if err != nil {
			t.Fatal(err)
		}
		dmSeqs = append(dmSeqs, ack.Sequence)
		if err := pendEntry(t, js, "bob", ack.Sequence, frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := pendEntry(t, js, "carol", 9999, []byte(`{"type":"dm"}`)); err != nil {
		t.Fatal(err)
	}

	for i := range 2 {
		if err := natsconf.EnsureStores(ctx, js, subj, natsconf.StoreConfig{}); err != nil {
			t.Fatalf("EnsureStores #%d over the old inbox stream: %v", i+1, err)
		}
	}
	inbox, err := js.Stream(ctx, names.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if c := inbox.CachedInfo().Config; !slices.Equal(c.Subjects, []string{"im.store.user.*"}) {
		t.Errorf("inbox subjects after the upgrade: %q", c.Subjects)
	}
	want := func(stream, subject string, seqs ...uint64) {
		t.Helper()
		var w []string
		for _, s := range seqs {
			w = append(w, strconv.FormatUint(s, 10))
		}
		if got := pendSeqs(t, nc, stream, subject); !slices.Equal(got, w) {
			t.Errorf("%s %s: %d entries, want %d (%.60q, want %.60q)", stream, subject, len(got), len(w), got, w)
		}
	}
	want(subj.PendingStore(), "im.store.pending.bob", dmSeqs...)
	want(subj.PendingStore(), "im.store.pending.carol", 9999)
	want(names.Inbox, "im.store.pending.*") // none left behind
	if msgs, err := natsconf.NewReader(nc, names.Inbox).After(ctx, "im.store.user.bob", 0, 1000); err != nil || len(msgs) != n {
		t.Errorf("bob's dms in the inbox stream after the upgrade: %d (%v), want %d", len(msgs), err, n)
	}
	// The frame moved with the entry, once.
	msgs, err := natsconf.NewReader(nc, subj.PendingStore()).After(ctx, "im.store.pending.bob", 0, 1)
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != `{"type":"dm","n":0}` {
		t.Errorf("bob's first moved entry: %v %v", msgs, err)
	}
	pending, err := js.Stream(ctx, subj.PendingStore())
	if err != nil {
		t.Fatal(err)
	}
	if info, err := pending.Info(ctx); err != nil || info.State.Msgs != n+1 {
		t.Errorf("pending stream after two upgrades: %+v %v, want %d entries", info.State, err, n+1)
	}
	if moved, err := natsconf.MigratePending(ctx, js, subj); err != nil || moved != 0 {
		t.Errorf("MigratePending with nothing left: moved %d (%v)", moved, err)
	}
}

// TestStoreRate: the per-user store rate of a StoreConfig, defaults
// filled in; a negative value is no bound.
func TestStoreRate(t *testing.T) {
	if r, b := (natsconf.StoreConfig{}).StoreRate(); r != 1<<20 || b != 4<<20 {
		t.Errorf("default store rate %d/min burst %d, want 1 MiB and 4 MiB", r, b)
	}
	if r, b := (natsconf.StoreConfig{StoreRateBytes: 1000, StoreBurstBytes: 5000}).StoreRate(); r != 1000 || b != 5000 {
		t.Errorf("store rate %d/min burst %d, want 1000 and 5000", r, b)
	}
	if r, b := (natsconf.StoreConfig{StoreRateBytes: -1}).StoreRate(); r != 0 || b != 0 {
		t.Errorf("store rate off: %d/min burst %d, want 0 and 0", r, b)
	}
}

// TestStoreRateFlags: -store-rate-bytes and -store-burst-bytes, 0 meaning
// no bound.
func TestStoreRateFlags(t *testing.T) {
	for _, c := range []struct {
		args        []string
		rate, burst int64
	}{
		{nil, 1 << 20, 4 << 20},
		{[]string{"-store-rate-bytes", "1000", "-store-burst-bytes", "5000"}, 1000, 5000},
		{[]string{"-store-rate-bytes", "0"}, 0, 0},
	} {
		var cfg natsconf.StoreConfig
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		cfg.RegisterFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if r, b := cfg.StoreRate(); r != c.rate || b != c.burst {
			t.Errorf("flags %q: rate %d burst %d, want %d %d", c.args, r, b, c.rate, c.burst)
		}
	}
}
