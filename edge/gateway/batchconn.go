package gateway

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// batchConn wraps a connection so that the frames gws writes while a batch is
// open are collected and sent with one write when it ends: a connection's
// queued frames cost one syscall, not one each. Writes outside a batch (the
// upgrade response, pongs, close frames) go straight through, and Close
// sends whatever a batch still holds before closing.
type batchConn struct {
	net.Conn
	writeTimeout time.Duration

	closing atomic.Bool // set once the connection is being closed

	mu       sync.Mutex
	batching bool
	buf      []byte
}

// maxRetainedBatch is the largest batch buffer kept for reuse between
// batches; a larger one is dropped so an idle connection holds no big buffer.
const maxRetainedBatch = 64 << 10

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
	timeout := b.writeTimeout
	if b.closing.Load() {
		timeout = closeTimeout
	}
	if timeout > 0 {
		_ = b.Conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	return b.Conn.Write(p)
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
	if cap(b.buf) > maxRetainedBatch {
		b.buf = nil
	} else {
		b.buf = b.buf[:0]
	}
	return err
}

// Close sends what a batch holds, then closes the connection.
func (b *batchConn) Close() error {
	b.mu.Lock()
	b.batching = false
	_ = b.flushLocked()
	b.buf = nil
	b.mu.Unlock()
	return b.Conn.Close()
}
