package protocol

import (
	"bytes"
	"reflect"
	"testing"
)

// fastSeeds are frames the fast path takes, and near misses it must leave
// to encoding/json.
var fastSeeds = []string{
	`{"type":"join","room":"lobby","id":"1"}`,
	`{"type":"join","room":"lobby","id":"1","since":41}`,
	`{"type":"send","room":"lobby","id":"2","body":{"text":"hi","n":[1,2.5e3,true,null,"x\"y"]}}`,
	`{"type":"dm","to":"bob","id":"3","body":"are you there?"}`,
	`{"type":"history","room":"lobby","before":100,"limit":-0}`,
	`{"type":"history","room":"lobby","after":18446744073709551615,"limit":500}`,
	` {"type":"ping"} `,
	"{\n \"type\" : \"send\" ,\n \"body\" : [ 1 , 2 ] ,\"room\":\"r\"}\n",
	`{"type":"ping","extra":{"a":[{}]},"from":"mallory"}`,
	`{"type":"ping","id":"é"}`,
	`{"type":"send","room":"lobby","id":"4","echo":false,"body":"x"}`,
	`{"type":"read","room":"lobby","seq":42,"id":"5"}`,
	`{"type":"send","echo":true}`,
	`{"type":"send","echo":null}`,
	`{"type":"send","echo":"false"}`,
	`{"type":"send","Echo":false}`,
	`{"type":"send","echo":false,"echo":true}`,
	`{"type":"read","seq":-1}`,
	`{"type":"read","seq":1.5}`,
	`{"type":"join","type":"leave"}`,
	`{"TYPE":"join"}`,
	`{"type":"join","since":1e2}`,
	`{"type":"join","since":-1}`,
	`{"type":"join","since":null}`,
	`{"type":null,"id":"x"}`,
	`{"type":"p\u0069ng"}`,
	`{"type":"ping","id":"` + "\xff" + `"}`,
	`{"type":"ping"}{"type":"ping"}`,
	`{"type":"send","body":1e999999}`,
	`{"id":"1"}`,
	`{}`,
	`[]`,
}

// FuzzDecodeFast: whenever the fast path decodes a frame, encoding/json
// decodes it to the same command.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeFast(data)
		if !ok {
			return
		}
		slow, err := decodeJSON(data)
		if err != nil {
			t.Fatalf("fast path took %q, encoding/json refused it: %v", data, err)
		}
		if !bytes.Equal(fast.Body, slow.Body) {
			t.Fatalf("%q: body %q, encoding/json %q", data, fast.Body, slow.Body)
		}
		fast.Body, slow.Body = nil, nil
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast %+v\njson %+v", data, fast, slow)
		}
	})
}

// TestDecodeFastTakesCommonFrames: the frames clients send every day do
// not fall back to encoding/json.
func TestDecodeFastTakesCommonFrames(t *testing.T) {
	for _, s := range fastSeeds[:13] {
		if _, ok := decodeFast([]byte(s)); !ok {
			t.Errorf("fast path refused %s", s)
		}
	}
}

func BenchmarkDecodeCommand(b *testing.B) {
	frame := []byte(`{"type":"dm","to":"user1234","id":"c-1-42","body":{"text":"hello there, how are you doing today?","n":42}}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeCommand(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeJSON(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
}
