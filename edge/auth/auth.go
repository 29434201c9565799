package auth

import (
	"errors"
	"net/http"
	"strings"
)

// Identity is who a connection is and what it may do.
type Identity struct {
	User      string   // validated user id
	Rooms     []string // room patterns the user may join; nil means any room; a trailing '*' matches any suffix
	Broadcast bool     // may broadcast
}

// Authenticator decides the identity of an upgrade request.
//
// Authenticate returns an error wrapping [ErrUnauthorized] or [ErrBadUser]
// when the request must be refused; the returned Identity is then the zero
// value. On success Identity.User is a valid user id.
type Authenticator interface {
	Authenticate(r *http.Request) (Identity, error)
}

// ErrUnauthorized means the request carries no acceptable credentials: a
// missing, malformed, expired, not yet valid or badly signed token, a token
// with a disallowed algorithm (including "none"), or one without a sub
// claim. The edge answers HTTP 401.
var ErrUnauthorized = errors.New("auth: unauthorized")

// ErrBadUser means the request names a user id that does not match
// ^[A-Za-z0-9_:-]{1,128}$. The edge answers HTTP 400.
var ErrBadUser = errors.New("auth: bad user id")

// maxNameLen is the longest valid user or room id, in bytes.
const maxNameLen = 128

// validName reports whether s matches ^[A-Za-z0-9_:-]{1,128}$.
func validName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// RoomAllowed reports whether room matches one of the patterns, as found in
// [Identity.Rooms].
//
// Nil patterns allow every room; an empty non-nil slice allows none. A
// pattern ending in '*' matches every room that starts with the rest of the
// pattern, including that prefix itself: "team-*" matches "team-" and
// "team-red", and "*" matches every room. Any other pattern matches exactly
// (a '*' that is not last is an ordinary character). RoomAllowed only matches: whether
// room is a valid room id is checked elsewhere, before a room is used.
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
