package gateway

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// obDeadline bounds every wait of the outbox tests.
const obDeadline = 10 * time.Second

// obRecorder is a fake batch writer. Each call copies its batch (the outbox
// clears the slice after the write) and, when gated, announces the batch
// on started and blocks until release delivers the error to return.
type obRecorder struct {
	gated   bool
	started chan []string
	release chan error

	mu      sync.Mutex
	batches [][]string
}

func newOBRecorder(gated bool) *obRecorder {
	return &obRecorder{gated: gated, started: make(chan []string, 16), release: make(chan error)}
}

func (r *obRecorder) write(frames [][]byte) error {
	batch := make([]string, len(frames))
	for i, f := range frames {
		batch[i] = string(f)
	}
	r.mu.Lock()
	r.batches = append(r.batches, batch)
	r.mu.Unlock()
	if !r.gated {
		return nil
	}
	r.started <- batch
	return <-r.release
}

func (r *obRecorder) written() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]string, len(r.batches))
	copy(out, r.batches)
	return out
}

// next waits for the gated writer to start a write and returns its batch.
func (r *obRecorder) next(tb testing.TB) []string {
	tb.Helper()
	select {
	case b := <-r.started:
		return b
	case <-time.After(obDeadline):
		tb.Fatalf("no write started within %v", obDeadline)
		return nil
	}
}

// finish lets the blocked write return err.
func (r *obRecorder) finish(tb testing.TB, err error) {
	tb.Helper()
	select {
	case r.release <- err:
	case <-time.After(obDeadline):
		tb.Fatalf("no write waiting to be released within %v", obDeadline)
	}
}

// newTestOutbox returns an outbox writing with w, bounded at limit, that
// counts its overflows. At cleanup it checks no writer goroutine is left.
func newTestOutbox(tb testing.TB, limit int, w func([][]byte) error) (*outbox, *atomic.Int32) {
	tb.Helper()
	var overflows atomic.Int32
	o := &outbox{
		limit:    limit,
		write:    w,
		overflow: func() { overflows.Add(1) },
		wg:       &sync.WaitGroup{},
	}
	tb.Cleanup(func() { obWait(tb, o.wg) })
	return o, &overflows
}

// obWait waits, with a deadline, for every writer goroutine of wg to end.
func obWait(tb testing.TB, wg *sync.WaitGroup) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(obDeadline):
		tb.Fatalf("outbox writer goroutine still running after %v", obDeadline)
	}
}

func obPush(tb testing.TB, o *outbox, frames ...string) {
	tb.Helper()
	for _, f := range frames {
		if !o.push([]byte(f)) {
			tb.Fatalf("push(%q) = false, want true", f)
		}
	}
}

func flatten(batches [][]string) []string {
	var out []string
	for _, b := range batches {
		out = append(out, b...)
	}
	return out
}

func TestOutboxWritesInOrder(t *testing.T) {
	rec := newOBRecorder(false)
	o, overflows := newTestOutbox(t, 1<<20, rec.write)
	var want []string
	for i := range 1000 {
		f := fmt.Sprintf(`{"n":%d}`, i)
		want = append(want, f)
		obPush(t, o, f)
	}
	obWait(t, o.wg)
	got := flatten(rec.written())
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("written %d frames out of order or incomplete", len(got))
	}
	if overflows.Load() != 0 {
		t.Fatalf("overflow called %d times", overflows.Load())
	}
}

func TestOutboxBatchesWhileWriting(t *testing.T) {
	rec := newOBRecorder(true)
	o, _ := newTestOutbox(t, 1<<20, rec.write)

	obPush(t, o, "a")
	if b := rec.next(t); strings.Join(b, ",") != "a" {
		t.Fatalf("first batch = %q, want [a]", b)
	}
	// The writer is blocked in write: these queue up.
	obPush(t, o, "b", "c", "d")
	rec.finish(t, nil)
	if b := rec.next(t); strings.Join(b, ",") != "b,c,d" {
		t.Fatalf("second batch = %q, want [b c d]", b)
	}
	obPush(t, o, "e")
	rec.finish(t, nil)
	if b := rec.next(t); strings.Join(b, ",") != "e" {
		t.Fatalf("third batch = %q, want [e]", b)
	}
	rec.finish(t, nil)
	obWait(t, o.wg)

	// Idle again: a new push starts a new writer, which also ends.
	obPush(t, o, "f")
	if b := rec.next(t); strings.Join(b, ",") != "f" {
		t.Fatalf("batch after idle = %q, want [f]", b)
	}
	obPush(t, o, "g")
	rec.finish(t, nil)
	if b := rec.next(t); strings.Join(b, ",") != "g" {
		t.Fatalf("batch = %q, want [g]", b)
	}
	rec.finish(t, nil)
	obWait(t, o.wg)
	if got := flatten(rec.written()); strings.Join(got, ",") != "a,b,c,d,e,f,g" {
		t.Fatalf("written %q, want a..g", got)
	}
}

// TestOutboxSpareReuse: the batch slice handed back to the outbox for reuse
// must not be the one frames are being queued into.
func TestOutboxSpareReuse(t *testing.T) {
	rec := newOBRecorder(true)
	o, _ := newTestOutbox(t, 1<<20, rec.write)
	obPush(t, o, "x")
	want := [][]string{{"x"}}
	rec.next(t)
	for round := range 20 {
		// The writer is blocked: queue 1 to 4 frames, then let it go on;
		// they are its next batch.
		var batch []string
		for j := range 1 + round%4 {
			f := fmt.Sprintf("x%d.%d", round, j)
			batch = append(batch, f)
			obPush(t, o, f)
		}
		want = append(want, batch)
		rec.finish(t, nil)
		if got := rec.next(t); strings.Join(got, ",") != strings.Join(batch, ",") {
			t.Fatalf("round %d: batch %q, want %q", round, got, batch)
		}
	}
	rec.finish(t, nil)
	obWait(t, o.wg)
	if got := rec.written(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("written %q\nwant    %q", got, want)
	}
}

func TestOutboxOverflow(t *testing.T) {
	rec := newOBRecorder(true)
	o, overflows := newTestOutbox(t, 10, rec.write)

	obPush(t, o, "aaaa") // 4 queued, being written
	rec.next(t)
	obPush(t, o, "bbbbbb") // 10 queued: exactly at the bound is fine
	if o.push([]byte("c")) {
		t.Fatal("push past the bound = true, want false")
	}
	if n := overflows.Load(); n != 1 {
		t.Fatalf("overflow called %d times, want 1", n)
	}
	for range 5 {
		if o.push([]byte("d")) {
			t.Fatal("push after overflow = true, want false")
		}
	}
	if n := overflows.Load(); n != 1 {
		t.Fatalf("overflow called %d times after more pushes, want 1", n)
	}
	// The write in progress ends; what was queued is dropped.
	rec.finish(t, nil)
	obWait(t, o.wg)
	if got := flatten(rec.written()); strings.Join(got, ",") != "aaaa" {
		t.Fatalf("written %q, want only [aaaa]", got)
	}
}

func TestOutboxOverflowSingleFrame(t *testing.T) {
	rec := newOBRecorder(false)
	o, overflows := newTestOutbox(t, 8, rec.write)
	if o.push([]byte("123456789")) {
		t.Fatal("push of a frame larger than the bound = true")
	}
	if overflows.Load() != 1 {
		t.Fatalf("overflow called %d times, want 1", overflows.Load())
	}
	obWait(t, o.wg)
	if len(rec.written()) != 0 {
		t.Fatalf("written %q", rec.written())
	}
}

// TestOutboxBoundCountsUnwritten: written bytes leave the bound.
func TestOutboxBoundCountsUnwritten(t *testing.T) {
	rec := newOBRecorder(false)
	o, overflows := newTestOutbox(t, 10, rec.write)
	for range 50 {
		obPush(t, o, "12345678")
		obWait(t, o.wg)
	}
	if overflows.Load() != 0 {
		t.Fatalf("overflow called %d times", overflows.Load())
	}
	if got := len(flatten(rec.written())); got != 50 {
		t.Fatalf("written %d frames, want 50", got)
	}
}

func TestOutboxOverflowConcurrent(t *testing.T) {
	rec := newOBRecorder(true)
	o, overflows := newTestOutbox(t, 100, rec.write)
	obPush(t, o, "first")
	rec.next(t)

	var wg sync.WaitGroup
	var accepted atomic.Int32
	start := make(chan struct{})
	for range 16 {
		wg.Go(func() {
			<-start
			for range 20 {
				if o.push([]byte("0123456789")) {
					accepted.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if n := overflows.Load(); n != 1 {
		t.Fatalf("overflow called %d times, want 1", n)
	}
	// 5 bytes of "first" + 9 frames of 10 bytes fit in 100.
	if n := accepted.Load(); n != 9 {
		t.Fatalf("%d frames accepted, want 9", n)
	}
	rec.finish(t, nil)
	obWait(t, o.wg)
}

func TestOutboxWriteErrorCloses(t *testing.T) {
	rec := newOBRecorder(true)
	o, overflows := newTestOutbox(t, 1<<20, rec.write)
	obPush(t, o, "a")
	rec.next(t)
	obPush(t, o, "b")
	rec.finish(t, errors.New("broken pipe"))
	obWait(t, o.wg)
	if o.push([]byte("c")) {
		t.Fatal("push after a write error = true, want false")
	}
	obWait(t, o.wg)
	if got := flatten(rec.written()); strings.Join(got, ",") != "a" {
		t.Fatalf("written %q, want only [a]", got)
	}
	if overflows.Load() != 0 {
		t.Fatalf("a write error called overflow")
	}
}

func TestOutboxClose(t *testing.T) {
	rec := newOBRecorder(true)
	o, overflows := newTestOutbox(t, 1<<20, rec.write)
	obPush(t, o, "a")
	rec.next(t)
	obPush(t, o, "b")
	o.close()
	if o.push([]byte("c")) {
		t.Fatal("push after close = true, want false")
	}
	rec.finish(t, nil)
	obWait(t, o.wg)
	if got := flatten(rec.written()); strings.Join(got, ",") != "a" {
		t.Fatalf("written %q, want only [a]", got)
	}
	o.close() // twice is fine
	if overflows.Load() != 0 {
		t.Fatalf("close called overflow")
	}

	// Closing an idle outbox starts nothing.
	o2, _ := newTestOutbox(t, 10, rec.write)
	o2.close()
	if o2.push([]byte("x")) {
		t.Fatal("push after close = true")
	}
	obWait(t, o2.wg)
}

// TestOutboxConcurrentPushers: frames of each pusher are written in the
// order that pusher queued them, and every frame is written once.
func TestOutboxConcurrentPushers(t *testing.T) {
	rec := newOBRecorder(false)
	o, _ := newTestOutbox(t, 1<<30, rec.write)
	const pushers, each = 8, 500
	var wg sync.WaitGroup
	for p := range pushers {
		wg.Go(func() {
			for i := range each {
				if !o.push(fmt.Appendf(nil, "%d/%d", p, i)) {
					t.Errorf("push refused")
					return
				}
			}
		})
	}
	wg.Wait()
	obWait(t, o.wg)
	next := make([]int, pushers)
	for _, f := range flatten(rec.written()) {
		var p, i int
		if _, err := fmt.Sscanf(f, "%d/%d", &p, &i); err != nil {
			t.Fatalf("frame %q: %v", f, err)
		}
		if i != next[p] {
			t.Fatalf("pusher %d: frame %d written when %d was expected", p, i, next[p])
		}
		next[p]++
	}
	for p, n := range next {
		if n != each {
			t.Fatalf("pusher %d: %d frames written, want %d", p, n, each)
		}
	}
}

func BenchmarkOutboxPush(b *testing.B) {
	frame := []byte(`{"seq":42,"type":"msg","room":"lobby","from":"alice","ts":1764111111000,"body":{"text":"hi"}}`)
	var written atomic.Int64
	o := &outbox{
		limit: 64 << 20,
		write: func(frames [][]byte) error {
			written.Add(int64(len(frames)))
			return nil
		},
		overflow: func() { b.Fatal("overflow") },
		wg:       &sync.WaitGroup{},
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	var n int64
	for b.Loop() {
		if !o.push(frame) {
			b.Fatal("push refused")
		}
		n++
	}
	obWait(b, o.wg)
	if written.Load() != n {
		b.Fatalf("written %d of %d frames", written.Load(), n)
	}
}
