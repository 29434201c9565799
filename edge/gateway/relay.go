package gateway

import (
	"encoding/json"
	"sync"
	"time"

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
// and replies come back in that order; pings and bad frames are answered in
// their place in that order too. A relay goroutine exists only while frames
// wait; the read goroutine blocks when too many wait (the client is then no
// longer read: TCP back-pressure).
type relayer struct {
	c *client

	mu       sync.Mutex
	queue    []inbound
	bytes    int
	running  bool
	stopped  bool
	hasSpace *sync.Cond // signalled when the queue shrinks or stops
}

// inbound is a frame as read (a copy: gws reuses its read buffers), or the
// fault of one that could not be read.
type inbound struct {
	data    []byte
	fault   *protocol.Error // binary or too large: answered, never decoded
	limited bool            // over the rate limit: answered rate_limited
	read    time.Time       // when it was read (zero without metrics)
}

// pendingCommand is a decoded frame: a command to relay, or one answered
// in its place by the edge itself (reply: a pong or rate_limited error;
// fault: a bad frame, with the id if one could be read).
type pendingCommand struct {
	cmd   protocol.Command
	data  []byte
	reply []byte
	fault error
	read  time.Time     // when it was read (zero without metrics)
	code  protocol.Code // what a local reply answers: "" (pong) or an error code
}

func (p *pendingCommand) local() bool { return p.reply != nil || p.fault != nil }

// Bounds of a connection's relay queue and of one batch.
const (
	maxQueuedCommands = 256
	maxBatchBytes     = 64 << 10
)

// push queues a frame, waiting while the queue is full, and starts the
// relay goroutine if none runs.
func (r *relayer) push(in inbound) {
	in.data = append([]byte(nil), in.data...)
	r.mu.Lock()
	if r.hasSpace == nil {
		r.hasSpace = sync.NewCond(&r.mu)
	}
	for !r.stopped && (len(r.queue) >= maxQueuedCommands || r.bytes+len(in.data) > r.limit()) && len(r.queue) > 0 {
		r.hasSpace.Wait()
	}
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.queue = append(r.queue, in)
	r.bytes += len(in.data)
	start := !r.running
	r.running = true
	r.mu.Unlock()
	if start {
		r.c.g.wg.Add(1)
		go r.run()
	}
}

// limit is the most bytes of frames queued to one connection: two frames
// of the largest size, or one batch.
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

// take removes up to MaxBatch frames (within maxBatchBytes, at least one)
// from the queue. It returns nil, and marks the goroutine gone, when
// nothing waits.
func (r *relayer) take() []inbound {
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
	for n < len(r.queue) && n < natsconf.MaxBatch && size+len(r.queue[n].data) <= maxBatchBytes {
		size += len(r.queue[n].data)
		n++
	}
	taken := make([]inbound, n)
	copy(taken, r.queue)
	clear(r.queue[:n])
	r.queue = r.queue[n:]
	if len(r.queue) == 0 {
		r.queue = nil // do not keep a drained array alive
	}
	r.bytes -= size
	r.hasSpace.Broadcast()
	return taken
}

func (r *relayer) run() {
	defer r.c.g.wg.Done()
	c := r.c
	for taken := r.take(); taken != nil; taken = r.take() {
		ready := r.decode(taken)
		for len(ready) > 0 {
			if p := &ready[0]; p.local() {
				if p.fault != nil {
					c.badFrame(p.cmd.ID, p.fault)
					c.observeFault(p)
				} else {
					c.bad = 0
					c.send(p.reply)
					c.observe(p, p.code)
				}
				ready = ready[1:]
				continue
			}
			c.bad = 0
			n := 1
			for n < len(ready) && !ready[n].local() && ready[n].cmd.Type == ready[0].cmd.Type && batchable(ready[0].cmd.Type) {
				n++
			}
			if ready[0].cmd.Type == protocol.TypeJoin && c.limitRooms(ready[:n]) {
				continue // some became errors: group again
			}
			r.send(ready[:n])
			ready = ready[n:]
		}
	}
}

// batchable reports whether commands of type t may share a request: not
// history, whose replies are large (each is bounded to fit a NATS message
// on its own, several together need not be).
func batchable(t string) bool { return t != protocol.TypeHistory }

// limitRooms answers with too_many_rooms each join of joins (in order)
// that would take the connection past MaxRooms, and reports whether it
// answered any.
func (c *client) limitRooms(joins []pendingCommand) bool {
	limited := false
	seen := map[string]bool{}
	for i := range joins {
		room := joins[i].cmd.Room
		n, in := c.g.hub.roomCount(c, room)
		if in || seen[room] {
			continue
		}
		if n+len(seen) >= c.g.cfg.MaxRooms {
			joins[i] = pendingCommand{cmd: protocol.Command{ID: joins[i].cmd.ID, Type: protocol.TypeJoin}, read: joins[i].read, code: protocol.CodeTooManyRooms, reply: protocol.EncodeError(joins[i].cmd.ID,
				protocol.Errorf(protocol.CodeTooManyRooms, "in too many rooms: leave one first"))}
			limited = true
			continue
		}
		seen[room] = true
	}
	return limited
}

// decode turns frames into commands to relay, or into what answers them.
func (r *relayer) decode(taken []inbound) []pendingCommand {
	out := make([]pendingCommand, len(taken))
	for i, in := range taken {
		p := &out[i]
		p.read = in.read
		if in.fault != nil {
			p.fault = in.fault
			continue
		}
		cmd, err := protocol.DecodeCommand(in.data)
		switch {
		case err != nil:
			p.cmd.ID, p.fault = cmd.ID, err
		case in.limited:
			p.cmd.Type, p.code = cmd.Type, protocol.CodeRateLimited
			p.reply = protocol.EncodeError(cmd.ID, protocol.Errorf(protocol.CodeRateLimited, "slow down"))
		case cmd.Type == protocol.TypePing:
			p.cmd.Type = cmd.Type
			p.reply = protocol.EncodePong(cmd.ID)
		case cmd.Type == protocol.TypeRefresh:
			p.cmd.Type = cmd.Type
			p.reply = r.c.refresh(cmd)
		default:
			p.cmd, p.data = cmd, in.data
		}
	}
	return out
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
		c.observeReply(&batch[0], reply.Data)
		return
	}
	results, err := natsconf.SplitBatchResults(reply.Data)
	if err != nil || len(results) != len(batch) {
		r.fail(batch, protocol.Errorf(protocol.CodeInternal, "malformed batch reply from handler"))
		return
	}
	for i, res := range results {
		c.answer(batch[i].cmd, res.Op, res.Room, res.Frame)
		c.observeReply(&batch[i], res.Frame)
	}
}

// fail answers every command of a batch with err.
func (r *relayer) fail(batch []pendingCommand, err *protocol.Error) {
	for _, pc := range batch {
		r.c.send(protocol.EncodeError(pc.cmd.ID, err))
		r.c.observe(&pc, err.Code)
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
