package natsconf_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"natter/natsconf"
)

// subjectSeeds seed FuzzSubjects; they are also kept in
// testdata/fuzz/FuzzSubjects (see TestFuzzSubjectsCorpus).
var subjectSeeds = []struct{ name, s string }{
	{"lobby", "lobby"},
	{"colon", "org:team"},
	{"dash-underscore", "a_b-c"},
	{"max-len", strings.Repeat("a", 128)},
	{"too-long", strings.Repeat("a", 129)},
	{"empty", ""},
	{"dot", "a.b"},
	{"star", "*"},
	{"gt", ">"},
	{"star-suffix", "team-*"},
	{"space", "a b"},
	{"tab", "a\tb"},
	{"nul", "a\x00b"},
	{"unicode", "café"},
	{"invalid-utf8", "\xff\xfe"},
	{"bcast", "bcast"},
	{"dollar", "$SYS"},
	{"equals", "a=3Ab"},
}

func FuzzSubjects(f *testing.F) {
	for _, s := range subjectSeeds {
		f.Add(s.s)
	}
	subj := natsconf.MustSubjects(natsconf.DefaultPrefix)
	f.Fuzz(func(t *testing.T, s string) {
		room, err := subj.Room(s)
		if !natsconf.ValidName(s) {
			if err == nil || !errors.Is(err, natsconf.ErrBadName) {
				t.Fatalf("Room(%q) = %q, %v; want ErrBadName", s, room, err)
			}
			if kind, _ := subj.Parse(natsconf.DefaultPrefix + ".room." + s); kind != natsconf.KindUnknown {
				t.Fatalf("Parse accepted a subject with invalid name %q as %v", s, kind)
			}
			return
		}
		if err != nil {
			t.Fatalf("Room(%q): %v", s, err)
		}
		kind, name := subj.Parse(room)
		if kind != natsconf.KindRoom || name != s {
			t.Fatalf("Parse(%q) = %v, %q; want KindRoom, %q", room, kind, name, s)
		}
		tokens := strings.Split(room, ".")
		if len(tokens) != 3 {
			t.Fatalf("Room(%q) = %q has %d tokens, want 3", s, room, len(tokens))
		}
		for _, tok := range tokens {
			if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, "*> \t\r\n\x00") {
				t.Fatalf("Room(%q) = %q has a bad token %q", s, room, tok)
			}
		}
		if back := natsconf.NameFromKeyToken(natsconf.KeyToken(s)); back != s {
			t.Fatalf("KeyToken round trip of %q gave %q", s, back)
		}
		if strings.ContainsAny(natsconf.KeyToken(s), ":.") {
			t.Fatalf("KeyToken(%q) = %q holds ':' or '.'", s, natsconf.KeyToken(s))
		}
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed files of testdata/fuzz from the seeds in the fuzz tests")

// TestFuzzSubjectsCorpus checks that every seed of FuzzSubjects is also
// committed under testdata/fuzz. With -update-corpus it writes them.
func TestFuzzSubjectsCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzSubjects")
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, s := range subjectSeeds {
		if seen[s.name] {
			t.Fatalf("duplicate seed name %q", s.name)
		}
		seen[s.name] = true
		path := filepath.Join(dir, "seed-"+s.name)
		want := fmt.Sprintf("go test fuzz v1\nstring(%q)\n", s.s)
		if *updateCorpus {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is missing or stale; run: go test ./natsconf/ -run '^TestFuzzSubjectsCorpus$' -update-corpus", path)
		}
	}
}
