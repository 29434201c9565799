package natsconf_test

// Tests of the NATS users of natter: the permissions built in Go
// (Subjects.Users, used by the embedded server) are enforced by a real
// server and are what natter needs, and the users of the production config
// files (auth.conf, included by single.conf and cluster/*.conf) have the
// same allow lists.
//
// Helpers here are named perm… to stay clear of the other test files.

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/natsconf"
)

const (
	permEdgePass     = "edge-secret"
	permHandlersPass = "handlers-secret"
)

// permStart starts an embedded server (listening on a random loopback port)
// that requires the natter users of prefix "im".
func permStart(t *testing.T) *server.Server {
	t.Helper()
	ns, err := natsconf.StartEmbedded(natsconf.EmbeddedConfig{
		StoreDir: t.TempDir(),
		Users:    natsconf.MustSubjects("im").Users(permEdgePass, permHandlersPass),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// permConn is a connection that records the asynchronous errors the server
// sends it (permission violations).
type permConn struct {
	*nats.Conn
	name string

	mu     sync.Mutex
	errs   []string
	notify chan struct{}
}

func permConnect(t *testing.T, url, user, pass string) *permConn {
	t.Helper()
	pc := &permConn{name: user, notify: make(chan struct{}, 1)}
	nc, err := nats.Connect(url, nats.UserInfo(user, pass), nats.Name("perm-"+user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			pc.mu.Lock()
			pc.errs = append(pc.errs, err.Error())
			pc.mu.Unlock()
			select {
			case pc.notify <- struct{}{}:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	pc.Conn = nc
	t.Cleanup(nc.Close)
	return pc
}

// violation waits up to 5s for the server to refuse op ("Publish to" or
// "Subscription to") on subject.
func (pc *permConn) violation(t *testing.T, op, subject string) {
	t.Helper()
	want := `Permissions Violation for ` + op + ` "` + subject + `"`
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		pc.mu.Lock()
		found := slices.ContainsFunc(pc.errs, func(e string) bool { return strings.Contains(e, want) })
		errs := slices.Clone(pc.errs)
		pc.mu.Unlock()
		if found {
			return
		}
		select {
		case <-pc.notify:
		case <-deadline.C:
			t.Fatalf("%s: no %q from the server; errors seen: %q", pc.name, want, errs)
		}
	}
}

// noViolations fails the test if the server refused anything to pc.
func (pc *permConn) noViolations(t *testing.T) {
	t.Helper()
	if err := pc.Flush(); err != nil {
		t.Fatal(err)
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if len(pc.errs) > 0 {
		t.Errorf("%s: unexpected errors: %q", pc.name, pc.errs)
	}
}

func permCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPermissionsPrefix(t *testing.T) {
	for _, prefix := range []string{"im", "chat"} {
		s := natsconf.MustSubjects(prefix)
		users := s.Users("e", "h")
		if len(users) != 2 || users[0].Username != natsconf.EdgeUser || users[0].Password != "e" ||
			users[1].Username != natsconf.HandlersUser || users[1].Password != "h" {
			t.Fatalf("Users: %+v", users)
		}
		for _, p := range []*server.Permissions{users[0].Permissions, users[1].Permissions} {
			for _, list := range [][]string{p.Publish.Allow, p.Subscribe.Allow} {
				for _, subj := range list {
					if !strings.HasPrefix(subj, prefix+".") && !strings.HasPrefix(subj, "$") && !strings.HasPrefix(subj, "_INBOX.") {
						t.Errorf("prefix %q: subject %q outside the prefix", prefix, subj)
					}
				}
			}
		}
	}
}

// TestEdgePermissionsEnforced connects as the edge user and checks that the
// server refuses what an edge must not do and allows what it needs.
func TestEdgePermissionsEnforced(t *testing.T) {
	ns := permStart(t)
	url := ns.ClientURL()
	edge := permConnect(t, url, natsconf.EdgeUser, permEdgePass)
	handlers := permConnect(t, url, natsconf.HandlersUser, permHandlersPass)

	// Wrong or no credentials are refused.
	if nc, err := nats.Connect(url, nats.UserInfo(natsconf.EdgeUser, "wrong")); err == nil {
		nc.Close()
		t.Error("edge with a wrong password connected")
	}
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("a connection without credentials was accepted")
	}

	// Allowed: requesting a command, answered by handlers.
	cmd, err := handlers.Subscribe("im.cmd.join", func(m *nats.Msg) { _ = m.Respond([]byte("joined")) })
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Unsubscribe()
	if err := handlers.Flush(); err != nil {
		t.Fatal(err)
	}
	if reply, err := edge.Request("im.cmd.join", []byte("{}"), 5*time.Second); err != nil || string(reply.Data) != "joined" {
		t.Fatalf("edge request im.cmd.join: %v", err)
	}
	// Allowed: lifecycle events, heard by handlers.
	evt, err := handlers.SubscribeSync("im.evt.*")
	if err != nil {
		t.Fatal(err)
	}
	if err := handlers.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := edge.Publish("im.evt.connect", []byte("c1")); err != nil {
		t.Fatal(err)
	}
	if m, err := evt.NextMsg(5 * time.Second); err != nil || m.Subject != "im.evt.connect" {
		t.Fatalf("event from the edge: %v", err)
	}

	// Allowed: listening to deliveries that handlers publish.
	for _, subj := range []string{"im.room.x", "im.user.bob", "im.conn.e1.c1", "im.bcast"} {
		sub, err := edge.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		if err := edge.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := handlers.Publish(subj, []byte("delivery")); err != nil {
			t.Fatal(err)
		}
		if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "delivery" {
			t.Fatalf("edge subscribed to %s: %v", subj, err)
		}
		_ = sub.Unsubscribe()
	}
	// Allowed: answering a live-delivery request once (allow_responses).
	live, err := edge.Subscribe("im.user.carol", func(m *nats.Msg) { _ = m.Respond([]byte("live")) })
	if err != nil {
		t.Fatal(err)
	}
	if err := edge.Flush(); err != nil {
		t.Fatal(err)
	}
	if reply, err := handlers.Request("im.user.carol", nil, 5*time.Second); err != nil || string(reply.Data) != "live" {
		t.Fatalf("edge answering a request on im.user.carol: %v", err)
	}
	_ = live.Unsubscribe()
	edge.noViolations(t)

	// Refused publishes: storing, publishing into rooms, users, connections
	// or broadcast, JetStream, KV, services, replies nobody asked for.
	for _, subj := range []string{
		"im.store.room.x", "im.store.user.bob", "im.room.x", "im.user.bob", "im.conn.e1.c1", "im.bcast",
		"$JS.API.STREAM.INFO.IM_ROOMS", "$KV.IM_MEMBERS.x.bob", "$SRV.PING", "_INBOX.nobody",
	} {
		if err := edge.Publish(subj, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		edge.violation(t, "Publish to", subj)
	}
	// A forged room message reaches nobody: a member of the room hears the
	// next real one first.
	room, err := edge.SubscribeSync("im.room.x")
	if err != nil {
		t.Fatal(err)
	}
	if err := edge.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := edge.Publish("im.room.x", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	if err := edge.Flush(); err != nil { // the server has handled the forgery
		t.Fatal(err)
	}
	if err := handlers.Publish("im.room.x", []byte("real")); err != nil {
		t.Fatal(err)
	}
	if m, err := room.NextMsg(5 * time.Second); err != nil || string(m.Data) != "real" {
		t.Fatalf("after a forged publish, the room subscriber got %v (%v), want the real message", m, err)
	}
	// A JetStream request goes nowhere.
	if _, err := edge.Request("$JS.API.STREAM.INFO.IM_ROOMS", nil, 500*time.Millisecond); err == nil {
		t.Error("edge got an answer from the JetStream API")
	}

	// Refused subscriptions: commands and events (the handlers' side),
	// stores, JetStream, everything.
	for _, subj := range []string{"im.cmd.join", "im.evt.connect", "im.store.room.x", "im.>", "$JS.API.>", ">"} {
		if _, err := edge.Subscribe(subj, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		edge.violation(t, "Subscription to", subj)
	}
	// A refused subscription does not take a share of the commands.
	for range 5 {
		if reply, err := edge.Request("im.cmd.join", nil, 5*time.Second); err != nil || string(reply.Data) != "joined" {
			t.Fatalf("request after the refused subscription: %v", err)
		}
	}
}

// TestHandlersPermissionsEnforced connects as the handlers user: JetStream
// (streams and the members bucket, as the handlers use them) works, and
// what belongs to edges is refused.
func TestHandlersPermissionsEnforced(t *testing.T) {
	ns := permStart(t)
	handlers := permConnect(t, ns.ClientURL(), natsconf.HandlersUser, permHandlersPass)
	subj := natsconf.MustSubjects("im")
	ctx := permCtx(t)

	js, err := jetstream.New(handlers.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsconf.EnsureStores(ctx, js, subj, natsconf.StoreConfig{}); err != nil {
		t.Fatalf("EnsureStores as handlers: %v", err)
	}
	names := subj.StoreNames()
	// Storing a room message, reading it back directly.
	ack, err := js.Publish(ctx, "im.store.room.x", []byte(`{"type":"msg"}`))
	if err != nil {
		t.Fatalf("store a room message: %v", err)
	}
	stream, err := js.Stream(ctx, names.Rooms)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetMsg(ctx, ack.Sequence, jetstream.WithGetMsgSubject("im.store.room.x")); err != nil {
		t.Errorf("direct get of the stored message: %v", err)
	}
	// A dm stored and deleted, as the inbox does.
	ack, err = js.Publish(ctx, "im.store.user.bob", []byte(`{"type":"dm"}`))
	if err != nil {
		t.Fatalf("store a dm: %v", err)
	}
	inbox, err := js.Stream(ctx, names.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := inbox.DeleteMsg(ctx, ack.Sequence); err != nil {
		t.Errorf("delete a delivered dm: %v", err)
	}
	handlers.noViolations(t)

	// The members bucket, as the rooms handler uses it (connset).
	kv, err := js.KeyValue(ctx, names.Members)
	if err != nil {
		t.Fatal(err)
	}
	kvCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := kv.Create(kvCtx, "x.bob", []byte(`["c1"]`)); err != nil {
		t.Errorf("members bucket: Create as handlers: %v", err)
	} else {
		if _, err := kv.Get(kvCtx, "x.bob"); err != nil {
			t.Errorf("members bucket: Get: %v", err)
		}
		lister, err := kv.ListKeysFiltered(kvCtx, "x.*")
		if err != nil {
			t.Errorf("members bucket: ListKeysFiltered: %v", err)
		} else {
			var keys []string
			for k := range lister.Keys() {
				keys = append(keys, k)
			}
			if !slices.Equal(keys, []string{"x.bob"}) {
				t.Errorf("members bucket: keys %q", keys)
			}
		}
		if err := kv.Delete(kvCtx, "x.bob"); err != nil {
			t.Errorf("members bucket: Delete: %v", err)
		}
	}
	handlers.mu.Lock()
	if len(handlers.errs) > 0 {
		t.Errorf("handlers using the members bucket: %q", handlers.errs)
	}
	handlers.mu.Unlock()

	// Refused: posing as an edge, and listening to deliveries.
	for _, s := range []string{"im.cmd.join", "im.evt.connect"} {
		if err := handlers.Publish(s, nil); err != nil {
			t.Fatal(err)
		}
		handlers.violation(t, "Publish to", s)
	}
	for _, s := range []string{"im.room.x", "im.user.bob", "im.conn.e1.c1", "im.bcast", ">"} {
		if _, err := handlers.Subscribe(s, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		handlers.violation(t, "Subscription to", s)
	}
}

// permResponse normalises a response permission as the server does.
func permResponse(p *server.ResponsePermission) server.ResponsePermission {
	if p == nil {
		return server.ResponsePermission{}
	}
	r := *p
	if r.MaxMsgs == 0 {
		r.MaxMsgs = server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS
	}
	if r.Expires == 0 {
		r.Expires = server.DEFAULT_ALLOW_RESPONSE_EXPIRATION
	}
	return r
}

func permSorted(list []string) []string {
	s := slices.Clone(list)
	slices.Sort(s)
	return s
}

func permDeny(p *server.SubjectPermission) []string {
	if p == nil {
		return nil
	}
	return p.Deny
}

// permSame compares the allow and deny lists and the response permission.
func permSame(t *testing.T, what string, got, want *server.Permissions) {
	t.Helper()
	if got == nil || got.Publish == nil || got.Subscribe == nil {
		t.Errorf("%s: permissions incomplete: %+v", what, got)
		return
	}
	if g, w := permSorted(got.Publish.Allow), permSorted(want.Publish.Allow); !slices.Equal(g, w) {
		t.Errorf("%s: publish allow %q, Go has %q", what, g, w)
	}
	if g, w := permSorted(got.Subscribe.Allow), permSorted(want.Subscribe.Allow); !slices.Equal(g, w) {
		t.Errorf("%s: subscribe allow %q, Go has %q", what, g, w)
	}
	if g, w := permDeny(got.Publish), permDeny(want.Publish); len(g)+len(w) > 0 && !slices.Equal(permSorted(g), permSorted(w)) {
		t.Errorf("%s: publish deny %q, Go has %q", what, g, w)
	}
	if g, w := permDeny(got.Subscribe), permDeny(want.Subscribe); len(g)+len(w) > 0 && !slices.Equal(permSorted(g), permSorted(w)) {
		t.Errorf("%s: subscribe deny %q, Go has %q", what, g, w)
	}
	if g, w := permResponse(got.Response), permResponse(want.Response); g != w {
		t.Errorf("%s: responses %+v, Go has %+v", what, g, w)
	}
}

// TestPermissionsConfigFiles parses the production configs and compares
// their users with the ones built in Go.
func TestPermissionsConfigFiles(t *testing.T) {
	t.Setenv("NATTER_EDGE_PASSWORD", "edge-from-env")
	t.Setenv("NATTER_HANDLERS_PASSWORD", "handlers-from-env")
	s := natsconf.MustSubjects("im")
	for _, file := range []string{"single.conf", "cluster/n1.conf", "cluster/n2.conf", "cluster/n3.conf"} {
		opts, err := server.ProcessConfigFile(file)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		users := map[string]*server.User{}
		for _, u := range opts.Users {
			users[u.Username] = u
		}
		if len(users) != 2 || users[natsconf.EdgeUser] == nil || users[natsconf.HandlersUser] == nil {
			t.Errorf("%s: users %v, want %q and %q", file, opts.Users, natsconf.EdgeUser, natsconf.HandlersUser)
			continue
		}
		if p := users[natsconf.EdgeUser].Password; p != "edge-from-env" {
			t.Errorf("%s: edge password %q, want $NATTER_EDGE_PASSWORD", file, p)
		}
		if p := users[natsconf.HandlersUser].Password; p != "handlers-from-env" {
			t.Errorf("%s: handlers password %q, want $NATTER_HANDLERS_PASSWORD", file, p)
		}
		permSame(t, file+": edge", users[natsconf.EdgeUser].Permissions, s.EdgePermissions())
		permSame(t, file+": handlers", users[natsconf.HandlersUser].Permissions, s.HandlersPermissions())
		if !opts.JetStream {
			t.Errorf("%s: JetStream is off", file)
		}
	}

	// single.conf as a running server (on a random port, storing in a
	// temporary directory): the passwords come from the environment.
	opts, err := server.ProcessConfigFile("single.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Port, opts.HTTPPort, opts.StoreDir, opts.NoSigs, opts.NoLog = server.RANDOM_PORT, 0, t.TempDir(), true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("single.conf server not ready")
	}
	if nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(natsconf.EdgeUser, permEdgePass)); err == nil {
		nc.Close()
		t.Error("single.conf: edge connected with a password not from the environment")
	} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Logf("single.conf: wrong password refused with %v", err)
	}
	edge := permConnect(t, ns.ClientURL(), natsconf.EdgeUser, "edge-from-env")
	if err := edge.Publish("im.store.room.x", nil); err != nil {
		t.Fatal(err)
	}
	edge.violation(t, "Publish to", "im.store.room.x")
	handlers := permConnect(t, ns.ClientURL(), natsconf.HandlersUser, "handlers-from-env")
	js, err := jetstream.New(handlers.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsconf.EnsureStores(permCtx(t), js, s, natsconf.StoreConfig{}); err != nil {
		t.Errorf("single.conf: EnsureStores as handlers: %v", err)
	}
}
