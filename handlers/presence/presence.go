// Package presence is the presence handler: it keeps, in the online KV
// bucket, which connections each user has live (key: the user; value: the
// connections and their edges), from the edges' connect and disconnect
// events. The inbox handler reads it to tell "delivered" from "stored".
package presence

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/handlers/connset"
	"natter/handlers/runtime"
	"natter/natsconf"
)

// Name is the handler's name and queue group.
const Name = "presence"

// Start runs the presence handler on nc. The stores must exist
// (natsconf.EnsureStores).
func Start(ctx context.Context, nc *nats.Conn, cfg runtime.Config) (*runtime.Service, error) {
	cfg.Name = Name
	cfg.Description = "natter presence: which users are online"
	svc, err := runtime.New(nc, cfg)
	if err != nil {
		return nil, err
	}
	online, err := Online(ctx, nc, svc.Subjects())
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	err = svc.On("connect", svc.Subjects().EventConnect(), func(ctx context.Context, ev *runtime.Event) error {
		if !natsconf.ValidName(ev.User) || !natsconf.ValidName(ev.Conn) {
			return fmt.Errorf("presence: connect event without identity")
		}
		_, err := online.Add(ctx, natsconf.KeyToken(ev.User), ev.Conn, ev.Edge)
		return err
	})
	if err == nil {
		err = svc.On("disconnect", svc.Subjects().EventDisconnect(), func(ctx context.Context, ev *runtime.Event) error {
			if !natsconf.ValidName(ev.User) {
				return fmt.Errorf("presence: disconnect event without identity")
			}
			_, err := online.Remove(ctx, natsconf.KeyToken(ev.User), ev.Conn)
			return err
		})
	}
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return svc, nil
}

// Online opens the online bucket: Get(ctx, natsconf.KeyToken(user)) gives
// the user's live connections.
func Online(ctx context.Context, nc *nats.Conn, subj natsconf.Subjects) (*connset.Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	name := subj.StoreNames().Online
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("presence: bucket %s: %w", name, err)
	}
	return connset.New(kv), nil
}
