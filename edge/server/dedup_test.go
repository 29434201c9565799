package server_test

import (
	"testing"
)

// TestDedupIDsExact: client ids that differ only in whitespace ("k" and
// "k ") are two commands: each is stored and delivered, with its own seq,
// while a retry of either is still deduplicated. NATS headers trim
// whitespace, so the dedup key must not carry the id as it is.
func TestDedupIDsExact(t *testing.T) {
	srv := devEdge(t)
	alice := connect(t, srv, "alice")
	member := connect(t, srv, "member")
	alice.join(t, "dedup")
	member.join(t, "dedup")

	send := func(id, body string) uint64 {
		t.Helper()
		ack, _ := durReply(t, alice.Client, id, map[string]any{"type": "send", "room": "dedup", "body": body})
		if ack.Type() != "ack" || ack.Str("id") != id || durSeq(ack) == 0 {
			t.Fatalf("send with id %q: %s, want an ack with that id and a seq", id, ack)
		}
		return durSeq(ack)
	}
	s1 := send("k", "first")
	durWantMsg(t, member, s1, `"first"`)
	s2 := send("k ", "second")
	if s2 == s1 {
		t.Fatalf(`ids "k" and "k " were acknowledged with the same seq %d`, s1)
	}
	durWantMsg(t, member, s2, `"second"`)
	// A retry is still one message.
	if again := send("k ", "second"); again != s2 {
		t.Errorf(`retry of id "k ": seq %d, want %d`, again, s2)
	}
	member.barrier(t)

	hist := member.request(t, "history", map[string]any{"type": "history", "room": "dedup"})
	if msgs, _ := hist.Get("messages").([]any); len(msgs) != 2 {
		t.Errorf("history holds %d messages, want 2: %s", len(msgs), hist)
	}

	// The same for dms, stored for an offline user.
	dm := func(id, body string) uint64 {
		t.Helper()
		ack, _ := durReply(t, alice.Client, id, map[string]any{"type": "dm", "to": "bob", "body": body})
		if ack.Type() != "ack" || ack.Str("id") != id || ack.Str("status") != "stored" {
			t.Fatalf("dm with id %q: %s, want a stored ack with that id", id, ack)
		}
		return durSeq(ack)
	}
	d1, d2 := dm("k", "one"), dm("k ", "two")
	if d1 == d2 {
		t.Fatalf(`dms with ids "k" and "k " were acknowledged with the same seq %d`, d1)
	}
	bob := connect(t, srv, "bob")
	for _, want := range []struct {
		seq  uint64
		body string
	}{{d1, `"one"`}, {d2, `"two"`}} {
		if f := bob.expect(t, "dm"); durSeq(f) != want.seq || f.JSON("body") != want.body {
			t.Fatalf("bob: want dm %d %s, got %s", want.seq, want.body, f)
		}
	}
	bob.barrier(t)
}
