// Package connset keeps sets of live connections in a JetStream KV bucket:
// under one key, the connections of a user (who is online) or of a user in a
// room (who is a member). Every change is a compare-and-set on the key's
// revision, so any number of handler copies can change the same set at once
// and each learns exactly whether its change made the set non-empty (the
// user's first connection) or empty (the last one).
package connset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// maxRetries bounds compare-and-set retries under contention.
const maxRetries = 64

// Store is a set of connection ids per key. Each connection maps to the id of
// the edge holding it.
type Store struct {
	kv jetstream.KeyValue
}

// New returns a Store on kv.
func New(kv jetstream.KeyValue) *Store { return &Store{kv: kv} }

// Set is the stored value: connection id -> edge id.
type Set map[string]string

// Add puts conn (held by edge) in the set at key and reports whether it was
// the set's first connection.
func (s *Store) Add(ctx context.Context, key, conn, edge string) (first bool, err error) {
	// Most sets are new: try to create one in a single round trip.
	_, err = s.kv.Create(ctx, key, mustJSON(Set{conn: edge}))
	if err == nil {
		return true, nil
	}
	if !isConflict(err) {
		return false, err
	}
	before, _, err := s.change(ctx, key, func(set Set) bool {
		if set[conn] == edge {
			return false
		}
		set[conn] = edge
		return true
	})
	return err == nil && before == 0, err
}

// Remove takes conn out of the set at key and reports whether it was the
// set's last connection. Removing a connection that is not there changes
// nothing and reports false.
func (s *Store) Remove(ctx context.Context, key, conn string) (last bool, err error) {
	before, after, err := s.change(ctx, key, func(set Set) bool {
		if _, ok := set[conn]; !ok {
			return false
		}
		delete(set, conn)
		return true
	})
	return before > 0 && after == 0, err
}

// Get returns the set at key (empty when there is none).
func (s *Store) Get(ctx context.Context, key string) (Set, error) {
	set, _, err := s.load(ctx, key)
	return set, err
}

// All returns every set in the bucket, by key.
func (s *Store) All(ctx context.Context) (map[string]Set, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	all := map[string]Set{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return all, nil // nil: every current value was sent
			}
			set := Set{}
			if json.Unmarshal(e.Value(), &set) == nil && len(set) > 0 {
				all[e.Key()] = set
			}
		}
	}
}

// Keys returns the keys matching filter (KV wildcards), sorted.
func (s *Store) Keys(ctx context.Context, filter string) ([]string, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	// The lister stops its watcher itself once the keys are listed.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.Sort(keys)
	return keys, nil
}

func (s *Store) load(ctx context.Context, key string) (Set, uint64, error) {
	entry, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Set{}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	set := Set{}
	if len(entry.Value()) > 0 {
		if err := json.Unmarshal(entry.Value(), &set); err != nil {
			return nil, 0, fmt.Errorf("connset: key %s: %w", key, err)
		}
	}
	return set, entry.Revision(), nil
}

// change applies edit to the set at key with compare-and-set and returns the
// set's size before and after. edit reports whether it changed the set; an
// edit that changed nothing writes nothing.
func (s *Store) change(ctx context.Context, key string, edit func(Set) bool) (before, after int, err error) {
	for range maxRetries {
		set, rev, err := s.load(ctx, key)
		if err != nil {
			return 0, 0, err
		}
		before = len(set)
		if !edit(set) {
			return before, before, nil
		}
		after = len(set)
		switch {
		case after == 0:
			err = s.kv.Delete(ctx, key, jetstream.LastRevision(rev))
		case rev == 0:
			_, err = s.kv.Create(ctx, key, mustJSON(set))
		default:
			_, err = s.kv.Update(ctx, key, mustJSON(set), rev)
		}
		if err == nil {
			return before, after, nil
		}
		if !isConflict(err) {
			return 0, 0, err
		}
	}
	return 0, 0, fmt.Errorf("connset: key %s: too much contention", key)
}

func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

func mustJSON(set Set) []byte {
	b, _ := json.Marshal(set)
	return b
}
