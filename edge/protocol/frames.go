package protocol

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Frame types the server sends.
const (
	FrameWelcome   = "welcome"
	FrameJoined    = "joined"
	FrameLeft      = "left"
	FrameAck       = "ack"
	FrameMsg       = "msg"
	FrameDM        = "dm"
	FrameBroadcast = "broadcast"
	FramePresence  = "presence"
	FrameMembers   = "members"
	FrameHistory   = "history"
	FramePong      = "pong"
	FrameError     = "error"
	FrameBye       = "bye"
	// FrameRefreshed answers a "refresh" (v1.1).
	FrameRefreshed = "refreshed"
	// v1.1
	FrameTyping = "typing"
	FrameRead   = "read"
	FrameUnread = "unread"
)

// Delivery statuses of a "dm" ack.
const (
	StatusDelivered = "delivered"
	StatusStored    = "stored"
)

// Presence events.
const (
	PresenceJoin  = "join"
	PresenceLeave = "leave"
)

// Welcome is the first frame of every connection.
type Welcome struct {
	Type      string `json:"type"`
	Conn      string `json:"conn"`
	User      string `json:"user"`
	Heartbeat int    `json:"heartbeat"`
}

// Reply is the reply to join, leave, send, dm, broadcast and ping: one
// struct whose unused fields are omitted.
type Reply struct {
	Type   string  `json:"type"`
	ID     string  `json:"id,omitempty"`
	Room   string  `json:"room,omitempty"`
	Seq    *uint64 `json:"seq,omitempty"`
	Status string  `json:"status,omitempty"`
}

// Members is the reply to "members": the users online in a room, sorted.
type Members struct {
	Type  string   `json:"type"`
	ID    string   `json:"id,omitempty"`
	Room  string   `json:"room"`
	Users []string `json:"users"`
}

// History is the reply to "history": stored "msg" frames, oldest first.
// More (v1.1) is set when the room held messages beyond the page in the
// direction read (older without "after", newer with it).
type History struct {
	Type     string            `json:"type"`
	ID       string            `json:"id,omitempty"`
	Room     string            `json:"room"`
	Messages []json.RawMessage `json:"messages"`
	More     bool              `json:"more,omitempty"`
}

// Message is a room message ("msg"), a direct message ("dm") or a
// "broadcast" as stored and fanned out. Seq is not part of the stored form:
// it is the stream sequence, added with WithSeq when the frame is delivered.
type Message struct {
	Type string          `json:"type"`
	Room string          `json:"room,omitempty"`
	From string          `json:"from"`
	To   string          `json:"to,omitempty"`
	TS   int64           `json:"ts"`
	Body json.RawMessage `json:"body"`
}

// Presence tells a room that a user came or went.
type Presence struct {
	Type  string `json:"type"`
	Room  string `json:"room"`
	User  string `json:"user"`
	Event string `json:"event"`
}

// Typing tells a room's other connections that a user is typing (v1.1).
type Typing struct {
	Type string `json:"type"`
	Room string `json:"room"`
	User string `json:"user"`
}

// Read is a user's read position in a room (v1.1): sent to the user's
// other connections when it moves.
type Read struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
	User string `json:"user"`
}

// Unread is the reply to "unread" (v1.1): for every room the user is in,
// how many stored messages follow the user's read position.
type Unread struct {
	Type  string            `json:"type"`
	ID    string            `json:"id,omitempty"`
	Rooms map[string]uint64 `json:"rooms"`
}

// ErrorFrame is an "error" frame.
type ErrorFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Bye is sent just before the server closes a connection.
type Bye struct {
	Type    string  `json:"type"`
	Code    ByeCode `json:"code"`
	Message string  `json:"message"`
}

// Encode marshals a frame. Frames are plain structs of strings, numbers and
// raw JSON that was valid when decoded, so marshalling cannot fail; should it
// ever, Encode returns an "internal" error frame instead of nothing.
func Encode(frame any) []byte {
	b, err := json.Marshal(frame)
	if err != nil {
		b, _ = json.Marshal(ErrorFrame{Type: FrameError, Code: CodeInternal, Message: "could not encode reply"})
	}
	return b
}

// EncodeError returns the "error" frame for id and err: a *Error keeps its
// code, any other error becomes "internal" with a generic message.
func EncodeError(id string, err error) []byte {
	e, ok := err.(*Error)
	if !ok {
		e = Errorf(CodeInternal, "internal error")
	}
	return Encode(ErrorFrame{Type: FrameError, ID: id, Code: e.Code, Message: e.Message})
}

// EncodeBye returns a "bye" frame.
func EncodeBye(code ByeCode, message string) []byte {
	return Encode(Bye{Type: FrameBye, Code: code, Message: message})
}

// EncodePong returns the "pong" frame answering a ping with id.
func EncodePong(id string) []byte {
	if id == "" {
		return []byte(`{"type":"pong"}`)
	}
	return Encode(Reply{Type: FramePong, ID: id})
}

// WithSeq returns frame, a JSON object, with "seq":seq as its first field.
// It allocates once; frame is not modified.
func WithSeq(frame []byte, seq uint64) []byte {
	if len(frame) < 2 || frame[0] != '{' {
		return frame
	}
	out := make([]byte, 0, len(frame)+28)
	out = append(out, `{"seq":`...)
	out = strconv.AppendUint(out, seq, 10)
	if rest := bytes.TrimLeft(frame[1:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, frame[1:]...)
}

// InsertPrev returns frame, a JSON object that begins with "seq" (as
// WithSeq makes it), with "prev":prev right after the seq: the seq of the
// room's previous stored message, so a client can tell when it missed one.
// It allocates once; frame is not modified. A frame of another shape is
// returned as it is.
func InsertPrev(frame []byte, prev uint64) []byte {
	const head = `{"seq":`
	if !bytes.HasPrefix(frame, []byte(head)) {
		return frame
	}
	end := len(head)
	for end < len(frame) && frame[end] >= '0' && frame[end] <= '9' {
		end++
	}
	if end == len(head) || end == len(frame) {
		return frame
	}
	out := make([]byte, 0, len(frame)+28)
	out = append(out, frame[:end]...)
	out = append(out, `,"prev":`...)
	out = strconv.AppendUint(out, prev, 10)
	return append(out, frame[end:]...)
}

// Uint64 returns a pointer to v, for Reply.Seq.
func Uint64(v uint64) *uint64 { return &v }
