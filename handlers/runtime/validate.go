package runtime

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/edge/protocol"
	"natter/natsconf"
)

// Room validates a room id from a command: a bad one is CodeBadRoom.
func Room(room string) error {
	if !natsconf.ValidName(room) {
		return protocol.Errorf(protocol.CodeBadRoom, "room must match ^[A-Za-z0-9_:-]{1,128}$")
	}
	return nil
}

// User validates a user id from a command: a bad one is CodeBadUser.
func User(user string) error {
	if !natsconf.ValidName(user) {
		return protocol.Errorf(protocol.CodeBadUser, "user must match ^[A-Za-z0-9_:-]{1,128}$")
	}
	return nil
}

// MayJoin checks that the identity may join room (and so read its members
// and history): CodeForbidden otherwise.
func (id Identity) MayJoin(room string) error {
	if !protocol.RoomAllowed(id.Rooms, room) {
		return protocol.Errorf(protocol.CodeForbidden, "not allowed in room "+room)
	}
	return nil
}

// Body checks that a command carries a body.
func Body(cmd protocol.Command) error {
	if len(cmd.Body) == 0 {
		return protocol.Errorf(protocol.CodeBadFrame, "body is required")
	}
	return nil
}

// MsgID is the JetStream dedup id of a command: the user, where it goes
// (the room of a send, the target of a dm) and the client's id, so a retry
// of the same command is stored once while the same id reused for another
// room or user is another message. Commands without an id are not
// deduplicated.
//
// Each part is base64url-encoded and the parts are joined with '.', which
// that alphabet lacks: two different commands never share an id, and the
// id holds no space or control character that a NATS header could trim
// or mangle (ids "k" and "k " stay apart).
func MsgID(req *Request) string {
	if req.Command.ID == "" {
		return ""
	}
	enc := base64.RawURLEncoding.EncodeToString
	return strings.Join([]string{
		enc([]byte(req.User)), enc([]byte(req.Command.Room)), enc([]byte(req.Command.To)), enc([]byte(req.Command.ID)),
	}, ".")
}

// Now is the server timestamp of a message, in unix milliseconds.
func Now() int64 { return time.Now().UnixMilli() }

// StoreError turns a JetStream failure into CodeUnavailable when the store
// did not answer; other errors are returned as they are (and become
// "internal").
func StoreError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return protocol.Errorf(protocol.CodeUnavailable, "message store unavailable")
	}
	return err
}
