// Package broadcast is the broadcast handler: a "broadcast" from a user with
// the broadcast permission goes to every connection on every edge, through
// one subject that every edge subscribes to.
package broadcast

import (
	"context"

	"github.com/nats-io/nats.go"

	"natter/edge/protocol"
	"natter/handlers/runtime"
)

// Name is the handler's name and queue group.
const Name = "broadcast"

// Start runs the broadcast handler on nc.
func Start(_ context.Context, nc *nats.Conn, cfg runtime.Config) (*runtime.Service, error) {
	cfg.Name = Name
	cfg.Description = "natter broadcast: a message to every connection"
	svc, err := runtime.New(nc, cfg)
	if err != nil {
		return nil, err
	}
	subject := svc.Subjects().Broadcast()
	err = svc.Handle(protocol.TypeBroadcast, func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		if !req.Broadcast {
			return runtime.Response{}, protocol.Errorf(protocol.CodeForbidden, "broadcast is not allowed for this user")
		}
		if err := runtime.Body(req.Command); err != nil {
			return runtime.Response{}, err
		}
		frame := protocol.Encode(protocol.Message{Type: protocol.FrameBroadcast, From: req.User, TS: runtime.Now(), Body: req.Command.Body})
		if err := nc.Publish(subject, frame); err != nil {
			return runtime.Response{}, err
		}
		return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID}}, nil
	})
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return svc, nil
}
