// Command edge runs natter's WebSocket edge.
//
//	go run ./edge                                       # development: embedded NATS, every handler in-process
//	edge -nats nats://n1:4222 -jwt-public-key jwt.pem   # production: handlers run as their own processes
//
// Every flag has an environment twin NATTER_<NAME> (dashes become
// underscores: -tls-cert is NATTER_TLS_CERT); a flag on the command line wins.
// -log-format and -log-level set the logs; -metrics-addr serves Prometheus
// /metrics, /healthz and /readyz on a listener of its own, -debug-addr pprof.
// SIGINT or SIGTERM stops accepting, says bye ("shutdown") to every client,
// drains NATS and exits 0.
//
// It fails closed: an auth flag given empty, an edge on -nats without a JWT
// key (unless -dev), and -nats-listen on a non-loopback address without
// -nats-auth are startup errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"natter/edge/auth"
	"natter/edge/devmode"
	"natter/edge/gateway"
	"natter/edge/server"
	"natter/natsconf"
	"natter/natsconf/ops"
	"natter/natsconf/ops/metrics"
)

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "edge:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	c, err := configure(args)
	if err != nil {
		return err
	}
	log, err := c.ops.Logger(os.Stderr)
	if err != nil {
		return err
	}
	cfg := c.server
	cfg.Logger = log
	if c.devIdentity {
		log.Warn("DEVELOPMENT MODE: identity is taken from ?user= without any check; set -jwt-secret or -jwt-public-key in production")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var scrape http.Handler
	if c.ops.MetricsAddr != "" {
		reg := metrics.NewRegistry()
		cfg.Metrics = reg
		scrape = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	}
	// The ops listeners start first (a profile of a slow start, say); the
	// edge is not ready until it runs.
	var started atomic.Pointer[server.Server]
	ready := func(ctx context.Context) error {
		if s := started.Load(); s != nil {
			return s.Ready(ctx)
		}
		return errors.New("starting")
	}
	stopOps, err := c.ops.Serve(ctx, log, scrape, ready)
	if err != nil {
		return err
	}
	defer stopOps()

	natsconf.KeepURLOrder(c.natsNoRandomize)
	cfg.Local = devmode.Start // development mode: embedded NATS and every handler here
	srv, err := server.Start(cfg)
	if err != nil {
		return err
	}
	started.Store(srv)
	scheme := "ws"
	if cfg.TLSCert != "" {
		scheme = "wss"
	}
	mode := "production (NATS " + natsconf.RedactURLs(cfg.NATSURL) + ")"
	if cfg.NATSURL == "" {
		mode = "development (embedded NATS, data in " + cfg.DataDir + ")"
	}
	log.Info("natter edge listening", "addr", srv.Addr().String(), "websocket", scheme+"://"+srv.Addr().String()+cfg.WSPath, "mode", mode, "demo", cfg.Demo)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-hup:
			_ = srv.ReloadCertificate()
		case err := <-srv.Done():
			return err
		}
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// edgeConfig is what the command line and the environment ask for.
type edgeConfig struct {
	server      server.Config // without Logger and Metrics
	devIdentity bool          // server.Gateway.Auth takes ?user= unchecked
	ops         ops.Flags     // logs, pprof and metrics listeners

	// natsNoRandomize keeps the order of the -nats URLs
	// (natsconf.KeepURLOrder).
	natsNoRandomize bool
}

// configure turns the flags in args and their environment twins into an
// edgeConfig, refusing unsafe combinations.
func configure(args []string) (edgeConfig, error) {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	var (
		c         edgeConfig
		cfg       = &c.server
		gw        = &cfg.Gateway
		prefix    string
		origins   string
		proxies   string
		rate      float64
		jwtCfg    auth.JWTConfig
		jwtSecret string
		dev       bool
		syncMode  string
	)
	fs.StringVar(&cfg.Addr, "addr", ":8080", "HTTP and WebSocket listen address")
	fs.StringVar(&cfg.DataDir, "data", "./natter-data", "data directory of the embedded NATS server")
	fs.StringVar(&cfg.NATSURL, "nats", "", "NATS server URLs, comma separated; empty starts an embedded server with every handler in-process")
	fs.BoolVar(&c.natsNoRandomize, "nats-no-randomize", false, "try the -nats URLs in the order given (first one first, the next ones on a reconnect); by default the NATS client shuffles them")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "", "also expose the embedded NATS server on this TCP address (e.g. 127.0.0.1:4222); a non-loopback one needs -nats-auth")
	fs.BoolVar(&cfg.NATSAuth, "nats-auth", false, "embedded NATS requires the edge and handlers users, each allowed only its own subjects")
	fs.StringVar(&cfg.NATSEdgePassword, "nats-edge-password", "", "with -nats-auth: the edge user's password (default: made up)")
	fs.StringVar(&cfg.NATSHandlersPassword, "nats-handlers-password", "", "with -nats-auth: the handlers user's password, for handlers run apart with -nats-listen (default: made up)")
	fs.StringVar(&syncMode, "sync", "default", "embedded JetStream fsync: 'default' (every 2 minutes) or 'always'")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate file (PEM); with -tls-key serves wss:// on -addr")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&cfg.WSPath, "ws-path", "/ws", "WebSocket endpoint path")
	fs.StringVar(&prefix, "prefix", natsconf.DefaultPrefix, "NATS subject prefix")
	fs.StringVar(&origins, "allowed-origins", "", "browser origins allowed, comma separated (empty: any)")
	fs.StringVar(&proxies, "trusted-proxies", "", "proxies (CIDRs, comma separated) whose X-Forwarded-For / Forwarded give the client address for per-address caps")
	fs.Float64Var(&rate, "rate", gateway.DefaultRate, "commands per second per connection (0: no limit)")
	fs.IntVar(&gw.Burst, "burst", gateway.DefaultBurst, "commands a connection may send at once")
	fs.IntVar(&gw.MaxFrame, "max-frame", gateway.DefaultMaxFrame, "largest client frame in bytes")
	fs.DurationVar(&gw.IdleTimeout, "idle-timeout", gateway.DefaultIdleTimeout, "close connections silent for this long")
	fs.DurationVar(&gw.MessageTimeout, "message-timeout", gateway.DefaultMessageTimeout, "longest one client message may take to arrive, first frame to last")
	fs.Int64Var(&gw.ReceiveBudget, "receive-budget", gateway.DefaultReceiveBudget, "bytes of client messages held while they arrive, all connections together (-1: no bound)")
	fs.IntVar(&gw.WriteQueueBytes, "write-queue", gateway.DefaultWriteQueueBytes, "bytes queued to one client before it is closed as slow")
	fs.IntVar(&gw.MaxRooms, "max-rooms", gateway.DefaultMaxRooms, "rooms one connection may be in (a join past it: error too_many_rooms)")
	fs.DurationVar(&gw.LazyDelay, "presence-delay", gateway.DefaultLazyDelay, "how long presence frames may wait to share a write with others")
	fs.IntVar(&gw.MaxConnsPerUser, "max-conns-per-user", gateway.DefaultMaxConnsPerUser, "open connections per user (-1: no limit)")
	fs.IntVar(&gw.MaxConnsPerIP, "max-conns-per-ip", gateway.DefaultMaxConnsPerIP, "open connections per client IP address (-1: no limit)")
	fs.BoolVar(&gw.Compression, "compression", false, "accept permessage-deflate when a client asks for it")
	fs.StringVar(&jwtSecret, "jwt-secret", "", "HS256 secret: require a JWT (switches development identity off)")
	fs.StringVar(&jwtCfg.PublicKeyFile, "jwt-public-key", "", "RS256/ES256 public key file (PEM): require a JWT (switches development identity off)")
	fs.StringVar(&jwtCfg.Audience, "jwt-audience", "", "with a JWT key: the token's aud must contain this")
	fs.StringVar(&jwtCfg.Issuer, "jwt-issuer", "", "with a JWT key: the token's iss must be this")
	fs.BoolVar(&jwtCfg.AllowNoExpiry, "jwt-allow-no-exp", false, "with a JWT key: accept tokens without exp (they never expire)")
	fs.BoolVar(&dev, "dev", false, "with -nats and no JWT key: take identities from ?user= unchecked (development only; the embedded mode does so without -dev)")
	fs.BoolVar(&cfg.Demo, "demo", false, "serve the demo chat page at / (default: on in development mode, off otherwise)")
	c.ops.Register(fs, "127.0.0.1:6060", "127.0.0.1:9100")
	cfg.Stores.RegisterFlags(fs)
	p, err := ops.ParseFlags(fs, args)
	if err != nil {
		return c, err
	}
	if len(p.Args) > 0 {
		return c, fmt.Errorf("unexpected argument %q", p.Args[0])
	}
	if err := c.ops.Check(); err != nil {
		return c, err
	}

	// Fail closed: an empty value given for an auth flag or -nats is a
	// mistake (an unset variable, say), never a way to turn a check off or
	// to fall back to development mode.
	for _, name := range []string{"jwt-secret", "jwt-public-key", "jwt-audience", "jwt-issuer", "nats"} {
		if p.Given[name] && fs.Lookup(name).Value.String() == "" {
			return c, fmt.Errorf("-%s (or %s) is given but empty", name, ops.EnvName(name))
		}
	}
	useJWT := jwtSecret != "" || jwtCfg.PublicKeyFile != ""
	switch {
	case useJWT && dev:
		return c, errors.New("-dev contradicts -jwt-secret and -jwt-public-key")
	case !useJWT && (jwtCfg.Audience != "" || jwtCfg.Issuer != "" || jwtCfg.AllowNoExpiry):
		return c, errors.New("-jwt-audience, -jwt-issuer and -jwt-allow-no-exp need -jwt-secret or -jwt-public-key")
	case !useJWT && cfg.NATSURL != "" && !dev:
		return c, errors.New("-nats needs -jwt-secret or -jwt-public-key; pass -dev to take identities from ?user= unchecked (development only)")
	}
	if cfg.NATSListen != "" && !cfg.NATSAuth && !ops.Loopback(cfg.NATSListen) {
		return c, fmt.Errorf("-nats-listen %s is not a loopback address: add -nats-auth, or listen on 127.0.0.1", cfg.NATSListen)
	}
	if useJWT {
		jwtCfg.Secret = []byte(jwtSecret)
		if gw.Auth, err = auth.NewJWT(jwtCfg); err != nil {
			return c, err
		}
	} else {
		gw.Auth = auth.Development{}
		c.devIdentity = true
	}
	if !p.Given["demo"] {
		cfg.Demo = cfg.NATSURL == "" || dev
	}

	if gw.Subjects, err = natsconf.NewSubjects(prefix); err != nil {
		return c, err
	}
	if rate <= 0 {
		rate = -1
	}
	gw.Rate = rate
	if origins != "" {
		gw.AllowedOrigins = strings.Split(origins, ",")
	}
	if gw.TrustedProxies, err = gateway.ParsePrefixes(proxies); err != nil {
		return c, fmt.Errorf("-trusted-proxies: %w", err)
	}
	switch syncMode {
	case "default":
	case "always":
		cfg.SyncAlways = true
	default:
		return c, fmt.Errorf("-sync must be 'default' or 'always', not %q", syncMode)
	}
	return c, nil
}
