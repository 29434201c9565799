package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"natter/edge/protocol"
	"natter/handlers/runtime"
	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

// testTimeout is the command deadline of the services under test, short so
// the timeout case is quick.
const testTimeout = 300 * time.Millisecond

// wait bounds every wait of these tests for something that must happen.
const wait = 10 * time.Second

var subjects = natsconf.MustSubjects("im")

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startNATS starts an in-process NATS server with JetStream and connects to
// it; both go away in t.Cleanup.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	return embeddedtest.ConnectInProcess(t, embeddedtest.StartServer(t, embedded.Config{DontListen: true}))
}

// newService starts a runtime service on nc; zero fields of cfg get the
// test defaults (name "test", testTimeout, a silent logger). It is stopped
// in t.Cleanup.
func newService(t *testing.T, nc *nats.Conn, cfg runtime.Config) *runtime.Service {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = testTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	svc, err := runtime.New(nc, cfg)
	if err != nil {
		t.Fatalf("runtime.New: %v", err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return svc
}

func handle(t *testing.T, svc *runtime.Service, cmdType string, fn runtime.CommandFunc) {
	t.Helper()
	if err := svc.Handle(cmdType, fn); err != nil {
		t.Fatalf("Handle(%q): %v", cmdType, err)
	}
}

func on(t *testing.T, svc *runtime.Service, name, subject string, fn runtime.EventFunc) {
	t.Helper()
	if err := svc.On(name, subject, fn); err != nil {
		t.Fatalf("On(%q): %v", name, err)
	}
}

// identity returns the headers an edge sets on a command of c1/alice/e1.
func identity() nats.Header {
	return nats.Header{
		natsconf.HeaderConn: {"c1"},
		natsconf.HeaderUser: {"alice"},
		natsconf.HeaderEdge: {"e1"},
	}
}

func commandSubject(t *testing.T, cmdType string) string {
	t.Helper()
	subject, err := subjects.Command(cmdType)
	if err != nil {
		t.Fatalf("Command(%q): %v", cmdType, err)
	}
	return subject
}

// request sends body as a command of cmdType with hdr and returns the reply.
func request(t *testing.T, nc *nats.Conn, cmdType string, hdr nats.Header, body string) *nats.Msg {
	t.Helper()
	reply, err := tryRequest(nc, commandSubject(t, cmdType), hdr, body)
	if err != nil {
		t.Fatalf("request %s %s: %v", cmdType, body, err)
	}
	return reply
}

func tryRequest(nc *nats.Conn, subject string, hdr nats.Header, body string) (*nats.Msg, error) {
	return nc.RequestMsg(&nats.Msg{Subject: subject, Header: hdr, Data: []byte(body)}, wait)
}

func errorFrame(t *testing.T, reply *nats.Msg) protocol.ErrorFrame {
	t.Helper()
	var f protocol.ErrorFrame
	if err := json.Unmarshal(reply.Data, &f); err != nil {
		t.Fatalf("reply %q is not JSON: %v", reply.Data, err)
	}
	if f.Type != protocol.FrameError {
		t.Fatalf("reply %q: want an error frame", reply.Data)
	}
	return f
}

// checkError checks that reply is an error frame with code, id and (when
// not empty) message, and that it carries micro's service error headers.
func checkError(t *testing.T, reply *nats.Msg, code protocol.Code, id, message string) protocol.ErrorFrame {
	t.Helper()
	f := errorFrame(t, reply)
	if f.Code != code || f.ID != id {
		t.Errorf("reply %q: want code %q id %q", reply.Data, code, id)
	}
	if message != "" && f.Message != message {
		t.Errorf("reply %q: want message %q", reply.Data, message)
	}
	if got := reply.Header.Get(micro.ErrorCodeHeader); got != string(code) {
		t.Errorf("header %s = %q, want %q (headers %v)", micro.ErrorCodeHeader, got, code, reply.Header)
	}
	if got := reply.Header.Get(micro.ErrorHeader); got != f.Message {
		t.Errorf("header %s = %q, want the frame's message %q", micro.ErrorHeader, got, f.Message)
	}
	return f
}

func TestCommands(t *testing.T) {
	nc := startNATS(t)
	svc := newService(t, nc, runtime.Config{})

	const secret = "password=hunter2 at db-7"
	handle(t, svc, "frame", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID, Room: req.Command.Room}}, nil
	})
	handle(t, svc, "withop", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		return runtime.Response{
			Frame: protocol.Reply{Type: protocol.FrameJoined, ID: req.Command.ID, Room: req.Command.Room, Seq: protocol.Uint64(0)},
			Op:    &runtime.Op{Name: natsconf.OpSubscribe, Room: req.Command.Room},
		}, nil
	})
	handle(t, svc, "denied", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		return runtime.Response{}, protocol.Errorf(protocol.CodeForbidden, "not allowed in room "+req.Command.Room)
	})
	handle(t, svc, "wrapped", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		return runtime.Response{}, fmt.Errorf("checking: %w", protocol.Errorf(protocol.CodeNotMember, "join first"))
	})
	handle(t, svc, "broken", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		return runtime.Response{}, errors.New(secret)
	})
	handle(t, svc, "panics", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		panic(secret)
	})
	handle(t, svc, "slow", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		<-ctx.Done()
		return runtime.Response{}, ctx.Err()
	})
	handle(t, svc, "slowwrapped", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		<-ctx.Done()
		return runtime.Response{}, fmt.Errorf("store: %w", ctx.Err())
	})

	tests := []struct {
		name    string
		cmdType string
		header  nats.Header
		body    string

		wantBody   string // exact reply of a success
		wantHeader map[string]string
		wantCode   protocol.Code // error frame code of a failure
		wantID     string
		wantMsg    string
		minElapsed time.Duration
	}{
		{
			name: "frame", cmdType: "frame", header: identity(),
			body:     `{"type":"frame","id":"1","room":"lobby"}`,
			wantBody: `{"type":"ack","id":"1","room":"lobby"}`,
		},
		{
			name: "frame with op", cmdType: "withop", header: identity(),
			body:       `{"type":"withop","id":"2","room":"lobby"}`,
			wantBody:   `{"type":"joined","id":"2","room":"lobby","seq":0}`,
			wantHeader: map[string]string{natsconf.HeaderOp: natsconf.OpSubscribe, natsconf.HeaderRoom: "lobby"},
		},
		{
			name: "protocol error", cmdType: "denied", header: identity(),
			body:     `{"type":"denied","id":"3","room":"vip"}`,
			wantCode: protocol.CodeForbidden, wantID: "3", wantMsg: "not allowed in room vip",
		},
		{
			name: "wrapped protocol error", cmdType: "wrapped", header: identity(),
			body:     `{"type":"wrapped","id":"4"}`,
			wantCode: protocol.CodeNotMember, wantID: "4", wantMsg: "join first",
		},
		{
			name: "plain error", cmdType: "broken", header: identity(),
			body:     `{"type":"broken","id":"5"}`,
			wantCode: protocol.CodeInternal, wantID: "5",
		},
		{
			name: "panic", cmdType: "panics", header: identity(),
			body:     `{"type":"panics","id":"6"}`,
			wantCode: protocol.CodeInternal, wantID: "6",
		},
		{
			name: "timeout", cmdType: "slow", header: identity(),
			body:     `{"type":"slow","id":"7"}`,
			wantCode: protocol.CodeUnavailable, wantID: "7", wantMsg: "handler timed out",
			minElapsed: testTimeout,
		},
		{
			name: "timeout wrapped", cmdType: "slowwrapped", header: identity(),
			body:     `{"type":"slowwrapped","id":"8"}`,
			wantCode: protocol.CodeUnavailable, wantID: "8", wantMsg: "handler timed out",
			minElapsed: testTimeout,
		},
		{
			name: "no identity headers", cmdType: "frame", header: nil,
			body:     `{"type":"frame","id":"9"}`,
			wantCode: protocol.CodeInternal, wantID: "9",
		},
		{
			name: "no conn header", cmdType: "frame",
			header:   nats.Header{natsconf.HeaderUser: {"alice"}, natsconf.HeaderEdge: {"e1"}},
			body:     `{"type":"frame","id":"10"}`,
			wantCode: protocol.CodeInternal, wantID: "10",
		},
		{
			name: "user header not a name", cmdType: "frame",
			header:   nats.Header{natsconf.HeaderConn: {"c1"}, natsconf.HeaderUser: {"a.b"}, natsconf.HeaderEdge: {"e1"}},
			body:     `{"type":"frame","id":"11"}`,
			wantCode: protocol.CodeInternal, wantID: "11",
		},
		{
			name: "body not JSON", cmdType: "frame", header: identity(),
			body:     `hello`,
			wantCode: protocol.CodeBadFrame,
		},
		{
			name: "body truncated", cmdType: "frame", header: identity(),
			body:     `{"type":"frame","id":"12"`,
			wantCode: protocol.CodeBadFrame,
		},
		{
			name: "body field of the wrong type echoes id", cmdType: "frame", header: identity(),
			body:     `{"type":"frame","id":"13","since":"x"}`,
			wantCode: protocol.CodeBadFrame, wantID: "13",
		},
		{
			name: "body without type", cmdType: "frame", header: identity(),
			body:     `{"id":"14"}`,
			wantCode: protocol.CodeBadFrame, wantID: "14", wantMsg: "missing type",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			reply := request(t, nc, tt.cmdType, tt.header, tt.body)
			if tt.minElapsed > 0 {
				if elapsed := time.Since(start); elapsed < tt.minElapsed {
					t.Errorf("reply after %v, before the %v deadline", elapsed, tt.minElapsed)
				}
			}
			if tt.wantCode == "" {
				if string(reply.Data) != tt.wantBody {
					t.Errorf("reply %q, want %q", reply.Data, tt.wantBody)
				}
				if v := reply.Header.Get(micro.ErrorCodeHeader); v != "" {
					t.Errorf("success reply has %s %q", micro.ErrorCodeHeader, v)
				}
				for _, h := range []string{natsconf.HeaderOp, natsconf.HeaderRoom} {
					if got, want := reply.Header.Get(h), tt.wantHeader[h]; got != want {
						t.Errorf("reply header %s = %q, want %q", h, got, want)
					}
				}
				return
			}
			f := checkError(t, reply, tt.wantCode, tt.wantID, tt.wantMsg)
			if f.Message == "" {
				t.Errorf("error frame %q without a message", reply.Data)
			}
			for _, leak := range []string{"hunter2", "db-7"} {
				if strings.Contains(string(reply.Data), leak) || strings.Contains(fmt.Sprint(reply.Header), leak) {
					t.Errorf("reply %q (headers %v) leaks the handler's error text", reply.Data, reply.Header)
				}
			}
			if reply.Header.Get(natsconf.HeaderOp) != "" {
				t.Errorf("error reply carries an op: %v", reply.Header)
			}
		})
	}

	t.Run("serves after a panic", func(t *testing.T) {
		for i := range 3 {
			checkError(t, request(t, nc, "panics", identity(), fmt.Sprintf(`{"type":"panics","id":"p%d"}`, i)),
				protocol.CodeInternal, fmt.Sprintf("p%d", i), "")
			id := fmt.Sprintf("after%d", i)
			reply := request(t, nc, "frame", identity(), `{"type":"frame","id":"`+id+`"}`)
			if want := `{"type":"ack","id":"` + id + `"}`; string(reply.Data) != want {
				t.Fatalf("after a panic: reply %q, want %q", reply.Data, want)
			}
		}
	})
}

func TestEvents(t *testing.T) {
	nc := startNATS(t)
	svc := newService(t, nc, runtime.Config{})

	events := make(chan *runtime.Event, 1)
	on(t, svc, "okevt", "test.evt.ok", func(ctx context.Context, ev *runtime.Event) error {
		events <- ev
		return nil
	})
	on(t, svc, "failevt", "test.evt.fail", func(ctx context.Context, ev *runtime.Event) error {
		return errors.New("could not forget c1")
	})
	nextEvent := func(t *testing.T) *runtime.Event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(wait):
			t.Fatal("event handler not called")
			return nil
		}
	}

	t.Run("request success", func(t *testing.T) {
		reply, err := tryRequest(nc, "test.evt.ok", identity(), `{"reason":"closed"}`)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		if len(reply.Data) != 0 {
			t.Errorf("reply %q, want an empty one", reply.Data)
		}
		if v := reply.Header.Get(micro.ErrorCodeHeader); v != "" {
			t.Errorf("success reply has %s %q", micro.ErrorCodeHeader, v)
		}
		ev := nextEvent(t)
		want := runtime.Identity{Conn: "c1", User: "alice", Edge: "e1"}
		if !reflect.DeepEqual(ev.Identity, want) || string(ev.Data) != `{"reason":"closed"}` {
			t.Errorf("event %+v data %q, want %+v with the request's data", ev.Identity, ev.Data, want)
		}
	})

	t.Run("request failure", func(t *testing.T) {
		reply, err := tryRequest(nc, "test.evt.fail", identity(), `{}`)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		if reply.Header.Get(micro.ErrorCodeHeader) == "" {
			t.Errorf("failed event: reply headers %v, want %s", reply.Header, micro.ErrorCodeHeader)
		}
		if reply.Header.Get(micro.ErrorHeader) == "" {
			t.Errorf("failed event: reply headers %v, want %s", reply.Header, micro.ErrorHeader)
		}
	})

	t.Run("publish", func(t *testing.T) {
		if err := nc.PublishMsg(&nats.Msg{Subject: "test.evt.ok", Header: identity(), Data: []byte("bye")}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		if ev := nextEvent(t); ev.User != "alice" || string(ev.Data) != "bye" {
			t.Errorf("event %+v data %q", ev.Identity, ev.Data)
		}
	})
}

func TestIdentity(t *testing.T) {
	nc := startNATS(t)
	svc := newService(t, nc, runtime.Config{})
	handle(t, svc, "whoami", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		return runtime.Response{Frame: req.Identity}, nil
	})

	base := runtime.Identity{Conn: "c1", User: "alice", Edge: "e1"}
	with := func(f func(*runtime.Identity)) runtime.Identity {
		id := base
		f(&id)
		return id
	}
	tests := []struct {
		name   string
		header map[string]string
		want   runtime.Identity
	}{
		{"no rooms header means any room", nil, base},
		{"rooms", map[string]string{natsconf.HeaderRooms: "a,team-*"},
			with(func(id *runtime.Identity) { id.Rooms = []string{"a", "team-*"} })},
		{"one room", map[string]string{natsconf.HeaderRooms: "lobby"},
			with(func(id *runtime.Identity) { id.Rooms = []string{"lobby"} })},
		{"empty patterns skipped", map[string]string{natsconf.HeaderRooms: "a,,b,"},
			with(func(id *runtime.Identity) { id.Rooms = []string{"a", "b"} })},
		// The edge sends an empty header for a token with "rooms":[]: no
		// room at all, which must not turn into nil (any room).
		{"empty rooms header means no room", map[string]string{natsconf.HeaderRooms: ""},
			with(func(id *runtime.Identity) { id.Rooms = []string{} })},
		{"broadcast", map[string]string{natsconf.HeaderBroadcast: "1"},
			with(func(id *runtime.Identity) { id.Broadcast = true })},
		{"broadcast other than 1", map[string]string{natsconf.HeaderBroadcast: "true"}, base},
		{"broadcast and rooms", map[string]string{natsconf.HeaderBroadcast: "1", natsconf.HeaderRooms: "x-*"},
			with(func(id *runtime.Identity) { id.Broadcast = true; id.Rooms = []string{"x-*"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := identity()
			for k, v := range tt.header {
				hdr.Set(k, v)
			}
			reply := request(t, nc, "whoami", hdr, `{"type":"whoami"}`)
			var got runtime.Identity
			if err := json.Unmarshal(reply.Data, &got); err != nil {
				t.Fatalf("reply %q: %v", reply.Data, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("identity %#v, want %#v (reply %s)", got, tt.want, reply.Data)
			}
			if (got.Rooms == nil) != (tt.want.Rooms == nil) {
				t.Errorf("Rooms nil = %v, want nil = %v", got.Rooms == nil, tt.want.Rooms == nil)
			}
		})
	}
}

// TestConcurrent sends 50 commands whose handler waits until all 50 are
// running: they only complete if the runtime runs them concurrently.
func TestConcurrent(t *testing.T) {
	const n = 50
	nc := startNATS(t)
	svc := newService(t, nc, runtime.Config{Timeout: wait})
	var arrived atomic.Int32
	all := make(chan struct{})
	handle(t, svc, "barrier", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		if arrived.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
			return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID}}, nil
		case <-ctx.Done():
			return runtime.Response{}, ctx.Err()
		}
	})

	subject := commandSubject(t, "barrier")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprint(i)
			reply, err := tryRequest(nc, subject, identity(), `{"type":"barrier","id":"`+id+`"}`)
			if err != nil {
				errs <- fmt.Errorf("request %s: %w", id, err)
				return
			}
			if want := `{"type":"ack","id":"` + id + `"}`; string(reply.Data) != want {
				errs <- fmt.Errorf("request %s: reply %q, want %q", id, reply.Data, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMaxConcurrent blocks three commands on a service that runs two at a
// time: two enter the handler, the third only once one of them is done.
func TestMaxConcurrent(t *testing.T) {
	nc := startNATS(t)
	svc := newService(t, nc, runtime.Config{Timeout: wait, MaxConcurrent: 2})
	var inFlight, maxInFlight, released atomic.Int32
	entered := make(chan string, 3)
	release, releaseAll := releaser(t)
	handle(t, svc, "block", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		if released.Load() == 0 && n > 2 {
			t.Errorf("command %s entered as number %d before any was released", req.Command.ID, n)
		}
		entered <- req.Command.ID
		select {
		case <-release:
		case <-ctx.Done():
			return runtime.Response{}, ctx.Err()
		}
		return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID}}, nil
	})

	subject := commandSubject(t, "block")
	replies := make(chan string, 3)
	for i := range 3 {
		go func() {
			reply, err := tryRequest(nc, subject, identity(), fmt.Sprintf(`{"type":"block","id":"%d"}`, i))
			if err != nil {
				replies <- "error: " + err.Error()
				return
			}
			replies <- string(reply.Data)
		}()
	}
	expect := func(ch <-chan string, what string) string {
		t.Helper()
		select {
		case v := <-ch:
			return v
		case <-time.After(wait):
			t.Fatalf("timed out waiting for %s", what)
			return ""
		}
	}
	expect(entered, "the first command to enter")
	expect(entered, "the second command to enter")
	select {
	case id := <-entered:
		t.Fatalf("command %s entered while two were running", id)
	default:
	}
	if got := inFlight.Load(); got != 2 {
		t.Fatalf("%d commands in flight, want 2", got)
	}

	// Let one finish: the third enters.
	released.Add(1)
	release <- struct{}{}
	if r := expect(replies, "the released command's reply"); !strings.Contains(r, `"type":"ack"`) {
		t.Fatalf("released command: %s", r)
	}
	expect(entered, "the third command to enter")
	releaseAll()
	for range 2 {
		if r := expect(replies, "a reply"); !strings.Contains(r, `"type":"ack"`) {
			t.Errorf("reply %s", r)
		}
	}
	if got := maxInFlight.Load(); got != 2 {
		t.Errorf("at most %d commands ran at once, want 2", got)
	}
}

func TestStop(t *testing.T) {
	t.Run("refuses new commands", func(t *testing.T) {
		nc := startNATS(t)
		svc := newService(t, nc, runtime.Config{})
		handle(t, svc, "frame", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
			return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck}}, nil
		})
		request(t, nc, "frame", identity(), `{"type":"frame"}`)
		if err := svc.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if err := svc.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		reply, err := tryRequest(nc, commandSubject(t, "frame"), identity(), `{"type":"frame","id":"late"}`)
		switch {
		case errors.Is(err, nats.ErrNoResponders):
		case err != nil:
			t.Fatalf("request after Stop: %v, want no responders or an unavailable error", err)
		default:
			checkError(t, reply, protocol.CodeUnavailable, "late", "")
		}
	})

	t.Run("waits for commands in flight", func(t *testing.T) {
		nc := startNATS(t)
		svc := newService(t, nc, runtime.Config{Timeout: wait})
		entered := make(chan struct{}, 1)
		release, releaseAll := releaser(t)
		handle(t, svc, "block", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
			entered <- struct{}{}
			<-release
			return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID}}, nil
		})
		handle(t, svc, "probe", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
			return runtime.Response{Frame: protocol.Reply{Type: protocol.FramePong}}, nil
		})

		subject := commandSubject(t, "block")
		replies := make(chan string, 1)
		go func() {
			reply, err := tryRequest(nc, subject, identity(), `{"type":"block","id":"inflight"}`)
			if err != nil {
				replies <- "error: " + err.Error()
				return
			}
			replies <- string(reply.Data)
		}()
		select {
		case <-entered:
		case <-time.After(wait):
			t.Fatal("command never reached the handler")
		}

		stopped := make(chan error, 1)
		go func() { stopped <- svc.Stop() }()

		// Wait until Stop is under way: the service no longer answers.
		waitUnanswered(t, nc, commandSubject(t, "probe"), stopped)
		waitUnanswered(t, nc, pingSubject(t, "natter-test"), stopped)
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) with a command in flight", err)
		case r := <-replies:
			t.Fatalf("blocked command replied %s before it was released", r)
		default:
		}

		releaseAll()
		if r := <-replies; r != `{"type":"ack","id":"inflight"}` {
			t.Errorf("command in flight during Stop: reply %s", r)
		}
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("Stop: %v", err)
			}
		case <-time.After(wait):
			t.Fatal("Stop did not return once the command in flight was done")
		}
	})

	t.Run("queued command answered unavailable", func(t *testing.T) {
		nc := startNATS(t)
		svc := newService(t, nc, runtime.Config{Timeout: wait, MaxConcurrent: 1})
		entered := make(chan string, 2)
		release, releaseAll := releaser(t)
		handle(t, svc, "block", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
			entered <- req.Command.ID
			<-release
			return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID}}, nil
		})
		inbox := nc.NewRespInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		publish := func(id string) {
			t.Helper()
			msg := &nats.Msg{Subject: commandSubject(t, "block"), Reply: inbox, Header: identity(), Data: []byte(`{"type":"block","id":"` + id + `"}`)}
			if err := nc.PublishMsg(msg); err != nil {
				t.Fatal(err)
			}
		}
		publish("first")
		select {
		case <-entered:
		case <-time.After(wait):
			t.Fatal("first command never reached the handler")
		}
		// The second waits for the first's slot; once the flush returned,
		// the server has delivered it to the service's subscription.
		publish("second")
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		stopped := make(chan error, 1)
		go func() { stopped <- svc.Stop() }()
		// Release the first command only once Stop is under way: micro no
		// longer answers pings once Stop removed the service, just before
		// the runtime marks itself stopping.
		waitUnanswered(t, nc, pingSubject(t, "natter-test"), stopped)
		releaseAll()

		got := map[string]*nats.Msg{}
		for range 2 {
			msg, err := sub.NextMsg(wait)
			if err != nil {
				t.Fatalf("reply: %v (have %d)", err, len(got))
			}
			got[string(msg.Data)] = msg
		}
		if _, ok := got[`{"type":"ack","id":"first"}`]; !ok {
			t.Errorf("replies %v: want the first command acked", keys(got))
		}
		var second *nats.Msg
		for data, msg := range got {
			if strings.Contains(data, `"id":"second"`) {
				second = msg
			}
		}
		if second == nil {
			// The error frame must echo the command's id: clients match
			// replies by id (edge/web/static/natter.js).
			for data, msg := range got {
				if data != `{"type":"ack","id":"first"}` {
					second = msg
				}
			}
		}
		if second == nil {
			t.Fatalf("replies %v: none for the second command", keys(got))
		}
		checkError(t, second, protocol.CodeUnavailable, "second", "")
		select {
		case id := <-entered:
			t.Errorf("command %s reached the handler after Stop began", id)
		default:
		}
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("Stop: %v", err)
			}
		case <-time.After(wait):
			t.Fatal("Stop did not return")
		}
	})
}

func pingSubject(t *testing.T, name string) string {
	t.Helper()
	subject, err := micro.ControlSubject(micro.PingVerb, name, "")
	if err != nil {
		t.Fatal(err)
	}
	return subject
}

// waitUnanswered polls subject until a request on it gets no responders or
// an "unavailable" error frame. Stop, running in the background, must not
// return meanwhile: a command is in flight.
func waitUnanswered(t *testing.T, nc *nats.Conn, subject string, stopped <-chan error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		reply, err := tryRequest(nc, subject, identity(), `{"type":"probe"}`)
		if errors.Is(err, nats.ErrNoResponders) || (err == nil && strings.Contains(string(reply.Data), `"code":"unavailable"`)) {
			return
		}
		if err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("probe %s: %v", subject, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still answered %v after Stop was called", subject, wait)
		}
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) with a command in flight", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// releaser returns a channel blocked handlers wait on and a function that
// closes it, at most once; the channel is also closed in t.Cleanup (before
// the service's Stop, which waits for them), so a failed test does not hang.
func releaser(t *testing.T) (chan struct{}, func()) {
	ch := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return ch, release
}

func keys(m map[string]*nats.Msg) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
