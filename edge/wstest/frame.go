package wstest

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Frame is one frame received from the server.
type Frame struct {
	// Fields is the frame decoded as a JSON object, numbers as json.Number;
	// nil when the frame is not a JSON object.
	Fields map[string]any
	// Raw is the frame's payload as received.
	Raw []byte
	// Binary is true for a binary frame (natter never sends one).
	Binary bool
}

func decodeFrame(raw []byte, binary bool) Frame {
	f := Frame{Raw: raw, Binary: binary}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) == nil {
		f.Fields = m
	}
	return f
}

// Type returns the frame's "type" ("" when it has none).
func (f Frame) Type() string { return f.Str("type") }

// Has reports whether the frame has the field key.
func (f Frame) Has(key string) bool {
	_, ok := f.Fields[key]
	return ok
}

// Get returns the decoded field key (nil when absent).
func (f Frame) Get(key string) any { return f.Fields[key] }

// Str returns the string field key, or "" when it is absent or not a string.
func (f Frame) Str(key string) string {
	s, _ := f.Fields[key].(string)
	return s
}

// Int returns the numeric field key as an int64; ok is false when it is
// absent or not an integer.
func (f Frame) Int(key string) (v int64, ok bool) {
	n, isNum := f.Fields[key].(json.Number)
	if !isNum {
		return 0, false
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	return v, err == nil
}

// Uint returns the numeric field key as a uint64; ok is false when it is
// absent or not a non-negative integer.
func (f Frame) Uint(key string) (v uint64, ok bool) {
	n, isNum := f.Fields[key].(json.Number)
	if !isNum {
		return 0, false
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	return v, err == nil
}

// Strings returns the field key as a list of strings; ok is false when it
// is absent, not a list, or holds anything but strings. An empty list gives
// a non-nil empty slice.
func (f Frame) Strings(key string) (v []string, ok bool) {
	list, isList := f.Fields[key].([]any)
	if !isList {
		return nil, false
	}
	v = make([]string, 0, len(list))
	for _, e := range list {
		s, isStr := e.(string)
		if !isStr {
			return nil, false
		}
		v = append(v, s)
	}
	return v, true
}

// JSON returns the field key as compact JSON text, as the server sent it
// (for example a message's "body"), or "" when it is absent.
func (f Frame) JSON(key string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(f.Raw, &m) != nil {
		return ""
	}
	v, ok := m[key]
	if !ok {
		return ""
	}
	var buf bytes.Buffer
	if json.Compact(&buf, v) != nil {
		return string(v)
	}
	return buf.String()
}

// String returns the frame as text, for failure messages.
func (f Frame) String() string {
	if f.Binary {
		return "binary frame " + strconv.Quote(string(f.Raw))
	}
	return string(f.Raw)
}
