package metrics

import (
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// RegisterNATS registers metrics of the NATS connection nc on reg, read
// when scraped and labelled connection=name (an edge process in
// development mode has two: "edge" and "handlers"):
//
//   - natter_nats_connected: 1 while connected, else 0;
//   - natter_nats_reconnects_total: reconnections (nats.go's Statistics);
//   - natter_nats_dropped_messages_total, when dropped is not nil: messages
//     nats.go dropped because a subscription of this process did not keep
//     up (a slow consumer), as dropped counts them.
func RegisterNATS(reg prometheus.Registerer, name string, nc *nats.Conn, dropped func() uint64) error {
	labels := prometheus.Labels{"connection": name}
	c := &natsCollector{
		nc:      nc,
		dropped: dropped,
		connected: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "nats", "connected"),
			"1 while the NATS connection is connected, else 0.", nil, labels),
		reconnects: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "nats", "reconnects_total"),
			"Reconnections of the NATS connection.", nil, labels),
		drops: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "nats", "dropped_messages_total"),
			"Messages dropped by the client because a subscription did not keep up (slow consumer).", nil, labels),
	}
	return reg.Register(c)
}

type natsCollector struct {
	nc                           *nats.Conn
	dropped                      func() uint64
	connected, reconnects, drops *prometheus.Desc
}

func (c *natsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connected
	ch <- c.reconnects
	if c.dropped != nil {
		ch <- c.drops
	}
}

func (c *natsCollector) Collect(ch chan<- prometheus.Metric) {
	connected := 0.0
	if c.nc.IsConnected() {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(c.reconnects, prometheus.CounterValue, float64(c.nc.Stats().Reconnects))
	if c.dropped != nil {
		ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(c.dropped()))
	}
}
