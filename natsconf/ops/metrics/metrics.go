// Package metrics holds natter's Prometheus metrics: the edge's (Edge),
// the handlers' (Handlers) and the NATS connections' (RegisterNATS). Each
// set is made by a constructor that registers it on a
// prometheus.Registerer; a nil set is valid and records nothing, so the
// code that reports events needs no check.
//
// Reporting an event does not allocate: label values are resolved once
// (per command type, per error code) and cached, and every label takes
// values from a bounded set (protocol command types, error and bye codes,
// handler and stream names), anything else being "other".
package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"natter/edge/protocol"
)

// Namespace prefixes every metric name.
const Namespace = "natter"

// Label values for what falls outside the known sets.
const (
	// Other stands for a command type, error code or bye code that
	// protocol does not define.
	Other = "other"
	// OK is the outcome of a command answered without an error.
	OK = "ok"
	// NoBye is the code of a connection closed without a bye (the client
	// went away, a write failed).
	NoBye = "none"
)

// LatencyBuckets are the bounds, in seconds, of the latency histograms:
// half a millisecond to ten seconds.
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewRegistry returns a registry with the Go runtime's and the process's
// collectors, for a process to add natter's sets to and serve.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// knownCodes are the error codes protocol defines.
var knownCodes = map[protocol.Code]bool{
	protocol.CodeBadFrame: true, protocol.CodeUnknownType: true, protocol.CodeBadRoom: true,
	protocol.CodeBadUser: true, protocol.CodeTooLarge: true, protocol.CodeNotMember: true,
	protocol.CodeForbidden: true, protocol.CodeRateLimited: true, protocol.CodeOffline: true,
	protocol.CodeUnavailable: true, protocol.CodeInternal: true, protocol.CodeTooManyRooms: true,
}

// codeLabel is the label value of an error code: the code when protocol
// defines it, else Other.
func codeLabel(code protocol.Code) string {
	if knownCodes[code] {
		return string(code)
	}
	return Other
}

// typeLabel is the label value of a command type: the type when protocol
// knows it, else Other.
func typeLabel(t string) string {
	if protocol.KnownCommand(t) {
		return t
	}
	return Other
}

// cache maps a key to a value made once per key, for label values looked
// up on every event: reads are a map lookup on an immutable map (no lock,
// no allocation), a miss copies the map under a lock. Keys must come from
// a bounded set.
type cache[V any] struct {
	m    atomic.Pointer[map[string]V]
	mu   sync.Mutex
	make func(key string) V
}

func (c *cache[V]) get(key string) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[key]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[key]; ok {
			return v
		}
	}
	next := make(map[string]V, 8)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	v := c.make(key)
	next[key] = v
	c.m.Store(&next)
	return v
}

// seconds is d in seconds, as histograms take it.
func seconds(d time.Duration) float64 { return d.Seconds() }
