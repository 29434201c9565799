package main

import (
	"net/http"
	"runtime"
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

	t.Run("SIGTERM", func(t *testing.T) {
		e := startEdge(t, edgeRun{})
		clients := []*wstest.Client{
			wstest.Dial(t, e.ws("/ws?user=alice"), nil),
			wstest.Dial(t, e.ws("/ws?user=bob"), nil),
		}
		for _, c := range clients {
			c.Expect(t, "welcome")
			if f := c.Request(t, map[string]any{"type": "join", "room": "lobby"}); f.Type() != "joined" {
				t.Fatalf("join: %s", f)
			}
		}
		e.signal(t, syscall.SIGTERM)
		for i, c := range clients {
			bye := c.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "bye" })
			if bye.Str("code") != "shutdown" {
				t.Errorf("client %d: want bye shutdown, got %s", i, bye)
			}
			if code := c.Closed(t); code != 1001 {
				t.Errorf("client %d: close code %d, want 1001", i, code)
			}
		}
		if err := e.wait(t, 20*time.Second); err != nil {
			t.Errorf("edge exit after SIGTERM: %v, want 0", err)
		}
	})

	t.Run("WSPathEnv", func(t *testing.T) {
		e := startEdge(t, edgeRun{env: []string{"NATTER_WS_PATH=/chat"}})
		c := wstest.Dial(t, e.ws("/chat?user=alice"), nil)
		if w := c.Expect(t, "welcome"); w.Str("user") != "alice" {
			t.Errorf("welcome on /chat: %s", w)
		}
		if got := wstest.DialErr(t, e.ws("/ws?user=alice"), nil); got != http.StatusNotFound {
			t.Errorf("/ws with NATTER_WS_PATH=/chat: HTTP %d, want 404", got)
		}
		e.signal(t, syscall.SIGTERM)
		c.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "bye" })
		if err := e.wait(t, 20*time.Second); err != nil {
			t.Errorf("edge exit after SIGTERM: %v, want 0", err)
		}
	})
}
