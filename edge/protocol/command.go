package protocol

import (
	"bytes"
	"encoding/json"
)

// Limits of a client frame.
const (
	// MaxIDLen is the longest client-chosen command id, in bytes.
	MaxIDLen = 64
	// DefaultHistoryLimit is the number of messages "history" returns
	// when the command gives no limit.
	DefaultHistoryLimit = 50
	// MaxHistoryLimit is the most messages one "history" returns.
	MaxHistoryLimit = 500
)

// Command types a client may send.
const (
	TypeJoin      = "join"
	TypeLeave     = "leave"
	TypeSend      = "send"
	TypeDM        = "dm"
	TypeBroadcast = "broadcast"
	TypeMembers   = "members"
	TypeHistory   = "history"
	TypePing      = "ping"
)

// KnownCommand reports whether t is a command type of protocol version 1.
func KnownCommand(t string) bool {
	switch t {
	case TypeJoin, TypeLeave, TypeSend, TypeDM, TypeBroadcast, TypeMembers, TypeHistory, TypePing:
		return true
	}
	return false
}

// Command is a decoded client frame. Fields a type does not use are zero.
type Command struct {
	Type   string          `json:"type"`
	ID     string          `json:"id,omitempty"`
	Room   string          `json:"room,omitempty"`
	To     string          `json:"to,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
	Since  *uint64         `json:"since,omitempty"`
	Before *uint64         `json:"before,omitempty"`
	After  *uint64         `json:"after,omitempty"`
	Limit  int             `json:"limit,omitempty"`
}

// DecodeCommand parses one client text frame. It accepts exactly one JSON
// object with a non-empty string "type" and an "id" of at most MaxIDLen
// bytes; anything else is a *Error with CodeBadFrame. When the frame is an
// object whose id could be read, the returned Command carries that id even
// on error, so the error frame can echo it.
func DecodeCommand(data []byte) (Command, error) {
	var c Command
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return c, Errorf(CodeBadFrame, "frame is not a JSON object")
	}
	if err := json.Unmarshal(data, &c); err != nil {
		c = Command{ID: salvageID(data)}
		return c, Errorf(CodeBadFrame, "invalid JSON: "+jsonReason(err))
	}
	if len(c.ID) > MaxIDLen {
		c.ID = ""
		return c, Errorf(CodeBadFrame, "id longer than 64 bytes")
	}
	if c.Type == "" {
		return c, Errorf(CodeBadFrame, "missing type")
	}
	return c, nil
}

// salvageID returns the id of a frame whose other fields did not decode
// (for example "since":"x"), so its error can still be matched.
func salvageID(data []byte) string {
	var v struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(data, &v) != nil || len(v.ID) > MaxIDLen {
		return ""
	}
	return v.ID
}

func jsonReason(err error) string {
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		return "field " + te.Field + " has the wrong type"
	}
	return "syntax error"
}
