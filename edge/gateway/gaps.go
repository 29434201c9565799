package gateway

import (
	"encoding/json"
	"maps"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"natter/edge/protocol"
	"natter/natsconf"
)

// Room fan-out is JetStream's RePublish over core NATS: at most once. A
// republished message carries the sequence of the room's previous stored
// message (Nats-Last-Sequence), so the edge knows when it missed one: it
// then holds the room's live messages, fetches the missing ones from the
// rooms handler (history pages), and delivers them in order before the held
// ones. Since a message lost at the tail is followed by nothing, the edge
// also compares every room it serves with the room's latest stored message
// periodically and whenever its NATS connection comes back: one request
// per room, not per message.

// gapState is a room fan-out's view of the room's stored messages. last is
// read by the checker under the hub's read lock and written by the
// dispatcher or a fill; filling and held only change under the hub's write
// lock or on the dispatcher under its read lock (no other goroutine
// touches them then).
type gapState struct {
	last    atomic.Uint64 // seq of the newest stored message delivered here
	known   atomic.Bool   // last is known (else the first message sets it)
	filling bool          // a fill runs: live messages are held
	held    []liveFrame
}

// liveFrame is a stored room message that arrived live.
type liveFrame struct {
	seq, prev uint64
	hasPrev   bool
	frame     []byte
	skip      string // the connection not to echo it to ("": none)
}

// maxHeldFrames bounds the live frames a room holds while a fill runs.
const maxHeldFrames = 4096

// routeStored handles a stored room message that arrived live. Dispatcher
// only, under the hub's read lock.
func (h *hub) routeStored(room string, f *fanout, lf liveFrame) {
	if f.gaps.filling {
		if len(f.gaps.held) < maxHeldFrames {
			f.gaps.held = append(f.gaps.held, lf)
		}
		// Past the bound the rest is left to the fill: it reads what
		// the room stored after the held frames before it ends.
		return
	}
	last, known := f.gaps.last.Load(), f.gaps.known.Load()
	switch {
	case known && lf.seq <= last:
		return // delivered already, by a fill
	case known && lf.hasPrev && lf.prev > last:
		f.gaps.filling = true
		f.gaps.held = append(f.gaps.held, lf)
		h.startFill(room, f)
		return
	}
	f.gaps.last.Store(lf.seq)
	f.gaps.known.Store(true)
	h.deliverRoom(f, lf.seq, lf.frame, lf.skip)
}

// knowLast tells room's fan-out the room's latest seq when a join made the
// edge subscribe: messages stored after it are expected.
func (h *hub) knowLast(room string, seq uint64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if f := h.rooms[room]; f != nil && !f.gaps.known.Load() {
		f.gaps.last.Store(seq)
		f.gaps.known.Store(true)
	}
}

// startFill starts filling f's gap, on a goroutine the gateway owns.
func (h *hub) startFill(room string, f *fanout) {
	g := h.g
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		h.fill(room, f)
	}()
}

// fillPatience is how long a fill keeps asking for the missing messages
// (holding the room's live ones meanwhile) before it gives up and asks the
// room's members to rejoin. It outlasts a failover of the rooms stream:
// when the node that leads it dies, reads fail for about 1.7 s (the other
// replicas answer direct gets again only then) and writes until a new
// leader is elected (4 to 9 s); the edge bears an outage of its own NATS
// connection as long (DefaultResyncAfter) before its clients must rejoin.
const fillPatience = DefaultResyncAfter

// fillRetry is how long a fill waits before its attempt'th retry: 250 ms
// more each time, at most a second.
func fillRetry(attempt int) time.Duration {
	return min(time.Duration(attempt)*250*time.Millisecond, time.Second)
}

// fill fetches the messages of room after the last one delivered, delivers
// them and then the held live ones, in seq order, until no gap is left.
func (h *hub) fill(room string, f *fanout) {
	g := h.g
	since := time.Now() // of the first attempt for the current gap
	for attempt := 1; ; attempt++ {
		after := f.gaps.last.Load()
		msgs, err := g.fetchAfter(room, after)
		h.mu.Lock()
		if h.rooms[room] != f {
			h.mu.Unlock()
			return // nobody here is in the room any more
		}
		if err != nil {
			if time.Since(since) < fillPatience && !g.closing.Load() {
				h.mu.Unlock()
				select {
				case <-g.done:
					return
				case <-time.After(fillRetry(attempt)):
				}
				continue
			}
			// Never a silent gap: the members rejoin with since.
			g.cfg.Logger.Warn("room messages missed and not recovered; members rejoin", "room", room, "after", after, "err", err)
			for c := range f.members {
				c.bye(protocol.ByeShutdown, "missed messages of room "+room+"; reconnect and join again with since")
			}
			f.gaps.filling, f.gaps.held = false, nil
			h.mu.Unlock()
			return
		}
		last := f.gaps.last.Load()
		for _, m := range msgs {
			if m.seq <= last {
				continue
			}
			// Read from history: the sender of a message sent with
			// "echo":false is not known here, so it gets it too.
			h.deliverRoom(f, m.seq, protocol.InsertPrev(m.frame, last), "")
			last = m.seq
		}
		held, gap := f.gaps.held, false
		f.gaps.held = nil
		for i, lf := range held {
			if lf.seq <= last {
				continue
			}
			if lf.hasPrev && lf.prev > last {
				f.gaps.held, gap = held[i:], true // lost again meanwhile
				break
			}
			h.deliverRoom(f, lf.seq, lf.frame, lf.skip)
			last = lf.seq
		}
		f.gaps.last.Store(last)
		f.gaps.known.Store(true)
		if !gap {
			f.gaps.filling = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		attempt, since = 0, time.Now()
	}
}

// checkRooms compares every room with members here with the room's latest
// stored message, and fills what was missed (a loss at the tail).
func (g *Gateway) checkRooms() {
	h := g.hub
	h.mu.RLock()
	rooms := make(map[string]*fanout, len(h.rooms))
	for name, f := range h.rooms {
		rooms[name] = f
	}
	h.mu.RUnlock()
	for room, f := range rooms {
		if g.closing.Load() {
			return
		}
		latest, err := g.latestSeq(room)
		if err != nil {
			continue // the next check, or the next message, tells
		}
		h.mu.Lock()
		switch {
		case h.rooms[room] != f || f.gaps.filling:
		case !f.gaps.known.Load():
			f.gaps.last.Store(latest)
			f.gaps.known.Store(true)
		case latest > f.gaps.last.Load():
			f.gaps.filling = true
			h.startFill(room, f)
		}
		h.mu.Unlock()
	}
}

// watchRooms runs checkRooms every interval and whenever kick has a value,
// until done.
func (g *Gateway) watchRooms(recheck, lost <-chan struct{}) {
	t := time.NewTicker(g.cfg.GapCheckInterval)
	defer t.Stop()
	again := false // redeliver once more after a drop: the first try may drop too
	for {
		select {
		case <-g.done:
			return
		case <-t.C:
			if again {
				again = false
				g.redeliverPending()
			}
		case <-recheck:
		case <-lost:
			g.cfg.Logger.Warn("deliveries dropped (slow consumer): checking rooms, delivering pending dms again")
			g.redeliverPending()
			again = true
		}
		g.checkRooms()
	}
}

// redeliverPending asks the inbox handler to deliver the pending dms of
// every user with a connection here, as when the user's first connection
// opens: a dm offer that was dropped left the dm pending.
func (g *Gateway) redeliverPending() {
	for _, c := range g.hub.firstOfEachUser() {
		hdr := maps.Clone(c.header)
		hdr.Set(natsconf.HeaderFirst, "1")
		_ = g.nc.PublishMsg(&nats.Msg{Subject: g.cfg.Subjects.EventConnect(), Header: hdr})
	}
}

// fetchHeader is the identity of the edge's own requests to the rooms
// handler (gap fills, checks): the edge itself, which may read any room.
func (g *Gateway) fetchHeader() nats.Header {
	return nats.Header{
		natsconf.HeaderConn: {g.edgeID},
		natsconf.HeaderUser: {"natter-edge"},
		natsconf.HeaderEdge: {g.edgeID},
	}
}

// fetchAfter returns every stored message of room after seq, in order,
// page by page.
func (g *Gateway) fetchAfter(room string, after uint64) ([]seqFrame, error) {
	var all []seqFrame
	for {
		msgs, more, err := g.historyPage(g.fetchHeader(), room, &after, replayPage)
		if err != nil {
			return nil, err
		}
		all = append(all, msgs...)
		if len(msgs) > 0 {
			after = msgs[len(msgs)-1].seq
		}
		if !more && len(msgs) < replayPage {
			return all, nil
		}
	}
}

// latestSeq returns the seq of room's latest stored message (0: none).
func (g *Gateway) latestSeq(room string) (uint64, error) {
	msgs, _, err := g.historyPage(g.fetchHeader(), room, nil, 1)
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	return msgs[len(msgs)-1].seq, nil
}

// historyPage asks the rooms handler for one page of room's stored
// messages: after a seq, or the latest ones when after is nil; and whether
// the room holds more after the page.
func (g *Gateway) historyPage(header nats.Header, room string, after *uint64, limit int) ([]seqFrame, bool, error) {
	subject, err := g.cfg.Subjects.Command(protocol.TypeHistory)
	if err != nil {
		return nil, false, err
	}
	req := protocol.Encode(protocol.Command{Type: protocol.TypeHistory, Room: room, After: after, Limit: limit})
	reply, err := g.nc.RequestMsg(&nats.Msg{Subject: subject, Header: header, Data: req}, g.cfg.RequestTimeout)
	if err != nil {
		return nil, false, requestError(protocol.TypeHistory, err)
	}
	var page struct {
		Type     string            `json:"type"`
		Code     protocol.Code     `json:"code"`
		Message  string            `json:"message"`
		Messages []json.RawMessage `json:"messages"`
		More     bool              `json:"more"`
	}
	if err := json.Unmarshal(reply.Data, &page); err != nil {
		return nil, false, protocol.Errorf(protocol.CodeInternal, "bad history page")
	}
	if page.Type == protocol.FrameError {
		return nil, false, protocol.Errorf(page.Code, page.Message)
	}
	out := make([]seqFrame, 0, len(page.Messages))
	for _, m := range page.Messages {
		var s struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(m, &s) != nil {
			return nil, false, protocol.Errorf(protocol.CodeInternal, "bad stored message")
		}
		out = append(out, seqFrame{seq: s.Seq, frame: m})
	}
	return out, page.More && len(out) > 0, nil
}

// parseSeq reads a stream sequence header.
func parseSeq(h nats.Header, key string) (uint64, bool) {
	v, err := strconv.ParseUint(h.Get(key), 10, 64)
	return v, err == nil
}
