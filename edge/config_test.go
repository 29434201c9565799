package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"natter/edge/auth"
	"natter/edge/wstest"
)

// testSecret is an HS256 secret of the minimum length.
const testSecret = "0123456789abcdef0123456789abcdef"

// cleanEnv unsets every NATTER_ variable for the rest of the test, so that
// the test's own flags and variables are the whole configuration.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "NATTER_") {
			t.Setenv(k, v) // restored in cleanup
			if err := os.Unsetenv(k); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// setEnv sets "NAME=value" pairs for the test.
func setEnv(t *testing.T, env []string) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// TestConfigureRefuses: startup errors for configurations that would run
// with weaker identity or exposure than asked for.
func TestConfigureRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string // in the error
	}{
		{"-jwt-secret empty", nil, []string{"-jwt-secret", ""}, "-jwt-secret"},
		{"-jwt-secret= empty", nil, []string{"-jwt-secret="}, "-jwt-secret"},
		{"NATTER_JWT_SECRET empty", []string{"NATTER_JWT_SECRET="}, nil, "NATTER_JWT_SECRET"},
		{"NATTER_JWT_SECRET empty with -nats", []string{"NATTER_JWT_SECRET="}, []string{"-nats", "nats://127.0.0.1:4222"}, "NATTER_JWT_SECRET"},
		{"-jwt-public-key empty", nil, []string{"-jwt-public-key", ""}, "-jwt-public-key"},
		{"NATTER_JWT_PUBLIC_KEY empty", []string{"NATTER_JWT_PUBLIC_KEY="}, nil, "NATTER_JWT_PUBLIC_KEY"},
		{"-jwt-audience empty", nil, []string{"-jwt-secret", testSecret, "-jwt-audience", ""}, "-jwt-audience"},
		{"NATTER_JWT_ISSUER empty", []string{"NATTER_JWT_ISSUER="}, []string{"-jwt-secret", testSecret}, "NATTER_JWT_ISSUER"},
		{"NATTER_NATS empty", []string{"NATTER_NATS="}, nil, "NATTER_NATS"},
		{"-nats without a JWT key", nil, []string{"-nats", "nats://127.0.0.1:4222"}, "-dev"},
		{"NATTER_NATS without a JWT key", []string{"NATTER_NATS=nats://127.0.0.1:4222"}, nil, "-dev"},
		{"-dev and -jwt-secret", nil, []string{"-dev", "-jwt-secret", testSecret}, "-dev"},
		{"-jwt-audience without a key", nil, []string{"-jwt-audience", "natter"}, "need -jwt-secret"},
		{"-jwt-issuer without a key", nil, []string{"-jwt-issuer", "https://id.example"}, "need -jwt-secret"},
		{"-jwt-allow-no-exp without a key", nil, []string{"-jwt-allow-no-exp"}, "need -jwt-secret"},
		{"short secret", nil, []string{"-jwt-secret", "short"}, "Secret"},
		{"-nats-listen all interfaces", nil, []string{"-nats-listen", "0.0.0.0:4222"}, "loopback"},
		{"-nats-listen empty host", nil, []string{"-nats-listen", ":4222"}, "loopback"},
		{"-nats-listen all IPv6", nil, []string{"-nats-listen", "[::]:4222"}, "loopback"},
		{"-nats-listen private address", nil, []string{"-nats-listen", "10.1.2.3:4222"}, "loopback"},
		{"-nats-listen host name", nil, []string{"-nats-listen", "nats.example:4222"}, "loopback"},
		{"NATTER_NATS_LISTEN all interfaces", []string{"NATTER_NATS_LISTEN=0.0.0.0:4222"}, nil, "loopback"},
		{"bad env value", []string{"NATTER_RATE=fast"}, nil, "NATTER_RATE"},
		{"argument", nil, []string{"rooms"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cleanEnv(t)
			setEnv(t, tc.env)
			_, err := configure(tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("configure(%q) with %q: err = %v, want one mentioning %q", tc.args, tc.env, err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestConfigureModes: which identity, demo page and debug listener a
// configuration gets.
func TestConfigureModes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       []string
		args      []string
		dev, demo bool
	}{
		{"no flags: development", nil, nil, true, true},
		{"embedded with a JWT key", nil, []string{"-jwt-secret", testSecret}, false, true},
		{"embedded without the demo", nil, []string{"-demo=false"}, true, false},
		{"-nats -dev", nil, []string{"-nats", "nats://127.0.0.1:4222", "-dev"}, true, true},
		{"-nats -jwt-secret", nil, []string{"-nats", "nats://127.0.0.1:4222", "-jwt-secret", testSecret}, false, false},
		{"-nats -jwt-secret -demo", nil, []string{"-nats", "nats://127.0.0.1:4222", "-jwt-secret", testSecret, "-demo"}, false, true},
		{"env twins", []string{"NATTER_NATS=nats://127.0.0.1:4222", "NATTER_JWT_SECRET=" + testSecret, "NATTER_DEMO=true"}, nil, false, true},
		{"flag wins over an empty env twin", []string{"NATTER_JWT_SECRET="}, []string{"-jwt-secret", testSecret}, false, true},
		{"-nats-listen loopback", nil, []string{"-nats-listen", "127.0.0.1:4222"}, true, true},
		{"-nats-listen localhost", nil, []string{"-nats-listen", "localhost:4222"}, true, true},
		{"-nats-listen ::1", nil, []string{"-nats-listen", "[::1]:4222"}, true, true},
		{"-nats-listen all interfaces with -nats-auth", nil, []string{"-nats-listen", "0.0.0.0:4222", "-nats-auth"}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cleanEnv(t)
			setEnv(t, tc.env)
			c, err := configure(tc.args)
			if err != nil {
				t.Fatalf("configure(%q): %v", tc.args, err)
			}
			_, isDev := c.server.Gateway.Auth.(auth.Development)
			if c.devIdentity != tc.dev || isDev != tc.dev {
				t.Errorf("development identity %v (Auth %T), want %v", c.devIdentity, c.server.Gateway.Auth, tc.dev)
			}
			if c.server.Demo != tc.demo {
				t.Errorf("Demo = %v, want %v", c.server.Demo, tc.demo)
			}
			if c.ops.DebugAddr != "" {
				t.Errorf("debugAddr = %q without -debug-addr", c.ops.DebugAddr)
			}
		})
	}
	t.Run("-debug-addr", func(t *testing.T) {
		cleanEnv(t)
		c, err := configure([]string{"-debug-addr", "127.0.0.1:6060"})
		if err != nil || c.ops.DebugAddr != "127.0.0.1:6060" {
			t.Fatalf("configure: %q, %v; want 127.0.0.1:6060", c.ops.DebugAddr, err)
		}
	})
}

// TestConfigureJWTFlags: -jwt-audience, -jwt-issuer and -jwt-allow-no-exp
// reach the authenticator.
func TestConfigureJWTFlags(t *testing.T) {
	cleanEnv(t)
	tok := func(c jwt.MapClaims) *http.Request {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		return httptest.NewRequest(http.MethodGet, "/ws?token="+s, nil)
	}
	exp := time.Now().Add(time.Hour).Unix()
	authn := func(args ...string) auth.Authenticator {
		t.Helper()
		c, err := configure(append([]string{"-nats", "nats://127.0.0.1:4222", "-jwt-secret", testSecret}, args...))
		if err != nil {
			t.Fatal(err)
		}
		return c.server.Gateway.Auth
	}
	check := func(a auth.Authenticator, name string, r *http.Request, ok bool) {
		t.Helper()
		_, err := a.Authenticate(r)
		if ok && err != nil || !ok && !errors.Is(err, auth.ErrUnauthorized) {
			t.Errorf("%s: err = %v, want accepted %v", name, err, ok)
		}
	}

	a := authn("-jwt-audience", "natter", "-jwt-issuer", "https://id.example")
	check(a, "aud and iss", tok(jwt.MapClaims{"sub": "alice", "exp": exp, "aud": "natter", "iss": "https://id.example"}), true)
	check(a, "no aud", tok(jwt.MapClaims{"sub": "alice", "exp": exp, "iss": "https://id.example"}), false)
	check(a, "wrong iss", tok(jwt.MapClaims{"sub": "alice", "exp": exp, "aud": "natter", "iss": "https://evil.example"}), false)

	noExp := jwt.MapClaims{"sub": "alice"}
	check(authn(), "no exp by default", tok(noExp), false)
	check(authn("-jwt-allow-no-exp"), "no exp with -jwt-allow-no-exp", tok(noExp), true)
}

// TestBinaryRefuses runs the edge binary with configurations it must
// refuse: it exits 1 at once, saying why.
func TestBinaryRefuses(t *testing.T) {
	bin := edgeCmd.Path(t)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"-nats without a JWT key", nil, []string{"-nats", "nats://127.0.0.1:4222"}, "-dev"},
		{"NATTER_JWT_SECRET empty", []string{"NATTER_JWT_SECRET="}, nil, "NATTER_JWT_SECRET"},
		{"-jwt-secret empty", nil, []string{"-jwt-secret", ""}, "-jwt-secret"},
		{"-nats-listen on every interface", nil, []string{"-nats-listen", ":0"}, "loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"-addr", "127.0.0.1:0", "-data", t.TempDir()}, tc.args...)...)
			cmd.Env = append(wstest.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "listening") {
				t.Errorf("output does not refuse with %q:\n%s", tc.want, out)
			}
		})
	}
}

// TestBinaryDebugAndDemo runs a development edge with -debug-addr: the
// demo page is on its public address, pprof only on the debug one, and
// SIGTERM still exits 0.
func TestBinaryDebugAndDemo(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGTERM")
	}
	debugAddr := freeAddr(t)
	e := startEdge(t, edgeRun{args: []string{"-debug-addr", debugAddr}})
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	status := func(url string) int {
		t.Helper()
		res, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	for url, want := range map[string]int{
		"http://" + e.addr + "/":                 http.StatusOK, // development mode: the demo page
		"http://" + e.addr + "/natter.js":        http.StatusOK,
		"http://" + e.addr + "/debug/pprof/":     http.StatusNotFound,
		"http://" + debugAddr + "/debug/pprof/":  http.StatusOK,
		"http://" + debugAddr + "/natter.js":     http.StatusNotFound,
		"http://" + debugAddr + "/debug/pprof/x": http.StatusNotFound,
	} {
		if got := status(url); got != want {
			t.Errorf("GET %s: %d, want %d", url, got, want)
		}
	}
	if err := e.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("edge exit after SIGTERM: %v, want 0", err)
	}
}
