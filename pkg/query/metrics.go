package query

import (
	"github.com/berth/berth/pkg/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns the Client's metrics for a program's registry, named
// berth_SUBSYSTEM_consul_*:
//
//   - consul_queries{state}: the queries watched now, by state: "ok"
//     (answered, last call fine), "waiting" (no answer yet, no error),
//     "failing" (last call failed);
//   - consul_query_errors_total: failed calls;
//   - consul_reachable: 1 while Run's probe sees the agent reach its
//     servers, 0 while it does not.
func (c *Client) Collector(subsystem string) prometheus.Collector {
	name := func(n string) string { return prometheus.BuildFQName(telemetry.Namespace, subsystem, n) }
	return &collector{c: c,
		queries:   prometheus.NewDesc(name("consul_queries"), "Consul queries watched, by state (ok, waiting: no answer yet, failing)", []string{"state"}, nil),
		errors:    prometheus.NewDesc(name("consul_query_errors_total"), "failed Consul query calls", nil, nil),
		reachable: prometheus.NewDesc(name("consul_reachable"), "1 while the local agent reaches its servers (probed every second), else 0", nil, nil),
	}
}

type collector struct {
	c                          *Client
	queries, errors, reachable *prometheus.Desc
}

func (m *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.queries
	ch <- m.errors
	ch <- m.reachable
}

func (m *collector) Collect(ch chan<- prometheus.Metric) {
	c := m.c
	c.mu.Lock()
	var ok, waiting, failing float64
	for s := range c.states {
		switch {
		case s.failing:
			failing++
		case !s.answered:
			waiting++
		default:
			ok++
		}
	}
	errs := float64(c.errs)
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.queries, prometheus.GaugeValue, ok, "ok")
	ch <- prometheus.MustNewConstMetric(m.queries, prometheus.GaugeValue, waiting, "waiting")
	ch <- prometheus.MustNewConstMetric(m.queries, prometheus.GaugeValue, failing, "failing")
	ch <- prometheus.MustNewConstMetric(m.errors, prometheus.CounterValue, errs)
	up := 1.0
	if down, _, _ := c.Down(); down {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(m.reachable, prometheus.GaugeValue, up)
}
