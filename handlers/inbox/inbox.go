// Package inbox is the inbox handler: direct messages, delivered live or
// stored until their target comes online.
//
// A "dm" is first stored on the target's subject in the inbox stream (its
// seq is the stream sequence; a retry with the same client id is stored
// once), then offered live with a request on the target user's subject:
// every edge holding a connection of that user writes it to all of them and
// answers. If one answered, the stored copy is deleted and the ack says
// "delivered"; if none did, it stays, the ack says "stored", and it is
// delivered when a connection of the user next opens. The inbox stream thus
// holds exactly the messages not yet delivered.
//
// Exactly one party delivers each message: for its first ownerWindow a
// stored message belongs to the dm command that stored it (which offers it
// live and deletes it if taken); after that, to whoever deletes it first on
// a connect (deleting before offering makes that exclusive across copies of
// the handler).
package inbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// ownerWindow is how long a just-stored dm belongs to the command that
// stored it: its live offer and delete take at most liveTimeout plus a
// store round trip.
const ownerWindow = 2 * liveTimeout

type handler struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	subj   natsconf.Subjects
	stream jetstream.Stream
	reader *natsconf.Reader
	store  bool // keep dms for offline users (else: error offline)
	log    *slog.Logger
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
		err = svc.Handle(protocol.TypeDM, h.dm)
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
	return &handler{nc: nc, js: js, subj: subj, stream: stream, reader: natsconf.NewReader(nc, name)}, nil
}

func (h *handler) dm(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
	to := req.Command.To
	if err := runtime.User(to); err != nil {
		return runtime.Response{}, err
	}
	if err := runtime.Body(req.Command); err != nil {
		return runtime.Response{}, err
	}
	if !h.store && !h.online(ctx, to) {
		return runtime.Response{}, protocol.Errorf(protocol.CodeOffline, to+" is offline")
	}
	frame := protocol.Encode(protocol.Message{Type: protocol.FrameDM, From: req.User, To: to, TS: runtime.Now(), Body: req.Command.Body})
	store, _ := h.subj.InboxStore(to)
	var opts []jetstream.PublishOpt
	if id := runtime.MsgID(req); id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	ack, err := h.js.Publish(ctx, store, frame, opts...)
	if err != nil {
		return runtime.Response{}, runtime.StoreError(err)
	}
	status := protocol.StatusStored
	switch {
	case ack.Duplicate:
		// A retry: say again what became of the first one.
		if _, err := h.stream.GetMsg(ctx, ack.Sequence); errors.Is(err, jetstream.ErrMsgNotFound) {
			status = protocol.StatusDelivered
		}
	case h.offer(ctx, to, protocol.WithSeq(frame, ack.Sequence)):
		status = protocol.StatusDelivered
		if _, err := h.take(ctx, ack.Sequence); err != nil {
			// Delivered, but still stored: it will be delivered again on
			// the next connect. Better twice than never; the ack is true.
			h.log.Warn("delivered dm not removed from the inbox", "seq", ack.Sequence, "err", err)
		}
	}
	return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID, Seq: protocol.Uint64(ack.Sequence), Status: status}}, nil
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

// offer delivers frame live to user's connections and reports whether an
// edge took it.
func (h *handler) offer(ctx context.Context, user string, frame []byte) bool {
	subject, _ := h.subj.User(user)
	ctx, cancel := context.WithTimeout(ctx, liveTimeout)
	defer cancel()
	_, err := h.nc.RequestWithContext(ctx, subject, frame)
	return err == nil
}

// take deletes a stored message and reports whether this call deleted it
// (false: someone else took it first).
func (h *handler) take(ctx context.Context, seq uint64) (bool, error) {
	err := h.stream.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		return false, nil // already deleted
	}
	return err == nil, err
}

// connect delivers the stored messages of a user whose connection opened,
// oldest first. A message still owned by the dm that stored it is waited
// for: that dm either delivers it or leaves it here.
func (h *handler) connect(ctx context.Context, ev *runtime.Event) error {
	if !natsconf.ValidName(ev.User) {
		return errors.New("inbox: connect event without a valid user")
	}
	subject, _ := h.subj.InboxStore(ev.User)
	next := uint64(0)
	for {
		msgs, err := h.reader.After(ctx, subject, next, 100)
		if err != nil || len(msgs) == 0 {
			return err
		}
		for _, m := range msgs {
			if wait := time.Until(m.Time.Add(ownerWindow)); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return ctx.Err()
				}
				break // read again from this message
			}
			next = m.Seq
			took, err := h.take(ctx, m.Seq)
			if err != nil {
				return err
			}
			if !took {
				continue
			}
			if !h.offer(ctx, ev.User, protocol.WithSeq(m.Data, m.Seq)) {
				// The user left again: keep the message for next time.
				_, err := h.js.Publish(ctx, subject, m.Data)
				return err
			}
		}
	}
}
