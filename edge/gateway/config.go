package gateway

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"natter/edge/auth"
	"natter/natsconf"
	"natter/natsconf/ops/metrics"
)

// Config configures a Gateway. Zero values mean the documented defaults.
type Config struct {
	// Subjects is the subject set shared with the handlers (default prefix
	// "im").
	Subjects natsconf.Subjects
	// Auth decides who an upgrade request is (default auth.Development).
	Auth auth.Authenticator
	// AllowedOrigins lists the browser origins accepted ("*" or nil: any).
	// Requests without an Origin header are always accepted.
	AllowedOrigins []string
	// MaxFrame is the largest client message accepted, in bytes, after
	// decompression (default 64 KiB). Larger ones get "too_large" up to
	// 2 × MaxFrame; past that the connection is closed (1009; 1011 when
	// the frame was compressed: gws reports a decompression over the limit
	// as an internal error).
	MaxFrame int
	// IdleTimeout closes a connection silent for this long (default 60s).
	IdleTimeout time.Duration
	// RequestTimeout bounds the wait for a handler's reply (default 5s).
	RequestTimeout time.Duration
	// Rate is the commands per second a connection may send on average
	// (default 100); negative disables the limit.
	Rate float64
	// Burst is how many commands may come at once (default 200).
	Burst int
	// MaxBadFrames is how many bad frames (or rate-limited commands) in a
	// row close the connection (default 20).
	MaxBadFrames int
	// WriteQueueBytes bounds the bytes queued to one connection; a client
	// that lets more pile up is closed with "slow" (default 4 MiB).
	WriteQueueBytes int
	// WriteTimeout bounds one write to a client socket (default 10s).
	WriteTimeout time.Duration
	// MessageTimeout bounds how long one client message may take to
	// arrive, from its first frame to its last, however the client keeps
	// the connection alive meanwhile (pings between fragments do), and
	// any wait for ReceiveBudget included (default 30s). Past it the
	// client gets bye "bad_client" (or "overloaded" when it was waiting
	// for the budget) and the connection closes.
	MessageTimeout time.Duration
	// ReceiveBudget bounds the bytes of client messages the edge holds
	// while they arrive, over all connections (default 64 MiB; negative:
	// no bound; at least 4 × MaxFrame). Every data frame takes its
	// payload's length (as sent: compressed frames count compressed) when
	// its header arrives and gives it back when its message is complete;
	// while the budget is spent, a frame waits for it, and the sender is
	// held back by TCP.
	ReceiveBudget int64
	// MaxConnsPerUser bounds one user's open connections (default 32;
	// negative: no limit). One more is refused with HTTP 429.
	MaxConnsPerUser int
	// MaxConnsPerIP bounds the open connections from one IP address
	// (default 1024; negative: no limit). One more is refused with 429.
	MaxConnsPerIP int
	// ResyncAfter: when the edge's NATS connection comes back after being
	// down this long, every client gets bye "shutdown" and reconnects (and
	// rejoins with since), because handlers may have forgotten their
	// memberships meanwhile (default 15s, below the rooms handler's sweep).
	ResyncAfter time.Duration
	// MaxRooms bounds the rooms one connection may be in (default 256); a
	// join past it is answered "too_many_rooms".
	MaxRooms int
	// LazyDelay is how long a frame that may wait (presence) waits for
	// others to share its write (default 200ms): in a busy room every join
	// is announced to every member, and one write per announcement is
	// what made joins cost O(members).
	LazyDelay time.Duration
	// DispatchQueue is how many deliveries may wait for the edge's
	// dispatcher (default 65536); past it NATS drops them, and the edge
	// recovers (see gaps.go).
	DispatchQueue int
	// TrustedProxies are the proxies (CIDR prefixes) whose X-Forwarded-For
	// or Forwarded headers give the client's address, for the
	// per-address connection cap and logs. Empty: the socket's peer is the
	// client.
	TrustedProxies []netip.Prefix
	// GapCheckInterval is how often the edge compares every room it
	// serves with the room's latest stored message, to deliver what live
	// delivery lost at the tail (default 5s; also after every NATS
	// reconnect).
	GapCheckInterval time.Duration
	// LoseRoomMessage, for tests only, drops a live room message as if
	// NATS had lost it, when it returns true. Nil in production.
	LoseRoomMessage func(room string, seq uint64) bool
	// Compression enables permessage-deflate when a client asks for it.
	Compression bool
	// ReadBufferSize is each connection's read buffer (default 1 KiB).
	ReadBufferSize int
	// Logger receives connection errors (default slog.Default()), and at
	// debug level one line per closed connection.
	Logger *slog.Logger
	// Metrics receives connection, command and delivery counts (nil:
	// none); see metrics.Edge.
	Metrics *metrics.Edge
}

// Defaults of Config.
const (
	DefaultMaxFrame         = 64 << 10
	DefaultIdleTimeout      = 60 * time.Second
	DefaultRequestTimeout   = 5 * time.Second
	DefaultRate             = 100
	DefaultBurst            = 200
	DefaultMaxBadFrames     = 20
	DefaultWriteQueueBytes  = 4 << 20
	DefaultWriteTimeout     = 10 * time.Second
	DefaultReadBufferSize   = 1 << 10
	DefaultMaxConnsPerUser  = 32
	DefaultMaxConnsPerIP    = 1024
	DefaultResyncAfter      = 15 * time.Second
	DefaultLazyDelay        = 200 * time.Millisecond
	DefaultMaxRooms         = 256
	DefaultGapCheckInterval = 5 * time.Second
	DefaultMessageTimeout   = 30 * time.Second
	DefaultReceiveBudget    = 64 << 20
	hardFrameFactor         = 2
)

func (c *Config) validate() error {
	if c.Subjects.Prefix() == "" {
		c.Subjects = natsconf.MustSubjects(natsconf.DefaultPrefix)
	}
	if c.Auth == nil {
		c.Auth = auth.Development{}
	}
	setDefault(&c.MaxFrame, DefaultMaxFrame)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.RequestTimeout, DefaultRequestTimeout)
	setDefault(&c.Rate, DefaultRate)
	setDefault(&c.Burst, DefaultBurst)
	setDefault(&c.MaxBadFrames, DefaultMaxBadFrames)
	setDefault(&c.WriteQueueBytes, DefaultWriteQueueBytes)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.ReadBufferSize, DefaultReadBufferSize)
	setDefault(&c.ResyncAfter, DefaultResyncAfter)
	setDefault(&c.LazyDelay, DefaultLazyDelay)
	setDefault(&c.MaxRooms, DefaultMaxRooms)
	setDefault(&c.DispatchQueue, DefaultDispatchQueue)
	setDefault(&c.GapCheckInterval, DefaultGapCheckInterval)
	setDefault(&c.MaxConnsPerUser, DefaultMaxConnsPerUser)
	setDefault(&c.MaxConnsPerIP, DefaultMaxConnsPerIP)
	setDefault(&c.MessageTimeout, DefaultMessageTimeout)
	setDefault(&c.ReceiveBudget, DefaultReceiveBudget)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxFrame < 0 || c.IdleTimeout < 0 || c.RequestTimeout < 0 || c.Burst < 0 ||
		c.MaxBadFrames < 0 || c.WriteQueueBytes < 0 || c.WriteTimeout < 0 || c.ReadBufferSize < 0 ||
		c.MessageTimeout < 0 {
		return errors.New("gateway: negative limit in config")
	}
	if c.WriteQueueBytes < c.MaxFrame {
		return errors.New("gateway: WriteQueueBytes must hold at least one MaxFrame")
	}
	// A message may hold up to the hard frame limit and one more fragment
	// of it: a budget below that could never be enough for it.
	if c.ReceiveBudget > 0 && c.ReceiveBudget < 2*hardFrameFactor*int64(c.MaxFrame) {
		return errors.New("gateway: ReceiveBudget must be at least 4 × MaxFrame")
	}
	return nil
}

func setDefault[T int | int64 | float64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// heartbeat is the ping interval announced in "welcome", in seconds: well
// inside the idle timeout.
func (c *Config) heartbeat() int {
	s := int(c.IdleTimeout.Seconds() / 2)
	if s < 1 {
		s = 1
	}
	return s
}

func (c *Config) originAllowed(origin string) bool {
	if origin == "" || len(c.AllowedOrigins) == 0 {
		return true
	}
	for _, o := range c.AllowedOrigins {
		if o == "*" || o == origin {
			return true
		}
	}
	return false
}
