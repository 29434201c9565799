package main

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"natter/edge/wstest"
)

// TestBinary builds the edge command and runs it as a process.
func TestBinary(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGTERM")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found: cannot build the edge binary")
	}
	bin := filepath.Join(t.TempDir(), "edge")
	build := exec.Command(gobin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("SIGTERM", func(t *testing.T) {
		e := startProcess(t, bin, nil)
		clients := []*wstest.Client{
			wstest.Dial(t, "ws://"+e.addr+"/ws?user=alice", nil),
			wstest.Dial(t, "ws://"+e.addr+"/ws?user=bob", nil),
		}
		for _, c := range clients {
			c.Expect(t, "welcome")
			if f := c.Request(t, map[string]any{"type": "join", "room": "lobby"}); f.Type() != "joined" {
				t.Fatalf("join: %s", f)
			}
		}
		if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		for i, c := range clients {
			bye := c.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "bye" })
			if bye.Str("code") != "shutdown" {
				t.Errorf("client %d: want bye shutdown, got %s", i, bye)
			}
			if code := c.Closed(t); code != 1001 {
				t.Errorf("client %d: close code %d, want 1001", i, code)
			}
		}
		if code := e.wait(t, 20*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, e.output())
		}
	})

	t.Run("WSPathEnv", func(t *testing.T) {
		e := startProcess(t, bin, []string{"NATTER_WS_PATH=/chat"})
		c := wstest.Dial(t, "ws://"+e.addr+"/chat?user=alice", nil)
		if w := c.Expect(t, "welcome"); w.Str("user") != "alice" {
			t.Errorf("welcome on /chat: %s", w)
		}
		if got := wstest.DialErr(t, "ws://"+e.addr+"/ws?user=alice", nil); got != http.StatusNotFound {
			t.Errorf("/ws with NATTER_WS_PATH=/chat: HTTP %d, want 404", got)
		}
		if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		c.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "bye" })
		if code := e.wait(t, 20*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, e.output())
		}
	})
}

// edgeProcess is a running edge binary.
type edgeProcess struct {
	cmd    *exec.Cmd
	addr   string
	done   chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, once done
	mu     sync.Mutex
	stdout bytes.Buffer // the process's stdout and stderr
}

func (e *edgeProcess) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stdout.Write(p)
}

func (e *edgeProcess) output() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stdout.String()
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProcess runs bin in development mode on a free loopback port with a
// temporary data directory and env added to a clean environment, and waits
// until /healthz answers 200. The process is killed in cleanup if still
// running.
func startProcess(t *testing.T, bin string, env []string) *edgeProcess {
	t.Helper()
	e := &edgeProcess{addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), done: make(chan struct{})}
	e.cmd = exec.Command(bin, "-addr", e.addr, "-data", t.TempDir())
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATTER_") {
			e.cmd.Env = append(e.cmd.Env, kv)
		}
	}
	e.cmd.Env = append(e.cmd.Env, env...)
	e.cmd.Stdout, e.cmd.Stderr = e, e
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		e.err = e.cmd.Wait()
		close(e.done)
	}()
	t.Cleanup(func() {
		select {
		case <-e.done:
		default:
			_ = e.cmd.Process.Kill()
			<-e.done
		}
	})

	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		resp, err := hc.Get("http://" + e.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return e
			}
		}
		select {
		case <-e.done:
			t.Fatalf("edge exited before it was healthy: %v\n%s", e.err, e.output())
		case <-poll.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge not healthy after 30s (last: %v)\n%s", err, e.output())
		}
	}
}

// wait waits for the process to exit and returns its exit code.
func (e *edgeProcess) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-e.done:
	case <-time.After(timeout):
		t.Fatalf("edge still running %v after SIGTERM\n%s", timeout, e.output())
	}
	var exit *exec.ExitError
	switch {
	case e.err == nil:
		return 0
	case errors.As(e.err, &exit):
		return exit.ExitCode()
	default:
		t.Fatalf("wait: %v", e.err)
		return -1
	}
}
