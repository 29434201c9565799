package ops

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Flags are the operations flags every natter command has: the ops
// listeners and the logger.
type Flags struct {
	// DebugAddr serves pprof (-debug-addr); empty: off.
	DebugAddr string
	// MetricsAddr serves /metrics, /healthz and /readyz (-metrics-addr);
	// empty: off. The same address as DebugAddr makes one listener
	// serve both.
	MetricsAddr string
	// LogFormat is "text" or "json" (-log-format).
	LogFormat string
	// LogLevel is "debug", "info", "warn" or "error" (-log-level).
	LogLevel string
}

// Register adds -debug-addr, -metrics-addr, -log-format and -log-level to
// fs; the examples show an address in the flags' help.
func (f *Flags) Register(fs *flag.FlagSet, debugExample, metricsExample string) {
	fs.StringVar(&f.DebugAddr, "debug-addr", "", "serve net/http/pprof on this address (e.g. "+debugExample+"); empty: off")
	fs.StringVar(&f.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics, /healthz and /readyz on this address (e.g. "+metricsExample+"); empty: off")
	fs.StringVar(&f.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// Check reports a bad -log-format or -log-level.
func (f *Flags) Check() error {
	_, err := f.handlerOptions()
	if err == nil && f.LogFormat != "text" && f.LogFormat != "json" && f.LogFormat != "" {
		err = fmt.Errorf("-log-format must be text or json, not %q", f.LogFormat)
	}
	return err
}

func (f *Flags) handlerOptions() (*slog.HandlerOptions, error) {
	var level slog.Level
	switch strings.ToLower(f.LogLevel) {
	case "debug":
		level = slog.LevelDebug
	case "info", "":
		level = slog.LevelInfo
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, fmt.Errorf("-log-level must be debug, info, warn or error, not %q", f.LogLevel)
	}
	return &slog.HandlerOptions{Level: level}, nil
}

// Logger returns the logger the flags ask for, writing to w.
func (f *Flags) Logger(w io.Writer) (*slog.Logger, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	opts, _ := f.handlerOptions()
	if f.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// Serve starts the listeners the flags ask for: pprof on DebugAddr,
// metrics (served at /metrics) and the health checks (ready answers
// /readyz) on MetricsAddr, or one listener for both when the addresses
// are the same. stop closes them, waiting up to 5 s for requests in
// flight.
func (f *Flags) Serve(ctx context.Context, log *slog.Logger, metrics http.Handler, ready func(context.Context) error) (stop func(), err error) {
	var started []*Debug
	stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, d := range started {
			_ = d.Stop(sctx)
		}
	}
	metricsRoutes := Routes{Metrics: metrics, Ready: ready}
	if f.DebugAddr != "" {
		routes := Routes{PProf: true}
		if f.MetricsAddr == f.DebugAddr {
			routes.Metrics, routes.Ready = metrics, ready
		}
		d, err := Serve(ctx, f.DebugAddr, log, routes)
		if err != nil {
			return stop, err
		}
		started = append(started, d)
	}
	if f.MetricsAddr != "" && f.MetricsAddr != f.DebugAddr {
		d, err := Serve(ctx, f.MetricsAddr, log, metricsRoutes)
		if err != nil {
			stop()
			return func() {}, err
		}
		started = append(started, d)
	}
	return stop, nil
}

// Health answers liveness probes: 200 "ok" for as long as the process
// serves HTTP.
func Health() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, "ok\n")
	})
}

// ReadyTimeout bounds one readiness check.
const ReadyTimeout = 2 * time.Second

// readyCacheFor is how long a readiness result is reused: probes, however
// many, cost at most one check a second.
const readyCacheFor = time.Second

// Readiness answers readiness probes: 200 "ready" when ready returns nil
// within ReadyTimeout, else 503 with the reason. A result is reused for a
// second, so that frequent probes (or anyone who can reach the address)
// cause at most one check a second; concurrent probes share one check.
func Readiness(ready func(context.Context) error) http.Handler {
	var (
		mu      sync.Mutex
		checked time.Time
		last    error
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if checked.IsZero() || time.Since(checked) >= readyCacheFor {
			ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
			last = ready(ctx)
			cancel()
			if errors.Is(last, context.Canceled) && r.Context().Err() != nil {
				mu.Unlock()
				return // the prober went away: keep no result
			}
			checked = time.Now()
		}
		err := last
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
}
