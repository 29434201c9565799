// Package ops holds the process plumbing natter's commands share: flags with
// environment twins, the loopback test for listen addresses, the logger
// (-log-format, -log-level), and the optional ops listeners: pprof
// (-debug-addr), and Prometheus metrics with health checks
// (-metrics-addr).
package ops

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"
)

// EnvName is the environment twin of the flag name: NATTER_ and the name
// in upper case with dashes as underscores (-tls-cert is NATTER_TLS_CERT).
func EnvName(flagName string) string {
	return "NATTER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parsed is what ParseFlags found besides the flag values.
type Parsed struct {
	// Args are the arguments that are not flags, in order. They may come
	// before, between and after flags.
	Args []string
	// Given holds the name of every flag set on the command line or from
	// its environment twin, so that "given empty" can be told from "not
	// given".
	Given map[string]bool
}

// ParseFlags parses args into fs, accepting non-flag arguments between the
// flags, then sets every flag that was not on the command line from its
// environment twin (EnvName) when that variable exists, even if empty: a
// flag on the command line wins. A bad value in a variable is an error
// naming the variable.
func ParseFlags(fs *flag.FlagSet, args []string) (Parsed, error) {
	var p Parsed
	for {
		if err := fs.Parse(args); err != nil {
			return p, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		p.Args = append(p.Args, args[0])
		args = args[1:]
	}
	p.Given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { p.Given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if p.Given[f.Name] || err != nil {
			return
		}
		name := EnvName(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s (for -%s): %w", name, f.Name, e)
				return
			}
			p.Given[f.Name] = true
		}
	})
	return p, err
}

// Loopback reports whether the host of a "host:port" listen address is a
// loopback one: "localhost" or an address in 127.0.0.0/8 or ::1. An empty
// host (":4222", every interface) is not.
func Loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Debug is a running ops listener; see ServeDebug and Serve.
type Debug struct {
	srv    *http.Server
	ln     net.Listener
	served chan struct{} // closed when the serving goroutine has returned
}

// ServeDebug listens on addr (for example "127.0.0.1:6060") and serves
// net/http/pprof under /debug/pprof/ there, on a listener and mux of its
// own, until Stop: Serve with Routes{PProf: true}.
func ServeDebug(ctx context.Context, addr string, log *slog.Logger) (*Debug, error) {
	return Serve(ctx, addr, log, Routes{PProf: true})
}

// Routes says what an ops listener serves.
type Routes struct {
	// PProf serves net/http/pprof under /debug/pprof/, except
	// /debug/pprof/cmdline: a command line may hold a secret.
	PProf bool
	// Metrics, when set, is served at /metrics (Prometheus).
	Metrics http.Handler
	// Ready, when set, makes the listener serve /healthz (liveness: 200
	// while the process serves) and /readyz (200 when Ready returns nil
	// within ReadyTimeout, else 503); see Health and Readiness.
	Ready func(context.Context) error
}

// Serve listens on addr and serves routes there, on a listener and mux of
// its own, until Stop. ctx bounds the listen only. A non-loopback addr is
// allowed, with a warning in log when it serves pprof: profiles tell a lot
// about a process. A nil log is slog.Default().
func Serve(ctx context.Context, addr string, log *slog.Logger, routes Routes) (*Debug, error) {
	if log == nil {
		log = slog.Default()
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ops listener: %w", err)
	}
	mux := http.NewServeMux()
	var what []string
	if routes.PProf {
		mux.HandleFunc("GET /debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/debug/pprof/cmdline" {
				http.NotFound(w, r)
				return
			}
			pprof.Index(w, r) // the index, and every named profile (heap, goroutine, ...)
		})
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		what = append(what, "/debug/pprof/")
	}
	if routes.Metrics != nil {
		mux.Handle("GET /metrics", routes.Metrics)
		what = append(what, "/metrics")
	}
	if routes.Ready != nil {
		mux.Handle("GET /healthz", Health())
		mux.Handle("GET /readyz", Readiness(routes.Ready))
		what = append(what, "/healthz", "/readyz")
	}
	d := &Debug{
		// No write timeout: a CPU profile or trace takes as long as asked.
		srv:    &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)},
		ln:     ln,
		served: make(chan struct{}),
	}
	go func() {
		defer close(d.served)
		if err := d.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("ops listener stopped", "err", err)
		}
	}()
	if routes.PProf && !Loopback(addr) {
		log.Warn("the debug listener is not on a loopback address; anyone who reaches it can profile this process", "addr", ln.Addr().String())
	}
	log.Info("ops listener", "url", "http://"+ln.Addr().String(), "serves", strings.Join(what, " "))
	return d, nil
}

// Addr returns the address the debug listener listens on.
func (d *Debug) Addr() net.Addr { return d.ln.Addr() }

// Stop closes the listener, waits up to ctx for requests in flight (a
// running profile, say) and for the serving goroutine to return. It
// returns ctx.Err() if ctx ends first; the connections left are closed
// then.
func (d *Debug) Stop(ctx context.Context) error {
	err := d.srv.Shutdown(ctx)
	if err != nil {
		_ = d.srv.Close()
	}
	<-d.served
	return err
}
