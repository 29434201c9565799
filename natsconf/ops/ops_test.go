package ops_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"natter/natsconf/ops"
)

// testFlags is a flag set with flags whose environment twins nobody sets
// outside these tests.
type testFlags struct {
	fs    *flag.FlagSet
	name  string
	count int
	on    bool
}

func newTestFlags() *testFlags {
	f := &testFlags{fs: flag.NewFlagSet("test", flag.ContinueOnError)}
	f.fs.SetOutput(io.Discard)
	f.fs.StringVar(&f.name, "ops-test-name", "default", "")
	f.fs.IntVar(&f.count, "ops-test-count", 1, "")
	f.fs.BoolVar(&f.on, "ops-test-on", false, "")
	return f
}

func TestEnvName(t *testing.T) {
	if got := ops.EnvName("tls-cert"); got != "NATTER_TLS_CERT" {
		t.Errorf("EnvName(tls-cert) = %q, want NATTER_TLS_CERT", got)
	}
}

func TestParseFlags(t *testing.T) {
	t.Run("env twin when the flag is not given", func(t *testing.T) {
		t.Setenv("NATTER_OPS_TEST_NAME", "from-env")
		t.Setenv("NATTER_OPS_TEST_ON", "true")
		f := newTestFlags()
		p, err := ops.ParseFlags(f.fs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if f.name != "from-env" || !f.on || f.count != 1 {
			t.Errorf("name %q on %v count %d, want from-env true 1", f.name, f.on, f.count)
		}
		if !p.Given["ops-test-name"] || !p.Given["ops-test-on"] || p.Given["ops-test-count"] {
			t.Errorf("Given = %v, want ops-test-name and ops-test-on only", p.Given)
		}
	})
	t.Run("command line wins over env", func(t *testing.T) {
		t.Setenv("NATTER_OPS_TEST_NAME", "from-env")
		t.Setenv("NATTER_OPS_TEST_COUNT", "not a number") // never parsed: the flag is given
		f := newTestFlags()
		if _, err := ops.ParseFlags(f.fs, []string{"-ops-test-name", "from-args", "-ops-test-count=7"}); err != nil {
			t.Fatal(err)
		}
		if f.name != "from-args" || f.count != 7 {
			t.Errorf("name %q count %d, want from-args 7", f.name, f.count)
		}
	})
	t.Run("empty env is given", func(t *testing.T) {
		t.Setenv("NATTER_OPS_TEST_NAME", "")
		f := newTestFlags()
		p, err := ops.ParseFlags(f.fs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if f.name != "" || !p.Given["ops-test-name"] {
			t.Errorf("name %q, given %v; want empty and given", f.name, p.Given["ops-test-name"])
		}
	})
	t.Run("bad env value names the variable", func(t *testing.T) {
		t.Setenv("NATTER_OPS_TEST_COUNT", "many")
		_, err := ops.ParseFlags(newTestFlags().fs, nil)
		if err == nil || !strings.Contains(err.Error(), "NATTER_OPS_TEST_COUNT") {
			t.Errorf("err = %v, want one naming NATTER_OPS_TEST_COUNT", err)
		}
	})
	t.Run("arguments between flags", func(t *testing.T) {
		f := newTestFlags()
		p, err := ops.ParseFlags(f.fs, []string{"rooms", "-ops-test-count", "3", "inbox", "-ops-test-on", "all"})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"rooms", "inbox", "all"}; !slices.Equal(p.Args, want) {
			t.Errorf("Args = %q, want %q", p.Args, want)
		}
		if f.count != 3 || !f.on {
			t.Errorf("count %d on %v, want 3 true", f.count, f.on)
		}
	})
	t.Run("bad flag", func(t *testing.T) {
		if _, err := ops.ParseFlags(newTestFlags().fs, []string{"-nope"}); err == nil {
			t.Error("an unknown flag parsed")
		}
	})
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:4222":   true,
		"127.1.2.3:4222":   true,
		"[::1]:4222":       true,
		"localhost:4222":   true,
		"LOCALHOST:4222":   true,
		":4222":            false,
		"0.0.0.0:4222":     false,
		"[::]:4222":        false,
		"10.0.0.1:4222":    false,
		"nats.example:422": false,
		"127.0.0.1":        false, // no port: not a listen address
	} {
		if got := ops.Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestServeDebug(t *testing.T) {
	ctx := context.Background()
	d, err := ops.ServeDebug(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = d.Stop(ctx)
		}
	})
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	base := "http://" + d.Addr().String()
	get := func(path string) (int, string) {
		t.Helper()
		res, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return res.StatusCode, string(b)
	}
	if code, body := get("/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/: %d, body lacks goroutine:\n%.300s", code, body)
	}
	if code, body := get("/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("GET /debug/pprof/goroutine: %d\n%.300s", code, body)
	}
	for _, path := range []string{"/debug/pprof/cmdline", "/", "/healthz"} {
		if code, _ := get(path); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}

	// The address is taken while it runs.
	if _, err := ops.ServeDebug(ctx, d.Addr().String(), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a second debug listener on the same address started")
	}

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.Stop(sctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stopped = true
	client.CloseIdleConnections()
	if c, err := net.DialTimeout("tcp", d.Addr().String(), 5*time.Second); err == nil {
		_ = c.Close()
		t.Error("the debug listener still accepts connections after Stop")
	}
}

// TestFlagsServe: -metrics-addr serves /metrics, /healthz and /readyz (503
// with the reason while not ready); with -debug-addr on the same address
// one listener serves pprof as well.
func TestFlagsServe(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "natter_test 1\n") })
	var notReady error = errors.New("NATS is not connected")
	ready := func(context.Context) error { return notReady }
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	get := func(url string) (int, string) {
		t.Helper()
		res, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	addr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}

	t.Run("apart", func(t *testing.T) {
		f := ops.Flags{DebugAddr: addr(), MetricsAddr: addr()}
		stop, err := f.Serve(context.Background(), slog.New(slog.DiscardHandler), metrics, ready)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		for url, want := range map[string]int{
			"http://" + f.MetricsAddr + "/metrics":      200,
			"http://" + f.MetricsAddr + "/healthz":      200,
			"http://" + f.MetricsAddr + "/readyz":       503,
			"http://" + f.MetricsAddr + "/debug/pprof/": 404,
			"http://" + f.DebugAddr + "/debug/pprof/":   200,
			"http://" + f.DebugAddr + "/metrics":        404,
		} {
			if got, body := get(url); got != want {
				t.Errorf("GET %s: %d, want %d\n%.200s", url, got, want, body)
			}
		}
		if _, body := get("http://" + f.MetricsAddr + "/readyz"); body != "not ready: NATS is not connected\n" {
			t.Errorf("/readyz: %q", body)
		}
	})
	t.Run("together", func(t *testing.T) {
		a := addr()
		f := ops.Flags{DebugAddr: a, MetricsAddr: a}
		stop, err := f.Serve(context.Background(), slog.New(slog.DiscardHandler), metrics, func(context.Context) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		for _, path := range []string{"/metrics", "/healthz", "/readyz", "/debug/pprof/"} {
			if got, body := get("http://" + a + path); got != 200 {
				t.Errorf("GET %s: %d\n%.200s", path, got, body)
			}
		}
	})
}

// TestReadiness: a readiness result is reused for a second, so probes
// cost at most one check a second.
func TestReadiness(t *testing.T) {
	var checks atomic.Int32
	h := ops.Readiness(func(context.Context) error { checks.Add(1); return nil })
	for range 5 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != http.StatusOK || rec.Body.String() != "ready\n" {
			t.Fatalf("/readyz: %d %q", rec.Code, rec.Body)
		}
	}
	if n := checks.Load(); n != 1 {
		t.Errorf("%d checks for 5 probes within a second, want 1", n)
	}
}

// TestLogger: -log-format and -log-level.
func TestLogger(t *testing.T) {
	var b strings.Builder
	log, err := (&ops.Flags{LogFormat: "json", LogLevel: "warn"}).Logger(&b)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	if out := b.String(); strings.Contains(out, "hidden") || !strings.HasPrefix(out, `{"time":`) || !strings.Contains(out, `"msg":"shown","k":"v"`) {
		t.Errorf("json at warn: %q", out)
	}
	b.Reset()
	log, err = (&ops.Flags{LogFormat: "text", LogLevel: "debug"}).Logger(&b)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("shown")
	if out := b.String(); !strings.Contains(out, "level=DEBUG msg=shown") {
		t.Errorf("text at debug: %q", out)
	}
	for _, f := range []ops.Flags{{LogFormat: "xml"}, {LogLevel: "verbose"}} {
		if _, err := f.Logger(&b); err == nil {
			t.Errorf("%+v: accepted", f)
		}
	}
}
