package connset_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"natter/handlers/connset"
	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

// testServer starts an embedded JetStream server with natter's stores and
// shuts it down in t.Cleanup.
func testServer(tb testing.TB) *server.Server {
	tb.Helper()
	srv := embeddedtest.StartServer(tb, embedded.Config{DontListen: true})
	js := jsOn(tb, srv)
	if err := natsconf.EnsureStores(testContext(tb), js, natsconf.MustSubjects("im"), natsconf.StoreConfig{}); err != nil {
		tb.Fatalf("EnsureStores: %v", err)
	}
	return srv
}

// jsOn opens a new in-process connection to srv (closed in t.Cleanup) and
// returns its JetStream context.
func jsOn(tb testing.TB, srv *server.Server) jetstream.JetStream {
	tb.Helper()
	nc, err := embedded.Connect(srv, tb.Name())
	if err != nil {
		tb.Fatalf("embedded.Connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream.New: %v", err)
	}
	return js
}

// membersKV opens the members bucket on a new connection to srv.
func membersKV(tb testing.TB, srv *server.Server) jetstream.KeyValue {
	tb.Helper()
	kv, err := jsOn(tb, srv).KeyValue(testContext(tb), natsconf.MustSubjects("im").StoreNames().Members)
	if err != nil {
		tb.Fatalf("members bucket: %v", err)
	}
	return kv
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

func mustAdd(tb testing.TB, s *connset.Store, key, conn, edge string, wantFirst bool) {
	tb.Helper()
	first, err := s.Add(testContext(tb), key, conn, edge)
	if err != nil {
		tb.Fatalf("Add(%s, %s): %v", key, conn, err)
	}
	if first != wantFirst {
		tb.Fatalf("Add(%s, %s) first = %v, want %v", key, conn, first, wantFirst)
	}
}

func mustRemove(tb testing.TB, s *connset.Store, key, conn string, wantLast bool) {
	tb.Helper()
	last, err := s.Remove(testContext(tb), key, conn)
	if err != nil {
		tb.Fatalf("Remove(%s, %s): %v", key, conn, err)
	}
	if last != wantLast {
		tb.Fatalf("Remove(%s, %s) last = %v, want %v", key, conn, last, wantLast)
	}
}

func mustGet(tb testing.TB, s *connset.Store, key string, want connset.Set) {
	tb.Helper()
	got, err := s.Get(testContext(tb), key)
	if err != nil {
		tb.Fatalf("Get(%s): %v", key, err)
	}
	if got == nil {
		tb.Fatalf("Get(%s) returned a nil set", key)
	}
	if !maps.Equal(got, want) {
		tb.Fatalf("Get(%s) = %v, want %v", key, got, want)
	}
}

func TestAddFirst(t *testing.T) {
	s := connset.New(membersKV(t, testServer(t)))
	const key = "lobby.alice"
	mustGet(t, s, key, connset.Set{})
	mustAdd(t, s, key, "c1", "e1", true)
	mustAdd(t, s, key, "c2", "e1", false)
	mustAdd(t, s, key, "c3", "e2", false)
	// Adding again, even with another edge, is not a first.
	mustAdd(t, s, key, "c1", "e1", false)
	mustAdd(t, s, key, "c1", "e9", false)
	mustGet(t, s, key, connset.Set{"c1": "e9", "c2": "e1", "c3": "e2"})
	// Another key is independent.
	mustAdd(t, s, "lobby.bob", "c4", "e1", true)
	mustGet(t, s, "lobby.bob", connset.Set{"c4": "e1"})
}

func TestRemoveLast(t *testing.T) {
	s := connset.New(membersKV(t, testServer(t)))
	const key = "alice"
	// Removing from a set that does not exist changes nothing.
	mustRemove(t, s, key, "c1", false)
	mustGet(t, s, key, connset.Set{})

	mustAdd(t, s, key, "c1", "e1", true)
	mustAdd(t, s, key, "c2", "e1", false)
	mustRemove(t, s, key, "nope", false)
	mustGet(t, s, key, connset.Set{"c1": "e1", "c2": "e1"})
	mustRemove(t, s, key, "c1", false)
	mustRemove(t, s, key, "c1", false) // already gone
	mustGet(t, s, key, connset.Set{"c2": "e1"})
	mustRemove(t, s, key, "c2", true)
	mustGet(t, s, key, connset.Set{})
	mustRemove(t, s, key, "c2", false) // already gone, set deleted

	// The set comes back after being emptied, with a new first.
	for range 3 {
		mustAdd(t, s, key, "c3", "e2", true)
		mustRemove(t, s, key, "c3", true)
	}
	mustGet(t, s, key, connset.Set{})
}

func TestKeys(t *testing.T) {
	s := connset.New(membersKV(t, testServer(t)))
	ctx := testContext(t)

	keys, err := s.Keys(ctx, "lobby.*")
	if err != nil || len(keys) != 0 {
		t.Fatalf("Keys on an empty bucket = %q, %v", keys, err)
	}
	room := natsconf.KeyToken("org:lobby")
	for _, k := range []string{
		"lobby.bob", "lobby.alice", "lobby2.alice", "team.alice",
		room + "." + natsconf.KeyToken("u:1"), room + ".u2",
	} {
		mustAdd(t, s, k, "c-"+k, "e1", true)
	}
	mustAdd(t, s, "lobby.carol", "c9", "e1", true)
	mustRemove(t, s, "lobby.carol", "c9", true) // deleted keys are not listed

	tests := []struct {
		filter string
		want   []string
	}{
		{"lobby.*", []string{"lobby.alice", "lobby.bob"}},
		{"*.alice", []string{"lobby.alice", "lobby2.alice", "team.alice"}},
		{room + ".*", []string{room + ".u2", room + ".u=3A1"}},
		{"nobody.*", nil},
		{">", []string{"lobby.alice", "lobby.bob", "lobby2.alice", room + ".u2", room + ".u=3A1", "team.alice"}},
	}
	for _, tt := range tests {
		got, err := s.Keys(ctx, tt.filter)
		if err != nil {
			t.Fatalf("Keys(%q): %v", tt.filter, err)
		}
		if !slices.IsSorted(got) {
			t.Errorf("Keys(%q) = %q: not sorted", tt.filter, got)
		}
		want := slices.Clone(tt.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Keys(%q) = %q, want %q", tt.filter, got, want)
		}
	}
}

func TestCorruptValue(t *testing.T) {
	kv := membersKV(t, testServer(t))
	s := connset.New(kv)
	ctx := testContext(t)
	if _, err := kv.Put(ctx, "bad", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "bad"); err == nil {
		t.Error("Get of a corrupt value: no error")
	}
	if _, err := s.Add(ctx, "bad", "c1", "e1"); err == nil {
		t.Error("Add to a corrupt value: no error")
	}
	if last, err := s.Remove(ctx, "bad", "c1"); err == nil || last {
		t.Errorf("Remove from a corrupt value = %v, %v; want an error", last, err)
	}
}

func TestCanceledContext(t *testing.T) {
	s := connset.New(membersKV(t, testServer(t)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A failed change is neither a first nor a last connection: a caller
	// that logs the error and carries on must not announce a presence.
	if first, err := s.Add(ctx, "k", "c1", "e1"); err == nil || first {
		t.Errorf("Add with a canceled context = %v, %v; want false and an error", first, err)
	}
	if last, err := s.Remove(ctx, "k", "c1"); err == nil || last {
		t.Errorf("Remove with a canceled context = %v, %v; want false and an error", last, err)
	}
	if _, err := s.Keys(ctx, ">"); err == nil {
		t.Error("Keys with a canceled context: no error")
	}
	mustGet(t, s, "k", connset.Set{})
}

// TestConcurrentFirstLast: n handlers, each on its own connection, add
// distinct connections to one empty key at once, then remove them at once.
// Exactly one Add sees the set empty and exactly one Remove empties it.
func TestConcurrentFirstLast(t *testing.T) {
	const n = 8
	srv := testServer(t)
	stores := make([]*connset.Store, n)
	for i := range stores {
		stores[i] = connset.New(membersKV(t, srv))
	}
	const key = "lobby.alice"
	ctx := testContext(t)

	for round := range 3 {
		run := func(op func(i int) (bool, error)) int {
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				trues = make(chan int, n)
				errs  = make(chan error, n)
			)
			for i := range n {
				wg.Go(func() {
					<-start
					ok, err := op(i)
					if err != nil {
						errs <- err
					}
					if ok {
						trues <- i
					}
				})
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("round %d: %v", round, err)
			}
			return len(trues)
		}
		firsts := run(func(i int) (bool, error) {
			return stores[i].Add(ctx, key, fmt.Sprintf("c%d", i), fmt.Sprintf("e%d", i%3))
		})
		if firsts != 1 {
			t.Fatalf("round %d: %d concurrent Adds reported first, want 1", round, firsts)
		}
		want := connset.Set{}
		for i := range n {
			want[fmt.Sprintf("c%d", i)] = fmt.Sprintf("e%d", i%3)
		}
		mustGet(t, stores[0], key, want)

		lasts := run(func(i int) (bool, error) {
			return stores[i].Remove(ctx, key, fmt.Sprintf("c%d", i))
		})
		if lasts != 1 {
			t.Fatalf("round %d: %d concurrent Removes reported last, want 1", round, lasts)
		}
		mustGet(t, stores[0], key, connset.Set{})
	}
}

// TestConcurrentChurn: n goroutines, each on its own connection, add and
// remove their own connection on one key over and over. Every empty →
// non-empty transition is seen by exactly one Add and every non-empty →
// empty one by exactly one Remove, so as the set starts and ends empty the
// counts match.
func TestConcurrentChurn(t *testing.T) {
	const (
		n      = 8
		cycles = 15
	)
	srv := testServer(t)
	ctx := testContext(t)
	const key = "churn"
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		firsts int
		lasts  int
		start  = make(chan struct{})
		errs   = make(chan error, n)
	)
	for i := range n {
		s := connset.New(membersKV(t, srv))
		conn := fmt.Sprintf("c%d", i)
		wg.Go(func() {
			<-start
			for range cycles {
				first, err := s.Add(ctx, key, conn, "e")
				if err != nil {
					errs <- fmt.Errorf("Add %s: %w", conn, err)
					return
				}
				last, err := s.Remove(ctx, key, conn)
				if err != nil {
					errs <- fmt.Errorf("Remove %s: %w", conn, err)
					return
				}
				mu.Lock()
				if first {
					firsts++
				}
				if last {
					lasts++
				}
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if firsts == 0 || firsts != lasts {
		t.Fatalf("firsts = %d, lasts = %d; want equal and non-zero", firsts, lasts)
	}
	mustGet(t, connset.New(membersKV(t, srv)), key, connset.Set{})
	t.Logf("%d goroutines x %d cycles: %d empty→non-empty transitions", n, cycles, firsts)
}
