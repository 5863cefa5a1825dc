package main

import (
	"github.com/berth/berth/pkg/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg          *prometheus.Registry
	held         prometheus.Gauge
	acquisitions prometheus.Counter
	lost         prometheus.Counter
	waitSeconds  prometheus.Histogram
	// lease
	leaseRemaining prometheus.Gauge
	confirmations  prometheus.Counter
	confirmErrors  prometheus.Counter
}

func newMetrics() *metrics {
	reg := telemetry.NewRegistry()
	sub := telemetry.Subsystem("lockrun")
	m := &metrics{
		reg:          reg,
		held:         sub.Gauge("held", "1 while the lock is held"),
		acquisitions: sub.Counter("acquisitions_total", "locks acquired"),
		lost:         sub.Counter("lock_lost_total", "locks lost while the child ran"),
		waitSeconds:  sub.Histogram("wait_seconds", "time spent waiting for the lock", prometheus.ExponentialBuckets(0.001, 4, 10)),
	}
	m.leaseRemaining = sub.Gauge("lease_remaining_seconds", "while holding: time left before the child is stopped unless Consul's leader confirms the lock again")
	m.confirmations = sub.Counter("lease_confirmations_total", "consistent reads that confirmed the lock while holding")
	m.confirmErrors = sub.Counter("lease_confirmation_errors_total", "confirmations that got no answer")
	reg.MustRegister(m.held, m.acquisitions, m.lost, m.waitSeconds, m.leaseRemaining, m.confirmations, m.confirmErrors)
	return m
}
