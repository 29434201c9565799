package main

// Restart tests run the real edge binary in development mode (embedded
// NATS, data in -data) and stop it with SIGTERM or SIGKILL: what was
// acknowledged must still be there when it starts again on the same data.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"natter/edge/wstest"
)

// rsDial connects user and reads its welcome.
func rsDial(t testing.TB, p *edgeProcess, user string) *wstest.Client {
	t.Helper()
	c := wstest.Dial(t, p.ws("/ws?user="+user), nil)
	if w := c.Expect(t, "welcome"); w.Str("user") != user {
		t.Fatalf("welcome for %s: %s", user, w)
	}
	return c
}

// rsRequest sends cmd and checks the reply's type.
func rsRequest(t testing.TB, c *wstest.Client, want string, cmd map[string]any) wstest.Frame {
	t.Helper()
	f := c.Request(t, cmd)
	if f.Type() != want {
		t.Fatalf("%v: want %q, got %s", cmd, want, f)
	}
	return f
}

func rsSeq(f wstest.Frame) uint64 {
	s, _ := f.Uint("seq")
	return s
}

// rsNext returns the next frame that is not presence.
func rsNext(t testing.TB, c *wstest.Client) wstest.Frame {
	t.Helper()
	for {
		if f := c.Next(t); f.Type() != "presence" {
			return f
		}
	}
}

// rsBarrier checks that nothing but presence is queued for c: a ping's pong
// must be the next frame.
func rsBarrier(t testing.TB, c *wstest.Client) {
	t.Helper()
	id := fmt.Sprint("barrier-", time.Now().UnixNano())
	if err := c.Send(map[string]any{"type": "ping", "id": id}); err != nil {
		t.Fatal(err)
	}
	if f := rsNext(t, c); f.Type() != "pong" || f.Str("id") != id {
		t.Fatalf("want only the pong %s, got %s", id, f)
	}
}

// rsWantMsg checks the next frame (presence skipped): a msg with seq and body.
func rsWantMsg(t testing.TB, c *wstest.Client, seq uint64, body string) {
	t.Helper()
	if f := rsNext(t, c); f.Type() != "msg" || rsSeq(f) != seq || f.JSON("body") != body {
		t.Fatalf("want msg %d with body %s, got %s", seq, body, f)
	}
}

// rsHistory reads a room's whole history, paging forward: the seqs, and
// the body of each.
func rsHistory(t testing.TB, c *wstest.Client, room string) (seqs []uint64, bodies map[uint64]string) {
	t.Helper()
	bodies = map[uint64]string{}
	after := uint64(0)
	for {
		f := rsRequest(t, c, "history", map[string]any{"type": "history", "room": room, "after": after, "limit": 500})
		var page []struct {
			Seq  uint64          `json:"seq"`
			Type string          `json:"type"`
			Room string          `json:"room"`
			Body json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal([]byte(f.JSON("messages")), &page); err != nil || page == nil {
			t.Fatalf("history: want a messages list: %v: %s", err, f)
		}
		if len(page) == 0 {
			return seqs, bodies
		}
		for i, m := range page {
			if m.Type != "msg" || m.Room != room || m.Seq <= after {
				t.Fatalf("history after %d: message %d is not a later msg of %s: %s", after, i, room, f)
			}
			var body bytes.Buffer
			if err := json.Compact(&body, m.Body); err != nil {
				t.Fatalf("history: body of %d: %v", m.Seq, err)
			}
			seqs = append(seqs, m.Seq)
			bodies[m.Seq] = body.String()
			after = m.Seq
		}
	}
}

// rsPipeline sends n messages to room on c, at most window unanswered,
// with ids prefix-i and body i, and returns the acks' seqs.
func rsPipeline(t testing.TB, c *wstest.Client, room, prefix string, n, window int) []uint64 {
	t.Helper()
	seqs := make([]uint64, 0, n)
	sent := 0
	for len(seqs) < n {
		for sent < n && sent-len(seqs) < window {
			if err := c.Send(map[string]any{"type": "send", "room": room, "id": fmt.Sprintf("%s-%d", prefix, sent), "body": sent}); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		f := c.Next(t)
		switch f.Type() {
		case "ack":
			if want := fmt.Sprintf("%s-%d", prefix, len(seqs)); f.Str("id") != want || rsSeq(f) == 0 {
				t.Fatalf("want the ack of %s, got %s", want, f)
			}
			seqs = append(seqs, rsSeq(f))
		case "error", "bye":
			t.Fatalf("send: %s", f)
		}
	}
	return seqs
}

// restartRun runs the edge on data with -rate 0: no command rate limit, for
// the pipelined senders.
func restartRun(data string) edgeRun {
	return edgeRun{data: data, args: []string{"-rate", "0"}}
}

// TestDurableRestart runs the edge binary, stops it (SIGTERM, then in a
// second run SIGKILL) and starts it again on the same data.
func TestDurableRestart(t *testing.T) {
	t.Run("sigterm", testRestartGraceful)
	t.Run("sigkill", testRestartCrash)
}

func testRestartGraceful(t *testing.T) {
	data := t.TempDir()
	e1 := startEdge(t, restartRun(data))
	alice := rsDial(t, e1, "alice")
	reader := rsDial(t, e1, "reader")
	rsRequest(t, alice, "joined", map[string]any{"type": "join", "room": "lobby"})
	rsRequest(t, reader, "joined", map[string]any{"type": "join", "room": "lobby"})

	var seqs []uint64
	// Sends carry ids of their own: wstest.Request's ids start again on
	// every connection, and the same id from the same user within the
	// dedup window is the same message.
	send := func(c *wstest.Client, body string) uint64 {
		t.Helper()
		id := fmt.Sprint("g-", len(seqs))
		if err := c.Send(map[string]any{"type": "send", "room": "lobby", "body": body, "id": id}); err != nil {
			t.Fatal(err)
		}
		f := c.WaitFor(t, func(f wstest.Frame) bool { return f.Str("id") == id })
		if f.Type() != "ack" {
			t.Fatalf("send %s: %s", id, f)
		}
		s := rsSeq(f)
		if len(seqs) > 0 && s <= seqs[len(seqs)-1] {
			t.Fatalf("seq %d after %d", s, seqs[len(seqs)-1])
		}
		seqs = append(seqs, s)
		return s
	}
	for i := range 5 {
		rsWantMsg(t, reader, send(alice, fmt.Sprint("seen-", i)), fmt.Sprintf(`"seen-%d"`, i))
	}
	seen := seqs[len(seqs)-1]
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		send(alice, fmt.Sprint("missed-", i))
	}
	dm := rsRequest(t, alice, "ack", map[string]any{"type": "dm", "to": "bob", "body": "while you were out"})
	if dm.Str("status") != "stored" {
		t.Fatalf("dm to offline bob: %s, want stored", dm)
	}

	// SIGTERM: bye shutdown to the clients, exit 0.
	if err := e1.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("edge exit after SIGTERM: %v, want 0", err)
	}
	bye := alice.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "bye" })
	if bye.Str("code") != "shutdown" {
		t.Errorf("bye at SIGTERM: %s, want code shutdown", bye)
	}
	alice.Closed(t)

	e2 := startEdge(t, restartRun(data))
	alice = rsDial(t, e2, "alice")
	got, bodies := rsHistory(t, alice, "lobby")
	if fmt.Sprint(got) != fmt.Sprint(seqs) {
		t.Fatalf("history after restart: %v, want %v", got, seqs)
	}
	for i, s := range seqs {
		want := fmt.Sprintf(`"seen-%d"`, i)
		if i >= 5 {
			want = fmt.Sprintf(`"missed-%d"`, i-5)
		}
		if bodies[s] != want {
			t.Errorf("history %d: body %s, want %s", s, bodies[s], want)
		}
	}
	if j := rsRequest(t, alice, "joined", map[string]any{"type": "join", "room": "lobby"}); rsSeq(j) != seqs[len(seqs)-1] {
		t.Errorf("joined after restart: %s, want seq %d", j, seqs[len(seqs)-1])
	}

	// The stored dm, once.
	bob := rsDial(t, e2, "bob")
	if f := bob.Next(t); f.Type() != "dm" || rsSeq(f) != rsSeq(dm) || f.Str("from") != "alice" || f.JSON("body") != `"while you were out"` {
		t.Fatalf("bob after restart: want the stored dm %d, got %s", rsSeq(dm), f)
	}
	rsBarrier(t, bob)
	rsBarrier(t, rsDial(t, e2, "bob"))

	// The reader catches up with since.
	back := rsDial(t, e2, "reader")
	if j := rsRequest(t, back, "joined", map[string]any{"type": "join", "room": "lobby", "since": seen}); rsSeq(j) != seqs[len(seqs)-1] {
		t.Errorf("joined with since after restart: %s, want seq %d", j, seqs[len(seqs)-1])
	}
	for i, s := range seqs[5:] {
		rsWantMsg(t, back, s, fmt.Sprintf(`"missed-%d"`, i))
	}
	rsBarrier(t, back)
	// Seqs go on from where they were.
	s := send(alice, "after restart")
	rsWantMsg(t, back, s, `"after restart"`)
	rsBarrier(t, back)

	if err := e2.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("second edge exit after SIGTERM: %v, want 0", err)
	}
}

func testRestartCrash(t *testing.T) {
	const n = 300
	data := t.TempDir()
	e1 := startEdge(t, restartRun(data))
	alice := rsDial(t, e1, "alice")
	rsRequest(t, alice, "joined", map[string]any{"type": "join", "room": "crash"})
	dm := rsRequest(t, alice, "ack", map[string]any{"type": "dm", "to": "bob", "body": "before the crash"})
	if dm.Str("status") != "stored" {
		t.Fatalf("dm to offline bob: %s, want stored", dm)
	}
	seqs := rsPipeline(t, alice, "crash", "c", n, 32)

	// SIGKILL right after the last ack.
	err := e1.stop(t, syscall.SIGKILL)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("edge exit: %v, want killed by SIGKILL", err)
	}
	alice.Closed(t)

	e2 := startEdge(t, restartRun(data))
	reader := rsDial(t, e2, "reader")
	got, bodies := rsHistory(t, reader, "crash")
	if fmt.Sprint(got) != fmt.Sprint(seqs) {
		t.Fatalf("history after SIGKILL: %d messages %v, want the %d acknowledged %v", len(got), got, len(seqs), seqs)
	}
	for i, s := range seqs {
		if bodies[s] != fmt.Sprint(i) {
			t.Errorf("history %d: body %s, want %d", s, bodies[s], i)
		}
	}
	bob := rsDial(t, e2, "bob")
	if f := bob.Next(t); f.Type() != "dm" || rsSeq(f) != rsSeq(dm) || f.JSON("body") != `"before the crash"` {
		t.Fatalf("bob after SIGKILL: want the stored dm %d, got %s", rsSeq(dm), f)
	}
	rsBarrier(t, bob)
	if f := rsRequest(t, reader, "joined", map[string]any{"type": "join", "room": "crash"}); rsSeq(f) != seqs[n-1] {
		t.Errorf("joined after SIGKILL: %s, want seq %d", f, seqs[n-1])
	}
	// A client that did not see its last ack retries after reconnecting:
	// the dedup window survived the crash, it is the same message.
	alice = rsDial(t, e2, "alice")
	rsRequest(t, alice, "joined", map[string]any{"type": "join", "room": "crash"})
	if err := alice.Send(map[string]any{"type": "send", "room": "crash", "id": fmt.Sprint("c-", n-1), "body": n - 1}); err != nil {
		t.Fatal(err)
	}
	if f := alice.WaitFor(t, func(f wstest.Frame) bool { return f.Str("id") == fmt.Sprint("c-", n-1) }); f.Type() != "ack" || rsSeq(f) != seqs[n-1] {
		t.Errorf("retry of the last send after SIGKILL: %s, want ack seq %d", f, seqs[n-1])
	}
	rsBarrier(t, reader)
	if got, _ := rsHistory(t, reader, "crash"); len(got) != n {
		t.Errorf("history after the retry: %d messages, want %d", len(got), n)
	}

	if err := e2.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("edge exit after SIGTERM: %v, want 0", err)
	}
}
