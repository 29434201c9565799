package auth

import (
	"errors"
	"net/http"
	"time"

	"natter/natsconf"
)

// Identity is who a connection is and what it may do.
type Identity struct {
	User      string   // validated user id
	Rooms     []string // room patterns the user may join; nil means any room; a trailing '*' matches any suffix
	Broadcast bool     // may broadcast
	// Expires is when the identity ends (a token's exp plus the allowed
	// clock skew); zero: never. The edge closes the connection then (bye
	// "expired") unless the client refreshed its token first.
	Expires time.Time
}

// Refresher authenticates a token sent on an open connection ("refresh").
type Refresher interface {
	AuthenticateToken(token string) (Identity, error)
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

// validName is natsconf.ValidName: user ids become NATS subject tokens.
func validName(s string) bool { return natsconf.ValidName(s) }

// maxNameLen is the longest valid user id, in bytes.
const maxNameLen = natsconf.MaxNameLen
