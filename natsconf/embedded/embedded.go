// Package embedded starts a NATS server with JetStream inside a natter
// process and gives it natter's users. It is the only part of natsconf that
// links nats-server, so only what starts a server on purpose imports it: the
// edge's development mode (edge/server) and tests. Handlers, which only
// connect to NATS, need natsconf alone.
package embedded

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"natter/natsconf"
)

// Config configures an in-process NATS server with JetStream.
type Config struct {
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
	// Users); nil lets any connection in with every permission.
	Users []*server.User
	// ReadyTimeout bounds the wait for the server to accept connections;
	// zero means 10s.
	ReadyTimeout time.Duration
}

// Start starts a NATS server with JetStream in this process and waits
// until it accepts connections. The caller owns it: Shutdown and
// WaitForShutdown stop it.
func Start(cfg Config) (*server.Server, error) {
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

// Connect connects to srv in-process (no socket) with natsconf.Connect, so
// with options suited to a long-lived service connection and, as the user
// of nats.UserInfo in opts, that user's inbox prefix
// (natsconf.InboxPrefix); a nats.CustomInboxPrefix in opts wins.
func Connect(srv *server.Server, name string, opts ...nats.Option) (*nats.Conn, error) {
	return natsconf.Connect("", name, append([]nats.Option{nats.InProcessServer(srv)}, opts...)...)
}
