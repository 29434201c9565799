package gateway

import (
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"natter/edge/protocol"
	"natter/natsconf"
)

// hub holds the edge's NATS subscriptions and who they serve. Every
// subscription delivers into one channel read by one dispatcher goroutine, so
// a connection costs no goroutine of nats.go's, and frames for one subject
// keep their order. Rooms and users are counted: one subscription per room
// (or user) per edge, whatever the number of local connections.
type hub struct {
	g    *Gateway
	nc   *nats.Conn
	subj natsconf.Subjects
	msgs chan *nats.Msg

	mu      sync.RWMutex
	clients map[string]*client
	users   map[string]*fanout
	rooms   map[string]*fanout
	bcast   *nats.Subscription
	conns   *nats.Subscription // every connection's subject of this edge

	droppedGone atomic.Uint64 // messages dropped by subscriptions let go
}

// fanout is one subscription shared by the local connections of a room or
// a user. A member's value is nil for a plain live member, and set for one
// that joined with "since" (see member).
type fanout struct {
	sub     *nats.Subscription
	members map[*client]*member
	gaps    gapState // rooms only: what was delivered (see gaps.go)
}

// member is the replay state of a connection that joined a room with
// "since". While held is set its live frames are held until its replay of
// stored messages ends; after that, live copies of frames it got from the
// replay (seq <= floor, still queued for the dispatcher then) are dropped.
type member struct {
	held  *catchup
	floor uint64
}

// catchup holds a member's live room frames while stored ones are replayed
// to it. Only the dispatcher appends (under the hub's read lock); the end of
// the replay takes the write lock.
type catchup struct {
	frames     []seqFrame
	bytes      int
	limit      int
	overflowed bool // frames were dropped: replay must read further
}

type seqFrame struct {
	seq   uint64
	frame []byte
}

func (cu *catchup) hold(seq uint64, frame []byte) {
	if cu.overflowed {
		return
	}
	if cu.bytes+len(frame) > cu.limit {
		// They are all stored: drop them and let the replay read on.
		cu.frames, cu.bytes, cu.overflowed = nil, 0, true
		return
	}
	cu.frames = append(cu.frames, seqFrame{seq, frame})
	cu.bytes += len(frame)
}

// DefaultDispatchQueue is the default capacity of the shared delivery
// channel (Config.DispatchQueue). nats.go drops
// (and reports as a slow consumer) what does not fit.
const DefaultDispatchQueue = 1 << 16

func newHub(nc *nats.Conn, subj natsconf.Subjects, edgeID string, queue int) (*hub, error) {
	h := &hub{
		nc:      nc,
		subj:    subj,
		msgs:    make(chan *nats.Msg, queue),
		clients: map[string]*client{},
		users:   map[string]*fanout{},
		rooms:   map[string]*fanout{},
	}
	conns, err := subj.EdgeConns(edgeID)
	if err != nil {
		return nil, err
	}
	if h.conns, err = nc.ChanSubscribe(conns, h.msgs); err != nil {
		return nil, err
	}
	if h.bcast, err = nc.ChanSubscribe(subj.Broadcast(), h.msgs); err != nil {
		_ = h.conns.Unsubscribe()
		return nil, err
	}
	return h, nil
}

// dispatch routes deliveries to connections until done is closed. The
// channel itself is never closed: nats.go may still be sending to it.
func (h *hub) dispatch(done <-chan struct{}) {
	for {
		select {
		case m := <-h.msgs:
			h.route(m)
		case <-done:
			return
		}
	}
}

func (h *hub) route(m *nats.Msg) {
	kind, name := h.subj.Parse(m.Subject)
	if kind == natsconf.KindConn {
		h.mu.RLock()
		c := h.clients[name]
		h.mu.RUnlock()
		if c != nil && c.deliver(m) && m.Reply != "" {
			_ = h.nc.Publish(m.Reply, nil) // queued: tell the sender
		}
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	switch kind {
	case natsconf.KindUser:
		f := h.users[name]
		if f == nil {
			return
		}
		queued := m.Header.Get(natsconf.HeaderProbe) != ""
		if !queued {
			skip := noEcho(m.Header)
			for c := range f.members {
				if c.id != skip {
					queued = c.send(m.Data) || queued
				}
			}
		}
		if queued && m.Reply != "" {
			// Tell the inbox handler the dm reached a live connection.
			_ = h.nc.Publish(m.Reply, nil)
		}
	case natsconf.KindRoom:
		f := h.rooms[name]
		if f == nil {
			return
		}
		seq, stored := parseSeq(m.Header, nats.JSSequence)
		if !stored {
			h.deliverRoom(f, 0, m.Data, noEcho(m.Header)) // presence, typing: not stored
			return
		}
		prev, hasPrev := parseSeq(m.Header, nats.JSLastSequence)
		frame := protocol.WithSeq(m.Data, seq)
		if hasPrev {
			frame = protocol.InsertPrev(frame, prev)
		}
		if lose := h.g.cfg.LoseRoomMessage; lose != nil && lose(name, seq) {
			return
		}
		h.routeStored(name, f, liveFrame{seq: seq, prev: prev, hasPrev: hasPrev, frame: frame, skip: noEcho(m.Header)})
	case natsconf.KindBroadcast:
		for _, c := range h.clients {
			c.send(m.Data)
		}
	}
}

// noEcho returns the connection a message asks not to be delivered to
// (natsconf.HeaderNoEcho with HeaderConn), or "".
func noEcho(hdr nats.Header) string {
	if hdr.Get(natsconf.HeaderNoEcho) == "" {
		return ""
	}
	return hdr.Get(natsconf.HeaderConn)
}

// deliverRoom queues a room frame (stored, with its seq; or presence or
// typing, seq 0) to every member of f but skip (the sender of a frame not
// to be echoed; "": none), minding members that catch up with since.
func (h *hub) deliverRoom(f *fanout, seq uint64, frame []byte, skip string) {
	for c, st := range f.members {
		if skip != "" && c.id == skip {
			continue
		}
		if st != nil {
			if st.held != nil {
				st.held.hold(seq, frame)
				continue
			}
			if seq != 0 && seq <= st.floor {
				continue
			}
		}
		if seq == 0 {
			c.out.pushLazy(frame) // presence can wait for company
		} else {
			c.send(frame)
		}
	}
}

// add registers c and subscribes its user's subject if c is the user's
// first connection here; first reports that.
func (h *hub) add(c *client) (first bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	first = h.users[c.user] == nil
	if err := h.joinLocked(h.users, h.subj.User, c.user, c); err != nil {
		return false, err
	}
	h.clients[c.id] = c
	return first, nil
}

// remove unregisters c and returns the rooms it was in.
func (h *hub) remove(c *client) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients[c.id] != c {
		return nil
	}
	delete(h.clients, c.id)
	h.leaveLocked(h.users, c.user, c)
	rooms := make([]string, 0, len(c.rooms))
	for room := range c.rooms {
		h.leaveLocked(h.rooms, room, c)
		rooms = append(rooms, room)
	}
	c.rooms = nil
	return rooms
}

// joinRoom makes c receive room's messages. With catchUp, its live
// messages are held until endCatchUp, while the caller replays stored ones.
// It reports whether that made the edge subscribe to the room (its first
// local member).
func (h *hub) joinRoom(c *client, room string, catchUp bool) (subscribed bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients[c.id] != c {
		return false, nil // closed meanwhile
	}
	if _, ok := c.rooms[room]; !ok {
		subscribed = h.rooms[room] == nil
		if err := h.joinLocked(h.rooms, h.subj.Room, room, c); err != nil {
			return false, err
		}
		c.rooms[room] = struct{}{}
	}
	if catchUp {
		h.rooms[room].members[c] = &member{held: &catchup{limit: c.g.cfg.WriteQueueBytes}}
	}
	return subscribed, nil
}

// roomCount returns how many rooms c is in, and whether room is one.
func (h *hub) roomCount(c *client, room string) (int, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	_, in := c.rooms[room]
	return len(c.rooms), in
}

// endCatchUp ends c's replay of room at seq replayed: it queues the held live
// frames newer than replayed and makes c a live member again. It returns
// false, and keeps c catching up, when held frames were dropped: the caller
// must replay further first.
func (h *hub) endCatchUp(c *client, room string, replayed uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.rooms[room]
	if f == nil {
		return true
	}
	st := f.members[c]
	if st == nil || st.held == nil {
		return true
	}
	if st.held.overflowed {
		st.held = &catchup{limit: st.held.limit}
		return false
	}
	for _, sf := range st.held.frames {
		if sf.seq == 0 || sf.seq > replayed {
			c.send(sf.frame)
		}
	}
	st.held, st.floor = nil, replayed
	return true
}

// leaveRoom stops c receiving room's messages.
func (h *hub) leaveRoom(c *client, room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := c.rooms[room]; !ok {
		return
	}
	delete(c.rooms, room)
	h.leaveLocked(h.rooms, room, c)
}

func (h *hub) joinLocked(set map[string]*fanout, subject func(string) (string, error), name string, c *client) error {
	f := set[name]
	if f == nil {
		s, err := subject(name)
		if err != nil {
			return err
		}
		sub, err := h.nc.ChanSubscribe(s, h.msgs)
		if err != nil {
			return err
		}
		f = &fanout{sub: sub, members: map[*client]*member{}}
		set[name] = f
	}
	f.members[c] = nil
	return nil
}

func (h *hub) leaveLocked(set map[string]*fanout, name string, c *client) {
	f := set[name]
	if f == nil {
		return
	}
	delete(f.members, c)
	if len(f.members) == 0 {
		h.retire(f.sub)
		_ = f.sub.Unsubscribe()
		delete(set, name)
	}
}

// all returns every registered client.
func (h *hub) all() []*client {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*client, 0, len(h.clients))
	for _, c := range h.clients {
		out = append(out, c)
	}
	return out
}

// firstOfEachUser returns one connection of every user with a connection
// here.
func (h *hub) firstOfEachUser() []*client {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*client, 0, len(h.users))
	for _, f := range h.users {
		for c := range f.members {
			out = append(out, c)
			break
		}
	}
	return out
}

// count returns the number of registered clients.
func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// close unsubscribes everything left.
func (h *hub) close() {
	h.mu.Lock()
	_ = h.bcast.Unsubscribe()
	_ = h.conns.Unsubscribe()
	for _, set := range []map[string]*fanout{h.users, h.rooms} {
		for name, f := range set {
			_ = f.sub.Unsubscribe()
			delete(set, name)
		}
	}
	clear(h.clients)
	h.mu.Unlock()
}
