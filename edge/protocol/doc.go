// Package protocol is the client wire contract of natter, version 1 (see
// PROTOCOL.md): the commands a client sends, the frames the server sends, and
// the error and bye codes, in one place. The edge decodes client frames with
// it and the handlers build their replies with it; nothing here does I/O.
//
// All functions are safe for concurrent use.
package protocol
