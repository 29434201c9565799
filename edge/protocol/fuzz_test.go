package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"natter/edge/protocol"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed files of testdata/fuzz from the seeds in the fuzz tests")

// decodeSeeds are realistic frames of every command type plus hostile ones.
// Each is also kept as a file in testdata/fuzz/FuzzDecodeCommand (see
// TestFuzzDecodeCommandCorpus), named "seed-" + name.
var decodeSeeds = []struct {
	name  string
	frame string
}{
	// One realistic frame per command type.
	{"join", `{"type":"join","room":"lobby","id":"1"}`},
	{"join-since", `{"type":"join","room":"lobby","id":"1","since":41}`},
	{"leave", `{"type":"leave","room":"lobby","id":"2"}`},
	{"send", `{"type":"send","room":"lobby","id":"2","body":{"text":"hi"}}`},
	{"dm", `{"type":"dm","to":"bob","id":"3","body":"are you there?"}`},
	{"broadcast", `{"type":"broadcast","id":"b","body":{"alert":"maintenance at 22:00"}}`},
	{"members", `{"type":"members","room":"team-red","id":"m1"}`},
	{"history", `{"type":"history","room":"lobby","id":"h","before":100,"limit":50}`},
	{"history-max", `{"type":"history","room":"lobby","limit":500,"before":18446744073709551615}`},
	{"ping", `{"type":"ping"}`},
	{"ping-id", `{"type":"ping","id":"p"}`},
	{"unknown-type", `{"type":"subscribe","id":"u","room":"lobby"}`},
	{"id-64", `{"type":"ping","id":"` + strings.Repeat("i", 64) + `"}`},
	{"id-65", `{"type":"ping","id":"` + strings.Repeat("i", 65) + `"}`},
	{"pretty", "{\n  \"type\": \"send\",\n  \"room\": \"lobby\",\n  \"body\": [1, 2, 3]\n}\n"},
	// Not objects, broken JSON.
	{"empty", ``},
	{"spaces", " \t\r\n"},
	{"array", `[]`},
	{"string", `"x"`},
	{"number", `1`},
	{"null", `null`},
	{"unterminated", `{"type":"ping"`},
	{"two-objects", `{"type":"ping"}{"type":"ping"}`},
	{"bom", "\xef\xbb\xbf{\"type\":\"ping\"}"},
	{"bad-since", `{"type":"join","id":"7","since":"x"}`},
	{"id-number", `{"type":"ping","id":7}`},
	// Deep nesting: within and beyond encoding/json's depth limit.
	{"deep-array-body", `{"type":"send","room":"r","body":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}`},
	{"deep-object-body", `{"type":"send","room":"r","body":` + strings.Repeat(`{"a":`, 300) + `1` + strings.Repeat("}", 300) + `}`},
	{"too-deep-body", `{"type":"send","room":"r","id":"d","body":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`},
	// Huge numbers.
	{"since-overflow", `{"type":"join","room":"r","since":18446744073709551616}`},
	{"limit-huge", `{"type":"history","room":"r","limit":99999999999999999999999}`},
	{"limit-exp", `{"type":"history","room":"r","limit":1e2}`},
	{"body-huge-number", `{"type":"send","room":"r","body":1e999999}`},
	{"body-long-number", `{"type":"send","room":"r","body":` + strings.Repeat("9", 400) + `.` + strings.Repeat("1", 400) + `}`},
	{"negative-zero", `{"type":"history","room":"r","limit":-0}`},
	// Unicode escapes.
	{"unicode-type", `{"type":"\u006a\u006f\u0069\u006e","room":"lobby"}`},
	{"unicode-id", `{"type":"ping","id":"\u00e9\ud83d\ude00\u2028"}`},
	{"lone-surrogate", `{"type":"ping","id":"\ud800"}`},
	{"invalid-utf8-id", "{\"type\":\"ping\",\"id\":\"\xff\xfe\"}"},
	{"utf8-id-64", `{"type":"ping","id":"` + strings.Repeat("é", 32) + `"}`},
	{"escaped-quote", `{"type":"send","room":"r","body":"\"}{\""}`},
	// Duplicate and case-folded keys.
	{"duplicate-type", `{"type":"join","type":"leave","room":"r"}`},
	{"duplicate-id", `{"type":"ping","id":"1","id":"` + strings.Repeat("x", 65) + `"}`},
	{"case-folded-keys", `{"TYPE":"join","Room":"lobby","ID":"c"}`},
	{"type-null", `{"type":null,"id":"n"}`},
	// NUL bytes.
	{"nul-escaped", `{"type":"ping\u0000","id":"\u0000"}`},
	{"nul-raw-in-string", "{\"type\":\"ping\x00\"}"},
	{"nul-after", "{\"type\":\"ping\"}\x00"},
	{"nul-before", "\x00{\"type\":\"ping\"}"},
	// Fields a client must not choose (ignored).
	{"forged-from", `{"type":"send","room":"r","from":"admin","ts":1,"seq":5,"body":1}`},
}

func FuzzDecodeCommand(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s.frame))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		c, err := protocol.DecodeCommand(data)
		if !bytes.Equal(data, orig) {
			t.Fatalf("DecodeCommand modified its input")
		}
		if len(c.ID) > protocol.MaxIDLen {
			t.Fatalf("ID of %d bytes (err %v)", len(c.ID), err)
		}
		if err != nil {
			var perr *protocol.Error
			if !errors.As(err, &perr) || perr.Code != protocol.CodeBadFrame {
				t.Fatalf("error %T %v, want a *protocol.Error with %s", err, err, protocol.CodeBadFrame)
			}
			return
		}
		if c.Type == "" {
			t.Fatalf("success with an empty Type")
		}
		if len(c.Body) > 0 && !json.Valid(c.Body) {
			t.Fatalf("Body is not valid JSON: %q", c.Body)
		}

		// Re-encode and decode again: the command must survive unchanged.
		enc, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", c, err)
		}
		c2, err := protocol.DecodeCommand(enc)
		if err != nil {
			t.Fatalf("re-decoding %q (from %q): %v", enc, data, err)
		}
		if c2.Type != c.Type || c2.ID != c.ID {
			t.Fatalf("round trip changed type/id: %q/%q -> %q/%q", c.Type, c.ID, c2.Type, c2.ID)
		}
		a, b := c, c2
		a.Body, b.Body = nil, nil
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed fields:\n%+v\n%+v", c, c2)
		}
		if !sameJSON(t, c.Body, c2.Body) {
			t.Fatalf("round trip changed body: %q -> %q", c.Body, c2.Body)
		}
	})
}

// sameJSON reports whether a and b (empty, or valid JSON) hold the same value.
func sameJSON(tb testing.TB, a, b []byte) bool {
	tb.Helper()
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	decode := func(data []byte) any {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			tb.Fatalf("decoding %q: %v", data, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

// corpusFile is the content of a `go test fuzz v1` file holding one []byte.
func corpusFile(frame string) string {
	return fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", frame)
}

// TestFuzzDecodeCommandCorpus checks that every seed of FuzzDecodeCommand is
// also committed under testdata/fuzz. With -update-corpus it writes them.
func TestFuzzDecodeCommandCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeCommand")
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, s := range decodeSeeds {
		if seen[s.name] {
			t.Fatalf("duplicate seed name %q", s.name)
		}
		seen[s.name] = true
		path := filepath.Join(dir, "seed-"+s.name)
		want := corpusFile(s.frame)
		if *updateCorpus {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is missing or stale; run: go test ./edge/protocol/ -run '^TestFuzzDecodeCommandCorpus$' -update-corpus", path)
		}
	}
}
