package protocol_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"natter/edge/protocol"
)

func u64(v uint64) *uint64 { return &v }

func TestDecodeCommandValid(t *testing.T) {
	id64 := strings.Repeat("x", protocol.MaxIDLen)
	tests := []struct {
		name  string
		frame string
		want  protocol.Command
	}{
		{"join", `{"type":"join","room":"lobby","id":"1"}`,
			protocol.Command{Type: "join", ID: "1", Room: "lobby"}},
		{"join since", `{"type":"join","room":"lobby","since":41}`,
			protocol.Command{Type: "join", Room: "lobby", Since: u64(41)}},
		{"join since zero", `{"type":"join","room":"lobby","since":0}`,
			protocol.Command{Type: "join", Room: "lobby", Since: u64(0)}},
		{"leave", `{"type":"leave","room":"lobby","id":"2"}`,
			protocol.Command{Type: "leave", ID: "2", Room: "lobby"}},
		{"send object body", `{"type":"send","room":"lobby","id":"3","body":{"text":"hi"}}`,
			protocol.Command{Type: "send", ID: "3", Room: "lobby", Body: json.RawMessage(`{"text":"hi"}`)}},
		{"send string body", `{"type":"send","room":"r","body":"hi"}`,
			protocol.Command{Type: "send", Room: "r", Body: json.RawMessage(`"hi"`)}},
		{"send array body", `{"type":"send","room":"r","body":[1,2,{"a":null}]}`,
			protocol.Command{Type: "send", Room: "r", Body: json.RawMessage(`[1,2,{"a":null}]`)}},
		{"dm", `{"type":"dm","to":"bob","id":"4","body":"are you there?"}`,
			protocol.Command{Type: "dm", ID: "4", To: "bob", Body: json.RawMessage(`"are you there?"`)}},
		{"broadcast", `{"type":"broadcast","body":{"n":1}}`,
			protocol.Command{Type: "broadcast", Body: json.RawMessage(`{"n":1}`)}},
		{"members", `{"type":"members","room":"lobby","id":"m"}`,
			protocol.Command{Type: "members", ID: "m", Room: "lobby"}},
		{"history", `{"type":"history","room":"lobby","before":100,"limit":20}`,
			protocol.Command{Type: "history", Room: "lobby", Before: u64(100), Limit: 20}},
		{"history max uint64", `{"type":"history","room":"r","before":18446744073709551615}`,
			protocol.Command{Type: "history", Room: "r", Before: u64(^uint64(0))}},
		{"ping", `{"type":"ping"}`, protocol.Command{Type: "ping"}},
		{"ping with id", `{"type":"ping","id":"p1"}`, protocol.Command{Type: "ping", ID: "p1"}},
		{"unknown type still decodes", `{"type":"frobnicate","id":"z"}`,
			protocol.Command{Type: "frobnicate", ID: "z"}},
		{"surrounding whitespace", " \t\r\n{\"type\":\"ping\"}\n ", protocol.Command{Type: "ping"}},
		{"unknown fields ignored", `{"type":"ping","extra":[1,2],"from":"mallory","ts":1}`,
			protocol.Command{Type: "ping"}},
		{"id of 64 bytes", `{"type":"ping","id":"` + id64 + `"}`, protocol.Command{Type: "ping", ID: id64}},
		{"unicode escapes", `{"type":"send","room":"r","id":"\u00e9","body":"\ud83d\ude00"}`,
			protocol.Command{Type: "send", Room: "r", ID: "é", Body: json.RawMessage(`"\ud83d\ude00"`)}},
		{"null body kept as null", `{"type":"send","room":"r","body":null}`,
			protocol.Command{Type: "send", Room: "r", Body: json.RawMessage(`null`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.DecodeCommand([]byte(tt.frame))
			if err != nil {
				t.Fatalf("DecodeCommand(%q): %v", tt.frame, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("DecodeCommand(%q)\n got %+v\nwant %+v", tt.frame, got, tt.want)
			}
		})
	}
}

func TestDecodeCommandBadFrame(t *testing.T) {
	id64 := strings.Repeat("a", protocol.MaxIDLen)
	id65 := strings.Repeat("a", protocol.MaxIDLen+1)
	tests := []struct {
		name   string
		frame  string
		wantID string // the id the error frame can echo
	}{
		// Not an object.
		{"empty", ``, ""},
		{"whitespace only", " \t\r\n", ""},
		{"array", `[]`, ""},
		{"array of object", `[{"type":"ping"}]`, ""},
		{"string", `"x"`, ""},
		{"number", `1`, ""},
		{"null", `null`, ""},
		{"true", `true`, ""},
		{"leading garbage", `x{"type":"ping"}`, ""},
		// Invalid JSON.
		{"unterminated", `{"type":"ping"`, ""},
		{"open brace only", `{`, ""},
		{"trailing comma", `{"type":"ping",}`, ""},
		{"single quotes", `{'type':'ping'}`, ""},
		{"two objects", `{"type":"ping"} {"type":"ping"}`, ""},
		{"trailing garbage", `{"type":"ping"}x`, ""},
		{"NUL after object", "{\"type\":\"ping\"}\x00", ""},
		{"raw control char in string", "{\"type\":\"pi\x01ng\"}", ""},
		// Missing or empty type.
		{"empty object", `{}`, ""},
		{"missing type keeps id", `{"id":"9","room":"lobby"}`, "9"},
		{"empty type keeps id", `{"type":"","id":"8"}`, "8"},
		{"null type keeps id", `{"type":null,"id":"8"}`, "8"},
		// Wrong field types: the id is salvaged.
		{"since not a number", `{"type":"join","id":"7","since":"x"}`, "7"},
		{"since negative", `{"type":"join","id":"7","since":-1}`, "7"},
		{"since fraction", `{"type":"join","id":"7","since":1.5}`, "7"},
		{"since too big", `{"type":"join","id":"7","since":18446744073709551616}`, "7"},
		{"before huge exponent", `{"type":"history","id":"6","before":1e400}`, "6"},
		{"limit a string", `{"type":"history","id":"5","limit":"50"}`, "5"},
		{"type not a string", `{"type":1,"id":"4"}`, "4"},
		{"room not a string", `{"type":"join","id":"3","room":["lobby"]}`, "3"},
		{"id not a string", `{"type":"ping","id":7}`, ""},
		{"id object", `{"type":"ping","id":{"a":1}}`, ""},
		// Id length.
		{"id of 65 bytes", `{"type":"ping","id":"` + id65 + `"}`, ""},
		{"id of 65 bytes and bad since", `{"type":"join","since":"x","id":"` + id65 + `"}`, ""},
		{"id of 64 bytes and bad since", `{"type":"join","since":"x","id":"` + id64 + `"}`, id64},
		{"id of 64 bytes but no type", `{"id":"` + id64 + `"}`, id64},
		{"multi-byte id of 66 bytes", `{"type":"ping","id":"` + strings.Repeat("é", 33) + `"}`, ""},
		// Invalid JSON whose id cannot be read.
		{"syntax error after id", `{"id":"1","type":"ping"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.DecodeCommand([]byte(tt.frame))
			if err == nil {
				t.Fatalf("DecodeCommand(%q) = %+v, want an error", tt.frame, got)
			}
			var perr *protocol.Error
			if !errors.As(err, &perr) {
				t.Fatalf("DecodeCommand(%q): error %T %v is not a *protocol.Error", tt.frame, err, err)
			}
			if perr.Code != protocol.CodeBadFrame {
				t.Fatalf("DecodeCommand(%q): code %q, want %q", tt.frame, perr.Code, protocol.CodeBadFrame)
			}
			if perr.Message == "" {
				t.Fatalf("DecodeCommand(%q): empty error message", tt.frame)
			}
			if got.ID != tt.wantID {
				t.Fatalf("DecodeCommand(%q): ID %q, want %q", tt.frame, got.ID, tt.wantID)
			}
			if len(got.ID) > protocol.MaxIDLen {
				t.Fatalf("DecodeCommand(%q): echoed ID of %d bytes", tt.frame, len(got.ID))
			}
		})
	}
}

// TestDecodeCommandErrorHidesInput checks the error message does not repeat
// what the client sent (it goes back to the client, and into logs).
func TestDecodeCommandErrorHidesInput(t *testing.T) {
	const secret = "s3cr3t-value-that-must-not-echo"
	for _, frame := range []string{
		`{"type":"join","since":"` + secret + `"}`,
		`{"type":"join",` + secret + `}`,
		`[` + `"` + secret + `"]`,
	} {
		_, err := protocol.DecodeCommand([]byte(frame))
		if err == nil {
			t.Fatalf("DecodeCommand(%q): no error", frame)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("DecodeCommand(%q): error %q repeats the input", frame, err)
		}
	}
}

func TestDecodeCommandDoesNotModifyInput(t *testing.T) {
	frame := []byte(`{"type":"send","room":"r","body":{"a":[1,2]},"id":"x"}`)
	orig := string(frame)
	c, err := protocol.DecodeCommand(frame)
	if err != nil {
		t.Fatal(err)
	}
	if string(frame) != orig {
		t.Fatalf("input modified: %q", frame)
	}
	// Body must not alias the input buffer: a reused read buffer would
	// otherwise change a command already queued.
	for i := range frame {
		frame[i] = ' '
	}
	if string(c.Body) != `{"a":[1,2]}` {
		t.Fatalf("Body aliases the input: %q", c.Body)
	}
}

func TestKnownCommand(t *testing.T) {
	for _, typ := range []string{
		protocol.TypeJoin, protocol.TypeLeave, protocol.TypeSend, protocol.TypeDM,
		protocol.TypeBroadcast, protocol.TypeMembers, protocol.TypeHistory, protocol.TypePing,
	} {
		if !protocol.KnownCommand(typ) {
			t.Errorf("KnownCommand(%q) = false, want true", typ)
		}
	}
	for _, typ := range []string{
		"", "JOIN", "Join", "join ", " ping", "pong", "welcome", "joined", "ack",
		"msg", "error", "bye", "presence", "subscribe", "ping\x00",
	} {
		if protocol.KnownCommand(typ) {
			t.Errorf("KnownCommand(%q) = true, want false", typ)
		}
	}
}
