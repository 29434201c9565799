package runtime_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"natter/edge/protocol"
	"natter/handlers/runtime"
	"natter/natsconf"
	"natter/natsconf/ops/metrics"
)

// TestStats: the statistics service discovery reports ($SRV.STATS, what
// `nats micro stats` shows) count requests, errors and their processing
// time, although commands run after the subscription's callback returned;
// and the Prometheus metrics count them per command.
func TestStats(t *testing.T) {
	nc := startNATS(t)
	reg := prometheus.NewRegistry()
	svc := newService(t, nc, runtime.Config{Name: "stats", Metrics: metrics.NewHandlers(reg)})
	const work = 20 * time.Millisecond
	handle(t, svc, "good", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		time.Sleep(work)
		return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID}}, nil
	})
	handle(t, svc, "bad", func(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
		time.Sleep(work)
		if req.Command.Room == "" {
			return runtime.Response{}, protocol.Errorf(protocol.CodeBadRoom, "no room")
		}
		return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: req.Command.ID}}, nil
	})
	for range 3 {
		request(t, nc, "good", identity(), `{"type":"good"}`)
	}
	checkError(t, request(t, nc, "bad", identity(), `{"type":"bad","id":"b1"}`), protocol.CodeBadRoom, "b1", "")
	request(t, nc, "bad", identity(), `{"type":"bad","room":"lobby"}`)
	// A batch of two, one failing: one request, and an error.
	hdr := identity()
	hdr.Set(natsconf.HeaderBatch, "1")
	var body []byte
	body = natsconf.AppendBatchItem(body, []byte(`{"type":"bad","id":"b2"}`))
	body = natsconf.AppendBatchItem(body, []byte(`{"type":"bad","id":"b3","room":"lobby"}`))
	if _, err := nc.RequestMsg(&nats.Msg{Subject: commandSubject(t, "bad"), Header: hdr, Data: body}, wait); err != nil {
		t.Fatal(err)
	}

	// The numbers are recorded once the reply is out: wait for them.
	deadline := time.Now().Add(wait)
	var stats micro.Stats
	for {
		stats = svc.Stats()
		if n := endpointStats(stats, "bad"); n != nil && n.NumRequests == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never counted the requests: %+v", stats)
		}
		time.Sleep(5 * time.Millisecond)
	}
	check := func(source string, stats micro.Stats) {
		t.Helper()
		if stats.Name != "natter-stats" || stats.ID != svc.ID() || stats.Type != micro.StatsResponseType {
			t.Errorf("%s: service %q id %q type %q", source, stats.Name, stats.ID, stats.Type)
		}
		good, bad := endpointStats(stats, "good"), endpointStats(stats, "bad")
		if good == nil || bad == nil {
			t.Fatalf("%s: endpoints %+v", source, stats.Endpoints)
		}
		if good.NumRequests != 3 || good.NumErrors != 0 || good.LastError != "" {
			t.Errorf("%s: good: %d requests, %d errors (%q); want 3, 0", source, good.NumRequests, good.NumErrors, good.LastError)
		}
		if bad.NumRequests != 3 || bad.NumErrors != 2 || bad.LastError != "bad_room:no room" {
			t.Errorf("%s: bad: %d requests, %d errors (%q); want 3, 2, bad_room:no room", source, bad.NumRequests, bad.NumErrors, bad.LastError)
		}
		for _, e := range []*micro.EndpointStats{good, bad} {
			if e.ProcessingTime < 3*work || e.AverageProcessingTime < work {
				t.Errorf("%s: %s: processing time %v, average %v; want at least %v and %v (the handler sleeps)", source, e.Name, e.ProcessingTime, e.AverageProcessingTime, 3*work, work)
			}
			if e.QueueGroup != "natter-stats" || e.Subject != commandSubject(t, e.Name) {
				t.Errorf("%s: %s: subject %q queue %q", source, e.Name, e.Subject, e.QueueGroup)
			}
		}
	}
	check("Stats()", stats)

	// What `nats micro stats natter-stats` asks.
	subject, err := micro.ControlSubject(micro.StatsVerb, "natter-stats", "")
	if err != nil {
		t.Fatal(err)
	}
	reply, err := nc.Request(subject, nil, wait)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var remote micro.Stats
	if err := json.Unmarshal(reply.Data, &remote); err != nil {
		t.Fatalf("%s: %q: %v", subject, reply.Data, err)
	}
	check(subject, remote)

	// `nats micro info` and `nats micro ls`.
	subject, _ = micro.ControlSubject(micro.InfoVerb, "natter-stats", svc.ID())
	if reply, err = nc.Request(subject, nil, wait); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var info micro.Info
	if err := json.Unmarshal(reply.Data, &info); err != nil || info.Type != micro.InfoResponseType || len(info.Endpoints) != 2 || info.Version != "1.0.0" {
		t.Errorf("%s: %q (%v)", subject, reply.Data, err)
	}

	// Prometheus: per command.
	families := gather(t, reg)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"natter_handler_requests_total", map[string]string{"handler": "stats", "type": "good"}, 3},
		{"natter_handler_requests_total", map[string]string{"handler": "stats", "type": "bad"}, 4},
		{"natter_handler_errors_total", map[string]string{"handler": "stats", "type": "bad", "code": "bad_room"}, 2},
		{"natter_handler_duration_seconds", map[string]string{"handler": "stats", "type": "bad"}, 3}, // requests: a batch is one
	} {
		if got := value(families, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func endpointStats(s micro.Stats, name string) *micro.EndpointStats {
	for _, e := range s.Endpoints {
		if e.Name == name {
			return e
		}
	}
	return nil
}

func gather(t *testing.T, reg *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// value returns the value of the metric name with labels: a counter's or
// gauge's value, a histogram's sample count; -1 when there is none.
func value(families []*dto.MetricFamily, name string, labels map[string]string) float64 {
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}
