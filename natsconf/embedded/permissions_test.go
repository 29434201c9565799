package embedded_test

// Tests of the NATS users of natter: the permissions built in Go
// (Users, used by the embedded server) are enforced by a real
// server and are what natter needs, and the users of the production config
// files (auth.conf, included by single.conf and cluster/*.conf) have the
// same allow lists.
//
// Helpers here are named perm… to stay clear of the other test files.

import (
	"cmp"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

const (
	permEdgePass     = "edge-secret"
	permHandlersPass = "handlers-secret"
)

// permAdmin is a user of the test servers with every permission: it plays
// an operator (creates a stream natter does not own, discovers services)
// and checks what the restricted users could not change.
const (
	permAdmin     = "admin"
	permAdminPass = "admin-secret"
)

// permStart starts an embedded server (listening on a random loopback port)
// that requires the natter users of prefix "im" (and permAdmin).
func permStart(t *testing.T) *server.Server {
	t.Helper()
	users := embedded.Users(natsconf.MustSubjects("im"), permEdgePass, permHandlersPass)
	users = append(users, &server.User{Username: permAdmin, Password: permAdminPass})
	ns, err := embedded.Start(embedded.Config{
		StoreDir: t.TempDir(),
		Users:    users,
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

// permConnect connects as user with natsconf.Connect, so with the user's
// inbox prefix (natsconf.InboxPrefix), as natter's processes do.
func permConnect(t *testing.T, url, user, pass string, opts ...nats.Option) *permConn {
	t.Helper()
	pc := &permConn{name: user, notify: make(chan struct{}, 1)}
	nc, err := natsconf.Connect(url, "perm-"+user, append([]nats.Option{nats.UserInfo(user, pass),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			pc.mu.Lock()
			pc.errs = append(pc.errs, err.Error())
			pc.mu.Unlock()
			select {
			case pc.notify <- struct{}{}:
			default:
			}
		})}, opts...)...)
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
		users := embedded.Users(s, "e", "h")
		if len(users) != 2 || users[0].Username != natsconf.EdgeUser || users[0].Password != "e" ||
			users[1].Username != natsconf.HandlersUser || users[1].Password != "h" {
			t.Fatalf("Users: %+v", users)
		}
		names := s.StoreNames()
		for i, p := range []*server.Permissions{users[0].Permissions, users[1].Permissions} {
			inbox := natsconf.InboxPrefix(users[i].Username) + ".>"
			if !slices.Contains(p.Subscribe.Allow, inbox) {
				t.Errorf("prefix %q: %s may not subscribe to its inbox %q", prefix, users[i].Username, inbox)
			}
			for _, list := range [][]string{p.Publish.Allow, p.Subscribe.Allow} {
				for _, subj := range list {
					switch {
					case strings.HasPrefix(subj, prefix+"."), subj == inbox, subj == "$SRV.>", subj == "$JS.API.INFO":
					case strings.HasPrefix(subj, "$JS.API."), strings.HasPrefix(subj, "$KV."):
						// Only natter's streams and bucket.
						if !strings.Contains(subj, "."+names.Rooms) && !strings.Contains(subj, "."+names.Inbox) &&
							!strings.Contains(subj, "."+s.PendingStore()) &&
							!strings.Contains(subj, ".KV_"+names.Members) && !strings.HasPrefix(subj, "$KV."+names.Members+".") &&
							!strings.Contains(subj, ".KV_"+s.ReadStore()) && !strings.HasPrefix(subj, "$KV."+s.ReadStore()+".") {
							t.Errorf("prefix %q: JetStream subject %q of another stream", prefix, subj)
						}
					default:
						t.Errorf("prefix %q: %s: subject %q outside the prefix, its inbox and natter's streams", prefix, users[i].Username, subj)
					}
					if strings.Contains(subj, "MSG.DELETE."+names.Rooms) || strings.Contains(subj, "PURGE."+names.Rooms) ||
						strings.Contains(subj, "PURGE."+names.Inbox) || strings.Contains(subj, "PURGE."+s.PendingStore()) ||
						strings.Contains(subj, "STREAM.DELETE") {
						t.Errorf("prefix %q: %q may destroy stored messages", prefix, subj)
					}
				}
			}
		}
	}
	if natsconf.InboxPrefix(natsconf.EdgeUser) == natsconf.InboxPrefix(natsconf.HandlersUser) || natsconf.InboxPrefix("someone") != "" {
		t.Errorf("inbox prefixes: edge %q, handlers %q, other %q", natsconf.InboxPrefix(natsconf.EdgeUser),
			natsconf.InboxPrefix(natsconf.HandlersUser), natsconf.InboxPrefix("someone"))
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
		natsconf.HandlersInboxPrefix + ".nobody", natsconf.EdgeInboxPrefix + ".nobody",
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
	// A JetStream request goes nowhere, nor does anything of the jetstream
	// package: the edge cannot use JetStream at all.
	if _, err := edge.Request("$JS.API.STREAM.INFO.IM_ROOMS", nil, 500*time.Millisecond); err == nil {
		t.Error("edge got an answer from the JetStream API")
	}
	ejs, err := jetstream.New(edge.Conn)
	if err != nil {
		t.Fatal(err)
	}
	jsCtx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	if _, err := ejs.AccountInfo(jsCtx()); err == nil {
		t.Error("edge: JetStream account info answered")
	}
	if err := natsconf.EnsureStores(jsCtx(), ejs, natsconf.MustSubjects("im"), natsconf.StoreConfig{}); err == nil {
		t.Error("edge created natter's stores")
	}
	if _, err := ejs.Publish(jsCtx(), "im.store.room.x", []byte("forged")); err == nil {
		t.Error("edge stored a room message")
	}

	// Refused subscriptions: commands and events (the handlers' side),
	// stores, JetStream, everything.
	for _, subj := range []string{"im.cmd.join", "im.evt.connect", "im.store.room.x", "im.>", "$JS.API.>", ">",
		"_INBOX.>", "_INBOX.x", natsconf.HandlersInboxPrefix + ".>", natsconf.HandlersInboxPrefix + ".x.*", "$KV.>"} {
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
	for _, s := range []string{"im.room.x", "im.user.bob", "im.conn.e1.c1", "im.bcast", ">",
		"_INBOX.>", natsconf.EdgeInboxPrefix + ".>", natsconf.EdgeInboxPrefix + ".x.*"} {
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
	permRouteEnv(t, "routeFromEnv", 6222, 6223, 6224)
	s := natsconf.MustSubjects("im")
	for _, file := range []string{"../single.conf", "../cluster/n1.conf", "../cluster/n2.conf", "../cluster/n3.conf"} {
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
		permSame(t, file+": edge", users[natsconf.EdgeUser].Permissions, embedded.EdgePermissions(s))
		permSame(t, file+": handlers", users[natsconf.HandlersUser].Permissions, embedded.HandlersPermissions(s))
		if !opts.JetStream {
			t.Errorf("%s: JetStream is off", file)
		}
	}

	// single.conf as a running server (on a random port, storing in a
	// temporary directory): the passwords come from the environment.
	opts, err := server.ProcessConfigFile("../single.conf")
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

// TestInboxPrefixes: each natter user gets its own inbox prefix from
// natsconf.Connect and Connect, may subscribe only there, and so cannot read
// the replies the other user gets.
func TestInboxPrefixes(t *testing.T) {
	ns := permStart(t)
	url := ns.ClientURL()
	host := strings.TrimPrefix(url, "nats://")

	// The prefix follows the user: from nats.UserInfo, from the URL, or
	// none; an explicit nats.CustomInboxPrefix wins.
	for _, c := range []struct {
		what string
		urls string
		opts []nats.Option
		want string
	}{
		{"edge by UserInfo", url, []nats.Option{nats.UserInfo(natsconf.EdgeUser, permEdgePass)}, natsconf.EdgeInboxPrefix},
		{"handlers by UserInfo", url, []nats.Option{nats.UserInfo(natsconf.HandlersUser, permHandlersPass)}, natsconf.HandlersInboxPrefix},
		{"edge in the URL", "nats://" + natsconf.EdgeUser + ":" + permEdgePass + "@" + host, nil, natsconf.EdgeInboxPrefix},
		{"handlers in the second URL", "nats://127.0.0.1:1, " + "nats://" + natsconf.HandlersUser + ":" + permHandlersPass + "@" + host, nil, natsconf.HandlersInboxPrefix},
		{"another user", url, []nats.Option{nats.UserInfo(permAdmin, permAdminPass)}, ""},
		{"explicit prefix", url, []nats.Option{nats.UserInfo(permAdmin, permAdminPass), nats.CustomInboxPrefix(natsconf.EdgeInboxPrefix)}, natsconf.EdgeInboxPrefix},
	} {
		nc, err := natsconf.Connect(c.urls, "prefix-test", c.opts...)
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		if got := nc.Opts.InboxPrefix; got != c.want {
			t.Errorf("%s: inbox prefix %q, want %q", c.what, got, c.want)
		}
		if inbox := nc.NewInbox(); !strings.HasPrefix(inbox, cmp.Or(c.want, "_INBOX")+".") {
			t.Errorf("%s: NewInbox %q", c.what, inbox)
		}
		nc.Close()
	}
	for user, want := range map[string]string{natsconf.EdgeUser: natsconf.EdgeInboxPrefix, natsconf.HandlersUser: natsconf.HandlersInboxPrefix} {
		pass := map[string]string{natsconf.EdgeUser: permEdgePass, natsconf.HandlersUser: permHandlersPass}[user]
		nc, err := embedded.Connect(ns, "prefix-test", nats.UserInfo(user, pass))
		if err != nil {
			t.Fatal(err)
		}
		if nc.Opts.InboxPrefix != want {
			t.Errorf("Connect as %s: inbox prefix %q, want %q", user, nc.Opts.InboxPrefix, want)
		}
		nc.Close()
	}

	edge := permConnect(t, url, natsconf.EdgeUser, permEdgePass)
	handlers := permConnect(t, url, natsconf.HandlersUser, permHandlersPass)
	subj := natsconf.MustSubjects("im")
	ctx := permCtx(t)
	js, err := jetstream.New(handlers.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsconf.EnsureStores(ctx, js, subj, natsconf.StoreConfig{}); err != nil {
		t.Fatal(err)
	}

	// The edge cannot listen to the handlers' replies (nor to nats.go's
	// default inbox), so the history and stored dms the handlers read stay
	// theirs.
	for _, s := range []string{"_INBOX.>", natsconf.HandlersInboxPrefix + ".>"} {
		sniff, err := edge.SubscribeSync(s)
		if err != nil {
			t.Fatal(err)
		}
		edge.violation(t, "Subscription to", s)
		defer sniff.Unsubscribe()
	}
	if _, err := js.Publish(ctx, "im.store.user.bob", []byte("secret dm")); err != nil {
		t.Fatal(err)
	}
	msgs, err := natsconf.NewReader(handlers.Conn, subj.StoreNames().Inbox).After(ctx, "im.store.user.bob", 0, 10)
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "secret dm" {
		t.Fatalf("handlers reading the stored dm: %v %v", msgs, err)
	}
	// The handlers cannot listen to the edges' replies either.
	for _, s := range []string{"_INBOX.>", natsconf.EdgeInboxPrefix + ".>"} {
		if _, err := handlers.SubscribeSync(s); err != nil {
			t.Fatal(err)
		}
		handlers.violation(t, "Subscription to", s)
	}

	// Requests both ways work, each reply in its own user's inbox.
	replies := make(chan string, 10)
	cmd, err := handlers.Subscribe("im.cmd.join", func(m *nats.Msg) {
		replies <- m.Reply
		_ = m.Respond([]byte("joined"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Unsubscribe()
	live, err := edge.Subscribe("im.user.carol", func(m *nats.Msg) {
		replies <- m.Reply
		_ = m.Respond([]byte("live"))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Unsubscribe()
	if err := errors.Join(handlers.Flush(), edge.Flush()); err != nil {
		t.Fatal(err)
	}
	if m, err := edge.Request("im.cmd.join", nil, 5*time.Second); err != nil || string(m.Data) != "joined" {
		t.Errorf("edge request: %v", err)
	} else if r := <-replies; !strings.HasPrefix(r, natsconf.EdgeInboxPrefix+".") {
		t.Errorf("the edge's reply subject %q", r)
	}
	if m, err := handlers.Request("im.user.carol", nil, 5*time.Second); err != nil || string(m.Data) != "live" {
		t.Errorf("handlers request: %v", err)
	} else if r := <-replies; !strings.HasPrefix(r, natsconf.HandlersInboxPrefix+".") {
		t.Errorf("the handlers' reply subject %q", r)
	}

	// The edge user with nats.go's default inbox cannot even receive its
	// replies: why Connect picks the prefix.
	plain := permConnect(t, url, natsconf.EdgeUser, permEdgePass, nats.CustomInboxPrefix("_INBOX"))
	if _, err := plain.Request("im.cmd.join", nil, time.Second); err == nil {
		t.Error("the edge user got a reply on _INBOX")
	}
	if r := <-replies; !strings.HasPrefix(r, "_INBOX.") {
		t.Errorf("the plain request's reply subject %q", r)
	}
}

// permRefused publishes raw JetStream API requests as pc and checks that the
// server refuses each and that no answer comes.
func permRefused(t *testing.T, pc *permConn, subjects ...string) {
	t.Helper()
	inbox := pc.NewInbox()
	sub, err := pc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, subject := range subjects {
		if err := pc.PublishRequest(subject, inbox, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		pc.violation(t, "Publish to", subject)
	}
	if m, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Errorf("a refused request was answered: %s", m.Data)
	}
}

// TestHandlersJetStreamScoped: the handlers user can use natter's streams
// and bucket only, and cannot delete, purge or create any other stream, nor
// delete or purge natter's room history.
func TestHandlersJetStreamScoped(t *testing.T) {
	ns := permStart(t)
	url := ns.ClientURL()
	ctx := permCtx(t)
	subj := natsconf.MustSubjects("im")
	names := subj.StoreNames()

	admin := permConnect(t, url, permAdmin, permAdminPass)
	ajs, err := jetstream.New(admin.Conn)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}, AllowDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ajs.Publish(ctx, "other.x", []byte("not natter's")); err != nil {
		t.Fatal(err)
	}
	if _, err := ajs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "OTHERKV"}); err != nil {
		t.Fatal(err)
	}

	handlers := permConnect(t, url, natsconf.HandlersUser, permHandlersPass)
	js, err := jetstream.New(handlers.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsconf.EnsureStores(ctx, js, subj, natsconf.StoreConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "im.store.room.x", []byte("history")); err != nil {
		t.Fatal(err)
	}

	permRefused(t, handlers,
		// Another stream: no delete, purge, create, update, read, consumer.
		"$JS.API.STREAM.DELETE.OTHER", "$JS.API.STREAM.PURGE.OTHER", "$JS.API.STREAM.CREATE.OTHER2",
		"$JS.API.STREAM.UPDATE.OTHER", "$JS.API.STREAM.INFO.OTHER", "$JS.API.STREAM.MSG.DELETE.OTHER",
		"$JS.API.STREAM.MSG.GET.OTHER", "$JS.API.DIRECT.GET.OTHER", "$JS.API.DIRECT.GET.OTHER.other.x",
		"$JS.API.CONSUMER.CREATE.OTHER", "$JS.API.CONSUMER.CREATE.OTHER.c.other.x", "$JS.API.STREAM.DELETE.KV_OTHERKV",
		// Natter's streams: never deleted; room history never purged or edited; the inbox and pending dms never purged.
		"$JS.API.STREAM.DELETE."+names.Rooms, "$JS.API.STREAM.DELETE."+names.Inbox, "$JS.API.STREAM.DELETE.KV_"+names.Members,
		"$JS.API.STREAM.DELETE."+subj.PendingStore(), "$JS.API.STREAM.PURGE."+subj.PendingStore(),
		"$JS.API.STREAM.PURGE."+names.Rooms, "$JS.API.STREAM.PURGE."+names.Inbox, "$JS.API.STREAM.MSG.DELETE."+names.Rooms,
		// The account as a whole.
		"$JS.API.STREAM.LIST", "$JS.API.STREAM.NAMES", "$JS.API.ACCOUNT.PURGE.$G", "$JS.API.META.LEADER.STEPDOWN",
		"$JS.API.STREAM.RESTORE.OTHER2", "$JS.API.STREAM.SNAPSHOT."+names.Rooms,
		// What natter does not do: consumers on the message streams.
		"$JS.API.CONSUMER.CREATE."+names.Rooms+".c.im.store.room.x", "$JS.API.CONSUMER.DELETE."+names.Inbox+".c",
		"$JS.API.CONSUMER.CREATE."+subj.PendingStore()+".c.im.store.pending.bob",
	)
	// Another bucket's keys: no writes.
	if err := handlers.Publish("$KV.OTHERKV.k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	handlers.violation(t, "Publish to", "$KV.OTHERKV.k")
	// Through the jetstream API as well.
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	if err := js.DeleteStream(short(), "OTHER"); err == nil {
		t.Error("handlers deleted stream OTHER")
	}
	if rooms, err := js.Stream(ctx, names.Rooms); err != nil {
		t.Fatal(err)
	} else if err := rooms.Purge(short()); err == nil {
		t.Error("handlers purged the rooms stream")
	}

	// Nothing changed: OTHER and the room history are intact.
	if info, err := other.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("stream OTHER after the handlers' attempts: %+v %v", info, err)
	}
	rooms, err := ajs.Stream(ctx, names.Rooms)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := rooms.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("rooms stream after the handlers' attempts: %+v %v", info, err)
	}
	if names, err := permStreamNames(ctx, ajs); err != nil || !slices.Equal(names, []string{"IM_INBOX", "IM_PENDING", "IM_ROOMS", "KV_IM_MEMBERS", "KV_OTHERKV", "OTHER"}) {
		t.Errorf("streams %q (%v)", names, err)
	}
}

func permStreamNames(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	l := js.StreamNames(ctx)
	var names []string
	for n := range l.Name() {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, l.Err()
}

// TestHandlersPermissionsCoverNatter does, as the handlers user, everything
// natter's handlers do with NATS (and what the JetStream grants are for),
// and checks that the server refuses none of it.
func TestHandlersPermissionsCoverNatter(t *testing.T) {
	ns := permStart(t)
	url := ns.ClientURL()
	ctx := permCtx(t)
	subj := natsconf.MustSubjects("im")
	names := subj.StoreNames()
	handlers := permConnect(t, url, natsconf.HandlersUser, permHandlersPass)
	edge := permConnect(t, url, natsconf.EdgeUser, permEdgePass)
	admin := permConnect(t, url, permAdmin, permAdminPass)

	js, err := jetstream.New(handlers.Conn)
	if err != nil {
		t.Fatal(err)
	}
	// Stores: created, then updated (every handler process ensures them).
	if err := natsconf.EnsureStores(ctx, js, subj, natsconf.StoreConfig{}); err != nil {
		t.Fatalf("EnsureStores (create): %v", err)
	}
	if err := natsconf.EnsureStores(ctx, js, subj, natsconf.StoreConfig{RoomMaxMsgs: 500, InboxMaxAge: time.Hour}); err != nil {
		t.Fatalf("EnsureStores (update): %v", err)
	}
	rooms, err := js.Stream(ctx, names.Rooms)
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := js.Stream(ctx, names.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := js.Stream(ctx, subj.PendingStore())
	if err != nil {
		t.Fatal(err)
	}

	// rooms: store with a message id, read the last one, page history.
	var last uint64
	for i := range 5 {
		ack, err := js.Publish(ctx, "im.store.room.x", []byte{'0' + byte(i)}, jetstream.WithMsgID("m"+string(rune('0'+i))))
		if err != nil {
			t.Fatalf("room send: %v", err)
		}
		last = ack.Sequence
	}
	if m, err := rooms.GetLastMsgForSubject(ctx, "im.store.room.x"); err != nil || m.Sequence != last {
		t.Errorf("GetLastMsgForSubject: %v %v", m, err)
	}
	if _, err := rooms.GetMsg(ctx, last); err != nil {
		t.Errorf("GetMsg: %v", err)
	}
	reader := natsconf.NewReader(handlers.Conn, names.Rooms)
	if msgs, err := reader.After(ctx, "im.store.room.x", 0, 3); err != nil || len(msgs) != 3 {
		t.Errorf("Reader.After: %d %v", len(msgs), err)
	}
	if msgs, err := reader.Before(ctx, "im.store.room.x", 0, 2); err != nil || len(msgs) != 2 || msgs[1].Seq != last {
		t.Errorf("Reader.Before: %v %v", msgs, err)
	}
	if any, err := reader.Any(ctx, "im.store.room.x", last); err != nil || any {
		t.Errorf("Reader.Any: %v %v", any, err)
	}
	// inbox: store a dm and its pending entry (message ids, the pending
	// stream named), read, delete; read a dm by seq (a retry), delete a
	// refused one.
	ack, err := js.Publish(ctx, "im.store.user.bob", []byte("dm"), jetstream.WithMsgID("d1"))
	if err != nil {
		t.Fatal(err)
	}
	pend, err := js.PublishMsg(ctx, &nats.Msg{Subject: "im.store.pending.bob", Data: []byte("dm"), Header: nats.Header{"Natter-Seq": {"1"}}},
		jetstream.WithMsgID("pending:1"), jetstream.WithExpectStream(subj.PendingStore()))
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := natsconf.NewReader(handlers.Conn, subj.PendingStore()).After(ctx, "im.store.pending.bob", 0, 10); err != nil || len(msgs) != 1 {
		t.Errorf("pending read: %v %v", msgs, err)
	}
	if err := pending.DeleteMsg(ctx, pend.Sequence); err != nil {
		t.Errorf("delete the pending entry: %v", err)
	}
	if m, err := inbox.GetMsg(ctx, ack.Sequence); err != nil || string(m.Data) != "dm" {
		t.Errorf("read the dm by seq: %v %v", m, err)
	}
	if err := inbox.DeleteMsg(ctx, ack.Sequence); err != nil {
		t.Errorf("delete the dm: %v", err)
	}

	// members: every KV operation of connset, a watch of a bucket large
	// enough for the server to ask for flow control (answered through
	// allow_responses), and the purge of ForgetMembers.
	kv, err := js.KeyValue(ctx, names.Members)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, "x.bob", []byte(`["c1"]`))
	if err != nil {
		t.Fatal(err)
	}
	if rev, err = kv.Update(ctx, "x.bob", []byte(`["c1","c2"]`), rev); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "x.bob"); err != nil || e.Revision() != rev {
		t.Errorf("Get: %v %v", e, err)
	}
	if err := kv.Delete(ctx, "x.bob", jetstream.LastRevision(rev)); err != nil {
		t.Errorf("Delete: %v", err)
	}
	const keys = 3000
	value := []byte(strings.Repeat("c", 400))
	for i := range keys {
		if _, err := js.PublishAsync("$KV."+names.Members+".r"+strconv.Itoa(i%50)+".u"+strconv.Itoa(i), value); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("async puts not acknowledged")
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for e := range w.Updates() {
		if e == nil {
			break
		}
		seen++
	}
	_ = w.Stop()
	if seen != keys {
		t.Errorf("WatchAll saw %d keys, want %d", seen, keys)
	}
	lister, err := kv.ListKeysFiltered(ctx, "r7.*")
	if err != nil {
		t.Fatal(err)
	}
	listed := 0
	for range lister.Keys() {
		listed++
	}
	if listed != keys/50 {
		t.Errorf("ListKeysFiltered: %d keys", listed)
	}
	kvStream, err := js.Stream(ctx, "KV_"+names.Members)
	if err != nil {
		t.Fatal(err)
	}
	// The sweep's purge of one key's old deletion markers, then ForgetMembers'.
	if err := kvStream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+names.Members+".x.bob"), jetstream.WithPurgeSequence(rev+1)); err != nil {
		t.Errorf("purge a key's deletion markers: %v", err)
	}
	if err := kvStream.Purge(ctx); err != nil {
		t.Errorf("purge the members bucket: %v", err)
	}

	// A micro service: an endpoint serving the edge, and $SRV discovery.
	svc, err := micro.AddService(handlers.Conn, micro.Config{Name: "perm", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	if err := svc.AddEndpoint("join", micro.HandlerFunc(func(r micro.Request) { _ = r.Respond([]byte("joined")) }),
		micro.WithEndpointSubject("im.cmd.join")); err != nil {
		t.Fatal(err)
	}
	if err := handlers.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := edge.Request("im.cmd.join", nil, 5*time.Second); err != nil || string(m.Data) != "joined" {
		t.Errorf("edge request to the service: %v", err)
	}
	if m, err := admin.Request("$SRV.PING.perm", nil, 5*time.Second); err != nil || !strings.Contains(string(m.Data), `"perm"`) {
		t.Errorf("$SRV.PING: %v", err)
	}
	// Deliveries and edge liveness.
	for _, s := range []string{"im.room.x", "im.user.bob", "im.conn.e1.c1", "im.bcast"} {
		if err := handlers.Publish(s, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := handlers.Request("im.edge.e1", nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("probe of a gone edge: %v, want no responders", err)
	}

	handlers.noViolations(t)
	edge.noViolations(t)
}

// TestHandlersPermissionsUpgrade: the handlers user can upgrade an inbox
// stream of an older natter (pending entries kept in it) with
// EnsureStores: the entries move to the pending stream, with no permission
// refused.
func TestHandlersPermissionsUpgrade(t *testing.T) {
	ns := permStart(t)
	url := ns.ClientURL()
	ctx := permCtx(t)
	subj := natsconf.MustSubjects("im")
	admin := permConnect(t, url, permAdmin, permAdminPass)
	ajs, err := jetstream.New(admin.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ajs.CreateStream(ctx, jetstream.StreamConfig{
		Name: subj.StoreNames().Inbox, Subjects: []string{"im.store.user.*", "im.store.pending.*"}, AllowDirect: true,
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := ajs.PublishMsg(ctx, &nats.Msg{Subject: "im.store.pending.bob", Data: []byte("dm"), Header: nats.Header{natsconf.HeaderSeq: {strconv.Itoa(i + 1)}}}); err != nil {
			t.Fatal(err)
		}
	}
	handlers := permConnect(t, url, natsconf.HandlersUser, permHandlersPass)
	js, err := jetstream.New(handlers.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsconf.EnsureStores(ctx, js, subj, natsconf.StoreConfig{}); err != nil {
		t.Fatalf("EnsureStores over an old inbox stream as handlers: %v", err)
	}
	if msgs, err := natsconf.NewReader(handlers.Conn, subj.PendingStore()).After(ctx, "im.store.pending.bob", 0, 10); err != nil || len(msgs) != 3 {
		t.Errorf("pending entries moved: %d (%v), want 3", len(msgs), err)
	}
	handlers.noViolations(t)
}

// permRouteEnv sets the route password and the route URLs (to ports on
// 127.0.0.1) the cluster configs read from the environment.
func permRouteEnv(t *testing.T, password string, ports ...int) {
	t.Helper()
	var urls []string
	for _, p := range ports {
		urls = append(urls, "nats-route://route:"+password+"@127.0.0.1:"+strconv.Itoa(p))
	}
	t.Setenv("NATTER_ROUTE_PASSWORD", password)
	t.Setenv("NATTER_ROUTES", "["+strings.Join(urls, ", ")+"]")
}

// TestClusterConfigFiles checks what the three cluster configs set apart
// from the users: authenticated routes to each other, JetStream in distinct
// store directories, distinct names and ports; and that a config whose
// route variables are missing is refused rather than run without route
// authentication.
func TestClusterConfigFiles(t *testing.T) {
	t.Setenv("NATTER_EDGE_PASSWORD", "e")
	t.Setenv("NATTER_HANDLERS_PASSWORD", "h")
	for _, unset := range []string{"NATTER_ROUTE_PASSWORD", "NATTER_ROUTES"} {
		permRouteEnv(t, "routepw", 6222, 6223, 6224)
		os.Unsetenv(unset)
		if _, err := server.ProcessConfigFile("../cluster/n1.conf"); err == nil {
			t.Errorf("cluster/n1.conf without %s: no error", unset)
		}
	}
	permRouteEnv(t, "routepw", 6222, 6223, 6224)
	seen := map[string]string{}
	distinct := func(file, what, v string) {
		if other, ok := seen[what+"="+v]; ok {
			t.Errorf("%s and %s have the same %s %q", other, file, what, v)
		}
		seen[what+"="+v] = file
	}
	for i := 1; i <= 3; i++ {
		file := "../cluster/n" + strconv.Itoa(i) + ".conf"
		opts, err := server.ProcessConfigFile(file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if opts.Cluster.Name != "natter" || opts.Cluster.Username != "route" || opts.Cluster.Password != "routepw" {
			t.Errorf("%s: cluster %q, route user %q password %q; want natter, route, $NATTER_ROUTE_PASSWORD",
				file, opts.Cluster.Name, opts.Cluster.Username, opts.Cluster.Password)
		}
		if len(opts.Routes) != 3 {
			t.Errorf("%s: routes %v", file, opts.Routes)
		}
		for _, r := range opts.Routes {
			if pass, _ := r.User.Password(); r.User.Username() != "route" || pass != "routepw" {
				t.Errorf("%s: route %s without the route user's credentials", file, r.Redacted())
			}
		}
		if !opts.JetStream || opts.StoreDir == "" {
			t.Errorf("%s: JetStream %v, store dir %q", file, opts.JetStream, opts.StoreDir)
		}
		distinct(file, "store dir", opts.StoreDir)
		distinct(file, "server name", opts.ServerName)
		distinct(file, "client port", strconv.Itoa(opts.Port))
		distinct(file, "cluster port", strconv.Itoa(opts.Cluster.Port))
		distinct(file, "monitoring port", strconv.Itoa(opts.HTTPPort))
	}
}

// permFreePorts returns n TCP ports free on 127.0.0.1 a moment ago.
func permFreePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

// permClusterNode starts a server from a cluster config with its ports and
// store moved out of the way (routes come from NATTER_ROUTES).
func permClusterNode(t *testing.T, file string, clusterPort int) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatal(err)
	}
	opts.Port, opts.HTTPPort, opts.Cluster.Port = server.RANDOM_PORT, 0, clusterPort
	opts.StoreDir, opts.NoSigs, opts.NoLog = t.TempDir(), true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatalf("%s: not ready", file)
	}
	return ns
}

// TestClusterConfigRoutes runs the three cluster configs (on free ports):
// they form a cluster in which the handlers user creates natter's stores
// with 3 replicas and an edge on one node hears a delivery published on
// another; a node that presents a wrong route password, or none, is kept
// out.
func TestClusterConfigRoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Setenv("NATTER_EDGE_PASSWORD", permEdgePass)
	t.Setenv("NATTER_HANDLERS_PASSWORD", permHandlersPass)
	ports := permFreePorts(t, 5)
	permRouteEnv(t, "routepw", ports[:3]...)
	var nodes []*server.Server
	for i := range 3 {
		nodes = append(nodes, permClusterNode(t, "../cluster/n"+strconv.Itoa(i+1)+".conf", ports[i]))
	}
	if !embeddedtest.WaitFor(20*time.Second, func() bool {
		for _, n := range nodes {
			if embeddedtest.PeerCount(n) != 2 || !n.JetStreamIsClustered() {
				return false
			}
		}
		return nodes[0].JetStreamIsLeader() || nodes[1].JetStreamIsLeader() || nodes[2].JetStreamIsLeader()
	}) {
		t.Fatalf("no cluster: peers %d %d %d", embeddedtest.PeerCount(nodes[0]), embeddedtest.PeerCount(nodes[1]), embeddedtest.PeerCount(nodes[2]))
	}

	// Intruders: a wrong password, and none, in their route URLs and
	// their own authorization.
	permRouteEnv(t, "wrong", ports[:3]...)
	wrong := permClusterNode(t, "../cluster/n3.conf", ports[3])
	t.Setenv("NATTER_ROUTES", "[nats-route://127.0.0.1:"+strconv.Itoa(ports[0])+"]")
	none := permClusterNode(t, "../cluster/n2.conf", ports[4])

	ctx := permCtx(t)
	handlers := permConnect(t, nodes[2].ClientURL(), natsconf.HandlersUser, permHandlersPass)
	js, err := jetstream.New(handlers.Conn)
	if err != nil {
		t.Fatal(err)
	}
	subj := natsconf.MustSubjects("im")
	if err := natsconf.EnsureStores(ctx, js, subj, natsconf.StoreConfig{Replicas: 3}); err != nil {
		t.Fatalf("EnsureStores with 3 replicas: %v", err)
	}
	rooms, err := js.Stream(ctx, subj.StoreNames().Rooms)
	if err != nil {
		t.Fatal(err)
	}
	if info := rooms.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Errorf("rooms stream: replicas %d, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	edge := permConnect(t, nodes[0].ClientURL(), natsconf.EdgeUser, permEdgePass)
	sub, err := edge.SubscribeSync("im.room.x")
	if err != nil {
		t.Fatal(err)
	}
	if err := edge.Flush(); err != nil {
		t.Fatal(err)
	}
	if !embeddedtest.WaitFor(5*time.Second, func() bool {
		if _, err := js.Publish(ctx, "im.store.room.x", []byte("across")); err != nil {
			t.Fatal(err)
		}
		m, err := sub.NextMsg(200 * time.Millisecond)
		return err == nil && string(m.Data) == "across"
	}) {
		t.Error("the edge on node 1 did not hear a room message stored through node 3")
	}
	handlers.noViolations(t)
	edge.noViolations(t)

	time.Sleep(time.Second) // the intruders had time to try
	for name, n := range map[string]*server.Server{"wrong password": wrong, "no password": none} {
		if r := n.NumRoutes(); r != 0 {
			t.Errorf("node with %s: %d route connections", name, r)
		}
	}
	for i, n := range nodes {
		if r := embeddedtest.PeerCount(n); r != 2 {
			t.Errorf("node %d: routes to %d servers, want 2", i+1, r)
		}
	}
}
