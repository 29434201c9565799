package main

// The harness of the tests that run the real edge binary (TestBinary,
// TestDurableRestart): build it once per test binary run, start it on a
// free loopback port with an environment free of NATTER_ variables, wait
// until /healthz answers, signal it and wait for its exit.

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"natter/edge/wstest"
)

// edgeCmd is this package's binary, built by the first test that needs it.
var edgeCmd = wstest.Command{Name: "edge"}

func TestMain(m *testing.M) {
	code := m.Run()
	edgeCmd.Remove()
	os.Exit(code)
}

// edgeRun says how to run the edge besides on which address.
type edgeRun struct {
	data string   // -data; a new temporary directory when empty
	env  []string // added to the environment
	args []string // more flags
}

// edgeProcess is a running edge binary.
type edgeProcess struct {
	cmd    *exec.Cmd
	addr   string
	out    *wstest.Output // its stdout and stderr
	exited chan struct{}  // closed when the process has exited
	err    error          // cmd.Wait's result, once exited is closed
}

// startEdge runs the edge binary in development mode on a free loopback
// port and waits until /healthz answers 200. It is killed in cleanup if
// still running, and what it said is logged if the test failed.
func startEdge(t testing.TB, run edgeRun) *edgeProcess {
	t.Helper()
	bin := edgeCmd.Path(t)
	if run.data == "" {
		run.data = t.TempDir()
	}
	for attempt := 0; ; attempt++ {
		p := &edgeProcess{addr: freeAddr(t), out: &wstest.Output{}, exited: make(chan struct{})}
		p.cmd = exec.Command(bin, append([]string{"-addr", p.addr, "-data", run.data}, run.args...)...)
		p.cmd.Env = append(wstest.Environ(), run.env...)
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start edge: %v", err)
		}
		go func() {
			p.err = p.cmd.Wait()
			close(p.exited)
		}()
		t.Cleanup(func() {
			select {
			case <-p.exited:
			default:
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
			if t.Failed() {
				t.Logf("edge on %s (data %s) said:\n%s", p.addr, run.data, p.out)
			}
		})
		err := p.waitHealthy(30 * time.Second)
		if err == nil {
			return p
		}
		// Someone took the port between freeAddr and the edge's listen.
		if attempt < 3 && strings.Contains(p.out.String(), "address already in use") {
			continue
		}
		t.Fatalf("edge on %s: %v\n%s", p.addr, err, p.out)
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// waitHealthy polls /healthz until it answers 200, the process exits or
// the time is up.
func (p *edgeProcess) waitHealthy(within time.Duration) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	for {
		resp, err := client.Get("http://" + p.addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it was healthy: %v", p.err)
		case <-deadline.C:
			return fmt.Errorf("/healthz not 200 within %v (last: %v)", within, err)
		case <-poll.C:
		}
	}
}

// ws returns the WebSocket URL of pathAndQuery on p.
func (p *edgeProcess) ws(pathAndQuery string) string { return "ws://" + p.addr + pathAndQuery }

// signal sends sig to the process.
func (p *edgeProcess) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to within for the process to exit and returns cmd.Wait's
// result: nil when it exited with status 0.
func (p *edgeProcess) wait(t testing.TB, within time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(within):
		t.Fatalf("edge on %s still running after %v", p.addr, within)
		return nil
	}
}

// stop sends sig and waits up to 30s for the process to exit; it returns
// cmd.Wait's result.
func (p *edgeProcess) stop(t testing.TB, sig os.Signal) error {
	t.Helper()
	p.signal(t, sig)
	return p.wait(t, 30*time.Second)
}
