package main

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"natter/edge/wstest"
)

// TestBinaryOps runs a development edge with -metrics-addr, JSON logs at
// debug level: its metrics listener serves /metrics (which counts what a
// client did, the in-process handlers' work too), /healthz and /readyz;
// the public listener has /healthz and /readyz but no /metrics; the logs
// are JSON with one line per closed connection.
func TestBinaryOps(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGTERM")
	}
	metricsAddr := freeAddr(t)
	e := startEdge(t, edgeRun{args: []string{"-metrics-addr", metricsAddr, "-log-format", "json", "-log-level", "debug"}})
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
	for url, want := range map[string]int{
		"http://" + e.addr + "/healthz":           http.StatusOK,
		"http://" + e.addr + "/readyz":            http.StatusOK,
		"http://" + e.addr + "/metrics":           http.StatusNotFound,
		"http://" + metricsAddr + "/healthz":      http.StatusOK,
		"http://" + metricsAddr + "/readyz":       http.StatusOK,
		"http://" + metricsAddr + "/natter.js":    http.StatusNotFound,
		"http://" + metricsAddr + "/debug/pprof/": http.StatusNotFound,
	} {
		if got, body := get(url); got != want {
			t.Errorf("GET %s: %d, want %d\n%.300s", url, got, want, body)
		}
	}

	c := wstest.Dial(t, "ws://"+e.addr+"/ws?user=alice", nil)
	c.Expect(t, "welcome")
	if f := c.Request(t, map[string]any{"type": "join", "room": "lobby"}); f.Type() != "joined" {
		t.Fatalf("join: %s", f)
	}
	if f := c.Request(t, map[string]any{"type": "send", "room": "lobby", "body": "hi"}); f.Type() != "ack" {
		t.Fatalf("send: %s", f)
	}
	_ = c.Close()

	deadline := time.Now().Add(20 * time.Second)
	var m wstest.Metrics
	for {
		m = wstest.Scrape(t, "http://"+metricsAddr+"/metrics")
		if m.Value("natter_edge_connections_closed_total", "code", "none") >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the closed connection is not counted: %v", m.Value("natter_edge_connections_closed_total"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"natter_edge_connections_opened_total", nil},
		{"natter_edge_commands_total", []string{"type", "join", "outcome", "ok"}},
		{"natter_edge_command_duration_seconds", []string{"type", "send"}},
		{"natter_edge_deliveries_total", nil},
		{"natter_edge_written_bytes_total", nil},
		{"natter_handler_requests_total", []string{"handler", "rooms", "type", "send"}},
		{"natter_handler_duration_seconds", []string{"handler", "rooms", "type", "join"}},
		{"natter_nats_connected", []string{"connection", "edge"}},
		{"process_start_time_seconds", nil},
	} {
		if got := m.Value(c.name, c.labels...); got <= 0 {
			t.Errorf("%s%v = %v, want more than 0", c.name, c.labels, got)
		}
	}
	if err := e.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0", err)
	}
	out := e.out.String()
	if !strings.Contains(out, `"msg":"connection closed"`) || !strings.Contains(out, `"user":"alice"`) {
		t.Errorf("no JSON debug line for the closed connection:\n%s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("a log line is not JSON: %q", line)
		}
	}
}

// TestConfigureLogFlags: -log-format and -log-level take only what they
// document.
func TestConfigureLogFlags(t *testing.T) {
	cleanEnv(t)
	for _, args := range [][]string{{"-log-format", "json"}, {"-log-format", "text"}, {"-log-level", "debug"}, {"-log-level", "ERROR"}} {
		if _, err := configure(args); err != nil {
			t.Errorf("configure(%q): %v", args, err)
		}
	}
	for _, args := range [][]string{{"-log-format", "xml"}, {"-log-level", "loud"}} {
		if _, err := configure(args); err == nil {
			t.Errorf("configure(%q) accepted", args)
		}
	}
	setEnv(t, []string{"NATTER_LOG_LEVEL=trace"})
	if _, err := configure(nil); err == nil || !strings.Contains(err.Error(), "log-level") {
		t.Errorf("NATTER_LOG_LEVEL=trace: %v, want an error about -log-level", err)
	}
}
