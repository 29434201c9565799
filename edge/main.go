// Command edge runs natter's WebSocket edge.
//
//	go run ./edge                      # development: embedded NATS, every handler in-process
//	edge -nats nats://n1:4222,n2:4222  # production: handlers run as their own processes
//
// Every flag has an environment twin NATTER_<NAME> (dashes become
// underscores: -tls-cert is NATTER_TLS_CERT); a flag on the command line wins.
// SIGINT or SIGTERM stops accepting, says bye ("shutdown") to every client,
// drains NATS and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"natter/edge/auth"
	"natter/edge/gateway"
	"natter/edge/server"
	"natter/natsconf"
)

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "edge:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	var (
		cfg        server.Config
		gw         = &cfg.Gateway
		prefix     string
		origins    string
		rate       float64
		jwtSecret  string
		jwtKeyFile string
		syncMode   string
	)
	fs.StringVar(&cfg.Addr, "addr", ":8080", "HTTP and WebSocket listen address")
	fs.StringVar(&cfg.DataDir, "data", "./natter-data", "data directory of the embedded NATS server")
	fs.StringVar(&cfg.NATSURL, "nats", "", "NATS server URLs, comma separated; empty starts an embedded server with every handler in-process")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "", "also expose the embedded NATS server on this TCP address (e.g. 127.0.0.1:4222)")
	fs.BoolVar(&cfg.NATSAuth, "nats-auth", false, "embedded NATS requires the edge and handlers users, each allowed only its own subjects")
	fs.StringVar(&cfg.NATSEdgePassword, "nats-edge-password", "", "with -nats-auth: the edge user's password (default: made up)")
	fs.StringVar(&cfg.NATSHandlersPassword, "nats-handlers-password", "", "with -nats-auth: the handlers user's password, for handlers run apart with -nats-listen (default: made up)")
	fs.StringVar(&syncMode, "sync", "default", "embedded JetStream fsync: 'default' (every 2 minutes) or 'always'")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate file (PEM); with -tls-key serves wss:// on -addr")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&cfg.WSPath, "ws-path", "/ws", "WebSocket endpoint path")
	fs.StringVar(&prefix, "prefix", natsconf.DefaultPrefix, "NATS subject prefix")
	fs.StringVar(&origins, "allowed-origins", "", "browser origins allowed, comma separated (empty: any)")
	fs.Float64Var(&rate, "rate", gateway.DefaultRate, "commands per second per connection (0: no limit)")
	fs.IntVar(&gw.Burst, "burst", gateway.DefaultBurst, "commands a connection may send at once")
	fs.IntVar(&gw.MaxFrame, "max-frame", gateway.DefaultMaxFrame, "largest client frame in bytes")
	fs.DurationVar(&gw.IdleTimeout, "idle-timeout", gateway.DefaultIdleTimeout, "close connections silent for this long")
	fs.IntVar(&gw.WriteQueueBytes, "write-queue", gateway.DefaultWriteQueueBytes, "bytes queued to one client before it is closed as slow")
	fs.IntVar(&gw.MaxConnsPerUser, "max-conns-per-user", gateway.DefaultMaxConnsPerUser, "open connections per user (-1: no limit)")
	fs.IntVar(&gw.MaxConnsPerIP, "max-conns-per-ip", gateway.DefaultMaxConnsPerIP, "open connections per client IP address (-1: no limit)")
	fs.BoolVar(&gw.Compression, "compression", false, "accept permessage-deflate when a client asks for it")
	fs.StringVar(&jwtSecret, "jwt-secret", "", "HS256 secret: require a JWT (switches development identity off)")
	fs.StringVar(&jwtKeyFile, "jwt-public-key", "", "RS256/ES256 public key file (PEM): require a JWT (switches development identity off)")
	cfg.Stores.RegisterFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg.Logger = log
	subj, err := natsconf.NewSubjects(prefix)
	if err != nil {
		return err
	}
	gw.Subjects = subj
	if rate <= 0 {
		rate = -1
	}
	gw.Rate = rate
	if origins != "" {
		gw.AllowedOrigins = strings.Split(origins, ",")
	}
	switch syncMode {
	case "default":
	case "always":
		cfg.SyncAlways = true
	default:
		return fmt.Errorf("-sync must be 'default' or 'always', not %q", syncMode)
	}
	if jwtSecret != "" || jwtKeyFile != "" {
		gw.Auth, err = auth.NewJWT(auth.JWTConfig{Secret: []byte(jwtSecret), PublicKeyFile: jwtKeyFile})
		if err != nil {
			return err
		}
	} else {
		gw.Auth = auth.Development{}
		log.Warn("DEVELOPMENT MODE: identity is taken from ?user= without any check; set -jwt-secret or -jwt-public-key in production")
	}

	srv, err := server.Start(cfg)
	if err != nil {
		return err
	}
	scheme := "ws"
	if cfg.TLSCert != "" {
		scheme = "wss"
	}
	mode := "production (NATS " + cfg.NATSURL + ")"
	if cfg.NATSURL == "" {
		mode = "development (embedded NATS, data in " + cfg.DataDir + ")"
	}
	log.Info("natter edge listening", "addr", srv.Addr().String(), "websocket", scheme+"://"+srv.Addr().String()+cfg.WSPath, "mode", mode)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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

// parse parses args, then fills every flag not given on the command line from
// its environment twin NATTER_<NAME>.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "NATTER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && !given[f.Name] && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", name, e)
			}
		}
	})
	return err
}
