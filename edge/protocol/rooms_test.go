package protocol_test

import (
	"testing"

	"natter/edge/protocol"
)

func TestRoomAllowed(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		room     string
		want     bool
	}{
		{"nil allows any", nil, "lobby", true},
		{"nil allows odd names", nil, "x:y-z_1", true},
		{"empty allows none", []string{}, "lobby", false},
		{"empty allows none, not even empty", []string{}, "", false},
		{"exact", []string{"lobby"}, "lobby", true},
		{"exact is not prefix", []string{"lobby"}, "lobby2", false},
		{"exact is not suffix", []string{"lobby"}, "lob", false},
		{"exact is case sensitive", []string{"lobby"}, "Lobby", false},
		{"second pattern", []string{"a", "lobby"}, "lobby", true},
		{"trailing star matches suffix", []string{"team-*"}, "team-red", true},
		{"trailing star matches bare prefix", []string{"team-*"}, "team-", true},
		{"trailing star needs prefix", []string{"team-*"}, "team", false},
		{"trailing star needs prefix at start", []string{"team-*"}, "xteam-red", false},
		{"star alone matches any", []string{"*"}, "anything", true},
		{"star alone among others", []string{"lobby", "*"}, "other", true},
		{"inner star is literal", []string{"a*b"}, "axb", false},
		{"inner star matches itself", []string{"a*b"}, "a*b", true},
		{"leading star is literal", []string{"*-red"}, "team-red", false},
		{"empty pattern matches nothing real", []string{""}, "lobby", false},
		{"only the last star is a wildcard", []string{"a**"}, "ab", false},
		{"double star prefix", []string{"a**"}, "a*b", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := protocol.RoomAllowed(tt.patterns, tt.room); got != tt.want {
				t.Fatalf("RoomAllowed(%q, %q) = %v, want %v", tt.patterns, tt.room, got, tt.want)
			}
		})
	}
}
