package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"natter/edge/protocol"
	"natter/natsconf/ops/metrics"
)

// TestNil: a nil set records nothing and does not panic.
func TestNil(t *testing.T) {
	var e *metrics.Edge
	e.ConnOpened()
	e.ConnClosed(protocol.ByeSlow)
	e.Bye(protocol.ByeSlow)
	e.Command("send", "", time.Now())
	e.Batch(3)
	e.Written(10)
	e.RateLimited()
	var h *metrics.Handlers
	h.Published("IM_ROOMS", time.Millisecond)
	ep := h.Endpoint("rooms", "send")
	ep.Request(protocol.CodeInternal)
	ep.Observe(time.Millisecond)
}

// TestNoAllocations: what the hot paths report allocates nothing once the
// label values were seen.
func TestNoAllocations(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := metrics.NewEdge(reg)
	h := metrics.NewHandlers(reg).Endpoint("rooms", "send")
	now := time.Now()
	typ := string([]byte("send")) // not a constant, as a decoded frame's
	for _, f := range []struct {
		name string
		fn   func()
	}{
		{"Command ok", func() { e.Command(typ, "", now) }},
		{"Command error", func() { e.Command(typ, protocol.CodeNotMember, now) }},
		{"Command unknown type", func() { e.Command("frobnicate", protocol.Code("weird"), now) }},
		{"Batch", func() { e.Batch(4) }},
		{"Written", func() { e.Written(1500) }},
		{"RateLimited", func() { e.RateLimited() }},
		{"Request", func() { h.Request(""); h.Request(protocol.CodeBadRoom) }},
		{"Observe", func() { h.Observe(time.Millisecond) }},
		{"ReplyCode", func() { _ = metrics.ReplyCode([]byte(`{"type":"error","id":"x","code":"not_member","message":"m"}`)) }},
	} {
		f.fn() // first sight of the label values
		if n := testing.AllocsPerRun(100, f.fn); n != 0 {
			t.Errorf("%s: %v allocations per call", f.name, n)
		}
	}
}

// TestBoundedLabels: command types, error and bye codes outside the
// protocol's become "other".
func TestBoundedLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := metrics.NewEdge(reg)
	for _, typ := range []string{"a", "b", "c", "join"} {
		e.Command(typ, protocol.Code("made-up-"+typ), time.Time{})
	}
	e.ConnOpened()
	e.ConnClosed(protocol.ByeCode("strange"))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got[f.GetName()+labels(m)] = true
		}
	}
	for _, want := range []string{
		"natter_edge_commands_total{outcome=other,type=other}",
		"natter_edge_commands_total{outcome=other,type=join}",
		"natter_edge_connections_closed_total{code=other}",
	} {
		if !got[want] {
			t.Errorf("no %s in %v", want, got)
		}
	}
	for k := range got {
		if len(k) > 0 && (contains(k, "made-up") || contains(k, "type=a") || contains(k, "strange")) {
			t.Errorf("unbounded label value: %s", k)
		}
	}
}

func TestReplyCode(t *testing.T) {
	for frame, want := range map[string]protocol.Code{
		`{"type":"joined","id":"1","room":"r","seq":0}`:                         "",
		`{"type":"error","id":"1","code":"bad_room","message":"m"}`:             protocol.CodeBadRoom,
		`{"type":"error","code":"unavailable","message":"m"}`:                   protocol.CodeUnavailable,
		`{"type":"error","id":"\"code\":\"x","code":"forbidden","message":"m"}`: protocol.CodeForbidden,
		`{"type":"error","id":"1","code":"invented","message":"m"}`:             metrics.Other,
		`{"type":"error"}`: protocol.CodeInternal,
		``:                 "",
	} {
		if got := metrics.ReplyCode([]byte(frame)); got != want {
			t.Errorf("ReplyCode(%s) = %q, want %q", frame, got, want)
		}
	}
}

func labels(m *dto.Metric) string {
	s := ""
	for i, l := range m.GetLabel() {
		if i == 0 {
			s = "{"
		} else {
			s += ","
		}
		s += l.GetName() + "=" + l.GetValue()
	}
	if s != "" {
		s += "}"
	}
	return s
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
