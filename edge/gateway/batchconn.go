package gateway

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"natter/natsconf/ops/metrics"
)

// batchConn wraps a connection so that the frames gws writes while a batch is
// open are collected and sent with one write when it ends: a connection's
// queued frames cost one syscall, not one each. Writes outside a batch (the
// upgrade response, pongs, close frames) go straight through, and Close
// sends whatever a batch still holds before closing.
type batchConn struct {
	net.Conn
	writeTimeout time.Duration

	closing atomic.Bool   // set once the connection is being closed
	pool    *bufPool      // write buffers shared by connections (nil: none)
	metrics *metrics.Edge // counts the bytes written (nil: none)

	mu        sync.Mutex
	deadline  time.Time // the write deadline set last
	batching  bool
	buf       []byte
	lingering bool
	linger    *time.Timer
	closeOnce sync.Once
}

// maxRetainedBatch is the largest batch buffer put back in the pool; a
// larger one is dropped.
const maxRetainedBatch = 64 << 10

// bufPool holds the write buffers of a gateway's connections: a connection
// holds one only while it writes, so an idle one holds none.
type bufPool struct{ p sync.Pool }

func (bp *bufPool) get() []byte {
	if bp != nil {
		if b, ok := bp.p.Get().(*[]byte); ok {
			return (*b)[:0]
		}
	}
	return nil
}

func (bp *bufPool) put(b []byte) {
	if bp != nil && cap(b) <= maxRetainedBatch && cap(b) > 0 {
		b = b[:0]
		bp.p.Put(&b)
	}
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.writeNow(p)
}

// closeTimeout bounds the writes of a connection being closed (its bye and
// close frames): a client that does not read must not hold the edge.
const closeTimeout = time.Second

func (b *batchConn) writeNow(p []byte) (int, error) {
	if b.closing.Load() {
		_ = b.Conn.SetWriteDeadline(time.Now().Add(closeTimeout))
	} else if b.writeTimeout > 0 {
		// Moving the deadline costs a timer update: do it only when less
		// than three quarters of the timeout is left, so a write always
		// gets at least that.
		now := time.Now()
		if b.deadline.Sub(now) < b.writeTimeout*3/4 {
			b.deadline = now.Add(b.writeTimeout)
			_ = b.Conn.SetWriteDeadline(b.deadline)
		}
	}
	n, err := b.Conn.Write(p)
	b.metrics.Written(n)
	return n, err
}

// expedite shortens the deadline of every write, including one in progress,
// to closeTimeout: the connection is being closed.
func (b *batchConn) expedite() {
	b.closing.Store(true)
	_ = b.Conn.SetWriteDeadline(time.Now().Add(closeTimeout))
}

// begin opens a batch.
func (b *batchConn) begin() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

// end closes the batch and writes what it collected in one write.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	return b.flushLocked()
}

func (b *batchConn) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.writeNow(b.buf)
	b.pool.put(b.buf)
	b.buf = nil
	return err
}

// writeTextFrames frames each payload as an unmasked, uncompressed
// WebSocket text message and sends them all with one write. It is the
// allocation-free path of connections without permessage-deflate; gws's own
// writes (pongs, close frames) are whole frames under the same lock, so
// frames never interleave.
func (b *batchConn) writeTextFrames(payloads [][]byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		b.buf = b.pool.get()
	}
	for _, p := range payloads {
		b.buf = appendTextHeader(b.buf, len(p))
		b.buf = append(b.buf, p...)
	}
	if b.batching {
		return nil
	}
	return b.flushLocked()
}

// appendTextHeader appends the header of a final, unmasked text frame of n
// payload bytes (RFC 6455 section 5.2).
func appendTextHeader(buf []byte, n int) []byte {
	const finText = 0x81
	switch {
	case n < 126:
		return append(buf, finText, byte(n))
	case n <= 0xFFFF:
		return append(buf, finText, 126, byte(n>>8), byte(n))
	default:
		return append(buf, finText, 127,
			byte(uint64(n)>>56), byte(uint64(n)>>48), byte(uint64(n)>>40), byte(uint64(n)>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// lingerTimeout bounds how long a closed connection waits for the client
// to read the last frames and close its side.
const lingerTimeout = 2 * time.Second

// Close sends what a batch holds, then closes gracefully: the first call
// only shuts down the write side, so a client still sending (say, a flood
// that earned it a bye) reads the bye and the close frame instead of getting
// a reset that discards them. The socket is closed by closeNow (when the
// read loop ends), by a second Close, or after lingerTimeout.
func (b *batchConn) Close() error {
	b.mu.Lock()
	b.batching = false
	_ = b.flushLocked()
	b.buf = nil
	first := !b.lingering
	b.lingering = true
	b.mu.Unlock()
	cw, ok := b.Conn.(interface{ CloseWrite() error })
	if !first || !ok {
		return b.closeNow()
	}
	if err := cw.CloseWrite(); err != nil {
		return b.closeNow()
	}
	_ = b.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	b.mu.Lock()
	b.linger = time.AfterFunc(lingerTimeout, func() { _ = b.closeNow() })
	b.mu.Unlock()
	return nil
}

// closeNow closes the socket (once).
func (b *batchConn) closeNow() error {
	b.mu.Lock()
	if b.linger != nil {
		b.linger.Stop()
	}
	b.mu.Unlock()
	var err error
	b.closeOnce.Do(func() { err = b.Conn.Close() })
	return err
}
