// Command handlers runs natter's handlers against a NATS server:
//
//	go run ./handlers <name|all> -nats nats://127.0.0.1:4222
//
// Any number of copies of each handler can run; they share the work through
// queue groups. Handler names and flags may come in any order. Every flag has
// an environment twin NATTER_<NAME> (-replicas is NATTER_REPLICAS); a flag on
// the command line wins. -log-format and -log-level set the logs;
// -metrics-addr serves Prometheus /metrics, /healthz and /readyz on a
// listener of its own, -debug-addr pprof. SIGINT or SIGTERM stops taking
// commands, finishes the ones in flight and drains the connection.
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"natter/handlers/registry"
	"natter/handlers/runtime"
	"natter/natsconf"
	"natter/natsconf/ops"
	"natter/natsconf/ops/metrics"
)

// startTimeout bounds a handlers process's start: the stores created (or
// found) and every handler subscribed. A whole cluster restarting may take
// a minute to elect its leaders.
const startTimeout = 2 * time.Minute

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "handlers:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("handlers", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: handlers <%s|all> [flags]\n", strings.Join(registry.Names(), "|"))
		fmt.Fprintln(fs.Output(), "Every flag has an environment twin NATTER_<NAME> (-replicas is NATTER_REPLICAS).")
		fs.PrintDefaults()
	}
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "NATS server URLs, comma separated")
	noRandomize := fs.Bool("nats-no-randomize", false, "try the -nats URLs in the order given (first one first, the next ones on a reconnect); by default the NATS client shuffles them")
	prefix := fs.String("prefix", natsconf.DefaultPrefix, "subject prefix")
	timeout := fs.Duration("timeout", runtime.DefaultTimeout, "deadline of one command")
	var opsFlags ops.Flags
	opsFlags.Register(fs, "127.0.0.1:6061", "127.0.0.1:9101")
	var stores natsconf.StoreConfig
	stores.RegisterFlags(fs)
	parsed, err := ops.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := opsFlags.Check(); err != nil {
		return err
	}
	names := parsed.Args
	if len(names) == 0 {
		fs.Usage()
		return fmt.Errorf("name a handler")
	}
	if err := registry.Check(names); err != nil {
		return err
	}
	subj, err := natsconf.NewSubjects(*prefix)
	if err != nil {
		return err
	}
	logger, err := opsFlags.Logger(os.Stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rcfg := runtime.Config{Subjects: subj, Timeout: *timeout, Logger: logger}
	var (
		reg    *prometheus.Registry
		scrape http.Handler
	)
	if opsFlags.MetricsAddr != "" {
		reg = metrics.NewRegistry()
		rcfg.Metrics = metrics.NewHandlers(reg)
		scrape = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	}
	// Ready once the handlers run, while NATS is connected and natter's
	// streams answer; not ready again once stopping.
	var ready atomic.Pointer[func(context.Context) error]
	notYet := func(context.Context) error { return errors.New("starting") }
	ready.Store(&notYet)
	stopOps, err := opsFlags.Serve(ctx, logger, scrape, func(ctx context.Context) error { return (*ready.Load())(ctx) })
	if err != nil {
		return err
	}
	defer stopOps()
	natsconf.KeepURLOrder(*noRandomize)
	nc, err := natsconf.Connect(*natsURL, "natter-handlers "+strings.Join(names, ","))
	if err != nil {
		return err
	}
	// Creating the stores waits out a cluster that is still forming or
	// electing leaders (natsconf.RetryUnavailable), up to startTimeout.
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	set, err := registry.Start(startCtx, nc, rcfg, stores, names...)
	cancel()
	if err != nil {
		nc.Close()
		return err
	}
	if reg != nil {
		if err := metrics.RegisterNATS(reg, "handlers", nc, set.Dropped); err != nil {
			set.Stop()
			nc.Close()
			return err
		}
	}
	running := func(ctx context.Context) error { return registry.Ready(ctx, nc, subj) }
	ready.Store(&running)
	logger.Info("handlers running", "handlers", names, "nats", nc.ConnectedUrlRedacted())
	<-ctx.Done()
	stopping := func(context.Context) error { return errors.New("stopping") }
	ready.Store(&stopping)
	logger.Info("stopping")
	set.Stop()
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return natsconf.Drain(dctx, nc)
}
