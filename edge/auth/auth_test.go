package auth

import (
	"regexp"
	"strings"
	"testing"
)

func TestRoomAllowed(t *testing.T) {
	cases := []struct {
		patterns []string
		room     string
		want     bool
	}{
		{nil, "lobby", true},
		{nil, "anything-at_all", true},
		{[]string{}, "lobby", false},
		{[]string{}, "", false},
		{[]string{"lobby"}, "lobby", true},
		{[]string{"lobby"}, "lobby2", false},
		{[]string{"lobby"}, "lobb", false},
		{[]string{"lobby"}, "Lobby", false},
		{[]string{"team-*"}, "team-red", true},
		{[]string{"team-*"}, "team-", true},
		{[]string{"team-*"}, "team", false},
		{[]string{"team-*"}, "xteam-red", false},
		{[]string{"*"}, "lobby", true},
		{[]string{"*"}, "x", true},
		{[]string{"lobby", "team-*"}, "team-blue", true},
		{[]string{"lobby", "team-*"}, "lobby", true},
		{[]string{"lobby", "team-*"}, "other", false},
		{[]string{"a*b"}, "axxb", false}, // '*' not last: literal
		{[]string{"a*b"}, "a*b", true},
		{[]string{"team-**"}, "team-red", false}, // prefix "team-*"
		{[]string{""}, "lobby", false},
	}
	for _, tc := range cases {
		if got := RoomAllowed(tc.patterns, tc.room); got != tc.want {
			t.Errorf("RoomAllowed(%q, %q) = %v, want %v", tc.patterns, tc.room, got, tc.want)
		}
	}
}

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
