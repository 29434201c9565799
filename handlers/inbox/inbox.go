// Package inbox is the inbox handler: direct messages, delivered live or
// kept until their target comes online.
//
// Every "dm" is stored once, on the target's subject in the inbox stream
// (its seq is the stream sequence; a retry with the same client id is stored
// once), and then offered live with a request on the target user's subject:
// every edge holding a connection of that user queues it to all of them and
// answers. That is the whole hot path: one JetStream write and one request.
// Nothing is deleted when a dm is delivered; the stream keeps the latest
// dms of every user under its retention limits, and nothing is delivered
// from it.
//
// A dm that no connection took (the target is offline) is also written, with
// its frame, as a pending entry on the target's pending subject in the
// pending stream, naming the dm's seq. That stream refuses rather than
// drops (natsconf.EnsureStores): when the target's pending dms, or the
// stream, are full, the entry is not written and the dm is refused with
// "inbox_full" (its copy in the inbox stream is deleted), so it is never
// delivered later, and no sender can push out a pending dm of another's.
// When a user's first connection on an edge opens, the edge says so in its
// connect event and the handler delivers the pending dms to that
// connection, oldest first, each with a request the edge answers once the
// frame is queued, and only then removes the entry: a pending dm is never
// removed before a connection took it (or its age). Delivery is at least
// once: in a race between a dm and a connect, or a crash between delivering
// and removing, a dm can reach a connection twice, with the same seq.
//
// Every dm is charged to its sender's store budget (runtime.StoreBudget,
// shared with the room messages of the rooms handler on the same
// connection): one over it is refused with "rate_limited".
package inbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/edge/protocol"
	"natter/handlers/runtime"
	"natter/natsconf"
)

// Name is the handler's name and queue group.
const Name = "inbox"

// liveTimeout bounds the wait for an edge to take a live delivery.
const liveTimeout = time.Second

// pendingPage is how many pending dms one read of a user's pending list
// returns.
const pendingPage = 100

type handler struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	subj    natsconf.Subjects
	stream  jetstream.Stream // the inbox stream: every dm
	held    jetstream.Stream // the pending stream: dms no connection took
	reader  *natsconf.Reader // of the pending stream
	budget  *runtime.StoreBudget
	store   bool // keep dms for offline users (else: error offline)
	log     *slog.Logger
	replies *replies
	hooks   *runtime.Hooks
}

// Start runs the inbox handler on nc. The stores must exist
// (natsconf.EnsureStores).
func Start(ctx context.Context, nc *nats.Conn, cfg runtime.Config) (*runtime.Service, error) {
	cfg.Name = Name
	cfg.Description = "natter inbox: direct messages, live or stored"
	svc, err := runtime.New(nc, cfg)
	if err != nil {
		return nil, err
	}
	h, err := newHandler(ctx, nc, svc.Subjects())
	if err == nil {
		h.store = !cfg.Stores.NoOfflineDMs
		h.log = svc.Config().Logger
		h.hooks = svc.Hooks()
		h.budget = svc.Config().Budget
		err = svc.HandleBatch(protocol.TypeDM, h.dms)
	}
	if err == nil {
		err = svc.On("connect", h.subj.EventConnect(), h.connect)
	}
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return svc, nil
}

func newHandler(ctx context.Context, nc *nats.Conn, subj natsconf.Subjects) (*handler, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	name := subj.StoreNames().Inbox
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("inbox: stream %s: %w", name, err)
	}
	pendingName := subj.PendingStore()
	pending, err := js.Stream(ctx, pendingName)
	if err != nil {
		return nil, fmt.Errorf("inbox: stream %s: %w", pendingName, err)
	}
	replies, err := newReplies(nc, subj)
	if err != nil {
		return nil, err
	}
	return &handler{
		nc: nc, js: js, subj: subj, stream: stream, held: pending,
		reader: natsconf.NewReader(nc, pendingName), replies: replies,
	}, nil
}

// dms stores a connection's dms that arrived together with ordered
// asynchronous publishes, then offers them live in the same order (one
// flush, replies collected together), so a batch costs about one round trip
// of each kind instead of two per dm.
func (h *handler) dms(ctx context.Context, reqs []*runtime.Request) []runtime.Outcome {
	out := make([]runtime.Outcome, len(reqs))
	type stored struct {
		i     int
		frame []byte
		fut   jetstream.PubAckFuture
		ack   *jetstream.PubAck
	}
	var batch []*stored
	// A deployed hook sees each well-formed dm first (all at once) and
	// may refuse it or replace its body (runtime.Hooks).
	asked := make([]*runtime.Request, len(reqs))
	for i, req := range reqs {
		if runtime.User(req.Command.To) == nil && runtime.Body(req.Command) == nil {
			asked[i] = req
		}
	}
	refused := h.hooks.Apply(ctx, asked)
	for i, req := range reqs {
		if refused[i] != nil {
			out[i].Err = refused[i]
			continue
		}
		frame, err := h.prepare(ctx, req)
		if err != nil {
			out[i].Err = err
			continue
		}
		subject, _ := h.subj.InboxStore(req.Command.To)
		var opts []jetstream.PublishOpt
		if id := runtime.MsgID(req); id != "" {
			opts = append(opts, jetstream.WithMsgID(id))
		}
		fut, err := h.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: frame}, opts...)
		if err != nil {
			out[i].Err = runtime.StoreError(err)
			continue
		}
		batch = append(batch, &stored{i: i, frame: frame, fut: fut})
	}
	var offers []offer
	for _, st := range batch {
		ack, err := runtime.AwaitAck(ctx, st.fut)
		if err != nil {
			out[st.i].Err = err
			continue
		}
		st.ack = ack
		if !ack.Duplicate {
			offers = append(offers, offer{user: reqs[st.i].Command.To, frame: protocol.WithSeq(st.frame, ack.Sequence)})
		}
	}
	h.replies.offer(ctx, offers)
	next := 0
	for _, st := range batch {
		if st.ack == nil {
			continue
		}
		req := reqs[st.i]
		var status string
		var err error
		if st.ack.Duplicate {
			status, err = h.retried(ctx, req.Command.To, st.ack.Sequence)
		} else {
			o := offers[next]
			next++
			status = protocol.StatusDelivered
			if !o.taken {
				status, err = h.keep(ctx, req.Command.To, st.frame, st.ack.Sequence)
			}
		}
		if err != nil {
			out[st.i].Err = err
			continue
		}
		out[st.i].Frame = protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID, Seq: protocol.Uint64(st.ack.Sequence), Status: status}
	}
	return out
}

// prepare checks a dm and returns the frame to store.
func (h *handler) prepare(ctx context.Context, req *runtime.Request) ([]byte, error) {
	to := req.Command.To
	if err := runtime.User(to); err != nil {
		return nil, err
	}
	if err := runtime.Body(req.Command); err != nil {
		return nil, err
	}
	if !h.store && !h.online(ctx, to) {
		return nil, protocol.Errorf(protocol.CodeOffline, to+" is offline")
	}
	frame := protocol.Encode(protocol.Message{Type: protocol.FrameDM, From: req.User, To: to, TS: runtime.Now(), Body: req.Command.Body})
	if err := h.budget.Take(req.User, len(frame)); err != nil {
		return nil, err
	}
	return frame, nil
}

// retried says again what became of a dm stored before (a retry with the
// same id), without delivering it twice: stored while it is pending,
// refused ("inbox_full") when its copy in the inbox stream was deleted (see
// keep), delivered otherwise.
func (h *handler) retried(ctx context.Context, to string, seq uint64) (string, error) {
	pending, err := h.isPending(ctx, to, seq)
	if err != nil {
		return "", runtime.StoreError(err)
	}
	if pending {
		return protocol.StatusStored, nil
	}
	if _, err := h.stream.GetMsg(ctx, seq); errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", inboxFull(to, nil)
	} else if err != nil {
		return "", runtime.StoreError(err)
	}
	return protocol.StatusDelivered, nil
}

// keep makes a dm that no connection took pending, then offers it once
// more, since a connection that opened meanwhile may have looked for
// pending dms before the entry was there. When the pending stream refuses
// the entry (the target's pending dms, or the stream, are full) and that
// last offer is not taken either, the dm is refused with "inbox_full" and
// its copy in the inbox stream deleted: it is never delivered, and a retry
// with the same id is refused again (retried).
func (h *handler) keep(ctx context.Context, to string, frame []byte, seq uint64) (string, error) {
	subject, _ := h.subj.InboxPending(to)
	pa, err := h.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: frame, Header: nats.Header{
		natsconf.HeaderSeq: {strconv.FormatUint(seq, 10)},
	}}, jetstream.WithMsgID("pending:"+strconv.FormatUint(seq, 10)), jetstream.WithExpectStream(h.subj.PendingStore()))
	full := natsconf.IsStoreFull(err)
	if err != nil && !full {
		return "", runtime.StoreError(err)
	}
	again := []offer{{user: to, frame: protocol.WithSeq(frame, seq)}}
	h.replies.offer(ctx, again)
	switch {
	case again[0].taken && !full:
		h.remove(ctx, pa.Sequence)
		return protocol.StatusDelivered, nil
	case again[0].taken:
		return protocol.StatusDelivered, nil
	case full:
		if err := h.stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			h.log.Warn("dm refused (inbox full) still in the inbox stream: a retry may be told it was delivered", "seq", seq, "err", err)
		}
		return "", inboxFull(to, err)
	}
	return protocol.StatusStored, nil
}

// inboxFull is the error of a dm the pending stream refused: err, the
// refusal when known, tells the user's limit from the whole stream's.
func inboxFull(to string, err error) error {
	why := "their inbox is full"
	switch {
	case natsconf.IsSubjectFull(err):
		why = "already has the most undelivered dms the server keeps per user"
	case err != nil:
		why = "the server's store of undelivered dms is full"
	}
	return protocol.Errorf(protocol.CodeInboxFull, to+" is offline and "+why+": the dm was not stored")
}

// online asks the edges whether user has a live connection, without
// delivering anything.
func (h *handler) online(ctx context.Context, user string) bool {
	subject, _ := h.subj.User(user)
	ctx, cancel := context.WithTimeout(ctx, liveTimeout)
	defer cancel()
	_, err := h.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Header: nats.Header{natsconf.HeaderProbe: {"1"}}})
	return err == nil
}

// remove deletes a pending entry; one already gone is fine.
func (h *handler) remove(ctx context.Context, seq uint64) {
	err := h.held.DeleteMsg(ctx, seq)
	if err != nil && !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && !errors.Is(err, jetstream.ErrMsgNotFound) {
		h.log.Warn("delivered dm still pending: it may be delivered again", "entry", seq, "err", err)
	}
}

// pendingDM is one entry of a user's pending list.
type pendingDM struct {
	entry uint64 // the entry's own sequence
	seq   uint64 // the dm's seq
	frame []byte
}

// pending reads a page of user's pending dms after entry sequence after,
// and reports whether there may be more.
func (h *handler) pending(ctx context.Context, user string, after uint64) ([]pendingDM, bool, error) {
	subject, _ := h.subj.InboxPending(user)
	if any, err := h.reader.Any(ctx, subject, after); err != nil || !any {
		return nil, false, err
	}
	msgs, err := h.reader.After(ctx, subject, after, pendingPage)
	if err != nil {
		return nil, false, err
	}
	out := make([]pendingDM, 0, len(msgs))
	for _, m := range msgs {
		seq, err := strconv.ParseUint(m.Header.Get(natsconf.HeaderSeq), 10, 64)
		if err != nil {
			h.log.Warn("pending dm entry without a seq", "entry", m.Seq)
			continue
		}
		out = append(out, pendingDM{entry: m.Seq, seq: seq, frame: m.Data})
	}
	return out, len(msgs) == pendingPage, nil
}

// isPending reports whether the dm seq to user is still pending.
func (h *handler) isPending(ctx context.Context, user string, seq uint64) (bool, error) {
	after := uint64(0)
	for {
		page, more, err := h.pending(ctx, user, after)
		if err != nil {
			return false, err
		}
		for _, p := range page {
			if p.seq == seq {
				return true, nil
			}
			after = p.entry
		}
		if !more {
			return false, nil
		}
	}
}

// connect delivers the pending dms of a user whose first connection on an
// edge opened, oldest first, to that connection.
func (h *handler) connect(ctx context.Context, ev *runtime.Event) error {
	if !natsconf.ValidName(ev.User) || !natsconf.ValidName(ev.Conn) {
		return errors.New("inbox: connect event without a valid user or connection")
	}
	if !ev.First {
		return nil // the user was online on that edge: nothing is pending
	}
	conn, err := h.subj.Conn(ev.Edge, ev.Conn)
	if err != nil {
		return err
	}
	after := uint64(0)
	for {
		page, more, err := h.pending(ctx, ev.User, after)
		if err != nil {
			return err
		}
		slices.SortFunc(page, func(a, b pendingDM) int { return cmpUint(a.seq, b.seq) })
		for _, p := range page {
			o := []offer{{subject: conn, frame: protocol.WithSeq(p.frame, p.seq)}}
			if h.replies.offer(ctx, o); !o[0].taken {
				return nil // the connection is gone: the rest stays pending
			}
			h.remove(ctx, p.entry)
			after = max(after, p.entry)
		}
		if !more {
			return nil
		}
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
