// Command handlers runs natter's handlers against a NATS server:
//
//	go run ./handlers <name|all> -nats nats://127.0.0.1:4222
//
// Any number of copies of each handler can run; they share the work through
// queue groups. SIGINT or SIGTERM stops taking commands, finishes the ones in
// flight and drains the connection.
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
)

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "handlers:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v, ok := os.LookupEnv("NATTER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); ok {
		return v
	}
	return def
}

func run(args []string) error {
	fs := flag.NewFlagSet("handlers", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: handlers <%s|all> [flags]\n", strings.Join(registry.Names(), "|"))
		fs.PrintDefaults()
	}
	natsURL := fs.String("nats", env("nats", "nats://127.0.0.1:4222"), "NATS server URLs, comma separated (env NATTER_NATS)")
	prefix := fs.String("prefix", env("prefix", natsconf.DefaultPrefix), "subject prefix (env NATTER_PREFIX)")
	timeout := fs.Duration("timeout", runtime.DefaultTimeout, "deadline of one command")
	var stores natsconf.StoreConfig
	stores.RegisterFlags(fs)
	var names []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) > 0 {
			names = append(names, args[0])
			args = args[1:]
		}
	}
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
	nc, err := natsconf.Connect(*natsURL, "natter-handlers "+strings.Join(names, ","))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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
