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
	acks chan []byte
}

func (e benchEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
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
	benchAcks(b, clients, func(_, j int) string {
		return fmt.Sprintf(`{"type":"send","room":"bench","body":{"n":%d}}`, j)
	})
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
	benchAcks(b, clients, func(i, j int) string {
		return fmt.Sprintf(`{"type":"dm","to":"target%d","body":{"n":%d}}`, i, j)
	})
}

// benchSenders is how many connections send at once in the benchmarks.
const benchSenders = 8

// benchAcks spreads b.N commands over clients, each sending one at a time
// and waiting for its ack, and reports acks per second and ack latency
// percentiles.
func benchAcks(b *testing.B, clients []*benchClient, frame func(client, n int) string) {
	lat := make([][]time.Duration, len(clients))
	var wg sync.WaitGroup
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
			for j := range n {
				t0 := time.Now()
				r := c.call(b, frame(i, j))
				l = append(l, time.Since(t0))
				if !bytes.Contains(r, []byte(`"ack"`)) {
					b.Errorf("command: %s", r)
					return
				}
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
