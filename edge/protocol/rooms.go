package protocol

import "strings"

// RoomAllowed reports whether room matches one of patterns, the "rooms" of
// a token's "natter" claim: nil patterns allow any room, a pattern ending in
// '*' matches any room starting with what precedes it, and any other pattern
// matches itself only.
func RoomAllowed(patterns []string, room string) bool {
	if patterns == nil {
		return true
	}
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(room, prefix) {
				return true
			}
		} else if p == room {
			return true
		}
	}
	return false
}
