// Package runtime is natter's handler API: the small serverless runtime
// every handler is written against, natter's own (rooms, inbox, broadcast,
// typing, receipts) and any team's. A team adds a command type, a hook or
// a feature by running a handler process against the same NATS; the edge
// does not change and needs no restart.
//
// # A handler is a function
//
// A handler is a function of (identity, command) to a reply frame:
//
//	svc, _ := runtime.New(nc, runtime.Config{Name: "dice"})
//	svc.Handle("roll", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
//		return runtime.Response{Frame: map[string]any{"type": "rolled", "id": req.Command.ID, "n": 4}}, nil
//	})
//	defer svc.Stop()
//
// The edge relays every client frame whose "type" is a valid name to the
// NATS subject <prefix>.cmd.<type> (im.cmd.roll) as a request, so clients
// can use the new type as soon as Handle returns (Flush the connection to
// be sure the server has the subscription). Request.Identity is who sent
// it, as the edge authenticated it (connection, user, edge, the rooms the
// user may join, the broadcast right), read from headers the edge sets and
// never from the client's frame. Request.Command is the decoded frame
// (protocol.Command: fields it does not know are not kept).
//
// The Response's Frame is encoded as JSON and written to the sending
// connection. Returning a *protocol.Error answers the client with an
// "error" frame of that code; any other error becomes "internal" (and is
// logged), a NATS or JetStream failure or a missed deadline "unavailable".
// A Response may carry an Op, asking the edge to subscribe the connection
// to a room, unsubscribe it or close it, before it writes the frame.
//
// To reach other connections, publish frames with any NATS client: to
// Subjects.Room (every member connection of the room, on every edge; with
// natsconf.HeaderConn and HeaderNoEcho, all but one), Subjects.User (every
// connection of a user), Subjects.Conn (one connection) or
// Subjects.Broadcast (everyone). Store what must last in JetStream (see
// the README, "Events for backends").
//
// # What the runtime does
//
//   - Queue groups: a Service named N serves every endpoint in the queue
//     group natter-N, so any number of copies share the work; stop one and
//     the others go on.
//   - Deadlines: each command runs with a context that ends after
//     Config.Timeout (default 4 s, under the edge's 5 s); a command whose
//     handler does not return in time is answered "unavailable".
//   - Bounded concurrency: at most Config.MaxConcurrent commands (default
//     256) run at once; more wait for a slot.
//   - Panics are caught: the command is answered "internal", the panic and
//     its stack are logged, the service goes on.
//   - Stopping: Service.Stop stops taking commands, answers those that
//     arrive meanwhile "unavailable", waits for the ones in flight and
//     leaves the queue group. Once no copy of a handler runs, a command
//     of a type that is not a v1 command is answered "unknown_type" by the
//     edge (NATS says "no responders"), a v1 command "unavailable".
//   - Order: commands of one connection reach a handler one request at a
//     time: the edge sends the next request only when the previous one is
//     answered, and the commands that queued up meanwhile travel together
//     as one batch (natsconf.HeaderBatch), which the runtime applies in
//     order on one goroutine. So handlers run commands of different
//     connections concurrently without breaking per-connection order.
//     HandleBatch takes such a batch at once (to overlap its I/O).
//   - Events: On serves the edges' lifecycle events (connect, disconnect);
//     Every runs background work until the service stops.
//   - Hooks: Service.Hooks asks a team's hook about a command before it
//     takes effect (see Hooks); rooms and inbox ask on "send" and "dm".
//   - Statistics: a Service is a NATS micro service as nats.go's micro
//     package defines it ($SRV.PING, $SRV.INFO and $SRV.STATS answered
//     with micro's types), named natter-<handler> (see ServiceName), so
//     `nats micro ls`, `nats micro info` and `nats micro stats
//     natter-rooms` show it, with one endpoint per command type. It answers
//     those itself rather than through micro.AddService: micro measures a
//     request only while its callback runs, and the runtime runs commands
//     after the callback returns, concurrently. The runtime's statistics
//     measure a request from its arrival to its reply, and count it as an
//     error when the reply (or a command of its batch) is one.
//     Config.Metrics adds Prometheus metrics.
//
// A complete handler is in the package's Example.
package runtime
