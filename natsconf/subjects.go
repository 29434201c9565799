package natsconf

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the subject prefix used when none is configured.
const DefaultPrefix = "im"

// ErrBadName is returned when a room, user, connection or command name is not
// a valid subject token (see ValidName).
var ErrBadName = errors.New("natsconf: invalid name")

// Subjects builds every subject natter uses under one prefix. Methods that
// take a name validate it first and return ErrBadName rather than build a
// subject a caller did not mean; the zero value is not usable, use
// NewSubjects.
type Subjects struct {
	prefix string
}

// NewSubjects returns the subject set for prefix ("" means DefaultPrefix).
func NewSubjects(prefix string) (Subjects, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !validPrefix(prefix) {
		return Subjects{}, fmt.Errorf("%w: subject prefix %q", ErrBadName, prefix)
	}
	return Subjects{prefix: prefix}, nil
}

// MustSubjects is NewSubjects for constant prefixes; it panics on a bad one.
func MustSubjects(prefix string) Subjects {
	s, err := NewSubjects(prefix)
	if err != nil {
		panic(err)
	}
	return s
}

// Prefix returns the subject prefix.
func (s Subjects) Prefix() string { return s.prefix }

func (s Subjects) token(kind, name string) (string, error) {
	if !ValidName(name) {
		return "", fmt.Errorf("%w: %s %q", ErrBadName, kind, name)
	}
	return s.prefix + "." + kind + "." + name, nil
}

// Command is the subject a client command of type t is requested on:
// <prefix>.cmd.<t>.
func (s Subjects) Command(t string) (string, error) { return s.token("cmd", t) }

// CommandGroup is the subject prefix handlers group their endpoints under.
func (s Subjects) CommandGroup() string { return s.prefix + ".cmd" }

// Conn is the subject of one connection of an edge:
// <prefix>.conn.<edge>.<conn>. An edge subscribes once to the subjects of
// all its connections (EdgeConns), not once per connection.
func (s Subjects) Conn(edge, conn string) (string, error) {
	if !ValidName(edge) {
		return "", fmt.Errorf("%w: edge %q", ErrBadName, edge)
	}
	return s.token("conn."+edge, conn)
}

// EdgeConns is the wildcard subject of every connection of edge.
func (s Subjects) EdgeConns(edge string) (string, error) {
	if !ValidName(edge) {
		return "", fmt.Errorf("%w: edge %q", ErrBadName, edge)
	}
	return s.prefix + ".conn." + edge + ".*", nil
}

// User is the live delivery subject of one user: <prefix>.user.<user>.
func (s Subjects) User(user string) (string, error) { return s.token("user", user) }

// Room is the live delivery subject of one room: <prefix>.room.<room>.
func (s Subjects) Room(room string) (string, error) { return s.token("room", room) }

// RoomStore is the subject room messages are stored on in the rooms stream;
// the stream republishes them to Room.
func (s Subjects) RoomStore(room string) (string, error) { return s.token("store.room", room) }

// InboxStore is the subject every direct message to user is stored on in
// the inbox stream: its sequence there is the dm's seq.
func (s Subjects) InboxStore(user string) (string, error) { return s.token("store.user", user) }

// InboxPending is the subject of the dms to user that no connection took
// live, in the inbox stream: each entry names the stored dm's seq
// (HeaderSeq) and is removed once a connection of user took it.
func (s Subjects) InboxPending(user string) (string, error) { return s.token("store.pending", user) }

// Edge is the liveness subject of one edge: the edge answers requests on it,
// so "no responders" means the edge is gone.
func (s Subjects) Edge(edge string) (string, error) { return s.token("edge", edge) }

// Hook is the subject a hook for commands of type t is requested on, before
// the command takes effect: <prefix>.hook.<t> (im.hook.send, im.hook.dm).
// See handlers/runtime.Hooks.
func (s Subjects) Hook(t string) (string, error) { return s.token("hook", t) }

// ReadStore is the name of the KV bucket of read positions (IM_READ for
// "im"), keys <room>.<user> (KeyToken), values the seq as decimal text. The
// receipts handler creates it.
func (s Subjects) ReadStore() string { return s.storeBase() + "_READ" }

// Broadcast is the subject every edge listens to for broadcast frames.
func (s Subjects) Broadcast() string { return s.prefix + ".bcast" }

// EventConnect is published by an edge when a connection opens, after the
// edge subscribed to the connection's and the user's subjects.
func (s Subjects) EventConnect() string { return s.prefix + ".evt.connect" }

// EventDisconnect is published by an edge when a connection closes.
func (s Subjects) EventDisconnect() string { return s.prefix + ".evt.disconnect" }

// Kind is what a delivery subject addresses.
type Kind int

// The kinds of delivery subject an edge subscribes to.
const (
	KindUnknown Kind = iota
	KindConn
	KindUser
	KindRoom
	KindBroadcast
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindConn:
		return "conn"
	case KindUser:
		return "user"
	case KindRoom:
		return "room"
	case KindBroadcast:
		return "broadcast"
	}
	return "unknown"
}

// Parse splits a delivery subject (Conn, User, Room or Broadcast) into its
// kind and name (for Conn, the connection's id). Anything else is
// KindUnknown.
func (s Subjects) Parse(subject string) (Kind, string) {
	rest, ok := strings.CutPrefix(subject, s.prefix)
	if !ok || len(rest) < 2 || rest[0] != '.' {
		return KindUnknown, ""
	}
	rest = rest[1:]
	if rest == "bcast" {
		return KindBroadcast, ""
	}
	kind, name, ok := strings.Cut(rest, ".")
	if !ok {
		return KindUnknown, ""
	}
	if kind == "conn" {
		// conn.<edge>.<conn>
		edge, conn, ok := strings.Cut(name, ".")
		if !ok || !ValidName(edge) || !ValidName(conn) {
			return KindUnknown, ""
		}
		return KindConn, conn
	}
	if !ValidName(name) {
		return KindUnknown, ""
	}
	switch kind {
	case "user":
		return KindUser, name
	case "room":
		return KindRoom, name
	}
	return KindUnknown, ""
}
