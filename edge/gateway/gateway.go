// Package gateway is the WebSocket side of the edge: it upgrades HTTP
// requests with gws, gives each connection an id and the NATS subscriptions
// it needs (its own subject, its user's, and the rooms handlers told it to
// hold, each counted once per edge), relays every client command as a NATS
// request to the handlers, and writes replies and deliveries back through a
// bounded, batching writer per connection. It holds no business rules.
//
// Concurrency: a connection's frames are read and relayed on one goroutine
// (gws's read loop), so its commands reach handlers in order. Deliveries are
// routed by one dispatcher goroutine. Every goroutine is owned by the Gateway
// and stopped by Shutdown.
package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"golang.org/x/sync/semaphore"

	"natter/edge/auth"
	"natter/edge/protocol"
	"natter/natsconf"
)

// Gateway serves WebSocket clients on one NATS connection.
type Gateway struct {
	cfg      Config
	nc       *nats.Conn
	edgeID   string
	hub      *hub
	upgrader *gws.Upgrader
	alive    *nats.Subscription // answers liveness probes
	ids      *nuid.NUID
	idsMu    sync.Mutex
	perUser  connCounter
	perIP    connCounter

	lazy     lazyFlusher
	writers  *writerPool
	bufs     bufPool      // write buffers of the connections
	natsDown atomic.Int64 // unix nanoseconds the NATS connection was lost

	// recvBudget is Config.ReceiveBudget (nil: no bound); stopping ends
	// the waits for it when Shutdown begins.
	recvBudget  *semaphore.Weighted
	stopping    context.Context
	stopWaiting context.CancelFunc

	lifeMu  sync.Mutex // orders registering connections with Shutdown
	closing atomic.Bool
	done    chan struct{}
	loops   sync.WaitGroup // read loops, one per connection
	wg      sync.WaitGroup // dispatcher, janitor, writers, closers
}

// New returns a Gateway relaying to handlers over nc. nc stays the caller's:
// Shutdown does not close it.
func New(nc *nats.Conn, cfg Config) (*Gateway, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	edgeID := nuid.Next()
	h, err := newHub(nc, cfg.Subjects, edgeID, cfg.DispatchQueue)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:    cfg,
		nc:     nc,
		edgeID: edgeID,
		hub:    h,
		ids:    nuid.New(),
		done:   make(chan struct{}),
	}
	if cfg.ReceiveBudget > 0 {
		g.recvBudget = semaphore.NewWeighted(cfg.ReceiveBudget)
	}
	g.stopping, g.stopWaiting = context.WithCancel(context.Background())
	nc.SetDisconnectErrHandler(func(*nats.Conn, error) { g.natsDown.Store(time.Now().UnixNano()) })
	h.g = g
	g.writers = newWriterPool(&g.wg, g.done)
	recheck, lost := make(chan struct{}, 1), make(chan struct{}, 1)
	nc.SetReconnectHandler(func(*nats.Conn) {
		g.resync()
		kick(recheck) // live delivery may have lost messages meanwhile
	})
	// The edge's subscriptions share one channel; when it overflows, nats.go
	// drops messages (a slow consumer): room messages, dm offers, control
	// operations. Never a silent gap: the rooms are checked and every
	// local user's pending dms delivered again.
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			kick(lost)
		}
	})
	g.perUser.limit = max(cfg.MaxConnsPerUser, 0)
	g.perIP.limit = max(cfg.MaxConnsPerIP, 0)
	g.upgrader = gws.NewUpgrader(events{g}, &gws.ServerOption{
		ParallelEnabled:    false,
		CheckUtf8Enabled:   true,
		ReadMaxPayloadSize: cfg.MaxFrame * hardFrameFactor,
		ReadBufferSize:     cfg.ReadBufferSize,
		HandshakeTimeout:   5 * time.Second,
		PermessageDeflate:  gws.PermessageDeflate{Enabled: cfg.Compression},
		NewSession:         func() gws.SessionStorage { return &session{} },
		Recovery:           gws.Recovery,
		Logger:             gwsLogger{cfg.Logger},
	})
	// Handlers ask this subject whether the edge is alive before they
	// forget the memberships of its connections.
	liveness, _ := cfg.Subjects.Edge(g.edgeID)
	if g.alive, err = nc.Subscribe(liveness, func(m *nats.Msg) { _ = m.Respond(nil) }); err != nil {
		h.close()
		return nil, err
	}
	if err := nc.Flush(); err != nil {
		_ = g.alive.Unsubscribe()
		h.close()
		return nil, err
	}
	g.wg.Add(4)
	go func() { defer g.wg.Done(); h.dispatch(g.done) }()
	go func() { defer g.wg.Done(); g.reapIdle() }()
	go func() { defer g.wg.Done(); g.lazy.run(g.done, cfg.LazyDelay) }()
	go func() { defer g.wg.Done(); g.watchRooms(recheck, lost) }()
	return g, nil
}

// EdgeID returns the id this edge puts on every command.
func (g *Gateway) EdgeID() string { return g.edgeID }

// Connections returns the number of open client connections.
func (g *Gateway) Connections() int { return g.hub.count() }

// ServeHTTP upgrades a WebSocket request. It refuses a foreign Origin with
// 403, a bad identity with 401 or 400, and everything during shutdown
// with 503.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.closing.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if !g.cfg.originAllowed(r.Header.Get("Origin")) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	ident, err := g.cfg.Auth.Authenticate(r)
	switch {
	case errors.Is(err, auth.ErrBadUser):
		http.Error(w, "bad user id", http.StatusBadRequest)
		return
	case err != nil:
		w.Header().Set("WWW-Authenticate", `Bearer realm="natter"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "websocket needs HTTP/1.1", http.StatusBadRequest)
		return
	}
	if r.Header.Get("Sec-WebSocket-Key") == "" {
		http.Error(w, "expected a websocket upgrade", http.StatusBadRequest)
		return
	}
	ip := clientIP(r, g.cfg.TrustedProxies)
	if !g.perIP.acquire(ip) {
		http.Error(w, "too many connections from this address", http.StatusTooManyRequests)
		return
	}
	if !g.perUser.acquire(ident.User) {
		g.perIP.release(ip)
		http.Error(w, "too many connections for this user", http.StatusTooManyRequests)
		return
	}
	release := func() { g.perIP.release(ip); g.perUser.release(ident.User) }
	netConn, brw, err := hj.Hijack()
	if err != nil {
		release()
		return
	}
	raw := &batchConn{Conn: netConn, writeTimeout: g.cfg.WriteTimeout, pool: &g.bufs, metrics: g.cfg.Metrics}
	// gws reads through a buffer of ReadBufferSize over the frame guard,
	// which sees every byte from the client: also those that came with
	// the upgrade request, already in net/http's reader (4 KiB, kept only
	// then).
	var src io.Reader = netConn
	if brw.Reader.Buffered() > 0 {
		src = brw.Reader
	}
	guard := newFrameGuard(src, g.recvBudget, g.stopping, g.cfg.MessageTimeout, g.cfg.MaxFrame*hardFrameFactor, g.cfg.Metrics)
	ws, err := g.upgrader.UpgradeFromConn(raw, bufio.NewReaderSize(guard, g.cfg.ReadBufferSize), r)
	if err != nil {
		release()
		return // gws answered 400 and closed
	}
	g.open(ws, raw, guard, ident, release)
}

// open registers a new connection and starts its read loop. release gives
// back its connection slots once it closes.
func (g *Gateway) open(ws *gws.Conn, raw *batchConn, guard *frameGuard, ident auth.Identity, release func()) {
	g.idsMu.Lock()
	id := g.ids.Next()
	g.idsMu.Unlock()
	c := newClient(g, ws, raw, id, ident)
	c.guard = guard
	guard.fail, guard.started = c.guardFault, c.messageStarted
	c.release = release
	g.cfg.Metrics.ConnOpened()
	ws.Session().(*session).c = c
	c.touch()
	// welcome is the first frame; the outbox holds it, and anything
	// delivered meanwhile, until the subscriptions are in place.
	welcome := protocol.Encode(protocol.Welcome{Type: protocol.FrameWelcome, Conn: id, User: c.user, Heartbeat: g.cfg.heartbeat()})
	c.out.pause()
	c.send(welcome)

	// Under lifeMu a connection is either registered before Shutdown looks
	// (and gets its bye) or sees the gateway closing.
	g.lifeMu.Lock()
	closing := g.closing.Load()
	var (
		err   error
		first bool
	)
	if !closing {
		g.loops.Add(1)
		first, err = g.hub.add(c)
	}
	g.lifeMu.Unlock()
	switch {
	case closing:
		// Shutdown may already be waiting: nothing of this connection may
		// outlive this call, so it is told and closed right here.
		c.closing.Store(true)
		c.out.close()
		raw.expedite()
		_ = raw.writeTextFrames([][]byte{welcome, protocol.EncodeBye(protocol.ByeShutdown, "server shutting down, reconnect")})
		_ = raw.closeNow()
		release()
		c.setBye(protocol.ByeShutdown)
		c.closedMetrics()
		return
	case err != nil:
		g.cfg.Logger.Error("register connection", "err", err)
		c.send(protocol.EncodeError("", protocol.Errorf(protocol.CodeUnavailable, "messaging unavailable")))
		c.bye(protocol.ByeShutdown, "messaging unavailable, reconnect")
	default:
		// Once the server has the subscriptions, what is published to the
		// connection or its user reaches it: only then does the client
		// learn it is connected, and the inbox handler deliver stored dms.
		if err := g.nc.FlushTimeout(g.cfg.RequestTimeout); err != nil {
			g.cfg.Logger.Warn("flush subscriptions", "conn", id, "err", err)
		}
		hdr := c.header
		if first {
			hdr = maps.Clone(c.header)
			hdr.Set(natsconf.HeaderFirst, "1")
		}
		if err := g.nc.PublishMsg(&nats.Msg{Subject: g.cfg.Subjects.EventConnect(), Header: hdr}); err != nil {
			g.cfg.Logger.Warn("lifecycle event not handled", "event", "connect", "conn", c.id, "err", err)
		}
	}
	c.out.resume()
	go func() {
		defer g.loops.Done()
		ws.ReadLoop()
	}()
}

// resync runs when the NATS connection is back: after a long outage the
// handlers may have swept this edge's memberships, so clients reconnect and
// join again (with since) rather than believe they are still members.
func (g *Gateway) resync() {
	down := time.Since(time.Unix(0, g.natsDown.Load()))
	if g.natsDown.Load() == 0 || down < g.cfg.ResyncAfter {
		return
	}
	g.cfg.Logger.Warn("NATS was unreachable; asking clients to reconnect", "down", down.Round(time.Millisecond))
	for _, c := range g.hub.all() {
		c.bye(protocol.ByeShutdown, "messaging was unavailable, reconnect")
	}
}

// event tells the handlers about a connection's lifecycle.
func (g *Gateway) event(subject string, c *client, data []byte) {
	if err := g.nc.PublishMsg(&nats.Msg{Subject: subject, Header: c.header, Data: data}); err != nil {
		g.cfg.Logger.Warn("lifecycle event not handled", "subject", subject, "conn", c.id, "err", err)
	}
}

// closed unregisters a connection whose read loop ended.
func (g *Gateway) closed(c *client) {
	c.closing.Store(true)
	c.relayer.stop()
	c.out.close()
	_ = c.raw.closeNow()
	c.release()
	rooms := g.hub.remove(c)
	g.event(g.cfg.Subjects.EventDisconnect(), c, natsconf.DisconnectEvent{Rooms: rooms}.Encode())
	c.closedMetrics()
}

// readDeadline is how long a read may wait: the idle timeout plus two
// reaper periods and a second, so the reaper (which says bye "idle") acts
// first; the deadline only catches a connection the reaper could not close.
func (g *Gateway) readDeadline() time.Duration {
	return g.cfg.IdleTimeout + 2*g.reapPeriod() + time.Second
}

func (g *Gateway) reapPeriod() time.Duration {
	return min(max(g.cfg.IdleTimeout/4, 10*time.Millisecond), 5*time.Second)
}

// reapIdle closes connections silent for longer than the idle timeout, and
// those whose token expired (within a reaper period of its expiry).
func (g *Gateway) reapIdle() {
	t := time.NewTicker(g.reapPeriod())
	defer t.Stop()
	for {
		select {
		case <-g.done:
			return
		case now := <-t.C:
			cutoff := now.Add(-g.cfg.IdleTimeout)
			for _, c := range g.hub.all() {
				switch {
				case c.expiredAt(now):
					c.bye(protocol.ByeExpired, "token expired; reconnect with a fresh token (or send refresh before it expires)")
				case c.idleSince(cutoff):
					c.bye(protocol.ByeIdle, "no frame for too long")
				}
			}
		}
	}
}

// Shutdown stops accepting connections, says bye with code "shutdown" to
// every client, and waits until they are closed and every goroutine of the
// gateway has ended, or ctx is done (it then returns ctx.Err()). The NATS
// connection is left to the caller to drain.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.lifeMu.Lock()
	already := g.closing.Swap(true)
	g.lifeMu.Unlock()
	if already {
		return errors.New("gateway: already shut down")
	}
	g.stopWaiting()
	for _, c := range g.hub.all() {
		c.bye(protocol.ByeShutdown, "server shutting down, reconnect")
	}
	err := waitCtx(ctx, &g.loops)
	close(g.done)
	_ = g.alive.Unsubscribe()
	g.hub.close()
	if err2 := waitCtx(ctx, &g.wg); err == nil {
		err = err2
	}
	return err
}

func waitCtx(ctx context.Context, wg *sync.WaitGroup) error {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// events adapts the Gateway to gws's callbacks.
type events struct{ g *Gateway }

var (
	_ gws.Event          = events{}
	_ gws.SessionStorage = (*session)(nil)
	_ http.Handler       = (*Gateway)(nil)
)

func clientOf(ws *gws.Conn) *client { return ws.Session().(*session).c }

func (events) OnOpen(*gws.Conn) {}

func (e events) OnClose(ws *gws.Conn, _ error) {
	if c := clientOf(ws); c != nil {
		c.guard.close() // the read loop is over: its budget goes back
		e.g.closed(c)
	}
}

func (events) OnPing(ws *gws.Conn, payload []byte) {
	if c := clientOf(ws); c != nil {
		c.touch()
	}
	_ = ws.WritePong(payload)
}

func (events) OnPong(ws *gws.Conn, _ []byte) {
	if c := clientOf(ws); c != nil {
		c.touch()
	}
}

func (events) OnMessage(ws *gws.Conn, msg *gws.Message) {
	if c := clientOf(ws); c != nil {
		c.onMessage(msg)
		return
	}
	_ = msg.Close()
}

// session is gws's per-connection storage, reduced to the one thing natter
// keeps there: the client.
type session struct{ c *client }

func (s *session) Len() int { return 0 }

func (s *session) Load(string) (any, bool) { return nil, false }

func (s *session) Delete(string) {}

func (s *session) Store(string, any) {}

func (s *session) Range(func(string, any) bool) {}

// kick signals ch without blocking (a signal already pending suffices).
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
