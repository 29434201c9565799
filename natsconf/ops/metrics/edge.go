package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"natter/edge/protocol"
)

// Edge is the WebSocket gateway's metrics (gateway.Config.Metrics). A nil
// *Edge records nothing.
type Edge struct {
	open        prometheus.Gauge
	opened      prometheus.Counter
	closed      map[string]prometheus.Counter // by bye code label
	commands    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	deliveries  prometheus.Counter
	written     prometheus.Counter
	batch       prometheus.Histogram
	slow        prometheus.Counter
	rateLimited prometheus.Counter
	receiving   prometheus.Gauge

	types cache[*edgeCommand]
}

// edgeCommand is the resolved metrics of one command type.
type edgeCommand struct {
	ok       prometheus.Counter
	duration prometheus.Observer
	outcomes cache[prometheus.Counter] // by error code label
}

// byeCodes are the bye codes protocol defines.
var byeCodes = []protocol.ByeCode{
	protocol.ByeShutdown, protocol.ByeSlow, protocol.ByeBadClient,
	protocol.ByeRateLimited, protocol.ByeKicked, protocol.ByeIdle, protocol.ByeExpired, protocol.ByeOverloaded,
}

// NewEdge makes the edge's metrics and registers them on reg.
func NewEdge(reg prometheus.Registerer) *Edge {
	const sub = "edge"
	m := &Edge{
		open: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: sub, Name: "connections_open",
			Help: "WebSocket connections open now."}),
		opened: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "connections_opened_total",
			Help: "WebSocket connections opened (upgraded and welcomed)."}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "commands_total",
			Help: "Client commands answered, by type (protocol types, else other) and outcome (ok or the error code)."}, []string{"type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: "command_duration_seconds",
			Help: "Time from reading a client command to queueing its reply, by type.", Buckets: LatencyBuckets}, []string{"type"}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "deliveries_total",
			Help: "Frames written to clients by their outboxes (replies, messages, presence, ...)."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "written_bytes_total",
			Help: "Bytes written to client sockets, WebSocket framing included."}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: "write_batch_frames",
			Help:    "Frames an outbox writer found queued and wrote in one batch: the outbox depth at each write.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}}),
		slow: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "slow_consumers_total",
			Help: "Connections closed with bye slow: more than the write queue waited for them."}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "rate_limited_total",
			Help: "Client commands over the connection's rate limit."}),
		receiving: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: sub, Name: "receiving_bytes",
			Help: "Bytes of client messages held while they arrive, all connections: the part of the receive budget in use."}),
	}
	closed := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "connections_closed_total",
		Help: "WebSocket connections closed, by the code of the bye they got (none: closed without a bye)."}, []string{"code"})
	m.closed = map[string]prometheus.Counter{NoBye: closed.WithLabelValues(NoBye), Other: closed.WithLabelValues(Other)}
	for _, c := range byeCodes {
		m.closed[string(c)] = closed.WithLabelValues(string(c))
	}
	m.types.make = func(t string) *edgeCommand {
		c := &edgeCommand{ok: m.commands.WithLabelValues(t, OK), duration: m.duration.WithLabelValues(t)}
		c.outcomes.make = func(code string) prometheus.Counter { return m.commands.WithLabelValues(t, code) }
		return c
	}
	reg.MustRegister(m.open, m.opened, closed, m.commands, m.duration, m.deliveries, m.written, m.batch, m.slow, m.rateLimited, m.receiving)
	return m
}

// ConnOpened counts a connection opened.
func (m *Edge) ConnOpened() {
	if m == nil {
		return
	}
	m.opened.Inc()
	m.open.Inc()
}

// ConnClosed counts a connection closed after a bye with code ("" when it
// got none).
func (m *Edge) ConnClosed(code protocol.ByeCode) {
	if m == nil {
		return
	}
	m.open.Dec()
	label := string(code)
	if code == "" {
		label = NoBye
	}
	c, ok := m.closed[label]
	if !ok {
		c = m.closed[Other]
	}
	c.Inc()
}

// Bye counts a bye sent to a client (the connection closes soon after).
func (m *Edge) Bye(code protocol.ByeCode) {
	if m == nil {
		return
	}
	if code == protocol.ByeSlow {
		m.slow.Inc()
	}
}

// Receiving adds delta to the bytes of client messages held while they
// arrive (negative when messages end).
func (m *Edge) Receiving(delta int64) {
	if m == nil {
		return
	}
	m.receiving.Add(float64(delta))
}

// Command counts a command of type cmdType answered with code ("" when it
// succeeded), read at read.
func (m *Edge) Command(cmdType string, code protocol.Code, read time.Time) {
	if m == nil {
		return
	}
	c := m.types.get(typeLabel(cmdType))
	if !read.IsZero() {
		c.duration.Observe(seconds(time.Since(read)))
	}
	if code == "" {
		c.ok.Inc()
		return
	}
	c.outcomes.get(codeLabel(code)).Inc()
}

// Batch counts a batch of frames an outbox writer wrote.
func (m *Edge) Batch(frames int) {
	if m == nil {
		return
	}
	m.deliveries.Add(float64(frames))
	m.batch.Observe(float64(frames))
}

// Written counts bytes written to a client socket.
func (m *Edge) Written(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.written.Add(float64(n))
}

// RateLimited counts a command over its connection's rate limit.
func (m *Edge) RateLimited() {
	if m == nil {
		return
	}
	m.rateLimited.Inc()
}

// ReplyCode returns the error code of a reply frame, or "" when it is not
// an "error" frame. It reads the frame as protocol.EncodeError writes it
// ({"type":"error",...,"code":"..."}) without decoding it.
func ReplyCode(frame []byte) protocol.Code {
	const prefix = `{"type":"error"`
	if len(frame) < len(prefix) || string(frame[:len(prefix)]) != prefix {
		return ""
	}
	const key = `,"code":"`
	rest := frame[len(prefix):]
	for i := 0; i+len(key) <= len(rest); i++ {
		if string(rest[i:i+len(key)]) != key {
			continue
		}
		code := rest[i+len(key):]
		for j, b := range code {
			if b == '"' {
				return protocol.Code(knownCode(code[:j]))
			}
		}
		break
	}
	return protocol.CodeInternal
}

// knownCode returns the protocol code spelled b, or Other, without
// allocating.
func knownCode(b []byte) string {
	for c := range knownCodes {
		if string(c) == string(b) {
			return string(c)
		}
	}
	return Other
}
