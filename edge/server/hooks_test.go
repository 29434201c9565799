package server_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"natter/edge/server"
	"natter/edge/wstest"
	"natter/handlers/runtime"
	"natter/natsconf"
)

// TestSendHook: a hook deployed on im.hook.send sees every send before it
// is stored, with the sender's identity, and rejects it (error
// "rejected" with its message), rewrites its body or accepts it; a slow
// hook does not hold the room (the send is accepted after the hook
// deadline); with no hook, sends go on at once.
func TestSendHook(t *testing.T) {
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	alice.join(t, "lobby")
	bob.join(t, "lobby")
	send := func(body string) map[string]any {
		return map[string]any{"type": "send", "room": "lobby", "body": map[string]any{"text": body}}
	}
	nextMsg := func(p *peer) wstest.Frame {
		t.Helper()
		return p.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "msg" })
	}
	// No hook: stored as sent (and "no hook" is now remembered).
	alice.request(t, "ack", send("before"))
	nextMsg(alice)
	nextMsg(bob)

	nc, err := nats.Connect(ns.ClientURL(), nats.Name("a team's hook"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subject, _ := natsconf.MustSubjects("im").Hook("send")
	seen := make(chan nats.Header, 16)
	sub, err := nc.QueueSubscribe(subject, "moderation", func(m *nats.Msg) {
		var cmd struct {
			Type string `json:"type"`
			Room string `json:"room"`
			Body struct {
				Text string `json:"text"`
			} `json:"body"`
		}
		_ = json.Unmarshal(m.Data, &cmd)
		seen <- m.Header
		var reply runtime.HookReply
		switch text := cmd.Body.Text; {
		case strings.Contains(text, "spam"):
			reply = runtime.HookReply{Action: runtime.HookReject, Message: "no spam in " + cmd.Room}
		case strings.Contains(text, "darn"):
			reply = runtime.HookReply{Action: runtime.HookReplace, Body: json.RawMessage(`{"text":"` + strings.ReplaceAll(text, "darn", "****") + `"}`)}
		case text == "slow":
			time.Sleep(time.Second)
			reply = runtime.HookReply{Action: runtime.HookReject, Message: "too late"}
		default:
			reply = runtime.HookReply{Action: runtime.HookAccept}
		}
		b, _ := json.Marshal(reply)
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(runtime.HookRecheck + 100*time.Millisecond) // "no hook" forgotten

	f := alice.errorCode(t, "rejected", send("buy spam now"))
	if f.Str("message") != "no spam in lobby" {
		t.Errorf("rejected with %q, want the hook's message", f.Str("message"))
	}
	hdr := <-seen
	if hdr.Get(natsconf.HeaderUser) != "alice" || hdr.Get(natsconf.HeaderConn) != alice.conn {
		t.Errorf("hook request identity %v, want alice on %s", hdr, alice.conn)
	}
	ack := alice.request(t, "ack", send("oh darn"))
	<-seen
	seq, _ := ack.Uint("seq")
	for _, p := range []*peer{alice, bob} {
		m := nextMsg(p)
		if got, _ := m.Uint("seq"); got != seq || m.JSON("body") != `{"text":"oh ****"}` {
			t.Fatalf("%s: want the rewritten msg %d, got %s", p.user, seq, m)
		}
	}
	alice.request(t, "ack", send("fine"))
	<-seen
	nextMsg(alice)
	if m := nextMsg(bob); m.JSON("body") != `{"text":"fine"}` {
		t.Fatalf("bob: got %s", m)
	}
	// A slow hook: accepted after the hook deadline, as sent.
	start := time.Now()
	alice.request(t, "ack", send("slow"))
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Errorf("a slow hook held the send %v", d)
	}
	if m := nextMsg(bob); m.JSON("body") != `{"text":"slow"}` {
		t.Fatalf("bob: got %s", m)
	}
	h := bob.request(t, "history", map[string]any{"type": "history", "room": "lobby"})
	if got := h.JSON("messages"); strings.Contains(got, "spam") || !strings.Contains(got, "oh ****") {
		t.Errorf("history %s: want the rewritten message and not the rejected one", got)
	}
	// The hook goes away: sends go on, without waiting for anyone.
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	start = time.Now()
	alice.request(t, "ack", send("spam again"))
	if d := time.Since(start); d > runtime.HookTimeout {
		t.Errorf("with no hook a send took %v", d)
	}
}

// TestDMHook: a hook on im.hook.dm rejects or rewrites dms before they are
// stored.
func TestDMHook(t *testing.T) {
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subject, _ := natsconf.MustSubjects("im").Hook("dm")
	if _, err := nc.QueueSubscribe(subject, "moderation", func(m *nats.Msg) {
		switch {
		case strings.Contains(string(m.Data), "spam"):
			_ = m.Respond([]byte(`{"action":"reject","message":"no spam"}`))
		default:
			_ = m.Respond([]byte(`{"action":"replace","body":"[redacted]"}`))
		}
	}); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	if f := alice.errorCode(t, "rejected", map[string]any{"type": "dm", "to": "bob", "body": "spam"}); f.Str("message") != "no spam" {
		t.Errorf("rejected: %s", f)
	}
	alice.request(t, "ack", map[string]any{"type": "dm", "to": "bob", "body": "secret"})
	if d := bob.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "dm" }); d.JSON("body") != `"[redacted]"` {
		t.Fatalf("bob: %s", d)
	}
}
