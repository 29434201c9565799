package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/edge/protocol"
	"natter/edge/server"
	"natter/edge/wstest"
	"natter/handlers/runtime"
	"natter/natsconf"
)

// TestOwnHandler: a team starts a handler of a new command type while an
// edge runs; clients use the type at once; once it stops, the type is
// unknown again.
func TestOwnHandler(t *testing.T) {
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	alice.join(t, "lobby")
	bob.join(t, "lobby")
	roll := map[string]any{"type": "roll", "room": "lobby"}
	alice.errorCode(t, "unknown_type", roll)

	nc, err := natsconf.Connect(ns.ClientURL(), "dice")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	svc, err := runtime.New(nc, runtime.Config{Name: "dice", Logger: wstest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	err = svc.Handle("roll", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		if err := runtime.Room(req.Command.Room); err != nil {
			return runtime.Response{}, err
		}
		frame := map[string]any{"type": "rolled", "room": req.Command.Room, "user": req.User, "n": 4}
		subject, _ := svc.Subjects().Room(req.Command.Room)
		if err := nc.Publish(subject, protocol.Encode(frame)); err != nil {
			return runtime.Response{}, err
		}
		frame["id"] = req.Command.ID
		return runtime.Response{Frame: frame}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// At once, no edge restart.
	if f := alice.request(t, "rolled", roll); f.Str("user") != "alice" {
		t.Fatalf("reply %s", f)
	}
	if f := bob.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "rolled" }); f.Str("user") != "alice" {
		t.Fatalf("bob: %s", f)
	}
	alice.errorCode(t, "bad_room", map[string]any{"type": "roll", "room": "a.b"})

	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	alice.errorCode(t, "unknown_type", roll)
}

// TestEventsForBackends: a backend with a plain NATS client publishes a
// stored message into a room (JetStream, on im.store.room.<room>: it gets
// a seq and is in history), a live frame to a user (im.user.<user>) and a
// dm as a user would send it (a request on im.cmd.dm with identity
// headers); and it follows every stored room message and dm with durable
// consumers on IM_ROOMS and IM_INBOX.
func TestEventsForBackends(t *testing.T) {
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
	alice := connect(t, srv, "alice")
	alice.join(t, "lobby")

	nc, err := nats.Connect(ns.ClientURL(), nats.Name("backend"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := natsconf.MustSubjects("im").StoreNames()
	rooms, err := js.CreateOrUpdateConsumer(ctx, names.Rooms, jetstream.ConsumerConfig{
		Durable: "analytics-rooms", FilterSubject: "im.store.room.>", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	dms, err := js.CreateOrUpdateConsumer(ctx, names.Inbox, jetstream.ConsumerConfig{
		Durable: "analytics-dms", FilterSubject: "im.store.user.>", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}

	// Into a room: stored, with a seq, delivered live, in history.
	frame := protocol.Encode(protocol.Message{Type: protocol.FrameMsg, Room: "lobby", From: "weather-bot", TS: time.Now().UnixMilli(), Body: json.RawMessage(`"sunny"`)})
	ack, err := js.Publish(ctx, "im.store.room.lobby", frame)
	if err != nil {
		t.Fatal(err)
	}
	m := alice.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "msg" })
	if seq, _ := m.Uint("seq"); seq != ack.Sequence || m.Str("from") != "weather-bot" {
		t.Fatalf("alice: want the bot's msg %d, got %s", ack.Sequence, m)
	}
	if h := alice.request(t, "history", map[string]any{"type": "history", "room": "lobby"}); h.JSON("messages") == "[]" {
		t.Fatalf("history: %s", h)
	}
	// To a user, live (not stored): every connection of the user.
	if err := nc.Publish("im.user.alice", []byte(`{"type":"notice","body":"deploy at 5"}`)); err != nil {
		t.Fatal(err)
	}
	alice.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "notice" })
	// A dm from the backend as a user: the inbox handler stores and
	// delivers it (or keeps it for the user's next connection).
	reply, err := nc.RequestMsg(&nats.Msg{
		Subject: "im.cmd.dm",
		Header:  nats.Header{natsconf.HeaderUser: {"support"}, natsconf.HeaderConn: {"backend1"}, natsconf.HeaderEdge: {"backend"}},
		Data:    []byte(`{"type":"dm","to":"alice","id":"t1","body":"your ticket is closed"}`),
	}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(reply.Data) || !contains(reply.Data, `"ack"`) {
		t.Fatalf("dm reply %s", reply.Data)
	}
	if d := alice.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "dm" }); d.Str("from") != "support" {
		t.Fatalf("alice: dm %s", d)
	}
	// A user's send, followed too.
	alice.request(t, "ack", map[string]any{"type": "send", "room": "lobby", "body": "thanks"})

	follow := func(c jetstream.Consumer, n int) []string {
		t.Helper()
		batch, err := c.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for msg := range batch.Messages() {
			got = append(got, msg.Subject()+" "+string(msg.Data()))
			_ = msg.Ack()
		}
		return got
	}
	got := follow(rooms, 2)
	if len(got) != 2 || !contains([]byte(got[0]), "weather-bot") || !contains([]byte(got[1]), `"from":"alice"`) {
		t.Fatalf("room messages followed: %q", got)
	}
	if got := follow(dms, 1); len(got) != 1 || !contains([]byte(got[0]), "im.store.user.alice") {
		t.Fatalf("dms followed: %q", got)
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
