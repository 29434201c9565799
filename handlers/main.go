// Command handlers runs natter's handlers against a NATS server:
//
//	go run ./handlers <name|all> -nats nats://127.0.0.1:4222
//
// Any number of copies of each handler can run; they share the work through
// queue groups. Handler names and flags may come in any order. Every flag has
// an environment twin NATTER_<NAME> (-replicas is NATTER_REPLICAS); a flag on
// the command line wins. SIGINT or SIGTERM stops taking commands, finishes
// the ones in flight and drains the connection.
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

	"natter/handlers/registry"
	"natter/handlers/runtime"
	"natter/natsconf"
	"natter/natsconf/ops"
)

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
	prefix := fs.String("prefix", natsconf.DefaultPrefix, "subject prefix")
	timeout := fs.Duration("timeout", runtime.DefaultTimeout, "deadline of one command")
	debugAddr := fs.String("debug-addr", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6061); empty: off")
	var stores natsconf.StoreConfig
	stores.RegisterFlags(fs)
	parsed, err := ops.ParseFlags(fs, args)
	if err != nil {
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
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *debugAddr != "" {
		debug, err := ops.ServeDebug(ctx, *debugAddr, logger)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = debug.Stop(sctx)
		}()
	}
	nc, err := natsconf.Connect(*natsURL, "natter-handlers "+strings.Join(names, ","))
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	set, err := registry.Start(startCtx, nc, runtime.Config{Subjects: subj, Timeout: *timeout, Logger: logger}, stores, names...)
	cancel()
	if err != nil {
		nc.Close()
		return err
	}
	logger.Info("handlers running", "handlers", names, "nats", nc.ConnectedUrlRedacted())
	<-ctx.Done()
	logger.Info("stopping")
	set.Stop()
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return natsconf.Drain(dctx, nc)
}
