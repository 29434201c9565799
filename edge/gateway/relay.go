package gateway

import (
	"encoding/json"
	"sync"

	"github.com/nats-io/nats.go"

	"natter/edge/protocol"
	"natter/natsconf"
)

// relayer sends a connection's commands to the handlers in the order they
// were read, with many in flight: one NATS request at a time, and the
// commands that queue up behind it travel together as the next request (a
// batch of consecutive commands of one type, see natsconf.HeaderBatch), so
// a client that pipelines pays one round trip per batch, not per command.
// Handlers apply a batch in order, so commands take effect in the order sent
// and replies come back in that order. A relay goroutine exists only while
// commands wait; the read goroutine blocks when too many wait (the client
// is then no longer read: TCP back-pressure).
type relayer struct {
	c *client

	mu       sync.Mutex
	queue    []pendingCommand
	bytes    int
	running  bool
	stopped  bool
	hasSpace *sync.Cond // signalled when the queue shrinks or stops
}

// pendingCommand is a decoded command and its frame as received (a copy:
// gws reuses its read buffers).
type pendingCommand struct {
	cmd  protocol.Command
	data []byte
}

// Bounds of a connection's relay queue and of one batch.
const (
	maxQueuedCommands = 256
	maxBatchBytes     = 64 << 10
)

// push queues a command, waiting while the queue is full, and starts the
// relay goroutine if none runs.
func (r *relayer) push(pc pendingCommand) {
	pc.data = append([]byte(nil), pc.data...)
	r.mu.Lock()
	if r.hasSpace == nil {
		r.hasSpace = sync.NewCond(&r.mu)
	}
	for !r.stopped && (len(r.queue) >= maxQueuedCommands || r.bytes+len(pc.data) > r.limit()) && len(r.queue) > 0 {
		r.hasSpace.Wait()
	}
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.queue = append(r.queue, pc)
	r.bytes += len(pc.data)
	start := !r.running
	r.running = true
	r.mu.Unlock()
	if start {
		r.c.g.wg.Add(1)
		go r.run()
	}
}

// limit is the most bytes of commands queued to one connection: two
// frames of the largest size, or one batch.
func (r *relayer) limit() int { return max(r.c.g.cfg.MaxFrame*2, maxBatchBytes) }

// stop drops what is queued and releases a read goroutine waiting for space.
func (r *relayer) stop() {
	r.mu.Lock()
	r.stopped = true
	r.queue, r.bytes = nil, 0
	if r.hasSpace != nil {
		r.hasSpace.Broadcast()
	}
	r.mu.Unlock()
}

// next takes the next batch off the queue: the first command and the ones
// of the same type right behind it, within the batch bounds. It returns
// nil, and marks the goroutine gone, when nothing waits.
func (r *relayer) next() []pendingCommand {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 || r.stopped || r.c.closing.Load() {
		r.running = false
		r.queue, r.bytes = nil, 0
		if r.hasSpace != nil {
			r.hasSpace.Broadcast()
		}
		return nil
	}
	n, size := 1, len(r.queue[0].data)
	for n < len(r.queue) && n < natsconf.MaxBatch && r.queue[n].cmd.Type == r.queue[0].cmd.Type &&
		size+len(r.queue[n].data) <= maxBatchBytes {
		size += len(r.queue[n].data)
		n++
	}
	batch := make([]pendingCommand, n)
	copy(batch, r.queue)
	clear(r.queue[:n])
	r.queue = r.queue[n:]
	if len(r.queue) == 0 {
		r.queue = nil // do not keep a drained array alive
	}
	r.bytes -= size
	r.hasSpace.Broadcast()
	return batch
}

func (r *relayer) run() {
	defer r.c.g.wg.Done()
	for batch := r.next(); batch != nil; batch = r.next() {
		r.send(batch)
	}
}

// send relays one batch and answers each of its commands in order.
func (r *relayer) send(batch []pendingCommand) {
	c := r.c
	cmdType := batch[0].cmd.Type
	subject, err := c.g.cfg.Subjects.Command(cmdType)
	if err != nil {
		r.fail(batch, protocol.Errorf(protocol.CodeUnknownType, "unknown command type"))
		return
	}
	msg := &nats.Msg{Subject: subject, Header: c.header, Data: batch[0].data}
	if len(batch) > 1 {
		var body []byte
		for _, pc := range batch {
			body = natsconf.AppendBatchItem(body, pc.data)
		}
		hdr := make(nats.Header, len(c.header)+1)
		for k, v := range c.header {
			hdr[k] = v
		}
		hdr[natsconf.HeaderBatch] = []string{"1"}
		msg = &nats.Msg{Subject: subject, Header: hdr, Data: body}
	}
	reply, err := c.g.nc.RequestMsg(msg, c.g.cfg.RequestTimeout)
	if err != nil {
		r.fail(batch, requestError(cmdType, err))
		return
	}
	if len(batch) == 1 || reply.Header.Get(natsconf.HeaderBatch) == "" {
		if len(batch) > 1 {
			// One answer for the whole batch: an error (handler
			// stopping, panic); each command gets it with its own id.
			r.fail(batch, replyError(reply.Data))
			return
		}
		c.answer(batch[0].cmd, reply.Header.Get(natsconf.HeaderOp), reply.Header.Get(natsconf.HeaderRoom), reply.Data)
		return
	}
	results, err := natsconf.SplitBatchResults(reply.Data)
	if err != nil || len(results) != len(batch) {
		r.fail(batch, protocol.Errorf(protocol.CodeInternal, "malformed batch reply from handler"))
		return
	}
	for i, res := range results {
		c.answer(batch[i].cmd, res.Op, res.Room, res.Frame)
	}
}

// fail answers every command of a batch with err.
func (r *relayer) fail(batch []pendingCommand, err *protocol.Error) {
	for _, pc := range batch {
		r.c.send(protocol.EncodeError(pc.cmd.ID, err))
	}
}

// replyError reads the error frame a handler answered a whole batch with.
func replyError(frame []byte) *protocol.Error {
	var e protocol.ErrorFrame
	if err := json.Unmarshal(frame, &e); err != nil || e.Type != protocol.FrameError || e.Code == "" {
		return protocol.Errorf(protocol.CodeInternal, "unexpected reply from handler")
	}
	return protocol.Errorf(e.Code, e.Message)
}
