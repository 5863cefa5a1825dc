package main

import (
	"github.com/berth/berth/pkg/query"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are envexec's Prometheus metrics (berth_envexec_*). The registry
// with the Go and process collectors is only made when -metrics-addr asks
// for it, to keep the start path short.
type metrics struct {
	sources       prometheus.Gauge
	sourcesReady  prometheus.Gauge
	variables     prometheus.Gauge
	skipped       prometheus.Gauge
	childRunning  prometheus.Gauge
	childStarts   prometheus.Counter
	restarts      prometheus.Counter
	changeSignals prometheus.Counter
	changes       prometheus.Counter
	lastChange    prometheus.Gauge
	consulErrors  *prometheus.CounterVec
}

func newMetrics() *metrics {
	sub := telemetry.Subsystem("envexec")
	g, c := sub.Gauge, sub.Counter
	return &metrics{
		sources:       g("sources", "prefixes and services watched"),
		sourcesReady:  g("sources_ready", "sources that have answered at least once"),
		variables:     g("variables", "variables taken from Consul in the current environment"),
		skipped:       g("skipped_keys", "keys skipped in the last rebuild (invalid name or value)"),
		childRunning:  g("child_running", "1 while the command runs"),
		childStarts:   c("child_starts_total", "times the command was started"),
		restarts:      c("restarts_total", "restarts caused by a change of the environment"),
		changeSignals: c("change_signals_total", "signals sent to the command for a change (-on-change signal)"),
		changes:       c("env_changes_total", "real changes of the environment"),
		lastChange:    g("last_change_timestamp_seconds", "when the environment last changed"),
		consulErrors:  sub.CounterVec("consul_errors_total", "failed Consul queries, by source", "source"),
	}
}

// registry returns a registry with envexec's metrics and q's
// (berth_envexec_consul_queries etc.).
func (m *metrics) registry(q *query.Client) *prometheus.Registry {
	reg := telemetry.NewRegistry()
	reg.MustRegister(q.Collector("envexec"))
	reg.MustRegister(m.sources, m.sourcesReady, m.variables, m.skipped, m.childRunning, m.childStarts,
		m.restarts, m.changeSignals, m.changes, m.lastChange, m.consulErrors)
	return reg
}
