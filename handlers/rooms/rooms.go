// Package rooms is the rooms handler: join, leave, send and members, and the
// presence events of rooms. Membership is per connection and lives in the
// members KV bucket (key <room>.<user>, value the user's connections in the
// room), so any number of copies give the same answers. Room messages are
// stored in the rooms stream, which republishes each one to the room's
// subject: one NATS message per edge with members, whatever their number.
package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/edge/protocol"
	"natter/handlers/connset"
	"natter/handlers/runtime"
	"natter/natsconf"
)

// Name is the handler's name and queue group.
const Name = "rooms"

type handler struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	subj    natsconf.Subjects
	stream  jetstream.Stream
	members *connset.Store
	reader  *natsconf.Reader
	hooks   *runtime.Hooks
	budget  *runtime.StoreBudget // what each user may store
}

// Start runs the rooms handler on nc. The stores must exist
// (natsconf.EnsureStores).
func Start(ctx context.Context, nc *nats.Conn, cfg runtime.Config) (*runtime.Service, error) {
	cfg.Name = Name
	cfg.Description = "natter rooms: join, leave, send, members, presence"
	svc, err := runtime.New(nc, cfg)
	if err != nil {
		return nil, err
	}
	h, err := newHandler(ctx, nc, svc.Subjects())
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	h.hooks = svc.Hooks()
	h.budget = svc.Config().Budget
	for t, fn := range map[string]runtime.CommandFunc{
		protocol.TypeJoin:    h.join,
		protocol.TypeLeave:   h.leave,
		protocol.TypeMembers: h.membersOf,
		protocol.TypeHistory: h.history,
	} {
		if err := svc.Handle(t, fn); err != nil {
			_ = svc.Stop()
			return nil, err
		}
	}
	if err := svc.HandleBatch(protocol.TypeSend, h.sends); err != nil {
		_ = svc.Stop()
		return nil, err
	}
	if err := svc.On("disconnect", h.subj.EventDisconnect(), h.disconnect); err != nil {
		_ = svc.Stop()
		return nil, err
	}
	sweeper := &sweeper{h: h, suspects: map[string]bool{}}
	svc.Every(svc.Config().SweepInterval, sweeper.sweep)
	return svc, nil
}

// sweeper forgets the memberships of connections whose edge no longer
// answers on its liveness subject. An edge must fail two sweeps in a row,
// so one that is only reconnecting to NATS keeps its members. It also
// purges the members bucket's deletion markers, which a left room leaves
// behind for good otherwise.
type sweeper struct {
	h        *handler
	suspects map[string]bool // edges that did not answer the last sweep
	last     time.Time       // when the previous sweep started
}

func (s *sweeper) sweep(ctx context.Context) {
	started := time.Now()
	if !s.last.IsZero() {
		// Markers at least a sweep interval old: a watcher of the
		// bucket has had the time to see the deletion. Like the rest
		// of the sweep, a failure waits for the next one.
		_ = s.h.purgeMemberMarkers(ctx, s.last)
	}
	s.last = started
	all, err := s.h.members.All(ctx)
	if err != nil {
		return
	}
	alive := map[string]bool{}
	suspects := map[string]bool{}
	for key, set := range all {
		roomTok, userTok, ok := strings.Cut(key, ".")
		if !ok {
			continue
		}
		room, user := natsconf.NameFromKeyToken(roomTok), natsconf.NameFromKeyToken(userTok)
		for conn, edge := range set {
			isAlive, seen := alive[edge]
			if !seen {
				isAlive = s.h.edgeAlive(ctx, edge)
				alive[edge] = isAlive
			}
			if isAlive {
				continue
			}
			suspects[edge] = true
			if s.suspects[edge] && natsconf.ValidName(room) && natsconf.ValidName(user) {
				_ = s.h.removeMember(ctx, room, user, conn)
			}
		}
	}
	s.suspects = suspects
}

// maxMarkerPurges bounds the deletion markers one sweep purges (one
// request each); the next sweep goes on.
const maxMarkerPurges = 10_000

// purgeMemberMarkers removes from the members bucket the deletion markers
// of keys deleted before cutoff (a key without connections is deleted,
// and its marker would stay forever). Each purge is of the key's subject up
// to the marker's own revision, so a key written again meanwhile keeps its
// new value (KeyValue.PurgeDeletes purges a key's whole subject).
func (h *handler) purgeMemberMarkers(ctx context.Context, cutoff time.Time) error {
	bucket := h.subj.StoreNames().Members
	kv, err := h.js.KeyValue(ctx, bucket)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.MetaOnly())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	var markers []jetstream.KeyValueEntry
collect:
	for len(markers) < maxMarkerPurges {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				break collect // nil: every current entry was sent
			}
			if op := e.Operation(); (op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge) && e.Created().Before(cutoff) {
				markers = append(markers, e)
			}
		}
	}
	_ = w.Stop()
	if len(markers) == 0 {
		return nil
	}
	stream, err := h.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return err
	}
	for _, e := range markers {
		err := stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bucket+"."+e.Key()), jetstream.WithPurgeSequence(e.Revision()+1))
		if err != nil {
			return fmt.Errorf("rooms: purge deletion marker of %s: %w", e.Key(), err)
		}
	}
	return nil
}

// edgeAlive asks an edge whether it is still there; an edge that does not
// answer in time is taken as alive (only "no responders" means gone).
func (h *handler) edgeAlive(ctx context.Context, edge string) bool {
	subject, err := h.subj.Edge(edge)
	if err != nil {
		return true // not an edge id we can ask about: leave it alone
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = h.nc.RequestWithContext(ctx, subject, nil)
	return !errors.Is(err, nats.ErrNoResponders)
}

func newHandler(ctx context.Context, nc *nats.Conn, subj natsconf.Subjects) (*handler, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	names := subj.StoreNames()
	stream, err := js.Stream(ctx, names.Rooms)
	if err != nil {
		return nil, fmt.Errorf("rooms: stream %s: %w", names.Rooms, err)
	}
	kv, err := js.KeyValue(ctx, names.Members)
	if err != nil {
		return nil, fmt.Errorf("rooms: bucket %s: %w", names.Members, err)
	}
	return &handler{nc: nc, js: js, subj: subj, stream: stream, members: connset.New(kv), reader: natsconf.NewReader(nc, names.Rooms)}, nil
}

func memberKey(room, user string) string {
	return natsconf.KeyToken(room) + "." + natsconf.KeyToken(user)
}

func (h *handler) join(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
	room := req.Command.Room
	if err := runtime.Room(room); err != nil {
		return runtime.Response{}, err
	}
	if err := req.MayJoin(room); err != nil {
		return runtime.Response{}, err
	}
	first, err := h.members.Add(ctx, memberKey(room, req.User), req.Conn, req.Edge)
	if err != nil {
		return runtime.Response{}, runtime.StoreError(err)
	}
	seq, err := h.lastSeq(ctx, room)
	if err != nil {
		// The edge will not subscribe: do not keep a membership this
		// join created (the sweep or a disconnect cleans up the rest).
		if first {
			_, _ = h.members.Remove(ctx, memberKey(room, req.User), req.Conn)
		}
		return runtime.Response{}, err
	}
	if first {
		h.presence(room, req.User, protocol.PresenceJoin)
	}
	return runtime.Response{
		Frame: protocol.Reply{Type: protocol.FrameJoined, ID: req.Command.ID, Room: room, Seq: protocol.Uint64(seq)},
		Op:    &runtime.Op{Name: natsconf.OpSubscribe, Room: room},
	}, nil
}

func (h *handler) leave(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
	room := req.Command.Room
	if err := runtime.Room(room); err != nil {
		return runtime.Response{}, err
	}
	if err := h.removeMember(ctx, room, req.User, req.Conn); err != nil {
		return runtime.Response{}, runtime.StoreError(err)
	}
	return runtime.Response{
		Frame: protocol.Reply{Type: protocol.FrameLeft, ID: req.Command.ID, Room: room},
		Op:    &runtime.Op{Name: natsconf.OpUnsubscribe, Room: room},
	}, nil
}

func (h *handler) removeMember(ctx context.Context, room, user, conn string) error {
	last, err := h.members.Remove(ctx, memberKey(room, user), conn)
	if err != nil {
		return err
	}
	if last {
		h.presence(room, user, protocol.PresenceLeave)
	}
	return nil
}

// sends stores a connection's room messages that arrived together with
// ordered asynchronous publishes: they are stored, and so delivered, in
// the order sent, for one round trip instead of one each. Each message is
// charged to its sender's store budget (runtime.StoreBudget, shared with
// the dms of the inbox handler on the same connection) before it is
// stored: one over it is refused with "rate_limited".
func (h *handler) sends(ctx context.Context, reqs []*runtime.Request) []runtime.Outcome {
	out := make([]runtime.Outcome, len(reqs))
	sets := map[string]connset.Set{} // membership, read once per room
	futs := make([]jetstream.PubAckFuture, len(reqs))
	budget := h.budget
	checked := make([]*runtime.Request, len(reqs)) // nil: refused
	for i, req := range reqs {
		if out[i].Err = h.check(ctx, req, sets); out[i].Err == nil {
			checked[i] = req
		}
	}
	// A deployed hook sees each valid send (all at once) and may refuse
	// it or replace its body.
	for i, err := range h.hooks.Apply(ctx, checked) {
		if err != nil {
			out[i].Err, checked[i] = err, nil
		}
	}
	for i, req := range checked {
		if req == nil {
			continue
		}
		data := protocol.Encode(protocol.Message{Type: protocol.FrameMsg, Room: req.Command.Room, From: req.User, TS: runtime.Now(), Body: req.Command.Body})
		if err := budget.Take(req.User, len(data)); err != nil {
			out[i].Err = err
			continue
		}
		subject, _ := h.subj.RoomStore(req.Command.Room)
		var opts []jetstream.PublishOpt
		if id := runtime.MsgID(req); id != "" {
			opts = append(opts, jetstream.WithMsgID(id))
		}
		msg := &nats.Msg{Subject: subject, Data: data}
		if req.Command.NoEcho() {
			// "echo":false: the republished copy keeps these headers,
			// and the edges skip the sending connection.
			msg.Header = nats.Header{natsconf.HeaderConn: {req.Conn}, natsconf.HeaderNoEcho: {"1"}}
		}
		var err error
		if futs[i], err = h.js.PublishMsgAsync(msg, opts...); err != nil {
			out[i].Err = runtime.StoreError(err)
		}
	}
	for i, fut := range futs {
		if fut == nil {
			continue
		}
		ack, err := runtime.AwaitAck(ctx, fut)
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i].Frame = protocol.Reply{Type: protocol.FrameAck, ID: reqs[i].Command.ID, Seq: protocol.Uint64(ack.Sequence)}
	}
	return out
}

// check checks a send: the sending connection must be a member (sets
// caches memberships read for this batch).
func (h *handler) check(ctx context.Context, req *runtime.Request, sets map[string]connset.Set) error {
	room := req.Command.Room
	if err := runtime.Room(room); err != nil {
		return err
	}
	if err := runtime.Body(req.Command); err != nil {
		return err
	}
	key := memberKey(room, req.User)
	set, ok := sets[key]
	if !ok {
		var err error
		if set, err = h.members.Get(ctx, key); err != nil {
			return runtime.StoreError(err)
		}
		sets[key] = set
	}
	if _, ok := set[req.Conn]; !ok {
		return protocol.Errorf(protocol.CodeNotMember, "join the room before sending to it")
	}
	return nil
}

func (h *handler) membersOf(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
	room := req.Command.Room
	if err := runtime.Room(room); err != nil {
		return runtime.Response{}, err
	}
	if err := req.MayJoin(room); err != nil {
		return runtime.Response{}, err
	}
	keys, err := h.members.Keys(ctx, natsconf.KeyToken(room)+".*")
	if err != nil {
		return runtime.Response{}, runtime.StoreError(err)
	}
	users := make([]string, 0, len(keys))
	prefix := len(natsconf.KeyToken(room)) + 1
	for _, k := range keys {
		users = append(users, natsconf.NameFromKeyToken(k[prefix:]))
	}
	slices.Sort(users)
	users = slices.Compact(users)
	return runtime.Response{Frame: protocol.Members{Type: protocol.FrameMembers, ID: req.Command.ID, Room: room, Users: users}}, nil
}

// historyPageBytes bounds the stored messages of one "history" page, so
// that a reply fits a NATS message (1 MiB by default) and a client's write
// queue whatever the size of the messages; a page holds at least one.
const historyPageBytes = 256 << 10

// history answers the latest stored messages of a room before "before" (or
// the latest overall), or, with "after", the oldest ones after it; oldest
// first either way. A page holds at most limit messages and
// historyPageBytes of them (at least one), and says "more" when the room
// holds messages beyond it in the direction read. The edge pages with
// "after" to replay a join's "since".
func (h *handler) history(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
	cmd := req.Command
	if err := runtime.Room(cmd.Room); err != nil {
		return runtime.Response{}, err
	}
	if err := req.MayJoin(cmd.Room); err != nil {
		return runtime.Response{}, err
	}
	limit := cmd.Limit
	switch {
	case limit < 0:
		return runtime.Response{}, protocol.Errorf(protocol.CodeBadFrame, "limit must be positive")
	case limit == 0:
		limit = protocol.DefaultHistoryLimit
	case limit > protocol.MaxHistoryLimit:
		limit = protocol.MaxHistoryLimit
	}
	if cmd.After != nil && cmd.Before != nil {
		return runtime.Response{}, protocol.Errorf(protocol.CodeBadFrame, "give before or after, not both")
	}
	subject, _ := h.subj.RoomStore(cmd.Room)
	var (
		page natsconf.Page
		err  error
	)
	if cmd.After != nil {
		page, err = h.reader.AfterPage(ctx, subject, *cmd.After, limit, historyPageBytes)
	} else {
		var before uint64
		if cmd.Before != nil {
			before = *cmd.Before
		}
		page, err = h.reader.BeforePage(ctx, subject, before, limit, historyPageBytes)
	}
	if err != nil {
		return runtime.Response{}, runtime.StoreError(err)
	}
	frames := make([]json.RawMessage, len(page.Msgs))
	for i, m := range page.Msgs {
		frames[i] = protocol.WithSeq(m.Data, m.Seq)
	}
	return runtime.Response{Frame: protocol.History{Type: protocol.FrameHistory, ID: cmd.ID, Room: cmd.Room, Messages: frames, More: page.More}}, nil
}

// disconnect removes a closed connection from the rooms it was in; the edge
// lists them in the event's body.
func (h *handler) disconnect(ctx context.Context, ev *runtime.Event) error {
	event, err := natsconf.DecodeDisconnect(ev.Data)
	if err != nil {
		return err
	}
	var errs []error
	for _, room := range event.Rooms {
		if natsconf.ValidName(room) {
			errs = append(errs, h.removeMember(ctx, room, ev.User, ev.Conn))
		}
	}
	return errors.Join(errs...)
}

func (h *handler) lastSeq(ctx context.Context, room string) (uint64, error) {
	subject, _ := h.subj.RoomStore(room)
	return runtime.LastSeq(ctx, h.stream, subject)
}

func (h *handler) presence(room, user, event string) {
	subject, _ := h.subj.Room(room)
	_ = h.nc.Publish(subject, protocol.Encode(protocol.Presence{Type: protocol.FramePresence, Room: room, User: user, Event: event}))
}
