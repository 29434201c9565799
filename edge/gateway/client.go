package gateway

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"natter/edge/auth"
	"natter/edge/protocol"
	"natter/natsconf"
)

// client is one WebSocket connection. Its frames are read on gws's read
// goroutine and its commands relayed in the order sent, many in flight (see
// relayer); everything written to it goes through its outbox.
type client struct {
	g       *Gateway
	ws      *gws.Conn
	raw     *batchConn
	id      string
	user    string
	header  nats.Header // identity headers of every command (read-only)
	release func()      // gives back the connection's slots (per user, per IP)
	out     outbox

	guard    *frameGuard // follows the frames the client sends (read goroutine)
	relayer  relayer
	limiter  *rate.Limiter // nil when rate limiting is off
	lastSeen atomic.Int64  // unix nanoseconds of the last frame read
	expires  atomic.Int64  // unix nanoseconds the identity ends; 0: never
	closing  atomic.Bool
	opened   time.Time                        // for the close's log line
	byeCode  atomic.Pointer[protocol.ByeCode] // the bye it got, if any

	limited int // read goroutine only: rate-limited commands in a row
	bad     int // relay goroutine only: bad frames in a row

	// Guarded by the hub's lock.
	rooms map[string]struct{}
}

func newClient(g *Gateway, ws *gws.Conn, raw *batchConn, id string, ident auth.Identity) *client {
	c := &client{
		g:     g,
		ws:    ws,
		raw:   raw,
		id:    id,
		user:  ident.User,
		rooms: map[string]struct{}{},
		header: nats.Header{
			natsconf.HeaderConn: {id},
			natsconf.HeaderUser: {ident.User},
			natsconf.HeaderEdge: {g.edgeID},
		},
	}
	if ident.Rooms != nil {
		c.header.Set(natsconf.HeaderRooms, strings.Join(ident.Rooms, ","))
	}
	if ident.Broadcast {
		c.header.Set(natsconf.HeaderBroadcast, "1")
	}
	if g.cfg.Rate > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(g.cfg.Rate), g.cfg.Burst)
	}
	c.out = outbox{
		limit:    g.cfg.WriteQueueBytes,
		write:    c.writeBatch,
		overflow: func() { c.bye(protocol.ByeSlow, "client did not read fast enough") },
		wg:       &g.wg,
		writers:  g.writers,
		later:    g.lazy.add,
	}
	c.relayer = relayer{c: c}
	c.opened = time.Now()
	c.lastSeen.Store(c.opened.UnixNano())
	if !ident.Expires.IsZero() {
		c.expires.Store(ident.Expires.UnixNano())
	}
	return c
}

// refresh answers a "refresh": the new token must be valid and name the
// same user; the connection then lives until the new token expires.
func (c *client) refresh(cmd protocol.Command) []byte {
	r, ok := c.g.cfg.Auth.(auth.Refresher)
	if !ok {
		// Development identity: nothing expires.
		return protocol.Encode(protocol.Reply{Type: protocol.FrameRefreshed, ID: cmd.ID})
	}
	ident, err := r.AuthenticateToken(cmd.Token)
	switch {
	case err != nil:
		return protocol.EncodeError(cmd.ID, protocol.Errorf(protocol.CodeForbidden, "token refused"))
	case ident.User != c.user:
		return protocol.EncodeError(cmd.ID, protocol.Errorf(protocol.CodeForbidden, "the token is for another user"))
	}
	var exp int64
	if !ident.Expires.IsZero() {
		exp = ident.Expires.UnixNano()
	}
	c.expires.Store(exp)
	return protocol.Encode(protocol.Reply{Type: protocol.FrameRefreshed, ID: cmd.ID})
}

// expiredAt reports whether c's identity has ended by now.
func (c *client) expiredAt(now time.Time) bool {
	exp := c.expires.Load()
	return exp != 0 && now.UnixNano() >= exp
}

// send queues a frame for the client and reports whether it was queued.
func (c *client) send(frame []byte) bool { return c.out.push(frame) }

// writeBatch writes frames with one syscall. Without compression it frames
// them itself (no allocation per frame); with it, gws compresses each.
func (c *client) writeBatch(frames [][]byte) error {
	c.g.cfg.Metrics.Batch(len(frames))
	if !c.g.cfg.Compression {
		return c.raw.writeTextFrames(frames)
	}
	c.raw.begin()
	for _, f := range frames {
		if err := c.ws.WriteMessage(gws.OpcodeText, f); err != nil {
			_ = c.raw.end()
			return err
		}
	}
	return c.raw.end()
}

// deliver handles a message on the connection's own subject: a control
// operation when it carries one, otherwise a frame to write. It reports
// whether the frame was queued (or the operation applied).
func (c *client) deliver(m *nats.Msg) bool {
	if op := m.Header.Get(natsconf.HeaderOp); op != "" {
		c.apply(op, m.Header.Get(natsconf.HeaderRoom))
		return true
	}
	return c.send(m.Data)
}

// apply carries out a handler's control operation.
func (c *client) apply(op, room string) {
	switch op {
	case natsconf.OpSubscribe:
		c.subscribe(room)
	case natsconf.OpUnsubscribe:
		c.g.hub.leaveRoom(c, room)
	case natsconf.OpKick:
		c.bye(protocol.ByeKicked, "closed by the server")
	}
}

// subscribe makes c receive room's messages and reports whether the edge
// had to subscribe to the room for it.
func (c *client) subscribe(room string) bool {
	subscribed, err := c.g.hub.joinRoom(c, room, false)
	if err != nil {
		c.g.cfg.Logger.Warn("room subscription failed", "conn", c.id, "room", room, "err", err)
	}
	return subscribed
}

// bye sends a "bye" frame and closes the connection, without blocking the
// caller. Only the first call does anything.
func (c *client) bye(code protocol.ByeCode, message string) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.setBye(code)
	var written <-chan struct{}
	if code == protocol.ByeSlow {
		c.out.close() // what is queued will not be read anyway
	} else {
		written = c.out.seal() // frames queued before the bye still go out
	}
	c.g.wg.Add(1)
	go func() {
		defer c.g.wg.Done()
		if code == protocol.ByeSlow {
			c.raw.expedite()
		} else {
			select {
			case <-written:
			case <-time.After(c.g.cfg.WriteTimeout):
				c.out.close()
			}
		}
		c.writeBye(code, message)
	}()
}

// byeNow is bye for the read goroutine when the connection ends right
// there: what is queued is dropped, and the bye and the close frame are
// written before it returns (within the write timeout).
func (c *client) byeNow(code protocol.ByeCode, message string) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.setBye(code)
	c.out.close()
	c.raw.expedite()
	c.writeBye(code, message)
}

// writeBye writes the bye frame and the close frame.
func (c *client) writeBye(code protocol.ByeCode, message string) {
	_ = c.ws.WriteMessage(gws.OpcodeText, protocol.EncodeBye(code, message))
	c.raw.expedite()
	_ = c.ws.WriteClose(closeCode(code), []byte(code))
}

// guardFault ends the connection for what its frame guard found. Read
// goroutine only.
func (c *client) guardFault(f guardFault) {
	switch f {
	case faultOverloaded:
		c.byeNow(protocol.ByeOverloaded, "the server is receiving too much at once; reconnect later")
	default:
		c.byeNow(protocol.ByeBadClient, "a message did not arrive whole within "+c.g.cfg.MessageTimeout.String())
	}
}

// closeCode is the WebSocket close code sent after a bye.
func closeCode(code protocol.ByeCode) uint16 {
	switch code {
	case protocol.ByeShutdown:
		return 1001 // going away
	case protocol.ByeIdle:
		return 1000
	case protocol.ByeOverloaded:
		return 1013 // try again later
	default:
		return 1008 // policy violation
	}
}

// onMessage handles one client frame on the read goroutine: it only checks
// what needs no decoding (kind, size, rate) and queues the frame for the
// relay goroutine, which decodes and answers every frame in order. So the
// read goroutine, which every idle connection keeps, stays shallow (small
// stack), and a ping's pong comes after the replies to what preceded it.
func (c *client) onMessage(msg *gws.Message) {
	defer msg.Close()
	if c.closing.Load() {
		return // lingering after a bye: read and drop
	}
	c.touch()
	switch data := msg.Bytes(); {
	case msg.Opcode != gws.OpcodeText:
		c.relayer.push(inbound{fault: protocol.Errorf(protocol.CodeBadFrame, "binary frames are not accepted; send JSON text"), read: c.g.readTime()})
	case len(data) > c.g.cfg.MaxFrame:
		c.relayer.push(inbound{fault: protocol.Errorf(protocol.CodeTooLarge, "frame larger than the limit"), read: c.g.readTime()})
	case c.limiter != nil && !c.limiter.Allow():
		c.limited++
		c.g.cfg.Metrics.RateLimited()
		if c.limited > c.g.cfg.MaxBadFrames {
			c.bye(protocol.ByeRateLimited, "too many commands")
			return
		}
		c.relayer.push(inbound{data: data, limited: true, read: c.g.readTime()})
	default:
		c.limited = 0
		c.relayer.push(inbound{data: data, read: c.g.readTime()})
	}
}

// badFrame answers a frame that could not be used and closes a client that
// sends too many in a row. Relay goroutine only.
func (c *client) badFrame(id string, err error) {
	c.bad++
	c.send(protocol.EncodeError(id, err))
	if c.bad >= c.g.cfg.MaxBadFrames {
		c.bye(protocol.ByeBadClient, "too many bad frames")
	}
}

// answer applies the outcome of one relayed command: the control operation
// its reply carries, then the reply frame (a join with "since" also replays
// the room).
func (c *client) answer(cmd protocol.Command, op, room string, frame []byte) {
	if len(frame) == 0 {
		c.send(protocol.EncodeError(cmd.ID, protocol.Errorf(protocol.CodeInternal, "empty reply from handler")))
		return
	}
	if op == natsconf.OpSubscribe && cmd.Since != nil {
		c.joinSince(cmd.ID, room, *cmd.Since, frame)
		return
	}
	if op == natsconf.OpSubscribe {
		// "joined" promises the room's messages from here on: when the
		// edge had to subscribe for it, the server must have the
		// subscription first.
		if c.subscribe(room) {
			c.g.hub.knowLast(room, joinedSeq(frame))
			if err := c.g.nc.FlushTimeout(c.g.cfg.RequestTimeout); err != nil {
				c.g.cfg.Logger.Warn("flush room subscription", "room", room, "err", err)
			}
		}
	} else if op != "" {
		c.apply(op, room)
	}
	c.send(frame)
}

// replayPage is how many stored messages one replay request asks for.
const replayPage = protocol.MaxHistoryLimit

// joinSince completes a join with "since": it subscribes with live messages
// held, writes "joined", replays every stored message after since with
// "history" requests paging forward, and then releases the held live
// messages newer than the last replayed one. The client sees each message
// once, in seq order, with no gap between replay and live. If the replay
// fails the client gets an error for the join and a bye "shutdown": it
// reconnects and joins again with since, rather than live with a gap.
func (c *client) joinSince(id, room string, since uint64, joined []byte) {
	if subscribed, err := c.g.hub.joinRoom(c, room, true); err != nil {
		c.g.cfg.Logger.Warn("room subscription failed", "conn", c.id, "room", room, "err", err)
	} else if subscribed {
		c.g.hub.knowLast(room, joinedSeq(joined))
	}
	// Once the server has the subscription, every message stored after
	// this point also arrives live.
	_ = c.g.nc.Flush()
	c.send(joined)
	// cursor pages the store; replayed is the newest seq sent, which
	// decides the seam (a since beyond the room's latest replays nothing
	// and must not hide newer live messages).
	cursor, replayed := since, uint64(0)
	for {
		msgs, more, err := c.replay(room, cursor)
		if err != nil {
			c.g.hub.leaveRoom(c, room)
			c.send(protocol.EncodeError(id, err))
			c.bye(protocol.ByeShutdown, "could not replay room "+room+" after seq "+strconv.FormatUint(cursor, 10)+"; reconnect and join again with since")
			return
		}
		for _, m := range msgs {
			if !c.send(m.frame) {
				return // the connection is closing (too slow, or gone)
			}
			cursor = max(cursor, m.seq)
			replayed = max(replayed, m.seq)
		}
		// Pages are bounded by bytes as well as by count: the page says
		// whether more follow. A handler from before "more" only tells
		// by a full page, so a full page is read on from either way.
		if !more && len(msgs) < replayPage && c.g.hub.endCatchUp(c, room, replayed) {
			return
		}
	}
}

// replay asks the rooms handler for the stored messages of room after seq:
// one page, and whether the room holds more after it.
func (c *client) replay(room string, after uint64) ([]seqFrame, bool, error) {
	return c.g.historyPage(c.header, room, &after, replayPage)
}

// joinedSeq reads the seq of a "joined" frame: the room's latest stored
// message when the join was handled.
func joinedSeq(joined []byte) uint64 {
	var j struct {
		Seq uint64 `json:"seq"`
	}
	_ = json.Unmarshal(joined, &j)
	return j.Seq
}

func requestError(cmdType string, err error) *protocol.Error {
	switch {
	case errors.Is(err, nats.ErrNoResponders) && !protocol.KnownCommand(cmdType):
		return protocol.Errorf(protocol.CodeUnknownType, "unknown command type")
	case errors.Is(err, nats.ErrNoResponders):
		return protocol.Errorf(protocol.CodeUnavailable, "no handler for "+cmdType+" is running")
	case errors.Is(err, nats.ErrTimeout):
		return protocol.Errorf(protocol.CodeUnavailable, "no handler answered in time")
	default:
		return protocol.Errorf(protocol.CodeUnavailable, "messaging unavailable")
	}
}

// touch records activity and moves the read deadline (not once closing: the
// linger deadline stands).
func (c *client) touch() {
	if c.closing.Load() {
		return
	}
	now := time.Now()
	c.lastSeen.Store(now.UnixNano())
	c.setReadDeadline(now)
}

// setReadDeadline sets the read deadline from the last activity (at
// lastSeen): the idle timeout after it, or sooner the time by which the
// message arriving must be complete (pings do not extend that).
func (c *client) setReadDeadline(lastSeen time.Time) {
	deadline := lastSeen.Add(c.g.readDeadline())
	if due := c.guard.deadline(); !due.IsZero() && due.Before(deadline) {
		deadline = due
	}
	_ = c.ws.SetReadDeadline(deadline)
}

// messageStarted is told by the frame guard that a message is arriving in
// pieces: the read deadline moves up to its due time. Read goroutine
// only.
func (c *client) messageStarted() {
	if c.closing.Load() {
		return
	}
	c.setReadDeadline(time.Unix(0, c.lastSeen.Load()))
}

// idleSince reports whether the client has been silent since before t.
func (c *client) idleSince(t time.Time) bool { return c.lastSeen.Load() < t.UnixNano() }
