// Package inbox is the inbox handler: direct messages. A "dm" is stored in
// the inbox stream (its seq is the stream sequence, so a retry with the same
// id is stored once) and published to the target user's subject, where every
// edge holding a connection of that user writes it to all of them.
package inbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/edge/protocol"
	"natter/handlers/connset"
	"natter/handlers/presence"
	"natter/handlers/runtime"
	"natter/natsconf"
)

// Name is the handler's name and queue group.
const Name = "inbox"

type handler struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	subj   natsconf.Subjects
	online *connset.Store
}

// Start runs the inbox handler on nc. The stores must exist
// (natsconf.EnsureStores).
func Start(ctx context.Context, nc *nats.Conn, cfg runtime.Config) (*runtime.Service, error) {
	cfg.Name = Name
	cfg.Description = "natter inbox: direct messages"
	svc, err := runtime.New(nc, cfg)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		var online *connset.Store
		online, err = presence.Online(ctx, nc, svc.Subjects())
		if err == nil {
			h := &handler{nc: nc, js: js, subj: svc.Subjects(), online: online}
			err = svc.Handle(protocol.TypeDM, h.dm)
		}
	}
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return svc, nil
}

func (h *handler) dm(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
	to := req.Command.To
	if err := runtime.User(to); err != nil {
		return runtime.Response{}, err
	}
	if err := runtime.Body(req.Command); err != nil {
		return runtime.Response{}, err
	}
	conns, err := h.online.Get(ctx, natsconf.KeyToken(to))
	if err != nil {
		return runtime.Response{}, err
	}
	if len(conns) == 0 {
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
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoStreamResponse) {
			return runtime.Response{}, protocol.Errorf(protocol.CodeUnavailable, "message store unavailable")
		}
		return runtime.Response{}, err
	}
	if !ack.Duplicate {
		live, _ := h.subj.User(to)
		if err := h.nc.Publish(live, protocol.WithSeq(frame, ack.Sequence)); err != nil {
			return runtime.Response{}, fmt.Errorf("inbox: publish: %w", err)
		}
	}
	return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID, Seq: protocol.Uint64(ack.Sequence), Status: protocol.StatusDelivered}}, nil
}
