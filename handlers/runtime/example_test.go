package runtime_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/nats-io/nats.go"

	"natter/edge/protocol"
	"natter/handlers/runtime"
	"natter/natsconf"
	"natter/natsconf/embedded"
)

// Rolled is the reply of the "roll" command, and what the room sees.
type Rolled struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
	Room string `json:"room"`
	User string `json:"user"`
	N    int    `json:"n"`
}

// StartDice serves a brand-new command, {"type":"roll","room":R,"id":I}:
// the sender gets {"type":"rolled",...} and so does every connection in
// the room. It uses only the handler API.
func StartDice(nc *nats.Conn, dice *rand.Rand) (*runtime.Service, error) {
	svc, err := runtime.New(nc, runtime.Config{Name: "dice"})
	if err != nil {
		return nil, err
	}
	err = svc.Handle("roll", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		room := req.Command.Room
		if err := runtime.Room(room); err != nil {
			return runtime.Response{}, err // error "bad_room"
		}
		if err := req.MayJoin(room); err != nil {
			return runtime.Response{}, err // error "forbidden"
		}
		rolled := Rolled{Type: "rolled", Room: room, User: req.User, N: 1 + dice.IntN(6)}
		subject, _ := svc.Subjects().Room(room)
		if err := nc.Publish(subject, protocol.Encode(rolled)); err != nil {
			return runtime.Response{}, err // error "unavailable"
		}
		rolled.ID = req.Command.ID
		return runtime.Response{Frame: rolled}, nil
	})
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return svc, nc.Flush() // the server has the subscription: clients may roll
}

// A team's handler of a new command type. Here it runs on an embedded
// NATS server and a request plays the edge; in a deployment it connects
// to natter's NATS (natsconf.Connect) and clients send {"type":"roll"}
// to any edge.
func Example() {
	dir, _ := os.MkdirTemp("", "dice")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(embedded.Config{StoreDir: dir, DontListen: true})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	nc, err := embedded.Connect(srv, "dice")
	if err != nil {
		panic(err)
	}
	defer nc.Close()

	svc, err := StartDice(nc, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		panic(err)
	}
	defer svc.Stop()

	// What an edge sends for alice's {"type":"roll","room":"lobby","id":"7"}.
	reply, err := nc.RequestMsg(&nats.Msg{
		Subject: "im.cmd.roll",
		Header:  nats.Header{natsconf.HeaderConn: {"c1"}, natsconf.HeaderUser: {"alice"}, natsconf.HeaderEdge: {"e1"}},
		Data:    []byte(`{"type":"roll","room":"lobby","id":"7"}`),
	}, wait)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(reply.Data))
	// Output: {"type":"rolled","id":"7","room":"lobby","user":"alice","n":5}
}
