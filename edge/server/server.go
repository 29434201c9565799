// Package server assembles a whole edge process: the HTTP server (with TLS
// when given a certificate), the WebSocket gateway, /healthz and /readyz,
// and metrics, on a NATS connection to a cluster, or in development mode
// to the back end Config.Local starts (edge/devmode: an embedded NATS
// server with every handler in-process; this package links no handler).
// The edge's main turns flags into a Config.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"natter/edge/gateway"
	"natter/edge/protocol"
	"natter/edge/web"
	"natter/natsconf"
	"natter/natsconf/ops"
	"natter/natsconf/ops/metrics"
)

// Config configures an edge process. Zero values mean the documented
// defaults.
type Config struct {
	// Addr is the HTTP (and WebSocket) listen address (default ":8080").
	Addr string
	// DataDir holds the embedded NATS server's JetStream store (default
	// "./natter-data").
	DataDir string
	// NATSURL lists the NATS servers to connect to. Empty means development
	// mode: Local starts an embedded server and every handler in-process.
	NATSURL string
	// Local starts a development edge's own NATS server and handlers when
	// NATSURL is empty (devmode.Start; the edge's main and the tests give
	// it, so this package links no handler). Required then.
	Local func(Config) (Local, error)
	// NATSListen makes the embedded server also listen on this TCP address
	// (for example "127.0.0.1:4222"), so separate handler processes can
	// connect; empty means in-process connections only.
	NATSListen string
	// NATSAuth makes the embedded server require the edge and handlers
	// users of natsconf (each allowed only its own subjects); in-process
	// connections use them. Their passwords are NATSEdgePassword and
	// NATSHandlersPassword, or made up at start when empty (then only this
	// process can connect).
	NATSAuth                               bool
	NATSEdgePassword, NATSHandlersPassword string
	// SyncAlways makes the embedded JetStream fsync every write.
	SyncAlways bool
	// TLSCert and TLSKey, both set, serve wss/https on Addr (TLS 1.2 or
	// newer). The pair is loaded again when the files change (checked every
	// CertCheckInterval, default 10s) or on ReloadCertificate.
	TLSCert, TLSKey   string
	CertCheckInterval time.Duration
	// WSPath is the WebSocket endpoint (default "/ws").
	WSPath string
	// Demo serves the demo chat page at / besides the JS SDK at
	// /natter.js, which is always served.
	Demo bool
	// Gateway configures the WebSocket gateway.
	Gateway gateway.Config
	// Stores configures retention of the embedded mode's streams.
	Stores natsconf.StoreConfig
	// Logger receives the process's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics, when set, receives the edge's Prometheus metrics: the
	// gateway's (unless Gateway.Metrics is set), the in-process handlers'
	// in development mode, and the NATS connections'.
	Metrics prometheus.Registerer
}

// Server is a running edge.
type Server struct {
	cfg      Config
	log      *slog.Logger
	local    Local      // development mode's server and handlers, nil in production mode
	nc       *nats.Conn // the gateway's connection
	gw       *gateway.Gateway
	http     *http.Server
	ln       net.Listener
	certs    *certReloader
	stopOnce sync.Once
	stopErr  error
	ready    atomic.Bool
	served   chan error
	done     chan struct{}
	wg       sync.WaitGroup
}

// Start starts an edge and returns once it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = ":8080"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./natter-data"
	}
	if cfg.WSPath == "" {
		cfg.WSPath = "/ws"
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("server: give both a TLS certificate and key, or neither")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Gateway.Logger == nil {
		cfg.Gateway.Logger = cfg.Logger
	}
	if cfg.CertCheckInterval <= 0 {
		cfg.CertCheckInterval = 10 * time.Second
	}
	if cfg.Gateway.Subjects.Prefix() == "" {
		cfg.Gateway.Subjects = natsconf.MustSubjects(natsconf.DefaultPrefix)
	}
	if cfg.Metrics != nil && cfg.Gateway.Metrics == nil {
		cfg.Gateway.Metrics = metrics.NewEdge(cfg.Metrics)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, served: make(chan error, 1), done: make(chan struct{})}
	if err := s.start(); err != nil {
		close(s.done)
		s.wg.Wait()
		if s.ln != nil {
			_ = s.ln.Close()
		}
		if s.gw != nil {
			_ = s.gw.Shutdown(context.Background())
		}
		s.stopNATS()
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	cfg := s.cfg
	var err error
	if cfg.NATSURL == "" {
		if err := s.startLocal(); err != nil {
			return err
		}
	} else {
		s.nc, err = natsconf.Connect(cfg.NATSURL, "natter-edge")
		if err != nil {
			return fmt.Errorf("server: connect to NATS: %w", err)
		}
	}
	s.gw, err = gateway.New(s.nc, cfg.Gateway)
	if err != nil {
		return err
	}
	if cfg.Metrics != nil {
		if err := metrics.RegisterNATS(cfg.Metrics, "edge", s.nc, s.gw.DroppedMessages); err != nil {
			return err
		}
	}
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		s.certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return err
		}
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.getCertificate}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.certs.watch(cfg.CertCheckInterval, s.done, s.logReload)
		}()
	}
	s.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	if tlsConfig != nil {
		s.ln = tls.NewListener(s.ln, tlsConfig)
	}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() { s.served <- s.http.Serve(s.ln) }()
	s.ready.Store(true)
	return nil
}

func (s *Server) startLocal() error {
	if s.cfg.Local == nil {
		return errors.New("server: no NATSURL and no Local to start a development back end")
	}
	var err error
	if s.local, err = s.cfg.Local(s.cfg); err != nil {
		return err
	}
	s.nc = s.local.Conn()
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+s.cfg.WSPath, s.gw)
	var webOpts []web.Option
	if s.cfg.Demo {
		webOpts = append(webOpts, web.WithDemo())
	}
	mux.Handle("/", web.Handler(webOpts...)) // the JS SDK (/natter.js), and the demo page if asked for
	mux.Handle("GET /healthz", ops.Health())
	mux.Handle("GET /readyz", ops.Readiness(s.Ready))
	return mux
}

// Ready reports whether the edge can serve clients: it is started and not
// shutting down, its NATS connection is up, and natter's streams answer.
// In development mode the in-process handlers' connection asks JetStream
// for the streams' info. In production the edge's NATS user may not use
// JetStream (embedded.EdgePermissions), so the edge asks what it may ask: a
// "history" command (limit 1, room ReadyProbeRoom, user ReadyProbeUser),
// which a rooms handler answers from the rooms stream; an edge is then not
// ready while no rooms handler runs, as it could not serve joins and sends
// either. Without a deadline in ctx, the check takes at most
// ops.ReadyTimeout. /readyz answers with it (ops.Readiness).
func (s *Server) Ready(ctx context.Context) error {
	if !s.ready.Load() {
		return errors.New("not serving (starting or shutting down)")
	}
	if !s.nc.IsConnected() {
		return errors.New("NATS is not connected")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ops.ReadyTimeout)
		defer cancel()
	}
	if s.local != nil {
		return s.local.Ready(ctx)
	}
	subject, err := s.cfg.Gateway.Subjects.Command(protocol.TypeHistory)
	if err != nil {
		return err
	}
	reply, err := s.nc.RequestMsgWithContext(ctx, &nats.Msg{
		Subject: subject,
		Header: nats.Header{
			natsconf.HeaderConn: {"readyz"},
			natsconf.HeaderUser: {ReadyProbeUser},
			natsconf.HeaderEdge: {s.gw.EdgeID()},
		},
		Data: []byte(`{"type":"history","room":"` + ReadyProbeRoom + `","limit":1}`),
	})
	if err != nil {
		return fmt.Errorf("rooms handler did not answer: %w", err)
	}
	var f protocol.ErrorFrame
	if json.Unmarshal(reply.Data, &f) != nil || f.Type == protocol.FrameError {
		return fmt.Errorf("rooms handler could not read the rooms stream: %s", f.Code)
	}
	return nil
}

// The identity and room of the readiness probe's "history" command.
const (
	ReadyProbeUser = "natter-readyz"
	ReadyProbeRoom = "natter-readyz"
)

// ReloadCertificate loads the TLS certificate files again (on SIGHUP).
// Established connections keep the certificate they began with.
func (s *Server) ReloadCertificate() error {
	if s.certs == nil {
		return nil
	}
	err := s.certs.reload()
	s.logReload(err)
	return err
}

func (s *Server) logReload(err error) {
	if err != nil {
		s.log.Error("TLS certificate not reloaded, the previous one stays", "err", err)
		return
	}
	s.log.Info("TLS certificate reloaded", "cert", s.cfg.TLSCert)
}

// Addr returns the address the HTTP server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// NATS returns the embedded NATS server, or nil in production mode.
func (s *Server) NATS() *natsserver.Server {
	if s.local == nil {
		return nil
	}
	return s.local.Server()
}

// Gateway returns the WebSocket gateway.
func (s *Server) Gateway() *gateway.Gateway { return s.gw }

// Done receives the HTTP server's error if it stops serving on its own.
func (s *Server) Done() <-chan error { return s.served }

// Shutdown stops accepting, says bye ("shutdown") to every client, stops the
// in-process handlers, drains NATS and stops the embedded server. It returns
// ctx.Err() if ctx ends first. Later calls return the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.shutdown(ctx) })
	return s.stopErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.ready.Store(false)
	close(s.done)
	s.wg.Wait()
	err := s.http.Shutdown(ctx)
	if e := s.gw.Shutdown(ctx); err == nil {
		err = e
	}
	if e := natsconf.Drain(ctx, s.nc); err == nil {
		err = e
	}
	s.stopNATS()
	return err
}

// stopNATS closes the edge's connection and, in development mode, stops
// the handlers and the embedded server.
func (s *Server) stopNATS() {
	if s.nc != nil && !s.nc.IsClosed() {
		s.nc.Close()
	}
	if s.local != nil {
		s.local.Stop()
	}
}

// Local is a development edge's own back end (see Config.Local): an
// embedded NATS server and the handlers in this process.
type Local interface {
	// Conn is the edge's connection to the embedded server.
	Conn() *nats.Conn
	// Server is the embedded server.
	Server() *natsserver.Server
	// Ready reports whether natter's streams answer.
	Ready(ctx context.Context) error
	// Stop stops the handlers and the server, once the edge has drained
	// its connection.
	Stop()
}
