package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"natter/edge/wstest"
)

// TestEnvTwins: every flag has its NATTER_ twin, not only -nats and
// -prefix, and a flag on the command line wins.
func TestEnvTwins(t *testing.T) {
	run := func(t *testing.T, env []string, args ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, handlersCmd.Path(t), args...)
		cmd.Env = append(wstest.Environ(), env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, string(out)
		case errors.As(err, &ee):
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("handlers %v: %v", args, err)
		return -1, ""
	}
	t.Run("NATTER_REPLICAS", func(t *testing.T) {
		code, out := run(t, []string{"NATTER_REPLICAS=three"}, "rooms", "-nats", closedPort(t))
		if code == 0 || !strings.Contains(out, "NATTER_REPLICAS") {
			t.Errorf("exit %d, want an error naming NATTER_REPLICAS:\n%s", code, out)
		}
	})
	t.Run("NATTER_TIMEOUT", func(t *testing.T) {
		code, out := run(t, []string{"NATTER_TIMEOUT=soon"}, "rooms", "-nats", closedPort(t))
		if code == 0 || !strings.Contains(out, "NATTER_TIMEOUT") {
			t.Errorf("exit %d, want an error naming NATTER_TIMEOUT:\n%s", code, out)
		}
	})
	t.Run("flag wins", func(t *testing.T) {
		// The bad variable is not looked at; the run fails only on the
		// unreachable NATS.
		code, out := run(t, []string{"NATTER_REPLICAS=three"}, "rooms", "-replicas", "1", "-nats", closedPort(t))
		if code == 0 || strings.Contains(out, "NATTER_REPLICAS") {
			t.Errorf("exit %d, want a connection error, not one about NATTER_REPLICAS:\n%s", code, out)
		}
	})
}

// TestDebugAddr: -debug-addr serves pprof on its own listener while the
// handlers run, and SIGTERM still exits 0.
func TestDebugAddr(t *testing.T) {
	if goruntime.GOOS == "windows" {
		t.Skip("needs SIGTERM")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	debugAddr := ln.Addr().String()
	_ = ln.Close()
	p := start(t, "broadcast", "-debug-addr", debugAddr, "-nats", startNATS(t).ClientURL())

	// The debug listener is up before the handlers connect: once they run,
	// it answers.
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for !strings.Contains(p.out.String(), "handlers running") {
		select {
		case <-p.exited:
			t.Fatalf("handlers exited (%v) before running:\n%s", p.err, p.out.String())
		case <-deadline.C:
			t.Fatalf("handlers not running within 60s:\n%s", p.out.String())
		case <-poll.C:
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	res, err := client.Get("http://" + debugAddr + "/debug/pprof/")
	if err != nil {
		t.Fatalf("GET /debug/pprof/: %v", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /debug/pprof/: %d, want 200", res.StatusCode)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0\n%s", err, p.out.String())
	}
}
