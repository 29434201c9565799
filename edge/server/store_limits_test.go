package server_test

// What one user stores cannot erase what others stored: pending dms are
// refused when full (inbox_full), never pushed out, and a user's stored
// bytes are bounded by a rate (rate_limited), so a flood cannot reach the
// rooms stream's byte bound either.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"natter/edge/server"
	"natter/edge/wstest"
	"natter/natsconf"
)

// TestStoreFloodKeepsOthersDMs: a user floods the server with large dms to
// other, offline, users until the store of pending dms is full; a dm
// another user stored for an offline victim before is still delivered when
// the victim connects. The flood's surplus is refused with inbox_full and
// never delivered.
func TestStoreFloodKeepsOthersDMs(t *testing.T) {
	srv := startEdge(t, server.Config{Stores: natsconf.StoreConfig{InboxMaxBytes: 1 << 20}})
	alice := connect(t, srv, "alice")
	kept := alice.request(t, "ack", map[string]any{"type": "dm", "to": "victim", "body": "keep me"})
	if kept.Str("status") != "stored" {
		t.Fatalf("dm to offline victim: %s, want status stored", kept)
	}

	mallory := connect(t, srv, "mallory")
	big := strings.Repeat("x", 60<<10)
	stored, refused := []string{}, []string{}
	for i := range 20 {
		to := fmt.Sprint("target", i)
		f := mallory.Request(t, map[string]any{"type": "dm", "to": to, "body": big})
		switch {
		case f.Type() == "ack" && f.Str("status") == "stored":
			stored = append(stored, to)
		case f.Type() == "error" && f.Str("code") == "inbox_full":
			if !strings.Contains(f.Str("message"), "not stored") {
				t.Errorf("inbox_full without a clear message: %s", f)
			}
			refused = append(refused, to)
		default:
			t.Fatalf("flood dm %d: %.200s, want ack stored or error inbox_full", i, f)
		}
	}
	if len(refused) == 0 {
		t.Fatalf("20 dms of 60 KiB into 1 MiB of pending dms: none refused (%d stored)", len(stored))
	}
	t.Logf("flood: %d stored, %d refused", len(stored), len(refused))

	victim := connect(t, srv, "victim")
	if f := victim.Next(t); f.Type() != "dm" || durSeq(f) != durSeq(kept) || f.JSON("body") != `"keep me"` {
		t.Fatalf("victim: want alice's stored dm %d right after welcome, got %.200s", durSeq(kept), f)
	}
	victim.barrier(t)
	// The flood's stored dms are delivered, its refused ones never.
	first := connect(t, srv, stored[0])
	if f := first.Next(t); f.Type() != "dm" || f.Str("from") != "mallory" {
		t.Fatalf("%s: want mallory's stored dm, got %.200s", stored[0], f)
	}
	first.barrier(t)
	last := connect(t, srv, refused[len(refused)-1])
	last.barrier(t)
}

// TestInboxFullRefusesNewest: dms to an offline user beyond the per-user
// limit of pending dms are refused with inbox_full (again on a retry with
// the same id); the ones stored before, another sender's first, are all
// delivered when the user connects, and none of the refused ones.
func TestInboxFullRefusesNewest(t *testing.T) {
	const limit = 5
	srv := startEdge(t, server.Config{Stores: natsconf.StoreConfig{InboxMaxMsgs: limit}})
	alice := connect(t, srv, "alice")
	first := alice.request(t, "ack", map[string]any{"type": "dm", "to": "bob", "body": "from alice"})
	if first.Str("status") != "stored" {
		t.Fatalf("dm to offline bob: %s, want status stored", first)
	}
	mallory := connect(t, srv, "mallory")
	dm := func(i int) wstest.Frame { // with id m<i>: the same i is a retry
		t.Helper()
		f, _ := durReply(t, mallory.Client, fmt.Sprint("m", i), map[string]any{"type": "dm", "to": "bob", "body": i})
		return f
	}
	want := []uint64{durSeq(first)}
	for i := 1; i <= 10; i++ {
		f := dm(i)
		if i < limit {
			if f.Type() != "ack" || f.Str("status") != "stored" {
				t.Fatalf("mallory's dm %d of %d: %s, want ack stored", i, limit-1, f)
			}
			want = append(want, durSeq(f))
			continue
		}
		if f.Type() != "error" || f.Str("code") != "inbox_full" || f.Str("id") != fmt.Sprint("m", i) {
			t.Fatalf("mallory's dm %d, beyond bob's %d pending: %s, want error inbox_full", i, limit, f)
		}
		if !strings.Contains(f.Str("message"), "bob") || !strings.Contains(f.Str("message"), "not stored") {
			t.Errorf("inbox_full message %q does not say whose inbox, nor that the dm was not stored", f.Str("message"))
		}
	}
	// Retries with the same id: a refused dm is refused again, a stored
	// one acknowledged again with its seq.
	if f := dm(10); f.Type() != "error" || f.Str("code") != "inbox_full" {
		t.Errorf("retry of a refused dm: %s, want inbox_full", f)
	}
	if f := dm(2); f.Type() != "ack" || f.Str("status") != "stored" || durSeq(f) != want[2] {
		t.Errorf("retry of a stored dm: %s, want ack stored seq %d", f, want[2])
	}

	bob := connect(t, srv, "bob")
	for i, seq := range want {
		f := bob.Next(t)
		if f.Type() != "dm" || durSeq(f) != seq {
			t.Fatalf("bob: want stored dm %d (seq %d), got %s", i, seq, f)
		}
		if i == 0 && f.Str("from") != "alice" {
			t.Fatalf("bob: the first stored dm is not alice's: %s", f)
		}
	}
	bob.barrier(t) // no refused dm

	// Delivered, bob's pending dms no longer count: once bob is offline
	// again, a dm is stored.
	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f := mallory.Request(t, map[string]any{"type": "dm", "to": "bob", "body": "later"})
		if f.Type() == "ack" && f.Str("status") == "stored" {
			break
		}
		if f.Type() != "ack" || time.Now().After(deadline) {
			t.Fatalf("dm to bob offline again, his inbox delivered: %s, want ack stored", f)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStoreRateLimited: a user storing faster than the store rate gets
// rate_limited (room sends and dms alike, nothing stored), while another
// user still sends; the flood stays far from the rooms stream's byte bound,
// so another room's history stays.
func TestStoreRateLimited(t *testing.T) {
	srv := startEdge(t, server.Config{Stores: natsconf.StoreConfig{
		StoreRateBytes: 64 << 10, StoreBurstBytes: 256 << 10, RoomMaxBytes: 1 << 20,
	}})
	alice := connect(t, srv, "alice")
	alice.join(t, "lobby")
	keep := alice.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": "history to keep"})
	alice.expect(t, "msg")

	mallory := connect(t, srv, "mallory")
	mallory.join(t, "spam")
	body := strings.Repeat("s", 16<<10)
	acked := 0
	var limited bool
	for i := range 100 { // 1.6 MiB: past the rooms stream's 1 MiB
		f := mallory.Request(t, map[string]any{"type": "send", "room": "spam", "body": body, "id": fmt.Sprint("s", i)})
		if f.Type() == "ack" {
			acked++
			mallory.expect(t, "msg")
			continue
		}
		if f.Type() != "error" || f.Str("code") != "rate_limited" || !strings.Contains(f.Str("message"), "a minute") {
			t.Fatalf("send %d: %.200s, want ack or error rate_limited saying the rate", i, f)
		}
		limited = true
		break
	}
	if !limited {
		t.Fatalf("100 sends of 16 KiB with a burst of 256 KiB: none rate_limited")
	}
	if acked > 17 {
		t.Errorf("%d sends of 16 KiB stored with a burst of 256 KiB", acked)
	}
	// Bounded per user, not per command: a dm too.
	mallory.errorCode(t, "rate_limited", map[string]any{"type": "dm", "to": "alice", "body": body})

	// Another user is not held back.
	alice.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": "still here"})
	alice.expect(t, "msg")
	if f := alice.request(t, "ack", map[string]any{"type": "dm", "to": "mallory", "body": "hi"}); f.Str("status") != "delivered" {
		t.Errorf("alice's dm: %s", f)
	}
	mallory.expect(t, "dm")

	hist := durAllHistory(t, alice, "lobby")
	if len(hist) != 2 || hist[0].Seq != durSeq(keep) {
		t.Errorf("lobby history after mallory's flood: %v, want seq %d and the next", durStoredSeqs(hist), durSeq(keep))
	}
	mallory.join(t, "spam")
	if spam := durAllHistory(t, mallory, "spam"); len(spam) != acked {
		t.Errorf("spam history holds %d messages, want the %d acknowledged (refused ones not stored)", len(spam), acked)
	}
}
