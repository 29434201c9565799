package runtime_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"natter/edge/protocol"
	"natter/handlers/runtime"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

func hookNATS(tb testing.TB) *nats.Conn {
	tb.Helper()
	return embeddedtest.ConnectInProcess(tb, embeddedtest.StartServer(tb, embedded.Config{DontListen: true}))
}

func hookReq(body string) *runtime.Request {
	return &runtime.Request{
		Identity: runtime.Identity{Conn: "c1", User: "alice", Edge: "e1"},
		Command:  protocol.Command{Type: protocol.TypeSend, Room: "lobby", Body: json.RawMessage(body)},
	}
}

// TestHooksApply: reject, replace, accept; a hook's bad answer and its
// silence are accepts; with no hook, Apply does not ask again before the
// recheck interval.
func TestHooksApply(t *testing.T) {
	nc := hookNATS(t)
	hooks := runtime.NewHooks(nc, subjects, quiet(), 100*time.Millisecond, 300*time.Millisecond)
	ctx := context.Background()
	if errs := hooks.Apply(ctx, []*runtime.Request{hookReq(`"a"`), nil}); errs[0] != nil || errs[1] != nil {
		t.Fatalf("no hook: %v", errs)
	}
	subject, _ := subjects.Hook(protocol.TypeSend)
	asked := make(chan struct{}, 16)
	_, err := nc.Subscribe(subject, func(m *nats.Msg) {
		asked <- struct{}{}
		var cmd protocol.Command
		_ = json.Unmarshal(m.Data, &cmd)
		switch string(cmd.Body) {
		case `"reject"`:
			_ = m.Respond([]byte(`{"action":"reject","message":"nope"}`))
		case `"replace"`:
			_ = m.Respond([]byte(`{"action":"replace","body":{"x":1}}`))
		case `"garbage"`:
			_ = m.Respond([]byte(`not json`))
		case `"silent"`:
		default:
			_ = m.Respond([]byte(`{"action":"accept"}`))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	// Still remembered as absent: not asked.
	hooks.Apply(ctx, []*runtime.Request{hookReq(`"reject"`)})
	select {
	case <-asked:
		t.Fatal("hook asked within the recheck interval after no responders")
	case <-time.After(50 * time.Millisecond):
	}
	time.Sleep(300 * time.Millisecond)
	reqs := []*runtime.Request{hookReq(`"reject"`), hookReq(`"replace"`), hookReq(`"garbage"`), hookReq(`"silent"`), hookReq(`"ok"`)}
	start := time.Now()
	errs := hooks.Apply(ctx, reqs)
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("Apply took %v: the hooks of a batch are asked at once, each within the deadline", d)
	}
	if e, ok := errs[0].(*protocol.Error); !ok || e.Code != protocol.CodeRejected || e.Message != "nope" {
		t.Errorf("reject: %v, want rejected: nope", errs[0])
	}
	if errs[1] != nil || string(reqs[1].Command.Body) != `{"x":1}` {
		t.Errorf("replace: %v, body %s", errs[1], reqs[1].Command.Body)
	}
	for i := 2; i < 5; i++ {
		if errs[i] != nil || string(reqs[i].Command.Body) != string(hookReq(string(reqs[i].Command.Body)).Command.Body) {
			t.Errorf("request %d: %v", i, errs[i])
		}
	}
}

// BenchmarkHooksNoHook is what a send pays for hooks when none is
// deployed: "cached" is the steady state (no request at all for a second
// after a no-responders answer); "ask" is one no-responders round trip, as
// every send would pay without the cache (once a second with it).
func BenchmarkHooksNoHook(b *testing.B) {
	nc := hookNATS(b)
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		recheck time.Duration
	}{{"cached", time.Hour}, {"ask", time.Nanosecond}} {
		b.Run(c.name, func(b *testing.B) {
			hooks := runtime.NewHooks(nc, subjects, quiet(), 0, c.recheck)
			reqs := []*runtime.Request{hookReq(`{"text":"hi"}`)}
			b.ReportAllocs()
			for b.Loop() {
				if errs := hooks.Apply(ctx, reqs); errs[0] != nil {
					b.Fatal(errs[0])
				}
			}
		})
	}
}
