// Package devmode starts what a development edge runs beside it: an
// embedded NATS server with JetStream and every handler in-process, so that
// `go run ./edge` needs nothing else. The edge's main (and the tests) give
// Start to server.Config.Local; edge/server itself links no handler.
package devmode

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"natter/edge/server"
	"natter/handlers/registry"
	"natter/handlers/runtime"
	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/ops/metrics"
)

// Local is a running development back end: the embedded server, the
// handlers on their own connection, and the edge's connection.
type Local struct {
	srv      *natsserver.Server
	hnc, nc  *nats.Conn
	handlers *registry.Set
	subj     natsconf.Subjects
}

var _ server.Local = (*Local)(nil)

// Start starts the embedded server (in cfg.DataDir, listening on
// cfg.NATSListen if set, with the natter users if cfg.NATSAuth), every
// handler, and connects the edge. On error nothing is left running.
func Start(cfg server.Config) (server.Local, error) {
	l := &Local{subj: cfg.Gateway.Subjects}
	if err := l.start(cfg); err != nil {
		l.Stop()
		return nil, err
	}
	return l, nil
}

func (l *Local) start(cfg server.Config) error {
	emb := embedded.Config{
		StoreDir:   filepath.Join(cfg.DataDir, "jetstream"),
		DontListen: cfg.NATSListen == "",
		SyncAlways: cfg.SyncAlways,
	}
	if cfg.NATSListen != "" {
		host, port, err := net.SplitHostPort(cfg.NATSListen)
		if err != nil {
			return fmt.Errorf("devmode: -nats-listen: %w", err)
		}
		emb.Host = host
		if _, err := fmt.Sscan(port, &emb.Port); err != nil {
			return fmt.Errorf("devmode: -nats-listen port: %w", err)
		}
	}
	var edgeAuth, handlersAuth []nats.Option
	if cfg.NATSAuth {
		edgePass, handlersPass := cfg.NATSEdgePassword, cfg.NATSHandlersPassword
		if edgePass == "" {
			edgePass = nuid.Next()
		}
		if handlersPass == "" {
			handlersPass = nuid.Next()
		}
		emb.Users = embedded.Users(cfg.Gateway.Subjects, edgePass, handlersPass)
		edgeAuth = []nats.Option{nats.UserInfo(natsconf.EdgeUser, edgePass)}
		handlersAuth = []nats.Option{nats.UserInfo(natsconf.HandlersUser, handlersPass)}
	}
	var err error
	if l.srv, err = embedded.Start(emb); err != nil {
		return err
	}
	if l.hnc, err = embedded.Connect(l.srv, "natter-handlers", handlersAuth...); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rcfg := runtime.Config{Subjects: cfg.Gateway.Subjects, Logger: cfg.Logger}
	if cfg.Metrics != nil {
		rcfg.Metrics = metrics.NewHandlers(cfg.Metrics)
	}
	if l.handlers, err = registry.Start(ctx, l.hnc, rcfg, cfg.Stores, registry.All); err != nil {
		return err
	}
	// This process is the only edge of its embedded server: room
	// memberships left from before a crash are stale.
	if err := registry.ForgetMembers(ctx, l.hnc, cfg.Gateway.Subjects); err != nil {
		return err
	}
	if cfg.Metrics != nil {
		if err := metrics.RegisterNATS(cfg.Metrics, "handlers", l.hnc, l.handlers.Dropped); err != nil {
			return err
		}
	}
	l.nc, err = embedded.Connect(l.srv, "natter-edge", edgeAuth...)
	return err
}

// Conn is the edge's connection to the embedded server.
func (l *Local) Conn() *nats.Conn { return l.nc }

// Server is the embedded NATS server.
func (l *Local) Server() *natsserver.Server { return l.srv }

// Ready reports whether the handlers' connection is up and natter's
// streams answer.
func (l *Local) Ready(ctx context.Context) error {
	return registry.Ready(ctx, l.hnc, l.subj)
}

// Stop stops the handlers (waiting for commands in flight), drains their
// connection, closes the edge's (drained by the edge before) and shuts the
// server down.
func (l *Local) Stop() {
	if l.handlers != nil {
		l.handlers.Stop()
	}
	if l.hnc != nil {
		_ = natsconf.Drain(context.Background(), l.hnc)
	}
	if l.nc != nil && !l.nc.IsClosed() {
		l.nc.Close()
	}
	if l.srv != nil {
		l.srv.Shutdown()
		l.srv.WaitForShutdown()
	}
}
