package server_test

// Operations: the metrics an edge exposes, its readiness, and what its
// logs may not hold.

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"natter/edge/auth"
	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
	"natter/natsconf/embedded"
	"natter/natsconf/ops"
	"natter/natsconf/ops/metrics"
)

// opsListener serves srv's metrics (reg) and health checks on a listener
// of their own, as -metrics-addr does, and returns its base URL.
func opsListener(t *testing.T, srv *server.Server, routes ops.Routes) string {
	t.Helper()
	if routes.Ready == nil {
		routes.Ready = srv.Ready
	}
	d, err := ops.Serve(context.Background(), "127.0.0.1:0", wstest.QuietLogger(), routes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Stop(ctx)
	})
	return "http://" + d.Addr().String()
}

// get returns the status and body of url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestMetrics: after real traffic over real sockets (joins, sends, a dm, a
// history, a failing command, a client rate-limited until it got bye
// rate_limited, a client that stopped reading until it got bye slow) the
// edge's /metrics shows every metric the README names moved, those of the
// in-process handlers too.
func TestMetrics(t *testing.T) {
	const (
		batch      = 8
		maxBatches = 30 // 3.6 MB
		bodySize   = 15 << 10
	)
	reg := metrics.NewRegistry()
	srv := startEdge(t, server.Config{
		Metrics: reg,
		Gateway: gateway.Config{
			Rate: 1, Burst: 400, // a burst of 400 commands, then one a second
			MaxFrame: 16 << 10, WriteQueueBytes: 256 << 10,
		},
	})
	base := opsListener(t, srv, ops.Routes{Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %q", code, body)
	}
	before := wstest.Scrape(t, base+"/metrics")
	if v := before.Value("natter_edge_connections_open"); v != 0 {
		t.Errorf("natter_edge_connections_open before any connection = %v", v)
	}

	alice := connect(t, srv, "alice")
	bob := connect(t, srv, "bob")
	alice.join(t, "lobby")
	bob.join(t, "lobby")
	alice.request(t, "ack", map[string]any{"type": "dm", "to": "bob", "body": "psst"})
	bob.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "dm" })
	alice.request(t, "history", map[string]any{"type": "history", "room": "lobby", "limit": 5})
	if f := alice.Request(t, map[string]any{"type": "join", "room": "not a room"}); f.Str("code") != "bad_room" {
		t.Fatalf("join of a bad room: %s", f)
	}

	// A client that stops reading: a raw connection with a small receive
	// buffer, which joins the lobby and then never reads again.
	d := net.Dialer{Timeout: 5 * time.Second, Control: smallSocket}
	conn, err := d.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	slow, status, err := ptUpgradeConn(conn, srv.Addr().String(), "/ws?user=slow", nil)
	if err != nil || slow == nil {
		t.Fatalf("slow client: HTTP %d, %v", status, err)
	}
	t.Cleanup(func() { _ = slow.Close() })
	slow.ptReadJSON(t, "welcome")
	if err := ptWriteFrame(slow, 0x1, []byte(`{"type":"join","room":"lobby","id":"j"}`), false); err != nil {
		t.Fatal(err)
	}
	slow.ptReadJSON(t, "joined")

	// Room messages, until the slow client is closed: past the kernel's
	// buffers (a megabyte or more on loopback) and its write queue.
	pad := strings.Repeat("x", bodySize)
	alice.Timeout = 30 * time.Second
	sends := 0
	for range maxBatches {
		if wstest.Scrape(t, base+"/metrics").Value("natter_edge_slow_consumers_total") > 0 {
			break
		}
		for range batch {
			if err := alice.Send(map[string]any{"type": "send", "room": "lobby", "id": "s" + strconv.Itoa(sends), "body": map[string]any{"pad": pad}}); err != nil {
				t.Fatal(err)
			}
			sends++
		}
		for acks := 0; acks < batch; {
			switch f := alice.Next(t); f.Type() {
			case "ack":
				acks++
			case "error":
				t.Fatalf("send failed: %s", f)
			}
		}
	}
	t.Logf("%d messages of %d bytes closed the slow client", sends, bodySize)

	// A client over its rate limit: a few pings past the burst are
	// answered rate_limited; twenty more in a row, and the edge says bye
	// rate_limited.
	carol := connect(t, srv, "carol")
	const pings = 405
	for i := range pings {
		if err := carol.Send(map[string]any{"type": "ping", "id": "p" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	limited := 0
	for range pings {
		if f := carol.Next(t); f.Type() == "error" && f.Str("code") == "rate_limited" {
			limited++
		}
	}
	if limited == 0 {
		t.Errorf("carol: no ping of %d answered rate_limited", pings)
	}
	for i := range 30 {
		if err := carol.Send(map[string]any{"type": "ping", "id": "q" + strconv.Itoa(i)}); err != nil {
			break // closed by the edge
		}
	}
	if bye := carol.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "bye" }); bye.Str("code") != "rate_limited" {
		t.Errorf("carol: %s, want bye rate_limited", bye)
	}

	var m wstest.Metrics
	defer func() {
		if t.Failed() {
			t.Logf("closed: slow %v, rate_limited %v, none %v; open %v; slow consumers %v; written %v",
				m.Value("natter_edge_connections_closed_total", "code", "slow"), m.Value("natter_edge_connections_closed_total", "code", "rate_limited"),
				m.Value("natter_edge_connections_closed_total", "code", "none"), m.Value("natter_edge_connections_open"),
				m.Value("natter_edge_slow_consumers_total"), m.Value("natter_edge_written_bytes_total"))
		}
	}()
	ptEventually(t, 30*time.Second, "the slow and the rate-limited clients are not counted closed", func() bool {
		m = wstest.Scrape(t, base+"/metrics")
		return m.Value("natter_edge_connections_closed_total", "code", "slow") >= 1 &&
			m.Value("natter_edge_connections_closed_total", "code", "rate_limited") >= 1
	})
	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"natter_edge_connections_opened_total", nil, 4},
		{"natter_edge_commands_total", []string{"type", "join", "outcome", "ok"}, 3},
		{"natter_edge_commands_total", []string{"type", "join", "outcome", "bad_room"}, 1},
		{"natter_edge_commands_total", []string{"type", "send", "outcome", "ok"}, float64(sends)},
		{"natter_edge_commands_total", []string{"type", "dm", "outcome", "ok"}, 1},
		{"natter_edge_commands_total", []string{"type", "history", "outcome", "ok"}, 1},
		{"natter_edge_commands_total", []string{"type", "ping", "outcome", "ok"}, 390},
		{"natter_edge_commands_total", []string{"type", "ping", "outcome", "rate_limited"}, 1},
		{"natter_edge_command_duration_seconds", []string{"type", "send"}, float64(sends)},
		{"natter_edge_deliveries_total", nil, float64(2 * sends)},
		{"natter_edge_written_bytes_total", nil, float64(sends * bodySize)},
		{"natter_edge_write_batch_frames", nil, 1},
		{"natter_edge_slow_consumers_total", nil, 1},
		{"natter_edge_rate_limited_total", nil, 20},
		{"natter_nats_connected", []string{"connection", "edge"}, 1},
		{"natter_nats_connected", []string{"connection", "handlers"}, 1},
		{"natter_handler_requests_total", []string{"handler", "rooms", "type", "send"}, float64(sends)},
		{"natter_handler_requests_total", []string{"handler", "rooms", "type", "join"}, 4},
		{"natter_handler_requests_total", []string{"handler", "inbox", "type", "dm"}, 1},
		{"natter_handler_errors_total", []string{"handler", "rooms", "type", "join", "code", "bad_room"}, 1},
		{"natter_handler_duration_seconds", []string{"handler", "rooms", "type", "send"}, 1},
		{"natter_handler_duration_seconds", []string{"handler", "rooms", "type", "disconnect"}, 1},
		{"go_goroutines", nil, 1},
	} {
		if got := m.Value(c.name, c.labels...); got < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, got, c.min)
		}
	}
	// Present, and zero here.
	for _, name := range []string{"natter_nats_reconnects_total", "natter_nats_dropped_messages_total"} {
		if got := m.Value(name, "connection", "edge"); got != 0 {
			t.Errorf("%s{connection=edge} = %v, want 0", name, got)
		}
	}
	// alice and bob are still connected.
	if got := m.Value("natter_edge_connections_open"); got != 2 {
		t.Errorf("natter_edge_connections_open = %v, want 2", got)
	}
	if opened, closed := m.Value("natter_edge_connections_opened_total"), m.Value("natter_edge_connections_closed_total"); opened-closed != 2 {
		t.Errorf("opened %v - closed %v, want 2 open", opened, closed)
	}
}

// TestReadyz: /readyz answers 503 while the edge's NATS server is down and
// 200 again once it is back (an edge in production mode, with a rooms
// handler apart, on a NATS server stopped and started again on the same
// port and store), while /healthz, liveness, stays 200.
func TestReadyz(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir := t.TempDir()
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	var (
		mu   sync.Mutex
		stop func()
	)
	start := func() {
		ns, err := embedded.Start(embedded.Config{StoreDir: dir, Host: "127.0.0.1", Port: port})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		stop = func() { ns.Shutdown(); ns.WaitForShutdown() }
		mu.Unlock()
	}
	start()
	t.Cleanup(func() { mu.Lock(); defer mu.Unlock(); stop() })
	wstest.StartHandlers(t, url, "rooms")
	srv := wstest.StartEdge(t, server.Config{NATSURL: url})
	base := "http://" + srv.Addr().String()
	status := func(path string) int {
		code, _ := get(t, base+path)
		return code
	}
	ptEventually(t, 20*time.Second, "/readyz is not 200 with NATS and a rooms handler up", func() bool { return status("/readyz") == http.StatusOK })

	stop()
	ptEventually(t, 20*time.Second, "/readyz is still 200 with NATS down", func() bool { return status("/readyz") == http.StatusServiceUnavailable })
	if code := status("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with NATS down: %d, want 200 (liveness)", code)
	}
	_, body := get(t, base+"/readyz")
	if !strings.Contains(body, "not ready") {
		t.Errorf("/readyz with NATS down: %q", body)
	}

	start()
	ptEventually(t, 30*time.Second, "/readyz is not 200 again once NATS is back", func() bool { return status("/readyz") == http.StatusOK })
}

// TestLogsHoldNoSecrets: an edge logging at debug level writes one line
// per closed connection (user, duration, bye code), and neither the JWT a
// client connected with nor anything it sent.
func TestLogsHoldNoSecrets(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-logs"
	const body = "recognisable-body-7f3a9c"
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	jwtAuth, err := auth.NewJWT(auth.JWTConfig{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	srv := startEdge(t, server.Config{Logger: log, Gateway: gateway.Config{Auth: jwtAuth}})
	token := ptSignHS(t, secret, "alice")
	c := wstest.Dial(t, wstest.URL(srv, "/ws?token="+token), nil)
	c.Expect(t, "welcome")
	bob := wstest.Dial(t, wstest.URL(srv, "/ws"), http.Header{"Authorization": {"Bearer " + ptSignHS(t, secret, "bob")}})
	bob.Expect(t, "welcome")
	for _, cmd := range []map[string]any{
		{"type": "join", "room": "lobby"},
		{"type": "send", "room": "lobby", "body": map[string]any{"text": body}},
		{"type": "dm", "to": "bob", "body": body},
		{"type": "dm", "to": "not a user", "body": body},     // an error
		{"type": "send", "room": "not a room", "body": body}, // another
	} {
		c.Request(t, cmd)
	}
	_ = c.SendRaw(1, []byte(`{"type":"send","room":"lobby","body":"`+body)) // not JSON
	c.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "error" && f.Str("code") == "bad_frame" })
	_ = c.Close()
	_ = bob.Close()
	ptEventually(t, 10*time.Second, "no debug line for the closed connections", func() bool {
		return strings.Count(logs.String(), `"msg":"connection closed"`) >= 2
	})
	out := logs.String()
	if !strings.Contains(out, `"user":"alice"`) || !strings.Contains(out, `"bye":"none"`) || !strings.Contains(out, `"duration":`) {
		t.Errorf("the close line lacks user, bye or duration:\n%s", out)
	}
	for what, s := range map[string]string{"the token": token, "the JWT secret": secret, "a message body": body} {
		if strings.Contains(out, s) {
			t.Errorf("the logs hold %s:\n%s", what, out)
		}
	}
}

// ptSignHS returns an HS256 token for user, valid for an hour.
func ptSignHS(t *testing.T, secret, user string) string {
	t.Helper()
	return ptSign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()})
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
