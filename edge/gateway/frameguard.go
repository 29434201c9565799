package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"natter/natsconf/ops/metrics"
)

// frameGuard sits between a client's socket and gws's reader and follows
// the WebSocket frames in the bytes as they pass, without copying or
// changing them. It bounds two things gws leaves open:
//
//   - Time. A message must arrive whole within a time bound from its
//     first frame. Pings between the fragments of a message keep the
//     connection's idle deadline moving, so without this a client could
//     keep a half-received message (up to the size limit) in the edge's
//     memory forever.
//   - Memory over all connections. Every data frame's payload is taken
//     from the edge's receive budget before gws sees its header (gws then
//     allocates that much), and given back once the message is complete
//     or the connection ends. When the budget is spent the frame waits,
//     within its message's time bound, for other messages to finish:
//     TCP holds the sender back meanwhile.
//
// Only the connection's read goroutine calls Read and close; deadline may
// be read from any goroutine.
type frameGuard struct {
	src     io.Reader
	budget  *semaphore.Weighted // nil: no budget
	stop    context.Context     // ends budget waits (the gateway shuts down)
	timeout time.Duration       // the longest one message may take to arrive
	metrics *metrics.Edge       // the budget in use (nil: none)
	// maxPayload is gws's limit: a frame over it takes no budget, gws
	// closes the connection at its header.
	maxPayload uint64
	// fail is told why the guard is about to end the connection, before
	// Read returns the error (so the client can get a bye first).
	fail func(guardFault)
	// started is told when a message is seen unfinished after a read: its
	// due time (deadline) is set from then on.
	started func()

	hdr     [14]byte // the frame header being collected
	hdrLen  int      // bytes of it collected
	hdrNeed int      // its length, once its second byte is known (else 0)
	left    uint64   // payload bytes of the current frame still to pass
	data    bool     // the current frame is a data frame
	fin     bool     // and the last of its message

	inMessage bool      // a data message has begun and not ended
	held      int64     // budget bytes held by that message
	since     time.Time // when it was first seen unfinished (zero: not yet)
	due       atomic.Int64
	failed    error // once set, every Read returns it
}

// guardFault is why a frameGuard ended a connection.
type guardFault int

const (
	// faultTooSlow: a message did not arrive whole within the time bound.
	faultTooSlow guardFault = iota + 1
	// faultOverloaded: the edge's receive budget stayed spent for the
	// whole time bound of a message waiting for it.
	faultOverloaded
)

// errGuard is what Read returns once the guard ended the connection.
var errGuard = errors.New("gateway: connection ended by the frame guard")

// newFrameGuard returns a guard reading from src.
func newFrameGuard(src io.Reader, budget *semaphore.Weighted, stop context.Context, timeout time.Duration, maxPayload int, m *metrics.Edge) *frameGuard {
	return &frameGuard{src: src, budget: budget, stop: stop, timeout: timeout, maxPayload: uint64(maxPayload), metrics: m}
}

// Read reads from the socket and follows the frames in what it got.
func (g *frameGuard) Read(p []byte) (int, error) {
	if g.failed != nil {
		return 0, g.failed
	}
	n, err := g.src.Read(p)
	if n > 0 {
		if fault := g.scan(p[:n]); fault != 0 {
			return 0, g.end(fault)
		}
	}
	if g.inMessage {
		// Only a message still unfinished after a read costs a clock read.
		now := time.Now()
		switch {
		case g.since.IsZero():
			g.begin(now)
		case now.Sub(g.since) >= g.timeout:
			// Also when the read deadline (moved up to the due time)
			// passed: the client went silent inside a message.
			return 0, g.end(faultTooSlow)
		}
	}
	return n, err
}

// begin starts the clock of the message in progress.
func (g *frameGuard) begin(now time.Time) {
	g.since = now
	g.due.Store(now.Add(g.timeout).UnixNano())
	if g.started != nil {
		g.started()
	}
}

// deadline returns when the message being received must be complete, or
// zero when none is (or it has not been seen unfinished yet, or g is nil).
func (g *frameGuard) deadline() time.Time {
	if g == nil {
		return time.Time{}
	}
	if d := g.due.Load(); d != 0 {
		return time.Unix(0, d)
	}
	return time.Time{}
}

// close gives back what the message in progress holds of the budget.
func (g *frameGuard) close() {
	if g == nil {
		return
	}
	g.endMessage()
	if g.failed == nil {
		g.failed = io.ErrClosedPipe
	}
}

func (g *frameGuard) end(fault guardFault) error {
	g.endMessage()
	g.failed = errGuard
	if g.fail != nil {
		g.fail(fault)
	}
	return errGuard
}

// scan follows the frames in b; it returns a fault when one ends the
// connection.
func (g *frameGuard) scan(b []byte) guardFault {
	for len(b) > 0 {
		if g.left > 0 {
			k := uint64(len(b))
			if k > g.left {
				k = g.left
			}
			b = b[k:]
			if g.left -= k; g.left == 0 {
				g.payloadEnd()
			}
			continue
		}
		// Collect the header: two bytes tell its length.
		need := g.hdrNeed
		if need == 0 {
			need = 2
		}
		k := copy(g.hdr[g.hdrLen:need], b)
		g.hdrLen += k
		b = b[k:]
		if g.hdrLen < need {
			continue
		}
		if g.hdrNeed == 0 {
			g.hdrNeed = headerLen(g.hdr[1])
			if g.hdrLen < g.hdrNeed {
				continue
			}
		}
		if fault := g.frame(); fault != 0 {
			return fault
		}
	}
	return 0
}

// headerLen is the length of a frame header from its second byte.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4 // the mask key
	}
	return n
}

// frame handles a complete header.
func (g *frameGuard) frame() guardFault {
	h := g.hdr[:g.hdrLen]
	g.hdrLen, g.hdrNeed = 0, 0
	opcode := h[0] & 0x0F
	length := uint64(h[1] & 0x7F)
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		length = binary.BigEndian.Uint64(h[2:10])
	}
	g.data = opcode&0x08 == 0
	g.fin = h[0]&0x80 != 0
	g.left = length
	if g.data {
		if opcode != 0 && g.inMessage {
			g.endMessage() // gws refuses this (a new message inside one)
		}
		g.inMessage = true
		if fault := g.take(length); fault != 0 {
			return fault
		}
	}
	if length == 0 {
		g.payloadEnd()
	}
	return 0
}

// take takes n bytes of the budget for the message in progress, waiting
// (within the message's time bound) while it is spent. A frame over
// gws's size limit takes nothing: gws refuses it at its header (and the
// budget is never below that limit, so any other frame can get it).
func (g *frameGuard) take(n uint64) guardFault {
	if g.budget == nil || n == 0 || n > g.maxPayload {
		return 0
	}
	w := int64(n)
	if g.budget.TryAcquire(w) {
		g.held += w
		g.metrics.Receiving(w)
		return 0
	}
	if g.since.IsZero() {
		g.begin(time.Now())
	}
	ctx, cancel := context.WithDeadline(g.stop, g.since.Add(g.timeout))
	defer cancel()
	if err := g.budget.Acquire(ctx, w); err != nil {
		return faultOverloaded
	}
	g.held += w
	g.metrics.Receiving(w)
	return 0
}

// payloadEnd is the end of the current frame's payload.
func (g *frameGuard) payloadEnd() {
	if g.data && g.fin {
		g.endMessage()
	}
}

// endMessage ends the message in progress: its budget goes back.
func (g *frameGuard) endMessage() {
	if g.held > 0 {
		g.budget.Release(g.held)
		g.metrics.Receiving(-g.held)
		g.held = 0
	}
	if g.inMessage {
		g.inMessage = false
		g.since = time.Time{}
		g.due.Store(0)
	}
}
