package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
)

// historyPageBytes is the rooms handler's bound on the messages of one
// history page (PROTOCOL.md, "History pages bounded by size").
const historyPageBytes = 256 << 10

// startStockNATS starts a NATS server with JetStream and the stock
// settings, its 1 MiB maximum payload among them (natter's embedded server
// allows 8 MiB), on a random loopback port; it is shut down in cleanup.
func startStockNATS(t testing.TB) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host:      "127.0.0.1",
		Port:      natsserver.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.MaxPayload() != 1<<20 {
		t.Fatalf("stock max payload %d, want 1 MiB", nc.MaxPayload())
	}
	return ns
}

// bigRoom starts an edge and handlers on a stock NATS server, with frames
// of up to 128 KiB and a large write queue, and stores n messages of about
// size bytes in room; it returns the edge and the messages' seqs and
// bodies (as JSON).
func bigRoom(t *testing.T, room string, n, size int) (*server.Server, []uint64, map[uint64]string) {
	t.Helper()
	ns := startStockNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL(), Gateway: gateway.Config{
		MaxFrame:        128 << 10,
		WriteQueueBytes: 64 << 20,
		Rate:            -1,
	}})
	w := connect(t, srv, "writer")
	w.join(t, room)
	var seqs []uint64
	bodies := map[uint64]string{}
	for i := range n {
		body := fmt.Sprintf("%04d%s", i, strings.Repeat(string(rune('a'+i%26)), size-4))
		ack := w.request(t, "ack", map[string]any{"type": "send", "room": room, "body": body})
		seq := durSeq(ack)
		if len(seqs) > 0 && seq <= seqs[len(seqs)-1] {
			t.Fatalf("send %d: seq %d after %d", i, seq, seqs[len(seqs)-1])
		}
		seqs = append(seqs, seq)
		bodies[seq] = mustJSON(t, body)
		w.expect(t, "msg")
	}
	return srv, seqs, bodies
}

// historyPage sends a history command and checks the page's bound: at most
// historyPageBytes of messages, unless it holds one.
func historyPage(t *testing.T, p *peer, room string, cmd map[string]any) ([]durStored, bool) {
	t.Helper()
	cmd["type"], cmd["room"] = "history", room
	f := p.Request(t, cmd)
	if f.Type() != "history" {
		t.Fatalf("%v: want a history page, got %.300s", cmd, f)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal([]byte(f.JSON("messages")), &raws); err != nil || raws == nil {
		t.Fatalf("%v: messages not a list (%v): %.300s", cmd, err, f)
	}
	msgs := make([]durStored, len(raws))
	size := 0
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &msgs[i]); err != nil || msgs[i].Type != "msg" || msgs[i].Room != room {
			t.Fatalf("%v: message %d is not a msg of %s: %.300s", cmd, i, room, raw)
		}
		if i > 0 && msgs[i].Seq <= msgs[i-1].Seq {
			t.Fatalf("%v: seq %d after %d: not oldest first", cmd, msgs[i].Seq, msgs[i-1].Seq)
		}
		size += len(raw)
	}
	if len(msgs) > 1 && size > historyPageBytes+len(msgs)*32 {
		t.Fatalf("%v: page of %d messages, %d bytes: over the %d bound", cmd, len(msgs), size, historyPageBytes)
	}
	more := f.Get("more") == true
	if f.Has("more") && !more {
		t.Errorf("more is sent only when true: %.200s", f)
	}
	return msgs, more
}

// TestHistoryLargeMessages pages through 40 messages of 60 KiB (2.4 MB, more
// than a NATS message may carry) backward and forward with the largest
// limit: every page within the byte bound, each message once, in order,
// "more" until the end.
func TestHistoryLargeMessages(t *testing.T) {
	const n = 40
	srv, seqs, bodies := bigRoom(t, "big", n, 60<<10)
	reader := connect(t, srv, "reader")
	reader.Timeout = 10 * time.Second
	check := func(what string, got []durStored) {
		t.Helper()
		if len(got) != n {
			t.Fatalf("%s: %d messages, want %d", what, len(got), n)
		}
		for i, m := range got {
			if m.Seq != seqs[i] || m.body() != bodies[seqs[i]] {
				t.Fatalf("%s: message %d is seq %d, want %d (or its body differs)", what, i, m.Seq, seqs[i])
			}
		}
	}

	// Backward from the latest.
	var back []durStored
	cmd := map[string]any{"limit": 500}
	for pages := 0; ; pages++ {
		msgs, more := historyPage(t, reader, "big", cmd)
		if len(msgs) == 0 {
			t.Fatalf("empty page %v after %d messages", cmd, len(back))
		}
		back = append(msgs, back...)
		if !more {
			break
		}
		if pages > n {
			t.Fatal("paging backward does not end")
		}
		cmd = map[string]any{"limit": 500, "before": msgs[0].Seq}
	}
	check("before pages", back)
	if msgs, more := historyPage(t, reader, "big", map[string]any{"before": seqs[0]}); len(msgs) != 0 || more {
		t.Fatalf("before the first: %d messages, more %v", len(msgs), more)
	}

	// Forward from the start.
	var fwd []durStored
	after := uint64(0)
	for pages := 0; ; pages++ {
		msgs, more := historyPage(t, reader, "big", map[string]any{"limit": 500, "after": after})
		if len(msgs) == 0 {
			t.Fatalf("empty page after %d with more", after)
		}
		fwd = append(fwd, msgs...)
		after = msgs[len(msgs)-1].Seq
		if !more {
			break
		}
		if pages > n {
			t.Fatal("paging forward does not end")
		}
	}
	check("after pages", fwd)

	// A limit that the bytes do not cut says no more at the end.
	if msgs, more := historyPage(t, reader, "big", map[string]any{"limit": 2}); len(msgs) != 2 || !more {
		t.Fatalf("limit 2: %d messages, more %v", len(msgs), more)
	}
	if msgs, more := historyPage(t, reader, "big", map[string]any{"limit": 2, "after": seqs[n-3]}); len(msgs) != 2 || more {
		t.Fatalf("the last 2 after: %d messages, more %v", len(msgs), more)
	}
	reader.barrier(t)
}

// TestHistoryLargeJoinSince joins with since 0 a room of 40 messages of
// 60 KiB: the edge replays them all, in order, with no error and no bye,
// then live messages follow.
func TestHistoryLargeJoinSince(t *testing.T) {
	const n = 40
	srv, seqs, bodies := bigRoom(t, "big", n, 60<<10)
	for _, since := range []uint64{0, seqs[n/2]} {
		r := connect(t, srv, fmt.Sprint("reader", since))
		r.Timeout = 10 * time.Second
		j := r.request(t, "joined", map[string]any{"type": "join", "room": "big", "since": since})
		if durSeq(j) != seqs[n-1] {
			t.Fatalf("joined seq %d, want %d", durSeq(j), seqs[n-1])
		}
		for _, seq := range seqs {
			if seq > since {
				durWantMsg(t, r, seq, bodies[seq])
			}
		}
		r.barrier(t)
		ack := r.request(t, "ack", map[string]any{"type": "send", "room": "big", "body": "live"})
		durWantMsg(t, r, durSeq(ack), `"live"`)
		seqs = append(seqs, durSeq(ack))
		bodies[durSeq(ack)] = `"live"`
		seqs = seqs[1:] // keep n, the newest
	}
}

// BenchmarkHistoryPage asks an edge for pages of 500 of a room whose
// messages are one in three of the stream (small messages): the latest
// page, and the page after the room's first message.
func BenchmarkHistoryPage(b *testing.B) {
	srv := startEdge(b, server.Config{Gateway: gateway.Config{Rate: -1}})
	w := connect(b, srv, "writer")
	for _, room := range []string{"bench", "other1", "other2"} {
		w.join(b, room)
	}
	rooms := []string{"bench", "other1", "other2"}
	replies := durPipeline(b, w.Client, "s", 3000, 100, func(i int) map[string]any {
		return map[string]any{"type": "send", "room": rooms[i%3], "body": map[string]any{"i": i, "text": strings.Repeat("x", 150)}}
	})
	first := durAckSeqs(b, replies)[0]
	r := connect(b, srv, "reader")
	for _, bc := range []struct {
		name string
		cmd  map[string]any
	}{
		{"latest", map[string]any{"type": "history", "room": "bench", "limit": 500}},
		{"after", map[string]any{"type": "history", "room": "bench", "limit": 500, "after": first}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if f := r.Request(b, bc.cmd); f.Type() != "history" || len(f.Raw) < 500*150 {
					b.Fatalf("want a page of 500: %.200s", f)
				}
			}
		})
	}
}
