package main

// These tests build the handlers command and run it as a process against an
// embedded NATS server listening on a random loopback port.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"natter/edge/protocol"
	"natter/edge/wstest"
	"natter/handlers/registry"
	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

// handlersCmd is this package's binary, built by the first test that needs it.
var handlersCmd = wstest.Command{Name: "handlers"}

func TestMain(m *testing.M) {
	code := m.Run()
	handlersCmd.Remove()
	os.Exit(code)
}

// process is a running handlers binary.
type process struct {
	cmd    *exec.Cmd
	out    *wstest.Output
	exited chan struct{} // closed once the process has exited
	err    error         // Wait's result, set before exited is closed
}

func start(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(handlersCmd.Path(t), args...), out: &wstest.Output{}, exited: make(chan struct{})}
	p.cmd.Env = wstest.Environ()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start handlers: %v", err)
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
		if t.Failed() && len(args) > 0 && args[0] == "all" {
			t.Logf("handlers output:\n%s", p.out.String())
		}
	})
	return p
}

// wait waits up to d for the process to exit and returns its exit error.
func (p *process) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(d):
		t.Fatalf("handlers still running after %v", d)
		return nil
	}
}

// runToExit runs the binary with args and returns its exit code and output.
func runToExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	p := start(t, args...)
	err := p.wait(t, 60*time.Second)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, p.out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), p.out.String()
	default:
		t.Fatalf("handlers %v: %v", args, err)
		return -1, ""
	}
}

// startNATS starts an embedded NATS server with JetStream on a random
// loopback port, shut down in t.Cleanup.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	return embeddedtest.StartServer(t, embedded.Config{Host: "127.0.0.1", Port: 0})
}

// closedPort returns a NATS URL on a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "nats://" + addr
}

func identity() nats.Header {
	return nats.Header{
		natsconf.HeaderConn: {"c1"},
		natsconf.HeaderUser: {"alice"},
		natsconf.HeaderEdge: {"e1"},
	}
}

func TestRunAll(t *testing.T) {
	if goruntime.GOOS == "windows" {
		t.Skip("needs SIGTERM")
	}
	srv := startNATS(t)
	p := start(t, "all", "-nats", srv.ClientURL())
	nc, err := nats.Connect(srv.ClientURL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	subj := natsconf.MustSubjects(natsconf.DefaultPrefix)

	command := func(cmdType, body string) (*nats.Msg, error) {
		subject, err := subj.Command(cmdType)
		if err != nil {
			t.Fatal(err)
		}
		return nc.RequestMsg(&nats.Msg{Subject: subject, Header: identity(), Data: []byte(body)}, 5*time.Second)
	}

	// Wait until the rooms handler answers a join.
	var joined *nats.Msg
	deadline := time.Now().Add(60 * time.Second)
	for joined == nil {
		reply, err := command(protocol.TypeJoin, `{"type":"join","room":"lobby","id":"1"}`)
		var f protocol.Reply
		switch {
		case err == nil && json.Unmarshal(reply.Data, &f) == nil && f.Type == protocol.FrameJoined:
			joined = reply
			continue
		case err == nil:
			err = fmt.Errorf("reply %s", reply.Data)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no joined reply within 60s; last: %v", err)
		}
		select {
		case <-p.exited:
			t.Fatalf("handlers exited (%v) before answering a join; last: %v", p.err, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	var j protocol.Reply
	if err := json.Unmarshal(joined.Data, &j); err != nil {
		t.Fatal(err)
	}
	if j.ID != "1" || j.Room != "lobby" || j.Seq == nil {
		t.Errorf("joined %s: want id 1, room lobby and a seq", joined.Data)
	}
	if op := joined.Header.Get(natsconf.HeaderOp); op != natsconf.OpSubscribe {
		t.Errorf("joined reply header %s = %q, want %q (headers %v)", natsconf.HeaderOp, op, natsconf.OpSubscribe, joined.Header)
	}
	if room := joined.Header.Get(natsconf.HeaderRoom); room != "lobby" {
		t.Errorf("joined reply header %s = %q, want lobby", natsconf.HeaderRoom, room)
	}

	reply, err := command(protocol.TypeSend, `{"type":"send","room":"lobby","body":"hi","id":"2"}`)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	var ack protocol.Reply
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		t.Fatalf("send reply %q: %v", reply.Data, err)
	}
	if ack.Type != protocol.FrameAck || ack.ID != "2" || ack.Seq == nil || *ack.Seq == 0 {
		t.Errorf("send reply %s: want an ack of id 2 with a seq", reply.Data)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0\n%s", err, p.out.String())
	}
}

func TestUnknownHandler(t *testing.T) {
	known := registry.Names()
	check := func(t *testing.T, args ...string) {
		t.Helper()
		code, out := runToExit(t, args...)
		if code == 0 {
			t.Errorf("handlers %v: exit 0, want an error\n%s", args, out)
		}
		var missing []string
		for _, name := range append([]string{"nope"}, known...) {
			if !strings.Contains(out, name) {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			t.Errorf("handlers %v: exit %d, output does not name %q (want the unknown name and the known handlers %v):\n%s",
				args, code, missing, known, out)
		}
	}
	// The name is wrong whether or not NATS is there: it must be reported
	// as such, not as a connection failure.
	t.Run("default NATS URL", func(t *testing.T) { check(t, "nope") })
	t.Run("NATS unreachable", func(t *testing.T) { check(t, "nope", "-nats", closedPort(t)) })
	t.Run("with NATS", func(t *testing.T) { check(t, "nope", "-nats", startNATS(t).ClientURL()) })
}

func TestHelp(t *testing.T) {
	code, out := runToExit(t, "-h")
	if code != 0 {
		t.Errorf("handlers -h: exit %d, want 0\n%s", code, out)
	}
	if !strings.Contains(out, "usage: handlers") || !strings.Contains(out, "-nats") {
		t.Errorf("handlers -h: no usage:\n%s", out)
	}
}

func TestNoHandlerNamed(t *testing.T) {
	code, out := runToExit(t, "-nats", closedPort(t))
	if code == 0 {
		t.Errorf("handlers without a name: exit 0, want an error\n%s", out)
	}
	if !strings.Contains(out, "usage: handlers") {
		t.Errorf("handlers without a name: no usage:\n%s", out)
	}
}
