package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"natter/edge/protocol"
)

// firstKey returns the first key of the JSON object in data.
func firstKey(tb testing.TB, data []byte) string {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		tb.Fatalf("%q: not a JSON object (%v, %v)", data, tok, err)
	}
	tok, err := dec.Token()
	if err != nil {
		tb.Fatalf("%q: %v", data, err)
	}
	key, ok := tok.(string)
	if !ok {
		tb.Fatalf("%q: object has no first key (%v)", data, tok)
	}
	return key
}

// decodeObject unmarshals data, which must be valid JSON, into a map.
func decodeObject(tb testing.TB, data []byte) map[string]json.RawMessage {
	tb.Helper()
	if !json.Valid(data) {
		tb.Fatalf("not valid JSON: %q", data)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		tb.Fatalf("%q: %v", data, err)
	}
	return m
}

func TestWithSeq(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		seq   uint64
		want  string
	}{
		{"msg", `{"type":"msg","room":"lobby","from":"alice","ts":1,"body":{"text":"hi"}}`, 42,
			`{"seq":42,"type":"msg","room":"lobby","from":"alice","ts":1,"body":{"text":"hi"}}`},
		{"empty object", `{}`, 7, `{"seq":7}`},
		{"seq zero", `{"type":"dm"}`, 0, `{"seq":0,"type":"dm"}`},
		{"max seq", `{"a":1}`, math.MaxUint64, `{"seq":18446744073709551615,"a":1}`},
		{"newline after brace", "{\n\"a\":1}", 3, "{\"seq\":3,\n\"a\":1}"},
		{"space after brace", `{ "a":1}`, 3, `{"seq":3, "a":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := []byte(tt.frame)
			got := protocol.WithSeq(frame, tt.seq)
			if string(got) != tt.want {
				t.Fatalf("WithSeq(%q, %d) = %q, want %q", tt.frame, tt.seq, got, tt.want)
			}
			if string(frame) != tt.frame {
				t.Fatalf("WithSeq modified its input: %q", frame)
			}
			m := decodeObject(t, got)
			if k := firstKey(t, got); k != "seq" {
				t.Fatalf("first key %q, want seq", k)
			}
			if string(m["seq"]) != fmt.Sprint(tt.seq) {
				t.Fatalf("seq = %s, want %d", m["seq"], tt.seq)
			}
		})
	}
}

// TestWithSeqEmptyObjectWithSpace: an empty JSON object written with
// whitespace inside the braces is still a JSON object, and the result must
// still be valid JSON.
func TestWithSeqEmptyObjectWithSpace(t *testing.T) {
	for _, frame := range []string{`{ }`, "{\n}", "{\t\r\n }"} {
		got := protocol.WithSeq([]byte(frame), 5)
		if !json.Valid(got) {
			t.Errorf("WithSeq(%q, 5) = %q: not valid JSON", frame, got)
			continue
		}
		if k := firstKey(t, got); k != "seq" {
			t.Errorf("WithSeq(%q, 5) = %q: first key %q", frame, got, k)
		}
	}
}

func TestWithSeqNotAnObject(t *testing.T) {
	for _, frame := range []string{``, `{`, `[]`, `[{"a":1}]`, `"x"`, `1`, `null`, ` {}`} {
		got := protocol.WithSeq([]byte(frame), 9)
		if string(got) != frame {
			t.Errorf("WithSeq(%q, 9) = %q, want it unchanged", frame, got)
		}
	}
	if got := protocol.WithSeq(nil, 1); got != nil {
		t.Errorf("WithSeq(nil, 1) = %q, want nil", got)
	}
}

func TestWithSeqAllocatesOnce(t *testing.T) {
	frame := []byte(`{"type":"msg","room":"lobby","from":"alice","ts":1764111111000,"body":{"text":"hi"}}`)
	allocs := testing.AllocsPerRun(100, func() {
		_ = protocol.WithSeq(frame, math.MaxUint64)
	})
	if allocs != 1 {
		t.Fatalf("WithSeq allocates %v times, want 1", allocs)
	}
}

func TestEncodeError(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		err      error
		wantCode protocol.Code
		wantMsg  string
	}{
		{"protocol error keeps code", "1", protocol.Errorf(protocol.CodeBadRoom, "bad room"), protocol.CodeBadRoom, "bad room"},
		{"no id", "", protocol.Errorf(protocol.CodeRateLimited, "slow down"), protocol.CodeRateLimited, "slow down"},
		{"every code", "x", &protocol.Error{Code: protocol.CodeUnavailable, Message: "m"}, protocol.CodeUnavailable, "m"},
		{"plain error is internal", "2", errors.New("dial tcp 10.0.0.7:4222: connection refused"), protocol.CodeInternal, "internal error"},
		{"nil error is internal", "3", nil, protocol.CodeInternal, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := protocol.EncodeError(tt.id, tt.err)
			if !json.Valid(out) {
				t.Fatalf("EncodeError: not valid JSON: %q", out)
			}
			var f protocol.ErrorFrame
			if err := json.Unmarshal(out, &f); err != nil {
				t.Fatal(err)
			}
			want := protocol.ErrorFrame{Type: protocol.FrameError, ID: tt.id, Code: tt.wantCode, Message: tt.wantMsg}
			if f != want {
				t.Fatalf("EncodeError(%q, %v) = %+v, want %+v", tt.id, tt.err, f, want)
			}
			if tt.id == "" && strings.Contains(string(out), `"id"`) {
				t.Fatalf("EncodeError without id has an id field: %q", out)
			}
			if tt.err != nil && tt.wantCode == protocol.CodeInternal {
				for _, leak := range []string{"10.0.0.7", "connection refused", "dial"} {
					if strings.Contains(string(out), leak) {
						t.Fatalf("EncodeError leaks %q: %q", leak, out)
					}
				}
			}
		})
	}
}

func TestEncodeErrorEscapes(t *testing.T) {
	id := "q\"<>\\\u2028"
	out := protocol.EncodeError(id, protocol.Errorf(protocol.CodeBadFrame, "bad \"frame\"\n"))
	var f protocol.ErrorFrame
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if f.ID != id || f.Message != "bad \"frame\"\n" {
		t.Fatalf("round trip: %+v", f)
	}
}

func TestEncodePong(t *testing.T) {
	tests := []struct {
		id   string
		want string
	}{
		{"", `{"type":"pong"}`},
		{"1", `{"type":"pong","id":"1"}`},
		{`a"b`, `{"type":"pong","id":"a\"b"}`},
	}
	for _, tt := range tests {
		got := protocol.EncodePong(tt.id)
		if string(got) != tt.want {
			t.Errorf("EncodePong(%q) = %q, want %q", tt.id, got, tt.want)
		}
		var r protocol.Reply
		if err := json.Unmarshal(got, &r); err != nil {
			t.Fatalf("EncodePong(%q): %v", tt.id, err)
		}
		if r.Type != protocol.FramePong || r.ID != tt.id || r.Seq != nil {
			t.Errorf("EncodePong(%q) decodes to %+v", tt.id, r)
		}
	}
}

func TestEncodeBye(t *testing.T) {
	out := protocol.EncodeBye(protocol.ByeSlow, "too slow")
	if want := `{"type":"bye","code":"slow","message":"too slow"}`; string(out) != want {
		t.Fatalf("EncodeBye = %q, want %q", out, want)
	}
}

func TestEncodeUnencodable(t *testing.T) {
	out := protocol.Encode(map[string]any{"f": func() {}})
	var f protocol.ErrorFrame
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if f.Type != protocol.FrameError || f.Code != protocol.CodeInternal {
		t.Fatalf("Encode of an unencodable value = %q, want an internal error frame", out)
	}
}

func TestErrorString(t *testing.T) {
	err := protocol.Errorf(protocol.CodeNotMember, "join first")
	if got, want := err.Error(), "not_member: join first"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestInsertPrev(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"seq":42,"type":"msg","body":1}`, `{"seq":42,"prev":41,"type":"msg","body":1}`},
		{`{"seq":7}`, `{"seq":7,"prev":41}`},
		{`{"type":"msg","seq":42}`, `{"type":"msg","seq":42}`}, // not the shape WithSeq makes
		{`{"seq":}`, `{"seq":}`},
		{`{"seq":12`, `{"seq":12`},
		{``, ``},
	} {
		in := []byte(tt.in)
		if got := string(protocol.InsertPrev(in, 41)); got != tt.want {
			t.Errorf("InsertPrev(%s, 41) = %s, want %s", tt.in, got, tt.want)
		}
		if string(in) != tt.in {
			t.Errorf("InsertPrev modified its input %s", tt.in)
		}
	}
}
