package main

import (
	"strconv"
	"sync/atomic"

	"github.com/berth/berth/pkg/telemetry"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Zones a query is answered from (the "zone" label).
const (
	zoneConsul   = iota // the Consul domain, answered from memory
	zoneAgent           // passed to the Consul agent's DNS
	zoneUpstream        // forwarded upstream
	zoneNone            // refused, malformed
	zoneHosts           // from the hosts files
	numZones
)

var zoneNames = [numZones]string{"consul", "consul_agent", "upstream", "none", "hosts"}

var typeNames = []string{"A", "AAAA", "SRV", "ANY", "TXT", "PTR", "CNAME", "MX", "NS", "SOA", "HTTPS", "other"}

func typeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeSRV:
		return 2
	case dns.TypeANY:
		return 3
	case dns.TypeTXT:
		return 4
	case dns.TypePTR:
		return 5
	case dns.TypeCNAME:
		return 6
	case dns.TypeMX:
		return 7
	case dns.TypeNS:
		return 8
	case dns.TypeSOA:
		return 9
	case dns.TypeHTTPS:
		return 10
	}
	return 11
}

var rcodeNames = []string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other"}

func rcodeIndex(rc int) int {
	if rc >= 0 && rc <= 5 {
		return rc
	}
	return 6
}

// Cache kinds (the "cache" label).
const (
	cacheConsul = iota
	cacheUpstream
	numCaches
)

var cacheNames = [numCaches]string{"consul", "upstream"}

// metrics keeps the per-query counters in plain atomics (the hot path must
// not hash label values) and exposes them through a collector.
type metrics struct {
	reg     *prometheus.Registry
	queries [numZones][12][7]atomic.Uint64
	hits    [numCaches]atomic.Uint64
	misses  [numCaches]atomic.Uint64
	stale   [numCaches]atomic.Uint64
	dropped atomic.Uint64
	loops   atomic.Uint64
	// readers[i] counts the datagrams UDP reader i read. Set before Serve.
	readers []readerCounter

	upstreamLatency  *prometheus.HistogramVec
	upstreamFailures *prometheus.CounterVec
	watchesOpen      prometheus.Gauge
	watchErrors      prometheus.Counter
	coalesced        prometheus.Counter
	cacheEntries     prometheus.GaugeFunc
}

func newMetrics(cacheLen func() float64) *metrics {
	m := &metrics{reg: telemetry.NewRegistry()}
	sub := telemetry.Subsystem("dnsforward")
	m.upstreamLatency = sub.HistogramVec("upstream_duration_seconds", "Time for an upstream (or Consul agent DNS) exchange that got an answer.",
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "upstream")
	m.upstreamFailures = sub.CounterVec("upstream_failures_total", "Upstream exchanges that failed, by upstream and reason (timeout, error, servfail, refused).", "upstream", "reason")
	m.watchesOpen = sub.Gauge("watches_open", "Consul watches open (one per service name or node name asked for).")
	m.watchErrors = sub.Counter("watch_errors_total", "Failed Consul blocking queries (retried with backoff).")
	m.coalesced = sub.Counter("upstream_coalesced_total", "Queries that joined an identical in-flight upstream query instead of sending their own.")
	m.cacheEntries = sub.GaugeFunc("cache_entries", "Entries in the upstream answer cache.", cacheLen)
	m.reg.MustRegister(m.upstreamLatency, m.upstreamFailures, m.watchesOpen, m.watchErrors, m.coalesced, m.cacheEntries, m)
	return m
}

// readerCounter is one reader's datagram count, alone on its cache line:
// the readers run on different CPUs.
type readerCounter struct {
	n   atomic.Uint64
	cpu string // label: the CPU the reader is pinned to, "" when not pinned
	_   [40]byte
}

// reader is the datagram counter of UDP reader i.
func (m *metrics) reader(i int) *atomic.Uint64 { return &m.readers[i].n }

func (m *metrics) query(zone int, qtype uint16, rcode int) {
	m.queries[zone][typeIndex(qtype)][rcodeIndex(rcode)].Add(1)
}

var (
	descQueries = prometheus.NewDesc("berth_dnsforward_queries_total", "Queries answered, by zone (consul, consul_agent, upstream, none), query type and rcode.", []string{"zone", "type", "rcode"}, nil)
	descHits    = prometheus.NewDesc("berth_dnsforward_cache_hits_total", "Answers served from memory, by cache (consul, upstream).", []string{"cache"}, nil)
	descMisses  = prometheus.NewDesc("berth_dnsforward_cache_misses_total", "Lookups not in memory, by cache.", []string{"cache"}, nil)
	descStale   = prometheus.NewDesc("berth_dnsforward_stale_answers_total", "Answers served stale (Consul unreachable, or upstreams down with -serve-stale), by cache.", []string{"cache"}, nil)
	descDropped = prometheus.NewDesc("berth_dnsforward_dropped_packets_total", "Packets dropped without an answer (not a query, too short).", nil, nil)
	descReaders = prometheus.NewDesc("berth_dnsforward_udp_datagrams_total", "Datagrams read, by UDP reader and the CPU it is pinned to (empty: not pinned).", []string{"reader", "cpu"}, nil)
	descLoops   = prometheus.NewDesc("berth_dnsforward_agent_loops_total", "Questions we passed to the agent's DNS that its recursors sent back to us (refused, which breaks the loop).", nil, nil)
)

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueries
	ch <- descHits
	ch <- descMisses
	ch <- descStale
	ch <- descDropped
	ch <- descLoops
	ch <- descReaders
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for z := range m.queries {
		for t := range m.queries[z] {
			for r := range m.queries[z][t] {
				if v := m.queries[z][t][r].Load(); v > 0 {
					ch <- prometheus.MustNewConstMetric(descQueries, prometheus.CounterValue, float64(v), zoneNames[z], typeNames[t], rcodeNames[r])
				}
			}
		}
	}
	for c := 0; c < numCaches; c++ {
		ch <- prometheus.MustNewConstMetric(descHits, prometheus.CounterValue, float64(m.hits[c].Load()), cacheNames[c])
		ch <- prometheus.MustNewConstMetric(descMisses, prometheus.CounterValue, float64(m.misses[c].Load()), cacheNames[c])
		ch <- prometheus.MustNewConstMetric(descStale, prometheus.CounterValue, float64(m.stale[c].Load()), cacheNames[c])
	}
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(m.dropped.Load()))
	ch <- prometheus.MustNewConstMetric(descLoops, prometheus.CounterValue, float64(m.loops.Load()))
	for i := range m.readers {
		ch <- prometheus.MustNewConstMetric(descReaders, prometheus.CounterValue, float64(m.readers[i].n.Load()), strconv.Itoa(i), m.readers[i].cpu)
	}
}
