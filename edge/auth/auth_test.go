package auth

import (
	"regexp"
	"strings"
	"testing"
)

// nameRE is the definition of a valid name in PROTOCOL.md.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_:-]{1,128}$`)

func TestValidName(t *testing.T) {
	// Every single byte, and every byte inside an otherwise valid name.
	for c := 0; c < 256; c++ {
		for _, s := range []string{string([]byte{byte(c)}), "ab" + string([]byte{byte(c)}) + "cd"} {
			if got, want := validName(s), nameRE.MatchString(s); got != want {
				t.Errorf("validName(%q) = %v, regexp says %v", s, got, want)
			}
		}
	}
	for _, s := range []string{
		"", "a", "alice", "user:42", "a-b_c:D9", "a.b", ">", "*", "a b", "a\n", "\x00", "zoë", "ａ",
		strings.Repeat("a", 127), strings.Repeat("a", 128), strings.Repeat("a", 129), strings.Repeat("a", 1000),
	} {
		if got, want := validName(s), nameRE.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, regexp says %v", s, got, want)
		}
	}
}
