package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
	"natter/natsconf"
)

// alive checks that c is still open and served.
func alive(t testing.TB, c *peer) {
	t.Helper()
	c.request(t, "pong", map[string]any{"type": "ping"})
}

func TestBadFrame(t *testing.T) {
	srv := devEdge(t)
	c := connect(t, srv, "alice")
	id64 := strings.Repeat("i", 64)
	id65 := strings.Repeat("i", 65)
	cases := []struct {
		name   string
		opcode gws.Opcode
		frame  string
		id     string // echoed id, if any
	}{
		{"not JSON", gws.OpcodeText, `hello`, ""},
		{"truncated JSON", gws.OpcodeText, `{"type":"ping",`, ""},
		{"array", gws.OpcodeText, `[{"type":"ping"}]`, ""},
		{"string", gws.OpcodeText, `"ping"`, ""},
		{"number", gws.OpcodeText, `42`, ""},
		{"null", gws.OpcodeText, `null`, ""},
		{"empty", gws.OpcodeText, ``, ""},
		{"missing type", gws.OpcodeText, `{"id":"m1","room":"lobby"}`, "m1"},
		{"empty type", gws.OpcodeText, `{"type":"","id":"m2"}`, "m2"},
		{"type not a string", gws.OpcodeText, `{"type":7,"id":"m3"}`, "m3"},
		{"id over 64 bytes", gws.OpcodeText, `{"type":"ping","id":"` + id65 + `"}`, ""},
		{"binary frame", gws.OpcodeBinary, `{"type":"ping"}`, ""},
	}
	for _, tc := range cases {
		if err := c.SendRaw(tc.opcode, []byte(tc.frame)); err != nil {
			t.Fatal(err)
		}
		f := c.expect(t, "error")
		if f.Str("code") != "bad_frame" || f.Str("message") == "" {
			t.Errorf("%s: want error bad_frame with a message, got %s", tc.name, f)
		}
		if f.Str("id") != tc.id {
			t.Errorf("%s: error id = %q, want %q", tc.name, f.Str("id"), tc.id)
		}
		alive(t, c)
	}
	// 64 bytes is allowed.
	if err := c.Send(map[string]any{"type": "ping", "id": id64}); err != nil {
		t.Fatal(err)
	}
	if f := c.expect(t, "pong"); f.Str("id") != id64 {
		t.Errorf("64-byte id: got %s", f)
	}
}

func TestUnknownType(t *testing.T) {
	srv := devEdge(t)
	c := connect(t, srv, "alice")
	for _, typ := range []string{"frobnicate", "welcome", "a.b", "im.>", "*", "JOIN"} {
		f := c.errorCode(t, "unknown_type", map[string]any{"type": typ})
		if f.Str("id") == "" {
			t.Errorf("type %q: error without the id: %s", typ, f)
		}
	}
	alive(t, c)
}

func TestBadRoom(t *testing.T) {
	srv := devEdge(t)
	c := connect(t, srv, "alice")
	bad := []any{"a.b", "*", ">", "lobby.>", "has space", "", strings.Repeat("r", 129), "tab\there", "café", nil}
	for _, room := range bad {
		for _, typ := range []string{"join", "leave", "send", "members"} {
			c.errorCode(t, "bad_room", map[string]any{"type": typ, "room": room, "body": "x"})
		}
	}
	for _, typ := range []string{"join", "leave", "send", "members"} {
		c.errorCode(t, "bad_room", map[string]any{"type": typ, "body": "x"}) // no room at all
	}
	c.join(t, strings.Repeat("r", 128))
}

func TestBadUser(t *testing.T) {
	srv := devEdge(t)
	c := connect(t, srv, "alice")
	for _, to := range []any{"a.b", "*", ">", "", "has space", strings.Repeat("u", 129)} {
		c.errorCode(t, "bad_user", map[string]any{"type": "dm", "to": to, "body": "x"})
	}
	c.errorCode(t, "bad_user", map[string]any{"type": "dm", "body": "x"})
}

func TestNotMember(t *testing.T) {
	srv := devEdge(t)
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	bob.join(t, "lobby")
	alice.errorCode(t, "not_member", map[string]any{"type": "send", "room": "lobby", "body": "let me in"})
	// Membership is per connection: another connection of a member user is
	// not a member.
	bob2 := connect(t, srv, "bob")
	bob2.errorCode(t, "not_member", map[string]any{"type": "send", "room": "lobby", "body": "me too"})
	bob.barrier(t)
}

// frameOf returns a ping frame of exactly n bytes.
func frameOf(t testing.TB, n int) []byte {
	t.Helper()
	head := `{"type":"ping","id":"big","pad":"`
	tail := `"}`
	if n < len(head)+len(tail) {
		t.Fatalf("frame of %d bytes is too small", n)
	}
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

func TestTooLarge(t *testing.T) {
	srv := devEdge(t)
	c := connect(t, srv, "alice")
	const limit = 64 << 10

	if err := c.SendRaw(gws.OpcodeText, frameOf(t, limit)); err != nil {
		t.Fatal(err)
	}
	if f := c.expect(t, "pong"); f.Str("id") != "big" {
		t.Errorf("frame of exactly 64 KiB: got %s", f)
	}
	for _, n := range []int{limit + 1, 2 * limit} {
		if err := c.SendRaw(gws.OpcodeText, frameOf(t, n)); err != nil {
			t.Fatal(err)
		}
		if f := c.expect(t, "error"); f.Str("code") != "too_large" {
			t.Errorf("frame of %d bytes: want too_large, got %s", n, f)
		}
		alive(t, c) // the connection stays open
	}
	// Beyond twice the limit (see gateway.Config.MaxFrame) the edge closes
	// the connection with 1009 (message too big): it never holds more
	// than about two frames' worth of one client's bytes.
	// The edge stops reading mid-frame, so the write may fail (connection
	// reset) and the close frame may be lost with the reset.
	huge := connect(t, srv, "bob")
	_ = huge.SendRaw(gws.OpcodeText, frameOf(t, 2*limit+1))
	if code := huge.Closed(t); code != 1009 && code != wstest.CloseNoFrame {
		t.Errorf("frame of 128 KiB+1: close code %d, want 1009", code)
	}
	alive(t, c)
}

// TestTooLargeCompressed checks that the limit applies to the message after
// decompression.
func TestTooLargeCompressed(t *testing.T) {
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Compression: true}})
	c := &peer{Client: wstest.DialWith(t, wstest.URL(srv, "/ws?user=alice"), wstest.Options{Compression: true}), user: "alice"}
	c.expect(t, "welcome")
	if ext := c.UpgradeHeader().Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("compression not negotiated: Sec-WebSocket-Extensions %q", ext)
	}
	if err := c.SendRaw(gws.OpcodeText, frameOf(t, 100<<10)); err != nil {
		t.Fatal(err)
	}
	if f := c.expect(t, "error"); f.Str("code") != "too_large" {
		t.Errorf("compressed frame of 100 KiB: want too_large, got %s", f)
	}
	if err := c.SendRaw(gws.OpcodeText, frameOf(t, 60<<10)); err != nil {
		t.Fatal(err)
	}
	if f := c.expect(t, "pong"); f.Str("id") != "big" {
		t.Errorf("compressed frame of 60 KiB: got %s", f)
	}
}

func TestRateLimited(t *testing.T) {
	srv := startEdge(t, server.Config{Gateway: gateway.Config{Rate: 1, Burst: 5}})

	// A burst of 5 passes; what follows at once is refused.
	c := connect(t, srv, "alice")
	const n = 10
	for i := range n {
		if err := c.Send(map[string]any{"type": "ping", "id": fmt.Sprint("p", i)}); err != nil {
			t.Fatal(err)
		}
	}
	limited := 0
	for i := range n {
		f := c.Next(t)
		if f.Str("id") != fmt.Sprint("p", i) {
			t.Fatalf("reply %d: %s, want the reply to p%d", i, f, i)
		}
		switch {
		case i < 5 && f.Type() != "pong":
			t.Errorf("ping %d of the burst: %s, want pong", i, f)
		case i == 5 && (f.Type() != "error" || f.Str("code") != "rate_limited"):
			t.Errorf("ping 5, past the burst: %s, want error rate_limited", f)
		case f.Type() == "error" && f.Str("code") == "rate_limited":
			limited++
		case f.Type() != "pong":
			t.Errorf("ping %d: %s", i, f)
		}
	}
	if limited == 0 {
		t.Errorf("no command was rate limited")
	}

	// More than 20 refused in a row: bye rate_limited. The replies are read
	// before the last ping goes, so none is still queued when the edge
	// says bye.
	b := connect(t, srv, "bob")
	for i := range 5 + 20 {
		if err := b.Send(map[string]any{"type": "ping", "id": fmt.Sprint("q", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		b.expect(t, "pong")
	}
	for range 20 {
		if f := b.expect(t, "error"); f.Str("code") != "rate_limited" {
			t.Fatalf("want rate_limited, got %s", f)
		}
	}
	if err := b.Send(map[string]any{"type": "ping", "id": "last"}); err != nil {
		t.Fatal(err)
	}
	if f := b.expect(t, "bye"); f.Str("code") != "rate_limited" {
		t.Errorf("want bye rate_limited, got %s", f)
	}
	if code := b.Closed(t); code != 1008 {
		t.Errorf("close code %d, want 1008", code)
	}
}

// TestDefaultRateLimit: bursts of 200 by default.
func TestDefaultRateLimit(t *testing.T) {
	srv := devEdge(t)
	c := connect(t, srv, "alice")
	const burst, extra = 200, 10
	for i := range burst + extra {
		if err := c.Send(map[string]any{"type": "ping", "id": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	limited := 0
	for i := range burst + extra {
		f := c.Next(t)
		switch {
		case i < burst && f.Type() != "pong":
			t.Fatalf("command %d of a burst of 200: %s, want pong", i, f)
		case f.Type() == "error" && f.Str("code") == "rate_limited":
			limited++
		case f.Type() != "pong":
			t.Fatalf("command %d: %s", i, f)
		}
	}
	if limited == 0 {
		t.Errorf("%d commands at once: none rate limited", burst+extra)
	}
}

func TestBadClient(t *testing.T) {
	srv := devEdge(t)

	// 19 bad frames, a good one, 19 bad ones: the count starts again.
	ok := connect(t, srv, "alice")
	for range 2 {
		for range 19 {
			_ = ok.SendRaw(gws.OpcodeText, []byte("nonsense"))
		}
		for range 19 {
			ok.expect(t, "error")
		}
		alive(t, ok)
	}

	// 20 in a row: an error each, then bye bad_client and the close. The
	// first 19 errors are read before the 20th bad frame goes.
	bad := connect(t, srv, "bob")
	for range 19 {
		_ = bad.SendRaw(gws.OpcodeText, []byte("nonsense"))
	}
	for i := range 19 {
		if f := bad.expect(t, "error"); f.Str("code") != "bad_frame" {
			t.Fatalf("bad frame %d: got %s", i, f)
		}
	}
	_ = bad.SendRaw(gws.OpcodeBinary, []byte("nonsense"))
	f := bad.Next(t)
	if f.Type() != "error" || f.Str("code") != "bad_frame" {
		t.Errorf("20th bad frame: want its error frame before the bye, got %s", f)
	}
	bye := f
	if f.Type() != "bye" {
		bye = bad.expect(t, "bye")
	}
	if bye.Str("code") != "bad_client" || bye.Str("message") == "" {
		t.Errorf("want bye bad_client with a message, got %s", bye)
	}
	if code := bad.Closed(t); code != 1008 {
		t.Errorf("close code %d, want 1008", code)
	}
}

func TestIdleTimeout(t *testing.T) {
	srv := startEdge(t, server.Config{Gateway: gateway.Config{IdleTimeout: time.Second}})
	idle := connect(t, srv, "idle")
	active := connect(t, srv, "active")
	if hb, _ := active.welcome.Int("heartbeat"); hb != 1 {
		t.Errorf("welcome heartbeat = %d with a 1s idle timeout, want 1", hb)
	}
	// active sends WebSocket pings more often than the idle timeout; idle
	// says nothing.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for done := false; !done; {
		select {
		case <-idle.Done():
			done = true
		case <-tick.C:
			if err := active.SendRaw(gws.OpcodePing, []byte("hb")); err != nil {
				t.Fatal(err)
			}
			active.Pong(t)
			if time.Since(start) > 5*time.Second {
				t.Fatal("the idle connection is still open after 5s")
			}
		}
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("idle connection closed after %v, before the 1s idle timeout", d)
	}
	if f := idle.expect(t, "bye"); f.Str("code") != "idle" {
		t.Errorf("want bye idle, got %s", f)
	}
	if code := idle.Closed(t); code != 1000 {
		t.Errorf("close code %d, want 1000", code)
	}
	// A command counts as activity too.
	alive(t, active)
}

// TestUnavailable runs an edge whose NATS has no handlers.
func TestUnavailable(t *testing.T) {
	ns := wstest.StartNATS(t)
	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL(), Gateway: gateway.Config{RequestTimeout: time.Second}})
	c := connect(t, srv, "alice")
	for _, cmd := range []map[string]any{
		{"type": "join", "room": "lobby"},
		{"type": "send", "room": "lobby", "body": "x"},
		{"type": "members", "room": "lobby"},
		{"type": "dm", "to": "bob", "body": "x"},
		{"type": "broadcast", "body": "x"},
	} {
		f := c.errorCode(t, "unavailable", cmd)
		if f.Str("id") == "" {
			t.Errorf("%v: error without the id: %s", cmd, f)
		}
	}
	alive(t, c) // ping is the edge's own

	// With only the rooms handler running, rooms work and dm does not.
	wstest.StartHandlers(t, ns.ClientURL(), "rooms")
	c.join(t, "lobby")
	c.errorCode(t, "unavailable", map[string]any{"type": "dm", "to": "bob", "body": "x"})
}

// TestKicked has a backend tell the edge to close a connection.
func TestKicked(t *testing.T) {
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
	c := connect(t, srv, "alice")
	other := connect(t, srv, "alice")
	// A command through NATS: the edge's subscription of c's subject, sent
	// before it, is in place at the server once the reply is back.
	c.members(t, "lobby")

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subject, err := natsconf.MustSubjects(natsconf.DefaultPrefix).Conn(srv.Gateway().EdgeID(), c.conn)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(subject)
	msg.Header.Set(natsconf.HeaderOp, natsconf.OpKick)
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	if f := c.expect(t, "bye"); f.Str("code") != "kicked" {
		t.Errorf("want bye kicked, got %s", f)
	}
	if code := c.Closed(t); code != 1008 {
		t.Errorf("close code %d, want 1008", code)
	}
	alive(t, other) // only that connection
}
