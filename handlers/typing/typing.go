// Package typing is the typing-indicator handler: {"type":"typing","room":R}
// from a connection that is a member of R reaches the room's other member
// connections as {"type":"typing","room":R,"user":U}. Nothing is stored. The
// indicator goes to the room's live subject with the sending connection
// named (natsconf.HeaderConn) and natsconf.HeaderNoEcho, so the edges skip
// that connection; the sender is answered {"type":"ack","id":I}.
//
// A user's indicators in a room are forwarded at most once per Interval
// (2 s) by each copy of the handler: one sent sooner is answered with the
// same ack and dropped, so a client may send one per keystroke. The handler
// is written against the handler API only (handlers/runtime), as any team's
// handler can be.
package typing

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/edge/protocol"
	"natter/handlers/connset"
	"natter/handlers/runtime"
	"natter/natsconf"
)

// Name is the handler's name and queue group.
const Name = "typing"

// Interval is the shortest time between two indicators of one user in one
// room that are forwarded.
const Interval = 2 * time.Second

type handler struct {
	nc      *nats.Conn
	subj    natsconf.Subjects
	members *connset.Store

	mu   sync.Mutex
	last map[string]time.Time // room.user key -> when the last one went out
}

// Start runs the typing handler on nc. The members bucket must exist
// (natsconf.EnsureStores).
func Start(ctx context.Context, nc *nats.Conn, cfg runtime.Config) (*runtime.Service, error) {
	cfg.Name = Name
	cfg.Description = "natter typing: typing indicators to a room's other connections"
	svc, err := runtime.New(nc, cfg)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	bucket := svc.Subjects().StoreNames().Members
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("typing: bucket %s: %w", bucket, err)
	}
	h := &handler{nc: nc, subj: svc.Subjects(), members: connset.New(kv), last: map[string]time.Time{}}
	if err := svc.Handle(protocol.TypeTyping, h.typing); err != nil {
		_ = svc.Stop()
		return nil, err
	}
	svc.Every(10*Interval, func(context.Context) { h.forget(time.Now()) })
	return svc, nil
}

func (h *handler) typing(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
	room := req.Command.Room
	if err := runtime.Room(room); err != nil {
		return runtime.Response{}, err
	}
	ack := runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID}}
	key := natsconf.KeyToken(room) + "." + natsconf.KeyToken(req.User)
	set, err := h.members.Get(ctx, key)
	if err != nil {
		return runtime.Response{}, runtime.StoreError(err)
	}
	if _, ok := set[req.Conn]; !ok {
		return runtime.Response{}, protocol.Errorf(protocol.CodeNotMember, "join the room before typing in it")
	}
	if !h.allow(key, time.Now()) {
		return ack, nil // too soon after the last one: dropped
	}
	subject, _ := h.subj.Room(room)
	msg := &nats.Msg{
		Subject: subject,
		Header:  nats.Header{natsconf.HeaderConn: {req.Conn}, natsconf.HeaderNoEcho: {"1"}},
		Data:    protocol.Encode(protocol.Typing{Type: protocol.FrameTyping, Room: room, User: req.User}),
	}
	if err := h.nc.PublishMsg(msg); err != nil {
		return runtime.Response{}, runtime.StoreError(err)
	}
	return ack, nil
}

// allow reports whether an indicator for key may go out at now, and
// records it when it may.
func (h *handler) allow(key string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if last, ok := h.last[key]; ok && now.Sub(last) < Interval {
		return false
	}
	h.last[key] = now
	return true
}

// forget drops what allow no longer needs, so the map holds only the
// users typing lately.
func (h *handler) forget(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, t := range h.last {
		if now.Sub(t) >= Interval {
			delete(h.last, k)
		}
	}
}
