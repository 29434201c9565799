package gateway

import (
	"runtime"
	"sync"
	"time"
)

// outbox is a connection's bounded queue of outgoing frames. Frames are
// shared, immutable byte slices (a room message is encoded once per edge and
// queued to every local member). A writer goroutine exists only while frames
// are queued; it writes everything queued at that moment as one batch (one
// syscall). When the queued bytes would pass the bound the outbox closes and
// calls overflow: the client is too slow.
type outbox struct {
	limit    int
	write    func(frames [][]byte) error // writes one batch
	overflow func()                      // called once, when the bound is passed
	wg       *sync.WaitGroup             // owner of the writer goroutines
	writers  *writerPool                 // reuses idle writer goroutines (nil: none)
	// later is called (without o.mu held) when a lazy frame waits with no
	// writer running: its owner calls flush within its lazy delay.
	later func(*outbox)

	mu      sync.Mutex
	frames  [][]byte
	spare   [][]byte
	queued  int
	writing bool
	closed  bool
	paused  bool          // frames are queued but not written until resume
	waiting bool          // lazy frames wait for flush (later was called)
	sealed  bool          // no more frames; those queued are still written
	idle    chan struct{} // closed when a sealed outbox has written all
}

// maxIdleFrames is the largest frame slice an idle outbox keeps for reuse.
const maxIdleFrames = 8

// push queues frame for writing now. It returns false when the outbox is
// closed or the frame would pass the bound (which closes it).
func (o *outbox) push(frame []byte) bool { return o.enqueue(frame, false) }

// pushLazy queues a frame that may wait a little (up to the owner's lazy
// delay) so that it goes out in one write with others: presence, which a
// busy room sends to every member on every join. A frame pushed after it
// takes it along at once; order is kept either way.
func (o *outbox) pushLazy(frame []byte) bool { return o.enqueue(frame, true) }

// flush starts writing lazy frames that wait.
func (o *outbox) flush() {
	o.mu.Lock()
	o.waiting = false
	o.startWriterAndUnlock()
}

func (o *outbox) enqueue(frame []byte, lazy bool) bool {
	o.mu.Lock()
	if o.closed || o.sealed {
		o.mu.Unlock()
		return false
	}
	if o.queued+len(frame) > o.limit {
		o.closed = true
		o.frames, o.queued = nil, 0
		o.mu.Unlock()
		o.overflow()
		return false
	}
	o.frames = append(o.frames, frame)
	o.queued += len(frame)
	if lazy && o.later != nil && !o.writing {
		schedule := !o.waiting
		o.waiting = true
		o.mu.Unlock()
		if schedule {
			o.later(o)
		}
		return true
	}
	o.startWriterAndUnlock()
	return true
}

// startWriterAndUnlock starts a writer goroutine when frames wait and none
// runs (and the outbox is not paused), then releases o.mu.
func (o *outbox) startWriterAndUnlock() {
	start := !o.writing && !o.paused && !o.closed && len(o.frames) > 0
	if start {
		o.writing = true
	}
	o.mu.Unlock()
	if start {
		if o.writers != nil {
			o.writers.start(o)
			return
		}
		o.wg.Add(1)
		go o.run()
	}
}

// pause holds queued frames back until resume.
func (o *outbox) pause() {
	o.mu.Lock()
	o.paused = true
	o.mu.Unlock()
}

// resume starts writing what was queued while paused.
func (o *outbox) resume() {
	o.mu.Lock()
	o.paused = false
	o.startWriterAndUnlock()
}

// run writes batches until the queue is empty or a write fails.
func (o *outbox) run() {
	defer o.wg.Done()
	o.drain()
}

// drain writes batches until the queue is empty or a write fails.
func (o *outbox) drain() {
	// Let the goroutines that queue frames (the dispatcher, NATS's reader)
	// run first: when a burst of room messages arrives, each member's
	// writer then finds several of them queued and writes them at once,
	// instead of one write per message.
	runtime.Gosched()
	for {
		o.mu.Lock()
		batch := o.frames
		if len(batch) == 0 || o.closed {
			o.writing = false
			if o.idle != nil {
				close(o.idle)
				o.idle = nil
			}
			// Keep one small slice for the next burst; an idle
			// connection holds nothing big.
			if o.spare != nil && !o.closed && cap(o.spare) <= maxIdleFrames {
				o.frames = o.spare[:0]
			} else {
				o.frames = nil
			}
			o.spare = nil
			o.mu.Unlock()
			return
		}
		o.frames, o.spare = o.spare[:0], nil
		o.mu.Unlock()

		err := o.write(batch)
		n := 0
		for i, f := range batch {
			n += len(f)
			batch[i] = nil
		}

		o.mu.Lock()
		o.queued -= n
		if o.spare == nil && cap(batch) <= 64 {
			o.spare = batch[:0]
		}
		if err != nil {
			o.closed = true
			o.frames, o.queued = nil, 0
		}
		o.mu.Unlock()
	}
}

// close drops what is queued and refuses further frames.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.frames, o.queued = nil, 0
	if o.idle != nil && !o.writing {
		close(o.idle)
		o.idle = nil
	}
	o.mu.Unlock()
}

// seal refuses further frames and returns a channel closed once what is
// queued has been written (or dropped by close or a failed write).
func (o *outbox) seal() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sealed = true
	idle := make(chan struct{})
	if !o.writing && len(o.frames) == 0 {
		close(idle)
		return idle
	}
	o.idle = idle
	return idle
}

// writerPool keeps writer goroutines that finished an outbox for a while,
// and hands them the next outbox that needs one: a new goroutine starts
// with a small stack and grows it on its first write (a copy of the stack
// every time), which cost a quarter of the CPU of a big room's fan-out.
// There are never more writers than outboxes writing at once.
type writerPool struct {
	handoff chan *outbox // unbuffered: a send succeeds only to an idle writer
	idle    time.Duration
	wg      *sync.WaitGroup
	done    <-chan struct{}
}

func newWriterPool(wg *sync.WaitGroup, done <-chan struct{}) *writerPool {
	return &writerPool{handoff: make(chan *outbox), idle: time.Second, wg: wg, done: done}
}

// start has o written by an idle writer, or a new one.
func (p *writerPool) start(o *outbox) {
	select {
	case p.handoff <- o:
	default:
		p.wg.Add(1)
		go p.work(o)
	}
}

func (p *writerPool) work(o *outbox) {
	defer p.wg.Done()
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		o.drain()
		t.Reset(p.idle)
		select {
		case o = <-p.handoff:
		case <-t.C:
			return
		case <-p.done:
			return
		}
	}
}
