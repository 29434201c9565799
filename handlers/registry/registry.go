// Package registry knows natter's handlers by name and starts any set of
// them on one NATS connection: `handlers all` in production, or every
// handler inside the edge's process in development mode.
package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/handlers/broadcast"
	"natter/handlers/inbox"
	"natter/handlers/receipts"
	"natter/handlers/rooms"
	"natter/handlers/runtime"
	"natter/handlers/typing"
	"natter/natsconf"
)

// StartFunc starts one handler.
type StartFunc func(ctx context.Context, nc *nats.Conn, cfg runtime.Config) (*runtime.Service, error)

// All is the name that stands for every handler.
const All = "all"

var handlers = map[string]StartFunc{
	rooms.Name:     rooms.Start,
	inbox.Name:     inbox.Start,
	broadcast.Name: broadcast.Start,
	typing.Name:    typing.Start,
	receipts.Name:  receipts.Start,
}

// Names returns the handler names, sorted.
func Names() []string {
	names := make([]string, 0, len(handlers))
	for n := range handlers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Check reports an error unless every name is a handler (or "all").
func Check(names []string) error {
	if len(names) == 0 {
		return errors.New("registry: no handler named")
	}
	for _, n := range names {
		if n != All && handlers[n] == nil {
			return fmt.Errorf("registry: unknown handler %q (have %v)", n, Names())
		}
	}
	return nil
}

// Set is a group of running handlers.
type Set struct {
	services []*runtime.Service
}

// Start makes sure the JetStream stores exist, then starts the named
// handlers ("all" for every one) on nc.
func Start(ctx context.Context, nc *nats.Conn, cfg runtime.Config, stores natsconf.StoreConfig, names ...string) (*Set, error) {
	if err := Check(names); err != nil {
		return nil, err
	}
	if slices.Contains(names, All) {
		names = Names()
	}
	if cfg.Subjects.Prefix() == "" {
		cfg.Subjects = natsconf.MustSubjects(natsconf.DefaultPrefix)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cfg.Stores = stores
	if cfg.Budget == nil {
		cfg.Budget = runtime.NewStoreBudget(stores.StoreRate())
	}
	if err := natsconf.EnsureStores(ctx, js, cfg.Subjects, stores); err != nil {
		return nil, err
	}
	set := &Set{}
	for _, n := range names {
		svc, err := handlers[n](ctx, nc, cfg)
		if err != nil {
			set.Stop()
			return nil, fmt.Errorf("registry: start %s: %w", n, err)
		}
		set.services = append(set.services, svc)
	}
	// Make sure the servers saw every subscription before anyone relies on
	// the handlers being there.
	if err := nc.FlushWithContext(ctx); err != nil {
		set.Stop()
		return nil, err
	}
	return set, nil
}

// Dropped returns how many messages nats.go dropped because an endpoint of
// the set's handlers did not keep up (a slow consumer).
func (s *Set) Dropped() uint64 {
	var n uint64
	for _, svc := range s.services {
		n += svc.Dropped()
	}
	return n
}

// Ready reports whether handlers on nc can work: nc is connected and
// natter's streams and bucket answer (their stream info, within ctx).
func Ready(ctx context.Context, nc *nats.Conn, subj natsconf.Subjects) error {
	if !nc.IsConnected() {
		return errors.New("NATS is not connected")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	n := subj.StoreNames()
	for _, stream := range []string{n.Rooms, n.Inbox, subj.PendingStore(), "KV_" + n.Members} {
		if _, err := js.Stream(ctx, stream); err != nil {
			return fmt.Errorf("stream %s does not answer: %w", stream, err)
		}
	}
	return nil
}

// Stop stops every handler of the set, waiting for commands in flight.
func (s *Set) Stop() {
	for _, svc := range s.services {
		_ = svc.Stop()
	}
}

// ForgetMembers empties the room membership bucket. Only for a NATS server
// whose every edge is starting (development mode): memberships of
// connections that died with a crashed edge are otherwise never removed.
func ForgetMembers(ctx context.Context, nc *nats.Conn, subj natsconf.Subjects) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	stream, err := js.Stream(ctx, "KV_"+subj.StoreNames().Members)
	if err != nil {
		return err
	}
	return stream.Purge(ctx)
}
