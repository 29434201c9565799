package server_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
)

// rawUpgrade opens a WebSocket to the edge with a hand-written handshake
// and reads up to the welcome frame: the client side costs one socket, so
// the memory measured is the edge's.
func rawUpgrade(tb testing.TB, addr, user string) net.Conn {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /ws?user=%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", user, addr)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("upgrade: %v %v", resp, err)
	}
	hdr := make([]byte, 2)
	if _, err := br.Read(hdr); err != nil {
		tb.Fatal(err)
	}
	body := make([]byte, hdr[1]&0x7f)
	if _, err := br.Read(body); err != nil || !strings.Contains(string(body), "welcome") {
		tb.Fatalf("welcome: %q %v", body, err)
	}
	return conn
}

// BenchmarkIdleConnMemory measures what an idle connection costs the edge
// (heap and goroutine stacks, with its NATS subscriptions on its connection
// and user subjects and one room), in bytes per connection.
//
//	go test -run '^$' -bench IdleConnMemory -benchtime 2000x ./edge/server/
func BenchmarkIdleConnMemory(b *testing.B) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && uint64(2*b.N+200) > lim.Cur {
		b.Skipf("%d connections need %d file descriptors; ulimit -n is %d", b.N, 2*b.N+200, lim.Cur)
	}
	srv := wstest.StartEdge(b, server.Config{Gateway: gateway.Config{Rate: -1, MaxConnsPerIP: -1}})
	addr := srv.Addr().String()
	// Warm up pools and the embedded server with a few connections.
	for i := range 10 {
		defer rawUpgrade(b, addr, fmt.Sprintf("warm%d", i)).Close()
	}
	before := memInUse()
	conns := make([]net.Conn, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		conns = append(conns, rawUpgrade(b, addr, fmt.Sprintf("idle%d", i)))
	}
	b.StopTimer()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Gateway().Connections() < b.N+10 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	after := memInUse()
	b.ReportMetric(float64(after.heap+after.stack-before.heap-before.stack)/float64(b.N), "bytes/conn")
	b.ReportMetric(float64(after.stack-before.stack)/float64(b.N), "stack_bytes/conn")
	for _, c := range conns {
		_ = c.Close()
	}
}

type memUse struct{ heap, stack uint64 }

func memInUse() memUse {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memUse{heap: m.HeapInuse, stack: m.StackInuse}
}
