package telemetry

import "github.com/prometheus/client_golang/prometheus"

// Subsystem names one program's metrics berth_SUBSYSTEM_NAME (Namespace,
// then the program's name, then the metric's). Its methods make the
// collectors; the program registers them on its registry.
type Subsystem string

// Opts are the options of metric name with its help text.
func (s Subsystem) Opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: Namespace, Subsystem: string(s), Name: name, Help: help}
}

// Counter makes the counter name.
func (s Subsystem) Counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts(s.Opts(name, help)))
}

// CounterVec makes the counter name with the given labels.
func (s Subsystem) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts(s.Opts(name, help)), labels)
}

// Gauge makes the gauge name.
func (s Subsystem) Gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts(s.Opts(name, help)))
}

// GaugeVec makes the gauge name with the given labels.
func (s Subsystem) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts(s.Opts(name, help)), labels)
}

// GaugeFunc makes the gauge name whose value is f() at each scrape.
func (s Subsystem) GaugeFunc(name, help string, f func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts(s.Opts(name, help)), f)
}

// Histogram makes the histogram name with the given bucket upper bounds
// (in the metric's unit, seconds for a duration).
func (s Subsystem) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(histogramOpts(s.Opts(name, help), buckets))
}

// HistogramVec makes the histogram name with the given bucket upper bounds
// and labels.
func (s Subsystem) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(histogramOpts(s.Opts(name, help), buckets), labels)
}

func histogramOpts(o prometheus.Opts, buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name, Help: o.Help, Buckets: buckets}
}
