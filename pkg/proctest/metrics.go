package proctest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a program's /metrics: the metric families by
// name, as the Prometheus text format parser reads them.
type Metrics map[string]*dto.MetricFamily

// Scrape reads http://addr/metrics (addr is host:port) and parses it. An
// address not answering, a status other than 200 or a body that is not the
// Prometheus text format is an error.
func Scrape(addr string) (Metrics, error) {
	status, body, err := Fetch(addr, "/metrics")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: status %d", addr, status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse %s/metrics: %w", addr, err)
	}
	return fams, nil
}

// Value returns the value of the first sample of the metric name whose
// labels include every pair in labels (name, value, name, value, ...), and
// whether there is one. A counter, gauge or untyped sample gives its value;
// for a histogram or summary family F, name F_count gives the number of
// observations and F_sum their sum, as the text format writes them.
func (m Metrics) Value(name string, labels ...string) (float64, bool) {
	if len(labels)%2 != 0 {
		panic("proctest: Metrics.Value: labels must be name, value pairs")
	}
	fam, field := m[name], ""
	if fam == nil {
		for _, suffix := range []string{"_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && m[base] != nil {
				fam, field = m[base], suffix
			}
		}
	}
	if fam == nil {
		return 0, false
	}
	for _, s := range fam.GetMetric() {
		if !hasLabels(s, labels) {
			continue
		}
		switch {
		case field == "_count" && s.Histogram != nil:
			return float64(s.Histogram.GetSampleCount()), true
		case field == "_sum" && s.Histogram != nil:
			return s.Histogram.GetSampleSum(), true
		case field == "_count" && s.Summary != nil:
			return float64(s.Summary.GetSampleCount()), true
		case field == "_sum" && s.Summary != nil:
			return s.Summary.GetSampleSum(), true
		case field != "":
			return 0, false
		case s.Counter != nil:
			return s.Counter.GetValue(), true
		case s.Gauge != nil:
			return s.Gauge.GetValue(), true
		case s.Untyped != nil:
			return s.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func hasLabels(s *dto.Metric, want []string) bool {
	for i := 0; i < len(want); i += 2 {
		found := false
		for _, l := range s.GetLabel() {
			if l.GetName() == want[i] && l.GetValue() == want[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Metric scrapes addr and returns the value of name with labels (see
// Metrics.Value), or -1 when addr does not answer or has no such sample: a
// value a condition polled with package eventually can wait on.
func Metric(addr, name string, labels ...string) float64 {
	m, err := Scrape(addr)
	if err != nil {
		return -1
	}
	v, ok := m.Value(name, labels...)
	if !ok {
		return -1
	}
	return v
}

// WantMetrics scrapes addr once and fails t (without stopping it) for every
// sample of want, a metric name (with label pairs, see Metrics.Value) and
// its value, that is missing or has another value. An address that does not
// answer stops t.
func WantMetrics(t testing.TB, addr string, want ...Sample) {
	t.Helper()
	m, err := Scrape(addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if v, ok := m.Value(w.Name, w.Labels...); !ok || v != w.Value {
			t.Errorf("/metrics of %s: %s = %v (present: %v), want %v", addr, w, v, ok, w.Value)
		}
	}
}

// Sample is a metric name with label pairs and the value expected of it.
type Sample struct {
	Name   string
	Labels []string
	Value  float64
}

func (s Sample) String() string {
	if len(s.Labels) == 0 {
		return s.Name
	}
	var b strings.Builder
	for i := 0; i+1 < len(s.Labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", s.Labels[i], s.Labels[i+1])
	}
	return s.Name + "{" + b.String() + "}"
}

// Get asks http://addr+path (addr is host:port, path starts with "/") and
// returns the status and body; an address that does not answer fails t.
func Get(t testing.TB, addr, path string) (int, string) {
	t.Helper()
	status, body, err := Fetch(addr, path)
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

// Fetch asks http://addr+path as Get does and returns the status and body,
// or the error, for conditions that poll an address not answering yet.
func Fetch(addr, path string) (int, string, error) {
	url := "http://" + addr + path
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", url, err)
	}
	return resp.StatusCode, string(b), nil
}
