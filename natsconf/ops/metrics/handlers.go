package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"natter/edge/protocol"
)

// Handlers is the metrics of the handler runtime (runtime.Config.Metrics),
// shared by every handler of a process. A nil *Handlers records nothing.
type Handlers struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	publish  *prometheus.HistogramVec
	streams  cache[prometheus.Observer]
}

// NewHandlers makes the handlers' metrics and registers them on reg.
func NewHandlers(reg prometheus.Registerer) *Handlers {
	const sub = "handler"
	m := &Handlers{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "requests_total",
			Help: "Commands (each command of a batch) and events a handler received, by handler and type (command type or event name)."},
			[]string{"handler", "type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "errors_total",
			Help: "Commands and events a handler answered with an error, by handler, type and error code."},
			[]string{"handler", "type", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: "duration_seconds",
			Help:    "Time from receiving a NATS request (one command, a batch of one connection's commands, or an event) to publishing its reply, by handler and type.",
			Buckets: LatencyBuckets}, []string{"handler", "type"}),
		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "jetstream", Name: "publish_duration_seconds",
			Help:    "Time from a JetStream publish to its acknowledgement, by stream.",
			Buckets: LatencyBuckets}, []string{"stream"}),
	}
	m.streams.make = func(stream string) prometheus.Observer { return m.publish.WithLabelValues(stream) }
	reg.MustRegister(m.requests, m.errors, m.duration, m.publish)
	return m
}

// Endpoint returns the resolved metrics of one endpoint of a handler: typ
// is its command type or event name. Both come from code, not from
// clients, so they are a bounded set.
func (m *Handlers) Endpoint(handler, typ string) *HandlerEndpoint {
	if m == nil {
		return nil
	}
	e := &HandlerEndpoint{
		requests: m.requests.WithLabelValues(handler, typ),
		duration: m.duration.WithLabelValues(handler, typ),
	}
	e.errors.make = func(code string) prometheus.Counter { return m.errors.WithLabelValues(handler, typ, code) }
	return e
}

// Published records a JetStream publish to stream, acknowledged after d.
// Stream names come from natsconf (a bounded set).
func (m *Handlers) Published(stream string, d time.Duration) {
	if m == nil {
		return
	}
	m.streams.get(stream).Observe(seconds(d))
}

// HandlerEndpoint is the metrics of one endpoint; a nil one records
// nothing.
type HandlerEndpoint struct {
	requests prometheus.Counter
	duration prometheus.Observer
	errors   cache[prometheus.Counter] // by error code label
}

// Request counts one command or event, answered with code ("" when it
// succeeded).
func (e *HandlerEndpoint) Request(code protocol.Code) {
	if e == nil {
		return
	}
	e.requests.Inc()
	if code != "" {
		e.errors.get(codeLabel(code)).Inc()
	}
}

// Observe records the time one NATS request took.
func (e *HandlerEndpoint) Observe(d time.Duration) {
	if e == nil {
		return
	}
	e.duration.Observe(seconds(d))
}
