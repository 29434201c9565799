package runtime_test

import (
	"regexp"
	"testing"

	"natter/edge/protocol"
	"natter/handlers/runtime"
)

// headerSafe is what a dedup id may hold: nothing a NATS header trims,
// folds or splits on.
var headerSafe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func TestMsgID(t *testing.T) {
	req := func(user, room, to, id string) *runtime.Request {
		return &runtime.Request{
			Identity: runtime.Identity{User: user, Conn: "c1", Edge: "e1"},
			Command:  protocol.Command{Type: protocol.TypeSend, Room: room, To: to, ID: id},
		}
	}
	if got := runtime.MsgID(req("alice", "lobby", "", "")); got != "" {
		t.Errorf("no client id: MsgID = %q, want none", got)
	}
	if a, b := runtime.MsgID(req("alice", "lobby", "", "k")), runtime.MsgID(req("alice", "lobby", "", "k")); a != b {
		t.Errorf("the same command has two ids: %q and %q", a, b)
	}

	// Every one of these is another command: no two may share an id.
	reqs := []*runtime.Request{
		req("alice", "lobby", "", "k"),
		req("alice", "lobby", "", "k "),
		req("alice", "lobby", "", " k"),
		req("alice", "lobby", "", "k\t"),
		req("alice", "lobby", "", "k\r\n"),
		req("alice", "lobby", "", "k\x00"),
		req("alice", "lobby", "", "K"),
		req("alice", "lobby", "", "k\x1f"),
		req("alice", "lobby", "", "k.k"),
		req("alice", "lobby", "", "é"),
		req("alice", "lobby", "", " "),
		req("alice", "lobby2", "", "k"),
		req("bob", "lobby", "", "k"),
		req("alice", "", "lobby", "k"), // a dm to user "lobby", not a send to room "lobby"
		req("alice", "", "bob", "k"),
		req("alice", "lobby", "", "k\x1f\x1f"),
		req("alice", "lobby\x1f", "", "k"),
	}
	seen := map[string]int{}
	for i, r := range reqs {
		id := runtime.MsgID(r)
		if !headerSafe.MatchString(id) {
			t.Errorf("%+v: MsgID %q holds characters a NATS header may trim or mangle", r.Command, id)
		}
		if j, ok := seen[id]; ok {
			t.Errorf("%+v and %+v share the dedup id %q", reqs[j].Command, r.Command, id)
		}
		seen[id] = i
	}
}
