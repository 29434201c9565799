package auth

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
)

// Development is the Authenticator of development mode: it trusts the
// client. The user id is the ?user= query parameter, or ?id= (accepted for
// clients of the original node ws chat server); user wins when both are
// non-empty. With neither, or only empty ones, it makes up a guest id
// "guest-<32 hex digits>", random and different on every call. A given id
// that is not valid (PROTOCOL.md, "Names") is refused with [ErrBadUser].
//
// The identity always has Broadcast true and Rooms nil (any room).
// Development must never be used where clients are not trusted.
type Development struct{}

var _ Authenticator = Development{}

// Authenticate returns the identity named by the request's query; see
// [Development].
func (Development) Authenticate(r *http.Request) (Identity, error) {
	var user string
	if r.URL != nil {
		q := r.URL.Query()
		user = q.Get("user")
		if user == "" {
			user = q.Get("id")
		}
	}
	if user == "" {
		user = guestID()
	} else if !validName(user) {
		return Identity{}, fmt.Errorf("%w: user id in query is not valid", ErrBadUser)
	}
	return Identity{User: user, Broadcast: true}, nil
}

// guestID returns a new random user id, "guest-" and 128 random bits in hex.
func guestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return "guest-" + hex.EncodeToString(b[:])
}
