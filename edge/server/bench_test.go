package server_test

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
)

// benchClient is a lean WebSocket client for benchmarks: it hands every
// reply ("ack", "joined", "error") to a channel and drops deliveries.
type benchClient struct {
	conn *gws.Conn
	acks chan []byte
}

type benchEvents struct {
	gws.BuiltinEventHandler
	acks    chan []byte
	welcome chan struct{} // gets a value per welcome, when set
}

func (e benchEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	if e.welcome != nil && bytes.HasPrefix(m.Bytes(), []byte(`{"type":"welcome"`)) {
		e.welcome <- struct{}{}
	}
	if !bytes.HasPrefix(m.Bytes(), []byte(`{"seq"`)) && !bytes.HasPrefix(m.Bytes(), []byte(`{"type":"welcome"`)) &&
		!bytes.HasPrefix(m.Bytes(), []byte(`{"type":"presence"`)) {
		e.acks <- bytes.Clone(m.Bytes())
	}
	_ = m.Close()
}

func dialBench(b *testing.B, url string) *benchClient {
	b.Helper()
	acks := make(chan []byte, 16)
	conn, _, err := gws.NewClient(benchEvents{acks: acks}, &gws.ClientOption{Addr: url})
	if err != nil {
		b.Fatal(err)
	}
	go conn.ReadLoop()
	b.Cleanup(func() { _ = conn.WriteClose(1000, nil) })
	return &benchClient{conn: conn, acks: acks}
}

// dialBenchWelcome dials and waits for the welcome frame.
func dialBenchWelcome(b *testing.B, url string, welcomed chan struct{}) *benchClient {
	acks := make(chan []byte, 16)
	conn, _, err := gws.NewClient(benchEvents{acks: acks, welcome: welcomed}, &gws.ClientOption{Addr: url})
	if err != nil {
		b.Fatal(err)
	}
	go conn.ReadLoop()
	return &benchClient{conn: conn, acks: acks}
}

func (c *benchClient) call(b *testing.B, frame string) []byte {
	if err := c.conn.WriteString(frame); err != nil {
		b.Fatal(err)
	}
	select {
	case r := <-c.acks:
		return r
	case <-time.After(10 * time.Second):
		b.Fatal("no reply in 10s")
		return nil
	}
}

// BenchmarkRoomSend measures the room send path end to end: WebSocket frame
// in, NATS request, rooms handler, JetStream publish (file store), ack back.
// It reports acks per second and ack latency percentiles over 8 concurrent
// senders, with JetStream's default fsync and with -sync always.
//
//	go test -run '^$' -bench RoomSend -benchtime 20000x ./edge/server/
func BenchmarkRoomSend(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync_always=%v", sync), func(b *testing.B) {
			benchRoomSend(b, sync)
		})
	}
}

func benchRoomSend(b *testing.B, syncAlways bool) {
	srv := wstest.StartEdge(b, server.Config{SyncAlways: syncAlways, Gateway: gateway.Config{Rate: -1}})
	clients := make([]*benchClient, benchSenders)
	for i := range clients {
		clients[i] = dialBench(b, wstest.URL(srv, fmt.Sprintf("/ws?user=bench%d", i)))
		if r := clients[i].call(b, `{"type":"join","room":"bench","id":"j"}`); !bytes.Contains(r, []byte(`"joined"`)) {
			b.Fatalf("join: %s", r)
		}
	}
	benchAcks(b, clients, 1, func(_, j int) string {
		return fmt.Sprintf(`{"type":"send","room":"bench","body":{"n":%d}}`, j)
	})
}

// BenchmarkPipelined measures sends and dms with 16 commands in flight per
// connection (8 connections), as peerbench's B and C do: the edge relays
// what queued behind one request as one batch, and the handlers store a
// batch with ordered asynchronous publishes.
//
//	go test -run '^$' -bench Pipelined -benchtime 50000x ./edge/server/
func BenchmarkPipelined(b *testing.B) {
	b.Run("send", func(b *testing.B) {
		srv := wstest.StartEdge(b, server.Config{Gateway: gateway.Config{Rate: -1}})
		clients := make([]*benchClient, benchSenders)
		for i := range clients {
			clients[i] = dialBench(b, wstest.URL(srv, fmt.Sprintf("/ws?user=bench%d", i)))
			clients[i].call(b, fmt.Sprintf(`{"type":"join","room":"bench%d","id":"j"}`, i))
		}
		benchAcks(b, clients, 16, func(i, j int) string {
			return fmt.Sprintf(`{"type":"send","room":"bench%d","body":{"n":%d}}`, i, j)
		})
	})
	b.Run("dm", func(b *testing.B) {
		srv := wstest.StartEdge(b, server.Config{Gateway: gateway.Config{Rate: -1}})
		clients := make([]*benchClient, benchSenders)
		for i := range clients {
			dialBench(b, wstest.URL(srv, fmt.Sprintf("/ws?user=target%d", i)))
			clients[i] = dialBench(b, wstest.URL(srv, fmt.Sprintf("/ws?user=sender%d", i)))
		}
		benchAcks(b, clients, 16, func(i, j int) string {
			return fmt.Sprintf(`{"type":"dm","to":"target%d","body":{"n":%d}}`, i, j)
		})
	})
}

// BenchmarkConnectJoin measures a connection's start: upgrade, welcome
// (after its subscriptions are in place at NATS, and the inbox handler's
// look for stored dms), and a join of one of 100 rooms (membership in KV,
// presence to the room), 64 at a time. allocs/op counts client and server
// (one process).
//
//	go test -run '^$' -bench ConnectJoin -benchtime 5000x ./edge/server/
func BenchmarkConnectJoin(b *testing.B) {
	srv := wstest.StartEdge(b, server.Config{Gateway: gateway.Config{Rate: -1, MaxConnsPerIP: -1}})
	const conc = 64
	var (
		mu      sync.Mutex
		clients []*benchClient
	)
	b.Cleanup(func() {
		for _, c := range clients {
			_ = c.conn.NetConn().Close()
		}
	})
	next := make(chan int)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range conc {
		wg.Go(func() {
			welcomed := make(chan struct{}, 1)
			for i := range next {
				c := dialBenchWelcome(b, wstest.URL(srv, fmt.Sprintf("/ws?user=u%d", i)), welcomed)
				<-welcomed
				if err := c.conn.WriteString(fmt.Sprintf(`{"type":"join","room":"r%d","id":"j"}`, i%100)); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				clients = append(clients, c)
				mu.Unlock()
			}
		})
	}
	for i := range b.N {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, c := range clients { // every join answered
		if r := <-c.acks; !bytes.Contains(r, []byte(`"joined"`)) {
			b.Fatalf("join: %s", r)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "connects/s")
}

// BenchmarkDM measures direct messages to online users end to end: store in
// the inbox stream, live offer to the target's edge, delete once taken, ack
// "delivered". 8 senders, each writing to its own online target.
//
//	go test -run '^$' -bench DM -benchtime 20000x ./edge/server/
func BenchmarkDM(b *testing.B) {
	srv := wstest.StartEdge(b, server.Config{Gateway: gateway.Config{Rate: -1}})
	clients := make([]*benchClient, benchSenders)
	for i := range clients {
		dialBench(b, wstest.URL(srv, fmt.Sprintf("/ws?user=target%d", i)))
		clients[i] = dialBench(b, wstest.URL(srv, fmt.Sprintf("/ws?user=sender%d", i)))
	}
	benchAcks(b, clients, 1, func(i, j int) string {
		return fmt.Sprintf(`{"type":"dm","to":"target%d","body":{"n":%d}}`, i, j)
	})
}

// benchSenders is how many connections send at once in the benchmarks.
const benchSenders = 8

// benchAcks spreads b.N commands over clients, each keeping up to window
// of them unanswered, and reports acks per second, ack latency
// percentiles and allocations per command (client and server: one
// process).
func benchAcks(b *testing.B, clients []*benchClient, window int, frame func(client, n int) string) {
	lat := make([][]time.Duration, len(clients))
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i, c := range clients {
		n := b.N / len(clients)
		if i < b.N%len(clients) {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, n)
			sent := make([]time.Time, 0, n)
			for len(l) < n {
				for len(sent) < n && len(sent)-len(l) < window {
					sent = append(sent, time.Now())
					if err := c.conn.WriteString(frame(i, len(sent)-1)); err != nil {
						b.Error(err)
						return
					}
				}
				select {
				case r := <-c.acks:
					if !bytes.Contains(r, []byte(`"ack"`)) {
						b.Errorf("command: %s", r)
						return
					}
				case <-time.After(10 * time.Second):
					b.Error("no reply in 10s")
					return
				}
				l = append(l, time.Since(sent[len(l)]))
			}
			lat[i] = l
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "acks/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
}
