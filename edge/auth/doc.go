// Package auth decides who a WebSocket upgrade request is.
//
// An [Authenticator] turns the upgrade request into an [Identity]: the user
// id and what that user may do (which rooms it may join, whether it may
// broadcast). Two authenticators exist, matching the two identity modes of
// the client protocol (PROTOCOL.md, "Transport → Identity"):
//
//   - [Development] trusts the ?user= (or ?id=) query parameter and makes up
//     a guest id when there is none. It must never face the internet.
//   - [NewJWT] returns an authenticator for production: a signed JWT in the
//     ?token= query parameter or in an "Authorization: Bearer" header, signed
//     with HS256 (shared secret), RS256 or ES256 (public key file).
//
// Errors wrap one of two sentinels, which the edge maps to an HTTP status
// before the upgrade: [ErrUnauthorized] (401) and [ErrBadUser] (400). Test
// with errors.Is. Error texts carry a short reason, never the token.
//
// Every user id an authenticator returns matches ^[A-Za-z0-9_:-]{1,128}$
// (PROTOCOL.md, "Names"). Room patterns are matched with [protocol.RoomAllowed].
//
// Concurrency: authenticators hold no mutable state; one value may be used
// by any number of goroutines at once.
package auth
