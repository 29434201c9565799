package server_test

// The edge's frame guard over real sockets: a message must arrive whole
// within the message timeout (pings between its fragments or not), and
// the bytes of messages still arriving, over all connections, are bounded
// by the receive budget (a frame waits while it is spent).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
	"natter/natsconf/ops/metrics"
)

// pgPing is a ping command padded to n bytes.
func pgPing(id string, n int) []byte {
	head := fmt.Sprintf(`{"type":"ping","id":%q,"pad":"`, id)
	return []byte(head + strings.Repeat("a", n-len(head)-2) + `"}`)
}

// pgFrame is the whole client frame carrying payload (final, masked).
func pgFrame(t testing.TB, payload []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := ptWriteFrame(&b, 0x1, payload, false); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pgOpen upgrades a raw client for user and reads its welcome.
func pgOpen(t testing.TB, srv *server.Server, user string) *ptRaw {
	t.Helper()
	c, status := ptRawUpgrade(t, srv.Addr().String(), "/ws?user="+user, nil, "")
	if c == nil {
		t.Fatalf("upgrade %s: HTTP %d", user, status)
	}
	c.ptReadJSON(t, "welcome")
	return c
}

func pgWrite(t testing.TB, c *ptRaw, b []byte) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// pgGauge reads a gauge from reg (-1 when it is not there).
func pgGauge(t testing.TB, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := wstest.Metrics{}
	for _, f := range families {
		m[f.GetName()] = f
	}
	return m.Value(name)
}

// TestProtectFragmentedMessageTimeout: a client that starts a fragmented
// message and then only pings (each ping would move the idle deadline),
// or goes silent, gets bye bad_client and close 1008 once the message
// timeout passes, long before the idle timeout.
func TestProtectFragmentedMessageTimeout(t *testing.T) {
	srv := ptEdge(t, server.Config{Gateway: gateway.Config{IdleTimeout: time.Minute, MessageTimeout: time.Second}})

	pinger := pgOpen(t, srv, "pinger")
	silent := pgOpen(t, srv, "silent")
	for _, c := range []*ptRaw{pinger, silent} {
		var b bytes.Buffer
		if err := ptWriteFragment(&b, 0x1, []byte(`{"type":"pi`), false, false); err != nil {
			t.Fatal(err)
		}
		pgWrite(t, c, b.Bytes())
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a ping every 100ms, until the connection ends
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = pinger.SetWriteDeadline(time.Now().Add(time.Second))
			if ptWriteFrame(pinger, 0x9, []byte("hi"), false) != nil {
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	for name, c := range map[string]*ptRaw{"pinger": pinger, "silent": silent} {
		start := time.Now()
		end := ptReadToEnd(c, 20*time.Second)
		if !end.closed || end.bye != "bad_client" || end.closeCode != 1008 {
			t.Errorf("%s: %s, want bye bad_client and close 1008", name, end)
		}
		t.Logf("%s: closed after %v", name, time.Since(start).Round(time.Millisecond))
	}

	// A client that sends its fragments in time is fine.
	ok := pgOpen(t, srv, "prompt")
	var b bytes.Buffer
	_ = ptWriteFragment(&b, 0x1, []byte(`{"type":"ping",`), false, false)
	_ = ptWriteFrame(&b, 0x9, nil, false)
	_ = ptWriteFragment(&b, 0x0, []byte(`"id":"p1"}`), true, false)
	pgWrite(t, ok, b.Bytes())
	_ = ok.SetReadDeadline(time.Now().Add(5 * time.Second))
	if op, _, err := ptReadFrame(ok.br); err != nil || op != 0xA {
		t.Fatalf("prompt client: opcode %d, %v; want the WebSocket pong first", op, err)
	}
	if f := ok.ptReadJSON(t, "pong"); f["id"] != "p1" {
		t.Errorf("prompt client: got %v", f)
	}
}

// TestProtectReceiveBudget: two clients hold most of the edge's receive
// budget with frames they do not finish; a third client's frame waits
// (its sender held back) until one of them finishes, then is answered.
// Budget comes back when a holder's connection drops and when a holder's
// message times out; the gauge natter_edge_receiving_bytes shows it.
func TestProtectReceiveBudget(t *testing.T) {
	const (
		maxFrame = 16 << 10
		budget   = 4 * maxFrame // the least allowed: 64 KiB
		held     = 30 << 10     // under the hard frame limit (2 × maxFrame)
		small    = 10 << 10
	)
	reg := metrics.NewRegistry()
	srv := ptEdge(t, server.Config{Metrics: reg, Gateway: gateway.Config{
		MaxFrame: maxFrame, ReceiveBudget: budget, MessageTimeout: 5 * time.Second,
		IdleTimeout: time.Minute, Rate: -1,
	}})
	receiving := func() float64 { return pgGauge(t, reg, "natter_edge_receiving_bytes") }
	waitReceiving := func(want float64) {
		t.Helper()
		ptEventually(t, 10*time.Second, fmt.Sprintf("%v bytes receiving", want), func() bool { return receiving() == want })
	}

	// Two holders: a 30 KiB frame each, 1 KiB of it sent.
	holder := func(user string) (*ptRaw, []byte) {
		c := pgOpen(t, srv, user)
		frame := pgFrame(t, pgPing(user, held))
		pgWrite(t, c, frame[:1<<10])
		return c, frame[1<<10:]
	}
	h1, rest1 := holder("h1")
	h2, _ := holder("h2")
	waitReceiving(2 * held)

	// The waiter's 10 KiB do not fit in the 4 KiB left: no answer yet.
	w := pgOpen(t, srv, "w")
	pgWrite(t, w, pgFrame(t, pgPing("w1", small)))
	_ = w.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if op, p, err := ptReadFrame(w.br); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waiter got a frame (%d %q, %v) while the budget was spent", op, p, err)
	}
	_ = w.SetReadDeadline(time.Time{})
	if got := receiving(); got != 2*held {
		t.Fatalf("receiving %v while the waiter waits, want %v", got, 2*held)
	}

	// h1 finishes: it is answered (too large for a command), and the
	// waiter's ping goes through.
	pgWrite(t, h1, rest1)
	if f := h1.ptReadJSON(t, "error"); f["code"] != "too_large" {
		t.Errorf("h1: %v, want too_large", f)
	}
	if f := w.ptReadJSON(t, "pong"); f["id"] != "w1" {
		t.Errorf("waiter: %v", f)
	}
	waitReceiving(held) // h2's

	// h2's connection drops: its bytes come back.
	_ = h2.Close()
	waitReceiving(0)

	// A holder that goes silent inside its frame: closed at the message
	// timeout (bye bad_client), its bytes back.
	h3, _ := holder("h3")
	waitReceiving(held)
	if end := ptReadToEnd(h3, 20*time.Second); !end.closed || end.bye != "bad_client" || end.closeCode != 1008 {
		t.Errorf("h3: %s, want bye bad_client and close 1008", end)
	}
	waitReceiving(0)

	// The budget is whole again: two 30 KiB frames at once are answered.
	for _, id := range []string{"w2", "w3"} {
		pgWrite(t, w, pgFrame(t, pgPing(id, held)))
	}
	for range 2 {
		if f := w.ptReadJSON(t, "error"); f["code"] != "too_large" {
			t.Errorf("waiter: %v, want too_large", f)
		}
	}
}
