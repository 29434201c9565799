package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"natter/edge/server"
	"natter/edge/wstest"
)

// TestMetricsAddr runs `handlers all` with -metrics-addr (and -debug-addr
// on the same address: one listener serves both) and JSON logs. After real
// traffic through an edge, its /metrics shows the handlers' requests,
// errors and durations; /healthz and /readyz answer 200; and `nats micro
// stats natter-rooms` ($SRV.STATS.natter-rooms) shows requests, errors and
// processing time.
func TestMetricsAddr(t *testing.T) {
	if goruntime.GOOS == "windows" {
		t.Skip("needs SIGTERM")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ns := startNATS(t)
	p := start(t, "all", "-nats", ns.ClientURL(), "-metrics-addr", addr, "-debug-addr", addr, "-log-format", "json")

	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	status := func(path string) int {
		res, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	deadline := time.Now().Add(60 * time.Second)
	for status("/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within 60s:\n%s", p.out.String())
		}
		select {
		case <-p.exited:
			t.Fatalf("handlers exited (%v):\n%s", p.err, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	for path, want := range map[string]int{"/healthz": 200, "/metrics": 200, "/debug/pprof/": 200, "/debug/pprof/cmdline": 404} {
		if got := status(path); got != want {
			t.Errorf("GET %s: %d, want %d", path, got, want)
		}
	}

	// Traffic from clients of an edge.
	srv := wstest.StartEdge(t, server.Config{NATSURL: ns.ClientURL()})
	alice := wstest.Dial(t, wstest.URL(srv, "/ws?user=alice"), nil)
	alice.Expect(t, "welcome")
	for _, c := range []struct {
		cmd  map[string]any
		want string
	}{
		{map[string]any{"type": "join", "room": "lobby"}, "joined"},
		{map[string]any{"type": "send", "room": "lobby", "body": "hi"}, "ack"},
		{map[string]any{"type": "dm", "to": "bob", "body": "hi"}, "ack"},
		{map[string]any{"type": "join", "room": "not a room"}, "error"},
		{map[string]any{"type": "send", "room": "elsewhere", "body": "hi"}, "error"},
	} {
		if f := alice.Request(t, c.cmd); f.Type() != c.want {
			t.Fatalf("%v: %s, want %s", c.cmd, f, c.want)
		}
	}

	m := wstest.Scrape(t, "http://"+addr+"/metrics")
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"natter_handler_requests_total", []string{"handler", "rooms", "type", "join"}, 2},
		{"natter_handler_requests_total", []string{"handler", "rooms", "type", "send"}, 2},
		{"natter_handler_requests_total", []string{"handler", "inbox", "type", "dm"}, 1},
		{"natter_handler_errors_total", []string{"handler", "rooms", "type", "join", "code", "bad_room"}, 1},
		{"natter_handler_errors_total", []string{"handler", "rooms", "type", "send", "code", "not_member"}, 1},
		{"natter_handler_duration_seconds", []string{"handler", "rooms", "type", "join"}, 2},
		{"natter_handler_duration_seconds", []string{"handler", "inbox", "type", "connect"}, 1},
		{"natter_nats_connected", []string{"connection", "handlers"}, 1},
		{"natter_nats_reconnects_total", []string{"connection", "handlers"}, 0},
		{"natter_nats_dropped_messages_total", []string{"connection", "handlers"}, 0},
	} {
		if got := m.Value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// nats micro stats natter-rooms
	nc, err := nats.Connect(ns.ClientURL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	subject, err := micro.ControlSubject(micro.StatsVerb, "natter-rooms", "")
	if err != nil {
		t.Fatal(err)
	}
	reply, err := nc.Request(subject, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var stats micro.Stats
	if err := json.Unmarshal(reply.Data, &stats); err != nil {
		t.Fatalf("%s: %q: %v", subject, reply.Data, err)
	}
	var join *micro.EndpointStats
	for _, e := range stats.Endpoints {
		if e.Name == "join" {
			join = e
		}
	}
	if join == nil || join.NumRequests != 2 || join.NumErrors != 1 || join.ProcessingTime <= 0 || join.AverageProcessingTime <= 0 || !strings.HasPrefix(join.LastError, "bad_room:") {
		t.Errorf("%s: join endpoint %+v, want 2 requests, 1 error (bad_room) and a processing time", subject, join)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0\n%s", err, p.out.String())
	}
	if out := p.out.String(); !strings.Contains(out, `"msg":"handlers running"`) {
		t.Errorf("logs are not JSON:\n%s", out)
	}
}
