package protocol

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
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
	// TypeRefresh replaces an open connection's token before it expires
	// (protocol v1.1); the edge answers it itself.
	TypeRefresh = "refresh"
)

// Command types of v1.1 additions served by handlers of their own
// (handlers/typing, handlers/receipts). They are not v1 commands: with no
// handler running, they are answered "unknown_type".
const (
	TypeTyping = "typing"
	TypeRead   = "read"
	TypeUnread = "unread"
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
	// Seq is the position of "read" (v1.1).
	Seq *uint64 `json:"seq,omitempty"`
	// Echo false on "send" asks that the message not be delivered to
	// the sending connection (v1.1, exclude publisher); absent or true
	// delivers it there too.
	Echo *bool `json:"echo,omitempty"`
	// Token is the new JWT of a "refresh" (v1.1).
	Token string `json:"token,omitempty"`
}

// NoEcho reports whether the command asks not to be echoed to its sender
// ("echo":false).
func (c *Command) NoEcho() bool { return c.Echo != nil && !*c.Echo }

// DecodeCommand parses one client text frame. It accepts exactly one JSON
// object with a non-empty string "type" and an "id" of at most MaxIDLen
// bytes; anything else is a *Error with CodeBadFrame. When the frame is an
// object whose id could be read, the returned Command carries that id even
// on error, so the error frame can echo it.
//
// Common frames (plain lowercase keys, strings without escapes, integer
// numbers, each known key once) are decoded by a scanner that allocates
// only the strings; everything else goes through encoding/json, whose
// result the scanner's always equals (FuzzDecodeFast checks it).
func DecodeCommand(data []byte) (Command, error) {
	if c, ok := decodeFast(data); ok {
		return c, nil
	}
	return decodeJSON(data)
}

// decodeJSON is DecodeCommand by encoding/json.
func decodeJSON(data []byte) (Command, error) {
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

// decodeFast decodes a valid command frame made only of what a client
// normally sends. It reports false for anything else (invalid JSON
// included), which decodeJSON then decides.
func decodeFast(data []byte) (Command, bool) {
	var c Command
	if !json.Valid(data) {
		return c, false
	}
	d := scanner{data: data}
	d.space()
	if !d.byte('{') {
		return c, false
	}
	var seen uint16
	d.space()
	if d.byte('}') {
		return c, false // no type: decodeJSON explains
	}
	for {
		key, ok := d.plainString()
		if !ok {
			return c, false
		}
		d.space()
		d.byte(':')
		d.space()
		bit, known := fastKeys[key]
		if known {
			if seen&bit != 0 {
				return c, false // a repeated key: the last one wins there
			}
			seen |= bit
		}
		switch key {
		case "type", "id", "room", "to", "token":
			v, ok := d.plainString()
			if !ok {
				return c, false
			}
			switch key {
			case "type":
				c.Type = v
			case "id":
				c.ID = v
			case "room":
				c.Room = v
			case "token":
				c.Token = v
			default:
				c.To = v
			}
		case "since", "before", "after", "seq":
			v, ok := d.uint()
			if !ok {
				return c, false
			}
			switch key {
			case "since":
				c.Since = &v
			case "before":
				c.Before = &v
			case "seq":
				c.Seq = &v
			default:
				c.After = &v
			}
		case "echo":
			v, ok := d.bool()
			if !ok {
				return c, false // null or another type: encoding/json decides
			}
			c.Echo = &v
		case "limit":
			v, ok := d.int()
			if !ok {
				return c, false
			}
			c.Limit = v
		case "body":
			start := d.i
			d.skipValue()
			c.Body = bytes.Clone(data[start:d.i])
		default:
			if !known && !d.lowerKey(key) {
				return c, false // case-folded keys match known ones there
			}
			d.skipValue()
		}
		d.space()
		if d.byte('}') {
			break
		}
		if !d.byte(',') {
			return c, false
		}
		d.space()
	}
	if c.Type == "" || len(c.ID) > MaxIDLen {
		return c, false
	}
	return c, true
}

// fastKeys are the keys decodeFast fills, each with its bit.
var fastKeys = map[string]uint16{
	"type": 1, "id": 2, "room": 4, "to": 8, "body": 16,
	"since": 32, "before": 64, "after": 128, "limit": 256,
	"seq": 512, "echo": 1024, "token": 2048,
}

// scanner reads a frame that json.Valid accepted.
type scanner struct {
	data []byte
	i    int
}

func (d *scanner) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\r', '\n':
			d.i++
		default:
			return
		}
	}
}

func (d *scanner) byte(b byte) bool {
	if d.i < len(d.data) && d.data[d.i] == b {
		d.i++
		return true
	}
	return false
}

// plainString reads a string without escapes whose bytes are valid UTF-8.
func (d *scanner) plainString() (string, bool) {
	if !d.byte('"') {
		return "", false
	}
	start := d.i
	for d.i < len(d.data) {
		switch b := d.data[d.i]; {
		case b == '"':
			s := d.data[start:d.i]
			d.i++
			if !utf8.Valid(s) {
				return "", false
			}
			return string(s), true
		case b == '\\':
			return "", false
		}
		d.i++
	}
	return "", false
}

// lowerKey reports whether an unknown key has no upper-case or non-ASCII
// letter, so that it cannot fold to a known key.
func (d *scanner) lowerKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if b := key[i]; b >= 0x80 || (b >= 'A' && b <= 'Z') {
			return false
		}
	}
	return true
}

// bool reads the literal true or false.
func (d *scanner) bool() (bool, bool) {
	rest := d.data[d.i:]
	switch {
	case bytes.HasPrefix(rest, []byte("true")):
		d.i += 4
		return true, true
	case bytes.HasPrefix(rest, []byte("false")):
		d.i += 5
		return false, true
	}
	return false, false
}

// digits returns the run of ASCII digits at the cursor.
func (d *scanner) digits() []byte {
	start := d.i
	for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
		d.i++
	}
	return d.data[start:d.i]
}

// uint reads a non-negative integer that fits a uint64 and is not followed
// by a fraction or exponent.
func (d *scanner) uint() (uint64, bool) {
	ds := d.digits()
	if len(ds) == 0 || d.numberGoesOn() {
		return 0, false
	}
	v, err := strconv.ParseUint(string(ds), 10, 64)
	return v, err == nil
}

// int reads an integer that fits an int.
func (d *scanner) int() (int, bool) {
	neg := d.byte('-')
	ds := d.digits()
	if len(ds) == 0 || d.numberGoesOn() {
		return 0, false
	}
	v, err := strconv.ParseInt(string(ds), 10, 0)
	if neg {
		v = -v
	}
	return int(v), err == nil
}

func (d *scanner) numberGoesOn() bool {
	return d.i < len(d.data) && (d.data[d.i] == '.' || d.data[d.i] == 'e' || d.data[d.i] == 'E')
}

// skipValue moves past one (valid) JSON value.
func (d *scanner) skipValue() {
	depth := 0
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case '"':
			d.i++
			for d.i < len(d.data) && d.data[d.i] != '"' {
				if d.data[d.i] == '\\' {
					d.i++
				}
				d.i++
			}
			d.i++
		case '{', '[':
			depth++
			d.i++
		case '}', ']':
			if depth == 0 {
				return // the end of the enclosing object
			}
			depth--
			d.i++
		case ',':
			if depth == 0 {
				return
			}
			d.i++
		case ' ', '\t', '\r', '\n':
			if depth == 0 {
				return
			}
			d.i++
		default:
			d.i++
		}
		if depth == 0 && d.i > 0 && !isScalarByte(d.data[d.i-1]) {
			return // a closed string, object or array
		}
	}
}

// isScalarByte reports whether b can be inside a number or literal.
func isScalarByte(b byte) bool {
	return b == '-' || b == '+' || b == '.' || (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')
}
