package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// bcConn is a fake net.Conn that records the Write calls, write deadlines and
// Close it gets, and passes them on to Conn when it is set (for example one
// end of net.Pipe).
type bcConn struct {
	net.Conn // nil: methods not overridden here are never used by batchConn

	writeErr error // returned by every Write when set

	mu        sync.Mutex
	writes    [][]byte
	deadlines []time.Time
	events    []string // "write" and "close", in order
}

func (c *bcConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.events = append(c.events, "write")
	err := c.writeErr
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if c.Conn != nil {
		return c.Conn.Write(p)
	}
	return len(p), nil
}

func (c *bcConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadlines = append(c.deadlines, t)
	c.mu.Unlock()
	if c.Conn != nil {
		return c.Conn.SetWriteDeadline(t)
	}
	return nil
}

func (c *bcConn) Close() error {
	c.mu.Lock()
	c.events = append(c.events, "close")
	c.mu.Unlock()
	if c.Conn != nil {
		return c.Conn.Close()
	}
	return nil
}

func (c *bcConn) writeCalls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.writes))
	for i, w := range c.writes {
		out[i] = string(w)
	}
	return out
}

func (c *bcConn) eventLog() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.events, ",")
}

func (c *bcConn) lastDeadline() (time.Time, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.deadlines) == 0 {
		return time.Time{}, 0
	}
	return c.deadlines[len(c.deadlines)-1], len(c.deadlines)
}

func bcWrite(tb testing.TB, w io.Writer, s string) {
	tb.Helper()
	n, err := w.Write([]byte(s))
	if err != nil || n != len(s) {
		tb.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func bcWantWrites(tb testing.TB, c *bcConn, want ...string) {
	tb.Helper()
	got := c.writeCalls()
	if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
		tb.Fatalf("Write calls = %q, want %q", got, want)
	}
}

func TestBatchConnWritesThroughOutsideBatch(t *testing.T) {
	fake := &bcConn{}
	b := &batchConn{Conn: fake}
	bcWrite(t, b, "HTTP/1.1 101 Switching Protocols\r\n\r\n")
	bcWrite(t, b, "pong")
	bcWantWrites(t, fake, "HTTP/1.1 101 Switching Protocols\r\n\r\n", "pong")
	if err := b.end(); err != nil { // end without begin: nothing to send
		t.Fatal(err)
	}
	bcWantWrites(t, fake, "HTTP/1.1 101 Switching Protocols\r\n\r\n", "pong")
}

func TestBatchConnBatch(t *testing.T) {
	fake := &bcConn{}
	b := &batchConn{Conn: fake}
	b.begin()
	p := []byte("one,")
	if n, err := b.Write(p); n != len(p) || err != nil {
		t.Fatalf("Write in a batch = %d, %v", n, err)
	}
	copy(p, "XXXX") // the caller may reuse its buffer at once
	bcWrite(t, b, "two,")
	bcWrite(t, b, "three")
	bcWantWrites(t, fake) // nothing yet
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	bcWantWrites(t, fake, "one,two,three")

	// An empty batch writes nothing; the next one starts empty.
	b.begin()
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	b.begin()
	bcWrite(t, b, "four")
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	bcWrite(t, b, "five") // after the batch: straight through
	bcWantWrites(t, fake, "one,two,three", "four", "five")
}

func TestBatchConnCloseFlushes(t *testing.T) {
	fake := &bcConn{}
	b := &batchConn{Conn: fake}
	b.begin()
	bcWrite(t, b, "bye,")
	bcWrite(t, b, "close")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	bcWantWrites(t, fake, "bye,close")
	if got := fake.eventLog(); got != "write,close" {
		t.Fatalf("events = %s, want write,close", got)
	}

	// Close without a pending batch just closes.
	fake2 := &bcConn{}
	b2 := &batchConn{Conn: fake2}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fake2.eventLog(); got != "close" {
		t.Fatalf("events = %s, want close", got)
	}
}

func TestBatchConnCloseFlushErrorStillCloses(t *testing.T) {
	fake := &bcConn{writeErr: errors.New("broken pipe")}
	b := &batchConn{Conn: fake}
	b.begin()
	bcWrite(t, b, "x")
	_ = b.Close()
	if got := fake.eventLog(); got != "write,close" {
		t.Fatalf("events = %s, want write,close", got)
	}
}

func TestBatchConnEndReturnsWriteError(t *testing.T) {
	boom := errors.New("broken pipe")
	fake := &bcConn{writeErr: boom}
	b := &batchConn{Conn: fake}
	b.begin()
	bcWrite(t, b, "x") // buffered: no error yet
	if err := b.end(); !errors.Is(err, boom) {
		t.Fatalf("end = %v, want %v", err, boom)
	}
	if _, err := b.Write([]byte("y")); !errors.Is(err, boom) {
		t.Fatalf("Write outside a batch = %v, want %v", err, boom)
	}
}

func TestBatchConnBufferRetention(t *testing.T) {
	b := &batchConn{Conn: &bcConn{}, pool: &bufPool{}}
	b.begin()
	bcWrite(t, b, strings.Repeat("s", 1000))
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	if b.buf != nil {
		t.Fatalf("an idle connection holds a write buffer of cap %d", cap(b.buf))
	}
	b.begin()
	bcWrite(t, b, strings.Repeat("L", maxRetainedBatch+1))
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	if got := b.pool.get(); cap(got) > maxRetainedBatch {
		t.Fatalf("large batch buffer of cap %d pooled", cap(got))
	}
}

func TestBatchConnDeadlines(t *testing.T) {
	fake := &bcConn{}
	b := &batchConn{Conn: fake}
	bcWrite(t, b, "no timeout")
	if _, n := fake.lastDeadline(); n != 0 {
		t.Fatalf("%d deadlines set without a write timeout", n)
	}

	fake = &bcConn{}
	b = &batchConn{Conn: fake, writeTimeout: time.Hour}
	before := time.Now()
	bcWrite(t, b, "x")
	d, n := fake.lastDeadline()
	if n != 1 || d.Before(before.Add(time.Hour)) || d.After(time.Now().Add(time.Hour)) {
		t.Fatalf("deadline %v (%d set), want now+1h", d, n)
	}
	b.begin()
	bcWrite(t, b, "y")
	if _, n := fake.lastDeadline(); n != 1 {
		t.Fatal("a buffered write set a deadline")
	}
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	if _, n := fake.lastDeadline(); n != 1 {
		t.Fatal("the batch write moved a deadline that was still far enough")
	}
	b.deadline = time.Now().Add(time.Hour / 2) // half the timeout left
	before = time.Now()
	bcWrite(t, b, "z")
	if d, n := fake.lastDeadline(); n != 2 || d.Before(before.Add(time.Hour)) {
		t.Fatalf("deadline %v (%d set), want moved to now+1h once less than 3/4 of the timeout was left", d, n)
	}

	// Once expedited, every write is bounded by closeTimeout.
	b.expedite()
	d, _ = fake.lastDeadline()
	if d.After(time.Now().Add(closeTimeout)) {
		t.Fatalf("expedite set deadline %v, want at most now+%v", d, closeTimeout)
	}
	bcWrite(t, b, "bye")
	d, _ = fake.lastDeadline()
	if d.After(time.Now().Add(closeTimeout)) {
		t.Fatalf("write after expedite: deadline %v, want at most now+%v", d, closeTimeout)
	}
}

// TestBatchConnConcurrent: writes from several goroutines while batches
// open and close; every byte arrives once and each Write stays contiguous.
func TestBatchConnConcurrent(t *testing.T) {
	fake := &bcConn{}
	b := &batchConn{Conn: fake}
	var wg sync.WaitGroup
	const writers, each = 4, 200
	for w := range writers {
		wg.Go(func() {
			for range each {
				p := []byte(string(rune('a'+w)) + "....")
				if n, err := b.Write(p); n != len(p) || err != nil {
					t.Errorf("Write = %d, %v", n, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			b.begin()
			if err := b.end(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	all := strings.Join(fake.writeCalls(), "")
	if len(all) != writers*each*5 {
		t.Fatalf("%d bytes written, want %d", len(all), writers*each*5)
	}
	for i := 0; i < len(all); i += 5 {
		if all[i+1:i+5] != "...." {
			t.Fatalf("writes interleaved at %d: %q", i, all[i:i+5])
		}
	}
}

// TestBatchConnOverPipe: over a real connection, a batch arrives as one
// write (one Read on the other end of net.Pipe), writes outside as their own.
func TestBatchConnOverPipe(t *testing.T) {
	client, server := net.Pipe()
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	fake := &bcConn{Conn: server}
	b := &batchConn{Conn: fake, writeTimeout: 10 * time.Second}

	reads := make(chan string, 16)
	go func() {
		defer close(reads)
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				reads <- string(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case r := <-reads:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("nothing read within 10s")
			return ""
		}
	}

	bcWrite(t, b, "pong")
	if r := next(); r != "pong" {
		t.Fatalf("read %q, want pong", r)
	}
	b.begin()
	bcWrite(t, b, `{"n":1}`)
	bcWrite(t, b, `{"n":2}`)
	bcWrite(t, b, `{"n":3}`)
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	if r := next(); r != `{"n":1}{"n":2}{"n":3}` {
		t.Fatalf("read %q, want the three frames in one read", r)
	}
	b.begin()
	bcWrite(t, b, "last words")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if r := next(); r != "last words" {
		t.Fatalf("read %q after Close, want the pending batch", r)
	}
	select {
	case r, ok := <-reads:
		if ok {
			t.Fatalf("read %q after the connection closed", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader did not see the close")
	}
	bcWantWrites(t, fake, "pong", `{"n":1}{"n":2}{"n":3}`, "last words")
}
