package natsconf

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures an in-process NATS server with JetStream.
type EmbeddedConfig struct {
	// StoreDir is where JetStream keeps its files. Required.
	StoreDir string
	// Host to listen on; empty means 127.0.0.1.
	Host string
	// Port to listen on; 0 means a random free port. Set DontListen to
	// accept in-process connections only.
	Port int
	// DontListen disables the TCP listener: only Connect (in-process) works.
	DontListen bool
	// SyncAlways makes JetStream fsync every write (survives power loss,
	// costs throughput). The default fsyncs every two minutes.
	SyncAlways bool
	// ServerName names the server in logs and JetStream metadata.
	ServerName string
	// Logger receives the server's logs; nil keeps it silent.
	Logger server.Logger
	// Users, when set, makes the server require one of these users (see
	// Subjects.Users); nil lets any connection in with every permission.
	Users []*server.User
	// ReadyTimeout bounds the wait for the server to accept connections;
	// zero means 10s.
	ReadyTimeout time.Duration
}

// StartEmbedded starts a NATS server with JetStream in this process and waits
// until it accepts connections. The caller owns it: Shutdown and
// WaitForShutdown stop it.
func StartEmbedded(cfg EmbeddedConfig) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsconf: embedded server needs a store directory")
	}
	opts := &server.Options{
		ServerName:      cfg.ServerName,
		Host:            cfg.Host,
		Port:            cfg.Port,
		DontListen:      cfg.DontListen,
		JetStream:       true,
		StoreDir:        cfg.StoreDir,
		SyncAlways:      cfg.SyncAlways,
		NoSigs:          true,
		Users:           cfg.Users,
		NoLog:           cfg.Logger == nil,
		MaxPayload:      8 << 20,
		HTTPPort:        0,
		NoSystemAccount: false,
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if opts.ServerName == "" {
		opts.ServerName = "natter-embedded"
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsconf: embedded server: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(cfg.Logger, false, false, false)
	}
	go srv.Start()
	wait := cfg.ReadyTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("natsconf: embedded server did not become ready")
	}
	return srv, nil
}

// ConnectEmbedded connects to srv in-process (no socket), with options
// suited to a long-lived service connection. As the user of
// nats.UserInfo in opts, it takes that user's inbox prefix (InboxPrefix);
// a nats.CustomInboxPrefix in opts wins.
func ConnectEmbedded(srv *server.Server, name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{nats.InProcessServer(srv)}, ServiceOptions(name)...)
	all = append(all, inboxOf("", opts)...)
	return nats.Connect("", append(all, opts...)...)
}

// Connect dials the NATS servers in urls (comma separated) with options suited
// to a long-lived service connection. As the user of nats.UserInfo in opts,
// or else of the first URL that names one (nats://edge:…@host:4222), it
// takes that user's inbox prefix (InboxPrefix), so an edge or handlers
// process connected as its natter user receives replies where its
// permissions let it subscribe; a nats.CustomInboxPrefix in opts wins.
//
// The NATS client shuffles the list (and the servers it learns from the
// cluster) before it connects and reconnects, which spreads processes over
// the nodes; after KeepURLOrder(true) Connect keeps the order given
// (nats.DontRandomize): the first URL is tried first, the next ones on a
// reconnect.
func Connect(urls, name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append(ServiceOptions(name), inboxOf(urls, opts)...)
	if keepURLOrder.Load() {
		all = append(all, nats.DontRandomize())
	}
	return nats.Connect(urls, append(all, opts...)...)
}

// keepURLOrder is what KeepURLOrder set.
var keepURLOrder atomic.Bool

// KeepURLOrder sets whether the connections Connect makes from now on keep
// the order of their URL list (nats.DontRandomize) instead of letting the
// NATS client shuffle it, and returns the previous setting. It is a
// process-wide setting because the edge's server makes its connection
// itself: the -nats-no-randomize flag of the edge and of the handlers sets
// it; a test that sets it restores it.
func KeepURLOrder(keep bool) (previous bool) {
	return keepURLOrder.Swap(keep)
}

// connectUser returns the NATS user a connection with these URLs and options
// authenticates as: the user of nats.UserInfo in opts, else the first user
// named in urls (comma separated), else "".
func connectUser(urls string, opts ...nats.Option) string {
	var o nats.Options
	for _, opt := range opts {
		if opt != nil {
			_ = opt(&o) // a scratch copy: only User is read
		}
	}
	if o.User != "" {
		return o.User
	}
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		if parsed, err := url.Parse(u); err == nil && parsed.User != nil && parsed.User.Username() != "" {
			return parsed.User.Username()
		}
	}
	return ""
}

// inboxOf is the inbox prefix option of the user connectUser finds, if that
// user is one of natter's.
func inboxOf(urls string, opts []nats.Option) []nats.Option {
	if p := InboxPrefix(connectUser(urls, opts...)); p != "" {
		return []nats.Option{nats.CustomInboxPrefix(p)}
	}
	return nil
}

// ServiceOptions are the connection options every natter process uses:
// reconnect forever, a large pending buffer for fan-out bursts.
func ServiceOptions(name string) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
	}
}

// Drain drains nc (its subscriptions finish what they hold, its pending
// publishes are flushed) and waits until it is closed or ctx ends. It
// replaces nc's closed handler.
func Drain(ctx context.Context, nc *nats.Conn) error {
	if nc == nil || nc.IsClosed() {
		return nil
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return err
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return ctx.Err()
	}
}

// RedactURLs returns a comma-separated list of NATS URLs with their
// passwords replaced by "xxxxx", for logs.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}
