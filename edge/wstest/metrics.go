package wstest

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a Prometheus /metrics endpoint, by metric name.
type Metrics map[string]*dto.MetricFamily

// Scrape gets url (a /metrics endpoint) and parses what it serves; it
// fails the test if it cannot.
func Scrape(t testing.TB, url string) Metrics {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Get(url)
	if err != nil {
		t.Fatalf("wstest: scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("wstest: scrape %s: %s\n%s", url, res.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("wstest: scrape %s: %v", url, err)
	}
	return families
}

// Value returns the sum over the samples of the metric name whose labels
// include labels (name, value pairs): of a counter's or gauge's value, or
// of a histogram's sample count. It is -1 when no sample matches.
func (m Metrics) Value(name string, labels ...string) float64 {
	f := m[name]
	if f == nil {
		return -1
	}
	sum, found := 0.0, false
sample:
	for _, s := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if labelValue(s, labels[i]) != labels[i+1] {
				continue sample
			}
		}
		found = true
		switch {
		case s.Counter != nil:
			sum += s.Counter.GetValue()
		case s.Gauge != nil:
			sum += s.Gauge.GetValue()
		case s.Histogram != nil:
			sum += float64(s.Histogram.GetSampleCount())
		case s.Untyped != nil:
			sum += s.Untyped.GetValue()
		}
	}
	if !found {
		return -1
	}
	return sum
}

func labelValue(s *dto.Metric, name string) string {
	for _, l := range s.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// String lists the metric names, for failure messages.
func (m Metrics) String() string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	return strings.Join(names, " ")
}
