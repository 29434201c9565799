package protocol

// Code is an error code of an "error" frame.
type Code string

// Error codes of PROTOCOL.md.
const (
	CodeBadFrame    Code = "bad_frame"
	CodeUnknownType Code = "unknown_type"
	CodeBadRoom     Code = "bad_room"
	CodeBadUser     Code = "bad_user"
	CodeTooLarge    Code = "too_large"
	CodeNotMember   Code = "not_member"
	CodeForbidden   Code = "forbidden"
	CodeRateLimited Code = "rate_limited"
	CodeOffline     Code = "offline"
	CodeUnavailable Code = "unavailable"
	CodeInternal    Code = "internal"
	// CodeTooManyRooms: a join past the per-connection room limit
	// (protocol v1.1).
	CodeTooManyRooms Code = "too_many_rooms"
	// CodeInboxFull: a dm to a user with no live connection whose pending
	// dms are at their limit, or when the server's store of pending dms
	// is full; the dm is not stored (protocol v1.1).
	CodeInboxFull Code = "inbox_full"
	// CodeRejected: a hook deployed for "send" or "dm" refused the
	// message; the error's message is the hook's (protocol v1.1).
	CodeRejected Code = "rejected"
)

// ByeCode is the reason of a "bye" frame sent just before the server closes
// a connection.
type ByeCode string

// Bye codes of PROTOCOL.md.
const (
	ByeShutdown    ByeCode = "shutdown"
	ByeSlow        ByeCode = "slow"
	ByeBadClient   ByeCode = "bad_client"
	ByeRateLimited ByeCode = "rate_limited"
	ByeKicked      ByeCode = "kicked"
	ByeIdle        ByeCode = "idle"
	// ByeExpired: the connection's token expired and was not refreshed
	// (protocol v1.1); reconnect with a fresh token.
	ByeExpired ByeCode = "expired"
	// ByeOverloaded: the edge could not take in the client's message in
	// time because too much was arriving at once from all its clients
	// (protocol v1.1); reconnect after a pause (close code 1013).
	ByeOverloaded ByeCode = "overloaded"
)

// Error is a failed command: it becomes an "error" frame with its code.
type Error struct {
	Code    Code
	Message string
}

// Errorf returns an *Error with code and message.
func Errorf(code Code, message string) *Error { return &Error{Code: code, Message: message} }

// Error implements error.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }
