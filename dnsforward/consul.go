package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cquery "github.com/berth/berth/pkg/query"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// watcher is one Consul blocking-query loop and its latest result: the
// health of one service name, or one node.
type watcher struct {
	key       string
	cancel    context.CancelFunc
	ready     chan struct{}
	once      sync.Once
	failed    chan struct{} // closed at the first failed call
	failOnce  sync.Once
	services  atomic.Pointer[[]*api.ServiceEntry]
	node      atomic.Pointer[api.Node] // nil: no such node
	lastUsed  atomic.Int64             // unix ns, coarse
	failSince atomic.Int64             // unix ns of the first failed call of the current run
	failing   atomic.Bool              // the last call failed

	// unknown is set while the name is not known to exist: before the
	// first answer and while the last one was empty (no instance, no such
	// node). Such a watch is kept only a short while (consulZone.negIdle)
	// and counts against maxUnknownWatches. Guarded by consulZone.wmu.
	unknown bool
}

// markFailing records a failed call of w (idempotent); it says whether w
// was answering fresh until now.
func (w *watcher) markFailing() bool {
	w.failOnce.Do(func() { close(w.failed) })
	if w.failing.Load() {
		return false
	}
	w.failSince.Store(time.Now().UnixNano())
	return !w.failing.Swap(true)
}

func (w *watcher) isReady() bool {
	select {
	case <-w.ready:
		return true
	default:
		return false
	}
}

// touch marks the watch used; only every gran (a fraction of the idle
// timeout), to spare the shared cache line on the hot path.
func (w *watcher) touch(now, gran int64) {
	if now-w.lastUsed.Load() > gran {
		w.lastUsed.Store(now)
	}
}

// consulZone answers the Consul domain from memory. It keeps no watch of
// the whole datacenter: a service name is answered from a streamed watch
// of that service's health, a node name from a watch of that node, each
// opened by the first lookup and dropped when nobody asks; a name that does
// not exist is asked once and its watch kept for negIdle (negative caching).
type consulZone struct {
	s      *Server
	client *api.Client
	q      *cquery.Client // every watch's blocking queries and the reachability probe
	log    *slog.Logger

	dc atomic.Pointer[string] // the agent's datacenter, once known

	warnedDomain atomic.Bool   // -domain differs from the agent's: said once
	learned      chan struct{} // closed when the agent's settings were read
	learnedOnce  sync.Once
	settingsRead atomic.Bool // the agent's settings were applied once

	started atomic.Bool // run has begun
	// down is set while the query layer's probe sees the agent reach no
	// server (pkg/query Config.OnProbe): every watch then counts as failing.
	down atomic.Bool
	// reread: the agent may have restarted (a probe failed, or a watch's
	// connection to it broke): read its settings once Consul answers again
	// (the probe's recovery, or a watch's next successful call).
	reread atomic.Bool

	wmu      sync.Mutex
	watchers map[string]*watcher
	unknown  int // watchers with unknown set

	negLinger  time.Duration // negLinger, or the test's
	maxUnknown int           // maxUnknownWatches, or the test's

	amu     sync.RWMutex
	gen     uint64
	answers map[string]*answer // name + qtype (2 bytes) → answer

	// targets: the agent's last good answers for host-name targets it is
	// asked for (chaser.agent), by the target as the address gives it.
	tmu     sync.Mutex
	targets map[string]*agentTarget
}

// maxAnswers bounds the per-name answer map (random names asked in bulk).
const maxAnswers = 200000

// maxUnknownWatches bounds the watches of names not known to exist (each
// holds a blocking request to the agent): past it, starting another drops
// one of them, first those whose name is known not to exist. Only names
// asked in bulk (a scan, a typo in a loop of many hosts) get near it.
const maxUnknownWatches = 1000

// negLinger is how long, at least, the watch of a name that does not exist
// is kept after its last lookup (see negIdle).
const negLinger = 30 * time.Second

func newConsulZone(s *Server, client *api.Client) *consulZone {
	z := &consulZone{s: s, client: client, log: s.log, learned: make(chan struct{}),
		watchers: map[string]*watcher{}, answers: map[string]*answer{},
		negLinger: s.cfg.negLinger, maxUnknown: s.cfg.maxUnknown}
	if z.negLinger <= 0 {
		z.negLinger = negLinger
	}
	if z.maxUnknown <= 0 {
		z.maxUnknown = maxUnknownWatches
	}
	// AnyStale: any server answers, however stale, as Consul's DNS with
	// allow_stale (-max-stale is how long answers are served from memory
	// while Consul is unreachable, not a staleness bound of a read).
	z.q = cquery.New(cquery.Config{Client: client, MaxStale: cquery.AnyStale, Log: s.log, OnProbe: z.probed})
	s.m.reg.MustRegister(z.q.Collector("dnsforward"))
	return z
}

// probed is told by the query layer's probe when an outage begins (down)
// and ends. A blocking query sent before the host lost its servers hangs on
// the dead connection and reports nothing, so the probe is what tells an
// outage: while it lasts every watch counts as failing (answers from memory
// are counted stale, -max-stale runs) and so does /health. When it ends, the
// query layer has already cancelled the hanging calls (they ask again at
// once); the agent's settings are read again, since it may be a new agent.
func (z *consulZone) probed(down bool, err error) {
	if down {
		z.reread.Store(true)
		z.down.Store(true)
		z.invalidate() // answers now carry -stale-ttl
		return
	}
	z.down.Store(false)
	z.invalidate()
	z.rereadAgent()
}

// rereadAgent reads the agent's settings again if it may have changed
// since they were read.
func (z *consulZone) rereadAgent() {
	if !z.reread.Swap(false) {
		return
	}
	go func() {
		if err := z.readAgent(); err != nil {
			z.log.Warn("reading the agent's settings after reconnecting", "err", err)
		}
	}()
}

// failing reports whether answers from w are served stale: w's last call
// failed or the probe sees an outage; since is the earlier start of the
// two (unix ns).
func (z *consulZone) failing(w *watcher) (since int64, failing bool) {
	if w.failing.Load() {
		since, failing = w.failSince.Load(), true
	}
	if z.down.Load() {
		if down, from, _ := z.q.Down(); down && (!failing || from.UnixNano() < since) {
			since, failing = from.UnixNano(), true
		}
	}
	return since, failing
}

// fromAgent reports whether the agent is asked for its datacenter or DNS
// settings (a flag does not give them all).
func (z *consulZone) fromAgent() bool {
	return z.s.cfg.Datacenter == "" || z.s.cfg.AgentDNSConfig
}

// run starts the query layer (its reachability probe) and the janitor; it
// returns when ctx is done.
func (z *consulZone) run(ctx context.Context) {
	if z.s.cfg.Datacenter != "" {
		dc := strings.ToLower(z.s.cfg.Datacenter)
		z.dc.Store(&dc)
	}
	if z.fromAgent() {
		go z.learnAgent(ctx)
	}
	z.started.Store(true)
	go func() { _ = z.q.Run(ctx) }()
	t := time.NewTicker(z.janitorEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			z.wmu.Lock()
			for _, w := range z.watchers {
				w.cancel()
			}
			z.wmu.Unlock()
			return
		case <-t.C:
			z.dropIdle()
		}
	}
}

func (z *consulZone) janitorEvery() time.Duration {
	d := min(z.s.cfg.IdleTimeout, z.negLinger) / 4
	if d < 50*time.Millisecond {
		d = 50 * time.Millisecond
	}
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	return d
}

// negIdle is how long the watch of a name not known to exist is kept after
// its last lookup: the SOA minimum the negative answers carry (RFC 2308 §5:
// how long a resolver may cache them), at least negLinger, at most
// -idle-timeout. While it is open the NXDOMAIN is answered from memory and
// a registration of the name shows at once; once dropped, the next lookup
// asks Consul again.
func (z *consulZone) negIdle() time.Duration {
	d := max(time.Duration(z.s.settings.Load().soa.minttl)*time.Second, z.negLinger)
	return min(d, z.s.cfg.IdleTimeout)
}

func (z *consulZone) dropIdle() {
	now := z.s.now()
	idle, negIdle := int64(z.s.cfg.IdleTimeout), int64(z.negIdle())
	var dropped int
	z.wmu.Lock()
	for _, w := range z.watchers {
		limit := idle
		if w.unknown {
			limit = negIdle
		}
		if now-w.lastUsed.Load() > limit {
			z.dropLocked(w)
			dropped++
		}
	}
	n := len(z.watchers)
	z.wmu.Unlock()
	z.tmu.Lock()
	for k, t := range z.targets {
		if now-t.used > idle {
			delete(z.targets, k) // no answer asks for it any more
		}
	}
	z.tmu.Unlock()
	if dropped > 0 {
		z.log.Debug("dropped idle watches", "dropped", dropped, "open", n)
		z.invalidate()
	}
}

// dropLocked stops w and forgets it; z.wmu is held. The caller
// invalidates the answers.
func (z *consulZone) dropLocked(w *watcher) {
	w.cancel()
	if z.watchers[w.key] == w {
		delete(z.watchers, w.key)
		if w.unknown {
			z.unknown--
		}
	}
	z.s.m.watchesOpen.Set(float64(len(z.watchers)))
}

// setUnknown records whether w's name is known to exist after an answer.
func (z *consulZone) setUnknown(w *watcher, unknown bool) {
	z.wmu.Lock()
	defer z.wmu.Unlock()
	if w.unknown == unknown {
		return
	}
	w.unknown = unknown
	if z.watchers[w.key] != w {
		return // dropped meanwhile: no longer counted
	}
	if unknown {
		z.unknown++
	} else {
		z.unknown--
	}
}

// invalidate forgets every packed answer: the next lookups rebuild them from
// the watches' current data.
func (z *consulZone) invalidate() {
	z.amu.Lock()
	z.gen++
	z.answers = make(map[string]*answer, len(z.answers))
	z.amu.Unlock()
}

func (z *consulZone) cached(key []byte) *answer {
	z.amu.RLock()
	a := z.answers[string(key)]
	z.amu.RUnlock()
	return a
}

func (z *consulZone) generation() uint64 {
	z.amu.RLock()
	g := z.gen
	z.amu.RUnlock()
	return g
}

func (z *consulZone) store(key string, gen uint64, a *answer) {
	z.amu.Lock()
	if z.gen == gen {
		if len(z.answers) >= maxAnswers {
			z.answers = make(map[string]*answer)
		}
		z.answers[key] = a
	}
	z.amu.Unlock()
}

// watchFunc runs one watch's queries for w until ctx is done.
type watchFunc func(ctx context.Context, w *watcher)

// startLocked starts a watch; z.wmu is held. It counts as unknown until its
// first answer says the name exists.
func (z *consulZone) startLocked(parent context.Context, key string, run watchFunc) *watcher {
	ctx, cancel := context.WithCancel(parent)
	w := &watcher{key: key, cancel: cancel, ready: make(chan struct{}), failed: make(chan struct{}), unknown: true}
	w.lastUsed.Store(z.s.now())
	z.watchers[key] = w
	z.unknown++
	z.s.m.watchesOpen.Set(float64(len(z.watchers)))
	go run(ctx, w)
	return w
}

// watchName runs the blocking queries of one watch through the query layer
// until ctx is done: fetch calls the Consul API with the options the layer
// gives (cached: ?cached, for health service queries only), keep stores an
// answer with a new index in w and says whether the name exists.
func watchName[T any](ctx context.Context, z *consulZone, w *watcher, cached bool, fetch cquery.Fetch[T], keep func(T) bool) {
	q := cquery.Query{Name: w.key, Cached: cached,
		OnError: func(err error, _ time.Duration) {
			z.s.m.watchErrors.Inc()
			if se := (api.StatusError{}); !errors.As(err, &se) {
				z.reread.Store(true) // not an answer: the agent may be another one now
			}
			if w.markFailing() {
				z.invalidate() // answers now carry -stale-ttl
			}
		},
		OnOK: func() {
			if w.failing.Swap(false) {
				z.invalidate()
			}
			if !z.down.Load() {
				// A watch whose connection broke answers again: a restart
				// of the agent can be shorter than a probe's period.
				z.rereadAgent()
			}
		},
	}
	_ = cquery.Watch(ctx, z.q, q, fetch, func(v T) {
		z.setUnknown(w, !keep(v))
		w.once.Do(func() { close(w.ready) })
		z.invalidate()
	})
}

// watchService watches the health of one service, name in lower case
// (Consul looks service names up without regard to case: the dnsforward
// tests compare with its DNS), with ?cached: Consul's streaming backend
// serves it from the agent's materialized view from the first request, not
// a full server RPC, and the view follows only this service. An empty
// answer means no such service (or none the token may see): NXDOMAIN, as
// from Consul's DNS.
func (z *consulZone) watchService(name string) watchFunc {
	return func(ctx context.Context, w *watcher) {
		watchName(ctx, z, w, true, func(o *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
			entries, meta, err := z.client.Health().Service(name, "", false, o)
			if err == nil && len(entries) == 0 && o.UseCache && meta.LastIndex != o.WaitIndex {
				// A new empty answer from the agent's streamed view is
				// asked again of the servers before it becomes NXDOMAIN:
				// a view being torn down or rebuilt (the agent stopping
				// or restarting) can answer empty although the catalog
				// is not (seen on the cluster harness). One RPC per new
				// empty answer; unchanged answers are not asked again. The
				// view's index is kept, so the next call blocks on the view.
				fresh := *o
				fresh.UseCache, fresh.WaitIndex, fresh.WaitTime = false, 0, 0
				entries, _, err = z.client.Health().Service(name, "", false, &fresh)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("health of service %s: %w", name, err)
			}
			return entries, meta, nil
		}, func(entries []*api.ServiceEntry) bool {
			w.services.Store(&entries)
			return len(entries) > 0
		})
	}
}

// watchNode watches one node (GET /v1/catalog/node/<name>, a stale
// blocking query; Consul looks node names up without regard to case). A
// nil node means no such node: NXDOMAIN.
func (z *consulZone) watchNode(name string) watchFunc {
	return func(ctx context.Context, w *watcher) {
		watchName(ctx, z, w, false, func(o *api.QueryOptions) (*api.Node, *api.QueryMeta, error) {
			n, meta, err := z.client.Catalog().Node(name, o)
			if err != nil {
				return nil, nil, fmt.Errorf("catalog node %s: %w", name, err)
			}
			if n == nil {
				return nil, meta, nil
			}
			return n.Node, meta, nil
		}, func(node *api.Node) bool {
			w.node.Store(node)
			return node != nil
		})
	}
}

// getWatch returns the watch for key, starting it when absent. Starting one
// while maxUnknownWatches names not known to exist are watched drops one of
// those first.
func (z *consulZone) getWatch(ctx context.Context, key string, run func() watchFunc) *watcher {
	z.wmu.Lock()
	if w, ok := z.watchers[key]; ok {
		z.wmu.Unlock()
		return w
	}
	evicted := false
	if z.unknown >= z.maxUnknown {
		var victim *watcher
		for _, w := range z.watchers { // a random start: an arbitrary one
			if !w.unknown {
				continue
			}
			if victim == nil || w.isReady() && !victim.isReady() {
				victim = w
			}
			if victim.isReady() {
				break
			}
		}
		if victim != nil {
			z.dropLocked(victim)
			evicted = true
		}
	}
	z.log.Debug("starting watch", "watch", key)
	w := z.startLocked(z.s.ctx, key, run())
	z.wmu.Unlock()
	if evicted {
		z.invalidate()
	}
	return w
}

// waitReady waits for a watch's first answer when wait is set, at most d,
// and not once a call of the watch failed: while its calls fail (the HTTP
// API unreachable, say, while the agent's DNS answers) the agent's DNS
// answers at once, rather than after d on every query.
func waitReady(ctx context.Context, w *watcher, wait bool, d time.Duration) bool {
	if w.isReady() {
		return true
	}
	if !wait {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ready:
		return true
	case <-w.failed:
	case <-t.C:
	case <-ctx.Done():
	}
	return w.isReady()
}

// Outcomes of resolve.
const (
	resAnswer  = iota // a is the answer
	resWait           // a watch must start first: call again with wait
	resForward        // not answered natively: pass to the agent's DNS
)

// firstWait bounds the wait for a new watch's first answer.
const firstWait = 3 * time.Second

// resolve finds or builds the answer for name/qtype. Without wait it
// returns resWait when the answer needs a new watch's first data or a
// question to the upstreams (a host-name address to chase).
func (z *consulZone) resolve(ctx context.Context, name string, qtype uint16, wait bool) (*answer, int, error) {
	return z.resolveDepth(ctx, name, qtype, wait, maxChaseDepth)
}

// maxChaseDepth bounds how many Consul names a chain of host-name
// addresses inside the domain is followed through (Consul:
// maxRecursionLevelDefault = 3 in agent/dns.go).
const maxChaseDepth = 3

func (z *consulZone) resolveDepth(ctx context.Context, name string, qtype uint16, wait bool, depth int) (*answer, int, error) {
	if qtype == dns.TypeSOA || qtype == dns.TypeNS || qtype == dns.TypeAXFR {
		// Consul answers these itself for any name in its domain, existing
		// or not: the apex's SOA or NS records, AXFR refused with NOTIMP
		// (agent/dns.go handleQuery). The agent's DNS gives them as is.
		return nil, resForward, nil
	}
	domain, rest, ok := cutDomain(z.s.settings.Load().domains, name)
	if !ok {
		return nil, resForward, nil // the apex (SOA, NS) and anything odd
	}
	labels := strings.Split(rest, ".")
	n := len(labels)
	kind, dc, kindAt := "", "", -1
	switch {
	case isKind(labels[n-1]):
		kind, kindAt = labels[n-1], n-1
	case n >= 2 && isKind(labels[n-2]):
		kind, dc, kindAt = labels[n-2], labels[n-1], n-2
	default:
		return nil, resForward, nil
	}
	if dc != "" {
		local := z.dc.Load()
		if local == nil || *local != dc {
			return nil, resForward, nil
		}
	}
	if kind == "service" && qtype == dns.TypeSRV && z.dc.Load() == nil {
		// SRV targets name the datacenter, not known yet: the agent
		// answers meanwhile.
		return nil, resForward, nil
	}
	prefix := labels[:kindAt]
	gen := z.generation()
	switch kind {
	case "service":
		var svc, tag string
		switch {
		case len(prefix) == 1:
			svc = prefix[0]
		case len(prefix) == 2 && strings.HasPrefix(prefix[0], "_") && strings.HasPrefix(prefix[1], "_"):
			svc, tag = prefix[0][1:], prefix[1][1:]
			if tag == "tcp" {
				tag = ""
			}
		case len(prefix) >= 2:
			// A tag may hold dots: every label before the service's
			// name is the tag (agent/dns.go dispatch).
			tag, svc = strings.Join(prefix[:len(prefix)-1], "."), prefix[len(prefix)-1]
		default:
			a, err := z.nxdomain(name, qtype, domain, nil)
			return z.keep(name, qtype, gen, a, err)
		}
		svc = strings.ToLower(svc)
		return z.fromWatch(ctx, name, qtype, gen, wait, depth, "service "+svc, func() watchFunc { return z.watchService(svc) },
			func(w *watcher, ch *chaser) (*answer, error) {
				return z.buildService(name, qtype, domain, svc, tag, w, ch)
			})
	case "node":
		if len(prefix) != 1 {
			return nil, resForward, nil
		}
		switch qtype {
		case dns.TypeA, dns.TypeAAAA, dns.TypeANY, dns.TypeTXT:
		default:
			// Consul answers other types of a node name NOERROR without
			// records or SOA, before looking the node up: the same for a
			// node that does not exist (agent/dns.go handleNodeQuery).
			a, err := consulAnswer(z.reply(name, qtype), z.s.settings.Load(), false, 0)
			return z.keep(name, qtype, gen, a, err)
		}
		node := strings.ToLower(prefix[0])
		return z.fromWatch(ctx, name, qtype, gen, wait, depth, "node "+node, func() watchFunc { return z.watchNode(node) },
			func(w *watcher, ch *chaser) (*answer, error) { return z.buildNode(name, qtype, domain, w, ch) })
	default: // addr
		if len(prefix) != 1 {
			return nil, resForward, nil
		}
		a, err := z.buildAddr(name, qtype, domain, prefix[0])
		return z.keep(name, qtype, gen, a, err)
	}
}

// fromWatch answers name/qtype (resolveDepth's outcomes) from the watch of
// key, started with run when new, once it has its first data: build makes
// the answer, chasing host-name addresses with ch. A watch with no data yet
// gives resWait, or resForward when waiting for it ran out; a chase that
// needs data not in memory gives resWait. An answer built below the top
// chase depth is returned without being kept (it is cut short by the
// depth: not for clients); the others are kept for generation gen.
func (z *consulZone) fromWatch(ctx context.Context, name string, qtype uint16, gen uint64, wait bool, depth int,
	key string, run func() watchFunc, build func(w *watcher, ch *chaser) (*answer, error)) (*answer, int, error) {
	w := z.getWatch(ctx, key, run)
	if !waitReady(ctx, w, wait, firstWait) {
		if wait {
			return nil, resForward, nil
		}
		return nil, resWait, nil
	}
	ch := &chaser{z: z, ctx: ctx, wait: wait, depth: depth}
	a, err := build(w, ch)
	if ch.blocked {
		return nil, resWait, nil
	}
	if depth < maxChaseDepth {
		return a, resAnswer, err
	}
	return z.keep(name, qtype, gen, a, err)
}

// translateAddr picks the address Consul answers for a question type: for
// A the lan_ipv4 tagged address, for AAAA the lan_ipv6 one, for other
// types lan_ipv6 then lan_ipv4; else the address as registered
// (hashicorp/consul agent/translate_address.go translateAddressAccept).
func translateAddr(qtype uint16, def, v4, v6 string) string {
	switch {
	case qtype != dns.TypeA && v6 != "":
		return v6
	case qtype != dns.TypeAAAA && v4 != "":
		return v4
	}
	return def
}

func isKind(l string) bool { return l == "service" || l == "node" || l == "addr" }

func (z *consulZone) keep(name string, qtype uint16, gen uint64, a *answer, err error) (*answer, int, error) {
	if err != nil {
		return nil, resAnswer, err
	}
	key := name + string([]byte{byte(qtype >> 8), byte(qtype)})
	z.store(key, gen, a)
	return a, resAnswer, nil
}

func (z *consulZone) reply(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.Response = true
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	return m
}

func (z *consulZone) nxdomain(name string, qtype uint16, domain string, w *watcher) (*answer, error) {
	m := z.reply(name, qtype)
	m.Rcode = dns.RcodeNameError
	st := z.s.settings.Load()
	m.Ns = []dns.RR{st.soaRR(domain)}
	a, err := consulAnswer(m, st, false, 0)
	if a != nil {
		a.watch = w
	}
	return a, err
}

func (z *consulZone) ttl(d time.Duration, w *watcher) uint32 {
	if w != nil {
		if _, failing := z.failing(w); failing {
			d = z.s.cfg.StaleTTL
		}
	}
	return uint32(d / time.Second)
}

// healthy reports whether an instance may be answered: no critical check
// (and, with -only-passing, every check passing).
func (z *consulZone) healthy(e *api.ServiceEntry) (ok, passing bool) {
	passing = true
	for _, c := range e.Checks {
		switch c.Status {
		case api.HealthCritical, api.HealthMaint:
			return false, false
		case api.HealthPassing:
		default:
			passing = false
		}
	}
	if z.s.settings.Load().onlyPassing && !passing {
		return false, false
	}
	return true, passing
}

func hasTag(tags []string, tag string) bool {
	for _, t := range tags {
		if strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}

// hexIP is ip's label under .addr: 8 hex digits for an IPv4 address,
// IPv4-mapped ones included (Consul's encodeIPAsFqdn), else 32.
func hexIP(ip netip.Addr) string {
	b := ip.Unmap().AsSlice()
	return hex.EncodeToString(b)
}

func addrRR(name string, ip netip.Addr, ttl uint32) dns.RR {
	if ip.Is4() || ip.Is4In6() {
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.IP(ip.Unmap().AsSlice())}
	}
	return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: net.IP(ip.AsSlice())}
}

// wantsAddr says whether an address record of ip answers qtype on a
// service name (Consul answers TXT and ANY with A and AAAA records).
func wantsAddr(qtype uint16, ip netip.Addr) bool {
	v4 := ip.Is4() || ip.Is4In6()
	switch qtype {
	case dns.TypeA:
		return v4
	case dns.TypeAAAA:
		return !v4
	case dns.TypeANY, dns.TypeTXT:
		return true // Consul's makeARecord: both families for TXT too
	}
	return false
}

func metaTXT(name string, meta map[string]string, ttl uint32) []dns.RR {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []dns.RR
	for _, k := range keys {
		txt := meta[k]
		if !strings.HasPrefix(strings.ToLower(k), "rfc1035-") {
			txt = rfc1464(k, txt)
		}
		// A character-string holds 255 bytes: split longer values.
		var parts []string
		for len(txt) > 255 {
			parts, txt = append(parts, txt[:255]), txt[255:]
		}
		parts = append(parts, txt)
		out = append(out, &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: parts})
	}
	return out
}

// rfc1464 is the TXT string of one key and value as RFC 1464 section 2
// writes it, as Consul writes node meta (agent/dns.go encodeKVasRFC1464):
// a backquote doubled in either, and in the key an equals sign and each
// leading or trailing space quoted with a backquote.
func rfc1464(key, value string) string {
	var b strings.Builder
	body := strings.TrimLeft(key, " ")
	lead := len(key) - len(body)
	body = strings.TrimRight(body, " ")
	trail := len(key) - lead - len(body)
	b.WriteString(strings.Repeat("` ", lead))
	for i := 0; i < len(body); i++ {
		if body[i] == '`' || body[i] == '=' {
			b.WriteByte('`')
		}
		b.WriteByte(body[i])
	}
	b.WriteString(strings.Repeat("` ", trail))
	b.WriteByte('=')
	b.WriteString(strings.ReplaceAll(value, "`", "``"))
	return b.String()
}

func (z *consulZone) buildService(name string, qtype uint16, domain, svc, tag string, w *watcher, ch *chaser) (*answer, error) {
	entries := *w.services.Load()
	st := z.s.settings.Load()
	ttl := z.ttl(st.ttlFor(svc), w)
	dc := ""
	if p := z.dc.Load(); p != nil {
		dc = *p
	}
	m := z.reply(name, qtype)
	var found int
	seenAddr := map[netip.Addr]bool{} // IPv4-mapped ones unmapped: the same A record
	seenExtra := map[string]bool{}
	seenSRV := map[string]bool{}
	cnameTarget := "" // the first instance with a host name as address
	for _, e := range entries {
		ok, passing := z.healthy(e)
		if !ok || e.Service == nil || e.Node == nil {
			continue
		}
		if tag != "" && !hasTag(e.Service.Tags, tag) {
			continue
		}
		found++
		// Addresses as Consul translates them for the question's type:
		// a lan_ipv6/lan_ipv4 tagged address first (agent/translate_address.go).
		svcAddr := translateAddr(qtype, e.Service.Address, e.Service.TaggedAddresses["lan_ipv4"].Address, e.Service.TaggedAddresses["lan_ipv6"].Address)
		nodeAddr := translateAddr(qtype, e.Node.Address, e.Node.TaggedAddresses["lan_ipv4"], e.Node.TaggedAddresses["lan_ipv6"])
		addr := svcAddr
		if addr == "" {
			addr = nodeAddr
		}
		if addr == "" {
			continue
		}
		ip, ipErr := netip.ParseAddr(addr)
		if ipErr != nil && svcAddr != "" && qtype != dns.TypeSRV && strings.EqualFold(dns.Fqdn(svcAddr), name) {
			// A service address naming the service asked for stands for
			// the node's address (agent/dns.go makeNodeServiceRecords;
			// srvRecord for SRV), not a CNAME to itself.
			if nip, err := netip.ParseAddr(nodeAddr); err == nil {
				ip, ipErr = nip, nil
			}
		}
		switch qtype {
		default:
			// A host-name address answers every type but SRV with its
			// CNAME (agent/dns.go makeRecordFromFQDN): MX or CNAME too.
			if ipErr != nil {
				if cnameTarget == "" {
					cnameTarget = dns.Fqdn(addr)
				}
				continue
			}
			if !wantsAddr(qtype, ip) || seenAddr[ip.Unmap()] {
				continue
			}
			seenAddr[ip.Unmap()] = true
			m.Answer = append(m.Answer, addrRR(name, ip, ttl))
		case dns.TypeSRV:
			// One SRV per node, address and port (Consul:
			// addServiceSRVRecordsToMessage).
			tuple := e.Node.Node + ":" + svcAddr + ":" + strconv.Itoa(e.Service.Port)
			if seenSRV[tuple] {
				continue
			}
			seenSRV[tuple] = true
			srv, extra := z.srvRecord(e, passing, name, domain, dc, svcAddr, nodeAddr, ttl, ch)
			m.Answer = append(m.Answer, srv)
			for _, rr := range extra {
				if k := rr.String(); !seenExtra[k] {
					seenExtra[k] = true
					m.Extra = append(m.Extra, rr)
				}
			}
		}
	}
	shuffle := true
	if len(m.Answer) == 0 && cnameTarget != "" {
		// As Consul (agent/dns.go addServiceNodeRecordsToMessage,
		// makeRecordFromFQDN): a host-name instance answers, as a CNAME
		// followed by the target's records, only when no instance has an
		// address of the type asked. The records stay in their order.
		m.Answer = append([]dns.RR{&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl}, Target: cnameTarget}},
			ch.records(cnameTarget, ttl, true)...)
		shuffle = false
	}
	switch {
	case found == 0:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{st.soaRR(domain)}
	case len(m.Answer) == 0:
		m.Ns = []dns.RR{st.soaRR(domain)}
	}
	if len(m.Answer) > 0 {
		// A very large service: keep what fits in a TCP message.
		trimLikeConsul(m, dns.MaxMsgSize, !st.noCompress)
	}
	limit := 0
	if qtype != dns.TypeSRV {
		limit = st.aRecordLimit // Consul: addServiceNodeRecordsToMessage
	}
	a, err := consulAnswer(m, st, shuffle, limit)
	if a != nil {
		a.watch = w
		a.expires = ch.expires
		a.staleChase = ch.stale
	}
	return a, err
}

// srvRecord is one instance's SRV record and its additional records,
// target case by case as Consul's makeNodeServiceRecords (svcAddr and
// nodeAddr translated for SRV).
func (z *consulZone) srvRecord(e *api.ServiceEntry, passing bool, name, domain, dc, svcAddr, nodeAddr string, ttl uint32, ch *chaser) (dns.RR, []dns.RR) {
	weight := 1
	if e.Service.Weights.Passing > 0 || e.Service.Weights.Warning > 0 {
		weight = e.Service.Weights.Passing
		if !passing {
			weight = e.Service.Weights.Warning
		}
	}
	var target string
	var extra []dns.RR
	nodeName := e.Node.Node + ".node." + dc + "." + domain
	nodeIP, nodeErr := netip.ParseAddr(nodeAddr)
	svcIP, svcErr := netip.ParseAddr(svcAddr)
	// Consul's makeNodeServiceRecords, case by case.
	switch {
	case svcAddr == "" && nodeErr == nil && e.Node.Address == nodeAddr:
		target = nodeName
		extra = []dns.RR{addrRR(target, nodeIP, ttl)}
	case svcAddr == "" && nodeErr == nil:
		target = hexIP(nodeIP) + ".addr." + dc + "." + domain
		extra = []dns.RR{addrRR(target, nodeIP, ttl)}
	case svcAddr == "":
		target = dns.Fqdn(nodeAddr) // a node with a host name
		extra = ch.records(target, ttl, true)
	case svcErr == nil:
		target = hexIP(svcIP) + ".addr." + dc + "." + domain
		extra = []dns.RR{addrRR(target, svcIP, ttl)}
	case strings.EqualFold(dns.Fqdn(svcAddr), name) && nodeErr == nil:
		target = nodeName
		extra = []dns.RR{addrRR(target, nodeIP, ttl)}
	default:
		target = dns.Fqdn(svcAddr)
		extra = ch.records(target, ttl, true)
	}
	// Consul adds the node's meta as TXT whatever the target, unless the
	// agent's enable_additional_node_meta_txt is false.
	if !z.s.settings.Load().noNodeMetaTXT {
		extra = append(extra, metaTXT(nodeName, e.Node.Meta, ttl)...)
	}
	return &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
		Priority: 1, Weight: uint16(weight), Port: uint16(e.Service.Port), Target: target}, extra
}

func (z *consulZone) buildNode(name string, qtype uint16, domain string, w *watcher, ch *chaser) (*answer, error) {
	found := w.node.Load()
	if found == nil {
		return z.nxdomain(name, qtype, domain, w)
	}
	ttl := z.ttl(z.s.settings.Load().nodeTTL, w)
	m := z.reply(name, qtype)
	ip, ipErr := netip.ParseAddr(translateAddr(qtype, found.Address, found.TaggedAddresses["lan_ipv4"], found.TaggedAddresses["lan_ipv6"]))
	txt := metaTXT(name, found.Meta, ttl)
	switch qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		if ipErr != nil {
			// As Consul (makeRecordFromNode): the CNAME and every record
			// the target resolves to, TTLs as they come.
			target := dns.Fqdn(found.Address)
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl}, Target: target})
			m.Answer = append(m.Answer, ch.records(target, ttl, false)...)
		} else if qtype == dns.TypeANY || (qtype == dns.TypeA) == (ip.Is4() || ip.Is4In6()) {
			m.Answer = append(m.Answer, addrRR(name, ip, ttl))
		}
		if qtype == dns.TypeANY {
			m.Answer = append(m.Answer, txt...)
		} else if !z.s.settings.Load().noNodeMetaTXT {
			m.Extra = append(m.Extra, txt...)
		}
	case dns.TypeTXT:
		m.Answer = append(m.Answer, txt...)
	}
	a, err := consulAnswer(m, z.s.settings.Load(), false, 0)
	if a != nil {
		a.expires = ch.expires
		a.staleChase = ch.stale
		a.watch = w
	}
	return a, err
}

func (z *consulZone) buildAddr(name string, qtype uint16, domain, label string) (*answer, error) {
	b, err := hex.DecodeString(label)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return z.nxdomain(name, qtype, domain, nil)
	}
	ip, _ := netip.AddrFromSlice(b)
	ttl := uint32(z.s.settings.Load().nodeTTL / time.Second)
	m := z.reply(name, qtype)
	var rr dns.RR = &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: net.IP(b)}
	if len(b) == 4 {
		rr = addrRR(name, ip, ttl)
	}
	// 32 hex digits are an AAAA record even for an IPv4-mapped address,
	// as from Consul (agent/dns.go dispatch, "addr").
	if qtype == dns.TypeANY || (qtype == dns.TypeA && len(b) == 4) || (qtype == dns.TypeAAAA && len(b) == 16) {
		m.Answer = []dns.RR{rr}
	} else {
		m.Extra = []dns.RR{rr}
	}
	return consulAnswer(m, z.s.settings.Load(), false, 0)
}
