package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"
)

// fgFrame encodes one client frame: masked, with the 7-, 16- or 64-bit
// length its size needs (or the 64-bit one when long64).
func fgFrame(fin bool, opcode byte, payload []byte, long64 bool) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case long64 || n > 0xFFFF:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	case n >= 126:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|byte(n))
	}
	out = append(out, 1, 2, 3, 4) // the mask key (the guard does not unmask)
	return append(out, payload...)
}

// chunks is a reader that returns src in pieces of the given sizes, in
// turn.
type chunks struct {
	src   []byte
	sizes []int
	i     int
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.src) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.src), max(c.sizes[c.i%len(c.sizes)], 1))
	c.i++
	copy(p, c.src[:n])
	c.src = c.src[n:]
	return n, nil
}

const fgBudget = 1 << 20

func newTestGuard(src io.Reader, budget *semaphore.Weighted, timeout time.Duration) (*frameGuard, *[]guardFault) {
	g := newFrameGuard(src, budget, context.Background(), timeout, 2*DefaultMaxFrame, nil)
	var faults []guardFault
	g.fail = func(f guardFault) { faults = append(faults, f) }
	return g, &faults
}

// TestFrameGuardPassesFrames: whatever the pieces the socket gives, the
// bytes pass unchanged, and every message's budget comes back when it
// ends.
func TestFrameGuardPassesFrames(t *testing.T) {
	var stream []byte
	stream = append(stream, fgFrame(true, 1, []byte(`{"type":"ping"}`), false)...)
	stream = append(stream, fgFrame(false, 1, []byte(`{"type":`), false)...) // fragmented,
	stream = append(stream, fgFrame(true, 9, []byte("ping"), false)...)      // a ping between,
	stream = append(stream, fgFrame(false, 0, bytes.Repeat([]byte("a"), 300), false)...)
	stream = append(stream, fgFrame(true, 0, []byte(`"x"}`), true)...) // 64-bit length
	stream = append(stream, fgFrame(true, 2, bytes.Repeat([]byte("b"), 70000), false)...)
	stream = append(stream, fgFrame(true, 1, nil, false)...)
	stream = append(stream, fgFrame(true, 8, []byte{3, 232}, false)...)
	for _, sizes := range [][]int{{1}, {2, 3}, {7}, {100, 1, 13}, {4096}, {1 << 20}} {
		budget := semaphore.NewWeighted(fgBudget)
		g, faults := newTestGuard(&chunks{src: stream, sizes: sizes}, budget, time.Hour)
		got, err := io.ReadAll(g)
		if err != nil || !bytes.Equal(got, stream) {
			t.Fatalf("sizes %v: read %d of %d bytes, err %v", sizes, len(got), len(stream), err)
		}
		if len(*faults) != 0 || g.inMessage || g.held != 0 || g.left != 0 || g.hdrLen != 0 {
			t.Fatalf("sizes %v: after the stream: faults %v, in message %v, held %d, left %d, header %d",
				sizes, *faults, g.inMessage, g.held, g.left, g.hdrLen)
		}
		if !budget.TryAcquire(fgBudget) {
			t.Fatalf("sizes %v: budget not given back", sizes)
		}
	}
}

// TestFrameGuardHoldsUnfinishedMessage: a message's fragments hold their
// bytes of the budget until the last one; closing the connection gives
// them back.
func TestFrameGuardHoldsUnfinishedMessage(t *testing.T) {
	budget := semaphore.NewWeighted(fgBudget)
	first := fgFrame(false, 1, bytes.Repeat([]byte("a"), 1000), false)
	second := fgFrame(false, 0, bytes.Repeat([]byte("b"), 500), false)
	g, _ := newTestGuard(&chunks{src: append(first, second[:10]...), sizes: []int{len(first), 10}}, budget, time.Hour)
	buf := make([]byte, 4096)
	for range 2 {
		if _, err := g.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if g.held != 1500 || !g.inMessage {
		t.Fatalf("held %d (in message %v), want 1500", g.held, g.inMessage)
	}
	if g.deadline().IsZero() {
		t.Fatal("no deadline for the unfinished message")
	}
	g.close()
	if g.held != 0 || !budget.TryAcquire(fgBudget) {
		t.Fatal("close did not give the budget back")
	}
	if !g.deadline().IsZero() {
		t.Fatal("a deadline after close")
	}
	if _, err := g.Read(buf); err == nil {
		t.Fatal("Read after close succeeded")
	}
}

// TestFrameGuardMessageTimeout: pings between the fragments of a message
// do not keep it going past the timeout.
func TestFrameGuardMessageTimeout(t *testing.T) {
	stream := fgFrame(false, 1, []byte(`{"type":`), false)
	for range 3 {
		stream = append(stream, fgFrame(true, 9, nil, false)...)
	}
	budget := semaphore.NewWeighted(fgBudget)
	g, faults := newTestGuard(&chunks{src: stream, sizes: []int{len(stream) - 6, 2}}, budget, time.Nanosecond)
	buf := make([]byte, 4096)
	if _, err := g.Read(buf); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < time.Microsecond; {
		// a nanosecond passes (the timeout), however coarse the clock
	}
	if _, err := g.Read(buf); !errors.Is(err, errGuard) {
		t.Fatalf("read after the timeout: %v, want the guard's error", err)
	}
	if len(*faults) != 1 || (*faults)[0] != faultTooSlow {
		t.Fatalf("faults %v, want one too slow", *faults)
	}
	if g.held != 0 || !budget.TryAcquire(fgBudget) {
		t.Fatal("budget not given back")
	}
	if _, err := g.Read(buf); !errors.Is(err, errGuard) {
		t.Fatalf("read after the fault: %v", err)
	}
}

// TestFrameGuardBudgetWaits: a frame waits while the budget is spent and
// goes on when another message ends; one that waits past its timeout is
// refused as overloaded.
func TestFrameGuardBudgetWaits(t *testing.T) {
	budget := semaphore.NewWeighted(1000)
	holder := fgFrame(true, 1, bytes.Repeat([]byte("a"), 800), false)
	h, _ := newTestGuard(&chunks{src: holder, sizes: []int{100, len(holder)}}, budget, time.Hour)
	buf := make([]byte, 4096)
	if _, err := h.Read(buf); err != nil || h.held != 800 {
		t.Fatalf("holder: err %v, held %d", err, h.held)
	}

	waiter := fgFrame(true, 1, bytes.Repeat([]byte("b"), 300), false)
	w, faults := newTestGuard(&chunks{src: waiter, sizes: []int{len(waiter)}}, budget, time.Hour)
	read := make(chan error, 1)
	go func() {
		_, err := w.Read(buf[:2048])
		read <- err
	}()
	select {
	case err := <-read:
		t.Fatalf("the waiter read (%v) while the budget was spent", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := h.Read(buf[2048:]); err != nil || h.held != 0 {
		t.Fatalf("holder's rest: err %v, held %d", err, h.held)
	}
	select {
	case err := <-read:
		if err != nil || len(*faults) != 0 {
			t.Fatalf("waiter: %v, faults %v", err, *faults)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter still waits after the budget came back")
	}

	// The waiter's message ended: its 300 are back. A holder of 800 and a
	// waiter with a short timeout: refused.
	h2, _ := newTestGuard(&chunks{src: holder, sizes: []int{100, len(holder)}}, budget, time.Hour)
	if _, err := h2.Read(buf); err != nil {
		t.Fatal(err)
	}
	w2, faults2 := newTestGuard(&chunks{src: waiter, sizes: []int{len(waiter)}}, budget, 20*time.Millisecond)
	if _, err := w2.Read(buf); !errors.Is(err, errGuard) || len(*faults2) != 1 || (*faults2)[0] != faultOverloaded {
		t.Fatalf("short waiter: %v, faults %v; want overloaded", err, *faults2)
	}
	h2.close()
	if !budget.TryAcquire(1000) {
		t.Fatal("budget not all back")
	}
}

// TestFrameGuardStopEndsWait: shutting the gateway down ends a wait for
// the budget at once.
func TestFrameGuardStopEndsWait(t *testing.T) {
	budget := semaphore.NewWeighted(1000)
	if !budget.TryAcquire(1000) {
		t.Fatal("acquire")
	}
	stop, cancel := context.WithCancel(context.Background())
	src := fgFrame(true, 1, bytes.Repeat([]byte("b"), 300), false)
	g := newFrameGuard(&chunks{src: src, sizes: []int{len(src)}}, budget, stop, time.Hour, 2*DefaultMaxFrame, nil)
	done := make(chan error, 1)
	go func() {
		_, err := g.Read(make([]byte, 4096))
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, errGuard) {
			t.Fatalf("read: %v, want the guard's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end with the gateway")
	}
}

// TestFrameGuardOversizedFrameTakesNothing: a frame over gws's limit takes
// no budget (gws closes the connection at its header), so it does not
// wait for a budget it could never get.
func TestFrameGuardOversizedFrameTakesNothing(t *testing.T) {
	budget := semaphore.NewWeighted(4 * DefaultMaxFrame)
	hdr := []byte{0x81, 0x80 | 127}
	hdr = binary.BigEndian.AppendUint64(hdr, 1<<62)
	hdr = append(hdr, 1, 2, 3, 4)
	g, faults := newTestGuard(&chunks{src: hdr, sizes: []int{len(hdr)}}, budget, time.Hour)
	if n, err := g.Read(make([]byte, 64)); err != nil || n != len(hdr) || len(*faults) != 0 || g.held != 0 {
		t.Fatalf("read %d, %v, faults %v, held %d", n, err, *faults, g.held)
	}
}

// FuzzFrameGuard: any bytes, in any pieces, pass unchanged up to where the
// guard ends the connection, nothing panics, and closing gives the whole
// budget back.
func FuzzFrameGuard(f *testing.F) {
	f.Add(fgFrame(true, 1, []byte(`{"type":"ping"}`), false), uint8(3))
	f.Add(append(fgFrame(false, 1, []byte("ab"), false), fgFrame(true, 0, []byte("cd"), true)...), uint8(1))
	f.Add([]byte{0x81, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}, uint8(5))
	f.Add([]byte{0x01, 0xFE, 0xFF, 0xFF}, uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, piece uint8) {
		budget := semaphore.NewWeighted(4 * DefaultMaxFrame)
		stop, cancel := context.WithCancel(context.Background())
		cancel() // a wait for the budget ends at once
		g := newFrameGuard(&chunks{src: stream, sizes: []int{int(piece%64) + 1}}, budget, stop, time.Hour, 2*DefaultMaxFrame, nil)
		var got []byte
		buf := make([]byte, 97)
		for {
			n, err := g.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.HasPrefix(stream, got) {
			t.Fatalf("the guard changed the bytes: %x of %x", got, stream)
		}
		g.close()
		if !budget.TryAcquire(4 * DefaultMaxFrame) {
			t.Fatal("budget not given back after close")
		}
	})
}

// BenchmarkFrameGuard: the guard's cost per small command frame (a dm's
// size), read in the edge's 1 KiB pieces, budget and all.
func BenchmarkFrameGuard(b *testing.B) {
	frame := fgFrame(true, 1, []byte(`{"type":"dm","to":"user-1234","id":"42","body":{"text":"hello there"}}`), false)
	stream := bytes.Repeat(frame, 1024)
	budget := semaphore.NewWeighted(DefaultReceiveBudget)
	buf := make([]byte, DefaultReadBufferSize)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	src := &chunks{sizes: []int{DefaultReadBufferSize}}
	g := newFrameGuard(src, budget, context.Background(), time.Minute, 2*DefaultMaxFrame, nil)
	for i := 0; i < b.N; i += 1024 {
		src.src = stream
		for {
			if _, err := g.Read(buf); err != nil {
				break
			}
		}
	}
}
