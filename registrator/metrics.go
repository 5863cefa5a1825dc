package main

import (
	"github.com/berth/berth/pkg/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg             *prometheus.Registry
	registrations   prometheus.Counter
	refused         prometheus.Counter
	deregistrations prometheus.Counter
	writes          prometheus.Counter
	passes          *prometheus.CounterVec
	reconnects      prometheus.Counter
	events          prometheus.Counter
	checkUpdates    prometheus.Counter
	services        prometheus.Gauge
}

func newMetrics() *metrics {
	sub := telemetry.Subsystem("registrator")
	c := sub.Counter
	m := &metrics{
		reg:             telemetry.NewRegistry(),
		registrations:   c("registrations_total", "service registrations written to the agent"),
		refused:         c("registrations_refused_total", "registrations the agent refused (bad definitions; retried only when they change)"),
		deregistrations: c("deregistrations_total", "service deregistrations written to the agent"),
		writes:          c("reconcile_writes_total", "registrations plus deregistrations written by reconcile passes"),
		passes:          sub.CounterVec("reconcile_passes_total", "reconcile passes, by what triggered them", "trigger"),
		reconnects:      c("event_stream_reconnects_total", "Docker event stream reconnections"),
		events:          c("docker_events_total", "container events received from Docker"),
		checkUpdates:    c("check_updates_total", "TTL check status updates (Docker health, liveness)"),
		services:        sub.Gauge("services", "services wanted for the running containers"),
	}
	m.reg.MustRegister(m.registrations, m.refused, m.deregistrations, m.writes, m.passes, m.reconnects, m.events, m.checkUpdates, m.services)
	return m
}
