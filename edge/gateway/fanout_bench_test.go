package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/nats-io/nats.go"

	"natter/edge/auth"
	"natter/natsconf"
)

// discardConn is a net.Conn that swallows writes (counting them) and whose
// reads block until it is closed: a client that reads instantly, with no
// kernel in the way.
type discardConn struct {
	writes atomic.Int64
	bytes  atomic.Int64
	closed chan struct{}
	once   sync.Once
}

func newDiscardConn() *discardConn { return &discardConn{closed: make(chan struct{})} }

func (c *discardConn) Read([]byte) (int, error) { <-c.closed; return 0, net.ErrClosed }
func (c *discardConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	c.bytes.Add(int64(len(p)))
	return len(p), nil
}
func (c *discardConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *discardConn) SetDeadline(time.Time) error      { return nil }
func (c *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (c *discardConn) SetWriteDeadline(time.Time) error { return nil }

// benchGateway is a Gateway with its hub but no NATS: enough to route
// deliveries to clients.
func benchGateway(tb testing.TB) *Gateway {
	cfg := Config{}
	if err := cfg.validate(); err != nil {
		tb.Fatal(err)
	}
	g := &Gateway{cfg: cfg, edgeID: "bench", done: make(chan struct{})}
	g.hub = &hub{subj: cfg.Subjects, clients: map[string]*client{}, users: map[string]*fanout{}, rooms: map[string]*fanout{}}
	g.upgrader = gws.NewUpgrader(events{g}, &gws.ServerOption{NewSession: func() gws.SessionStorage { return &session{} }})
	return g
}

// benchClient upgrades a fake connection and adds it to room without NATS.
func benchClient(tb testing.TB, g *Gateway, i int, room string) (*client, *discardConn) {
	dc := newDiscardConn()
	raw := &batchConn{Conn: dc}
	req, _ := http.NewRequest("GET", "/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	ws, err := g.upgrader.UpgradeFromConn(raw, bufio.NewReader(strings.NewReader("")), req)
	if err != nil {
		tb.Fatal(err)
	}
	c := newClient(g, ws, raw, fmt.Sprintf("c%d", i), auth.Identity{User: fmt.Sprintf("u%d", i)})
	g.hub.clients[c.id] = c
	f := g.hub.rooms[room]
	if f == nil {
		f = &fanout{members: map[*client]*member{}}
		g.hub.rooms[room] = f
	}
	f.members[c] = nil
	c.rooms[room] = struct{}{}
	dc.writes.Store(0)
	return c, dc
}

// BenchmarkRoomFanout routes room messages (as the stream republishes them)
// to 2,000 local members: the seq is added once per edge, each member gets
// the shared frame through its outbox, gws frames it and the batching writer
// sends it. It reports deliveries per second and write calls per delivery.
//
//	go test -run '^$' -bench RoomFanout -benchmem ./edge/gateway/
func BenchmarkRoomFanout(b *testing.B) {
	const members = 2000
	g := benchGateway(b)
	conns := make([]*discardConn, members)
	for i := range members {
		_, conns[i] = benchClient(b, g, i, "lobby")
	}
	subject, _ := natsconf.MustSubjects("im").Room("lobby")
	payload := []byte(`{"type":"msg","room":"lobby","from":"alice","ts":1764111111000,"body":{"text":"hello, everyone in the lobby"}}`)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		m := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{nats.JSSequence: {fmt.Sprint(i + 1)}}}
		g.hub.route(m)
	}
	g.wg.Wait() // every writer has written
	elapsed := time.Since(start)
	b.StopTimer()
	var writes int64
	for _, c := range conns {
		writes += c.writes.Load()
	}
	deliveries := float64(b.N) * members
	b.ReportMetric(deliveries/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(writes)/deliveries, "writes/delivery")
	for _, c := range conns {
		_ = c.Close()
	}
}
