// Package wstest has helpers to start natter edges and drive them with real
// WebSocket clients in tests.
//
// Every helper takes a testing.TB, marks itself as a helper and registers
// what it started with t.Cleanup, so a test never stops anything itself:
//
//	srv := wstest.StartEdge(t, server.Config{})            // development mode: embedded NATS + every handler
//	alice := wstest.Dial(t, wstest.URL(srv, "/ws?user=alice"), nil)
//	alice.Expect(t, "welcome")
//	joined := alice.Request(t, map[string]any{"type": "join", "room": "lobby"})
//
// Production-shaped setups start the pieces separately, as separate processes
// would run them:
//
//	ns := wstest.StartNATS(t)
//	wstest.StartHandlers(t, ns.ClientURL(), "all")
//	a := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
//	b := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
//
// Nothing here sleeps to synchronise: every wait is for an event (a frame, a
// close, a pong), bounded by a deadline after which the test fails.
//
// A Client's reading methods (Next, Expect, WaitFor, Request, Closed) must be
// called from one goroutine at a time, normally the test's own; Send and
// SendRaw may be called from any goroutine.
package wstest
