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

	"github.com/berth/berth/pkg/consulclient"
	"github.com/berth/berth/pkg/watch"
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
	services  atomic.Pointer[[]*api.ServiceEntry]
	node      atomic.Pointer[api.Node] // nil: no such node
	lastUsed  atomic.Int64             // unix ns, coarse
	lastOK    atomic.Int64             // unix ns of the last successful call
	failSince atomic.Int64             // unix ns of the first failure of the current outage
	failing   atomic.Bool

	// unknown is set while the name is not known to exist: before the
	// first answer and while the last one was empty (no instance, no such
	// node). Such a watch is kept only a short while (consulZone.negIdle)
	// and counts against maxUnknownWatches. Guarded by consulZone.wmu.
	unknown bool

	// outage is set by the reachability probe (probeConsul) while a
	// blocking call may hang on a dead connection; call cancels that call.
	outage atomic.Bool
	callMu sync.Mutex
	call   context.CancelFunc
}

// markFailing starts an outage for w (idempotent); it says whether w was
// answering fresh until now.
func (w *watcher) markFailing() bool {
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
	log    *slog.Logger

	dc atomic.Pointer[string] // the agent's datacenter, once known

	warnedDomain atomic.Bool   // -domain differs from the agent's: said once
	learned      chan struct{} // closed when the agent's settings were read
	learnedOnce  sync.Once

	// conn is Consul's reachability as the probe last saw it (lastOK,
	// failSince, failing): what /health reports.
	conn    watcher
	started atomic.Bool // run has begun
	// reread: the agent may have restarted (a probe failed, or a watch's
	// connection to it broke): read its settings at the next probe that
	// reaches Consul.
	reread atomic.Bool

	wmu      sync.Mutex
	watchers map[string]*watcher
	unknown  int // watchers with unknown set

	negLinger  time.Duration // negLinger, or the test's
	maxUnknown int           // maxUnknownWatches, or the test's

	amu     sync.RWMutex
	gen     uint64
	answers map[string]*answer // name + qtype (2 bytes) → answer
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
	return z
}

// run starts the reachability probe and the janitor; it returns when ctx
// is done.
func (z *consulZone) run(ctx context.Context) {
	if z.s.cfg.Datacenter != "" {
		dc := strings.ToLower(z.s.cfg.Datacenter)
		z.dc.Store(&dc)
	}
	if z.s.cfg.Datacenter == "" || z.s.cfg.AgentDNSConfig {
		go z.learnAgent(ctx)
	}
	z.started.Store(true)
	go z.probeConsul(ctx)
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

// fetchFunc makes one (blocking) call for w from index idx and stores what
// it got in w; it returns the new index and whether the name exists.
type fetchFunc func(ctx context.Context, w *watcher, idx uint64) (uint64, bool, error)

// startLocked starts a watch; z.wmu is held. It counts as unknown until its
// first answer says the name exists.
func (z *consulZone) startLocked(parent context.Context, key string, fetch fetchFunc) *watcher {
	ctx, cancel := context.WithCancel(parent)
	w := &watcher{key: key, cancel: cancel, ready: make(chan struct{}), unknown: true}
	w.lastUsed.Store(z.s.now())
	z.watchers[key] = w
	z.unknown++
	z.s.m.watchesOpen.Set(float64(len(z.watchers)))
	f := func(ctx context.Context, idx uint64) (bool, uint64, error) {
		cctx, cancel := context.WithCancel(ctx)
		w.callMu.Lock()
		w.call = cancel
		w.callMu.Unlock()
		newIdx, exists, err := fetch(cctx, w, idx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				z.s.m.watchErrors.Inc()
				if se := (api.StatusError{}); !errors.As(err, &se) {
					z.reread.Store(true) // not an answer: the agent may be another one now
				}
				if w.markFailing() {
					z.invalidate() // answers now carry -stale-ttl
				}
			}
			return false, 0, err
		}
		w.lastOK.Store(time.Now().UnixNano())
		if w.failing.Swap(false) {
			z.invalidate()
		}
		return exists, newIdx, nil
	}
	deliver := func(exists bool, _ uint64) {
		z.setUnknown(w, !exists)
		w.once.Do(func() { close(w.ready) })
		z.invalidate()
	}
	go func() {
		_ = watch.Loop(ctx, f, deliver, watch.Options{Name: key, Log: z.log, RetryMin: 50 * time.Millisecond, RetryMax: 5 * time.Second})
	}()
	return w
}

// probeConsul asks at once and then every second (1.5 s timeout) whether
// the agent reaches its servers (consulclient.Reachability: the agent's own
// view every time, a Status.Leader RPC at most every 5 s). A blocking query
// sent before the host lost its servers hangs on the dead connection and
// reports nothing, so the probe is what tells an outage: when it fails,
// every watch counts as failing (answers from memory are counted stale,
// -max-stale runs) and so does /health; when it succeeds again, the
// watches' hanging calls are cancelled so they ask again at once instead of
// waiting for TCP to resend. After a failed probe, or a watch whose
// connection to the agent broke (a restart can be shorter than a probe's
// period), the agent's settings are read again: it may be a new agent.
func (z *consulZone) probeConsul(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	reach := &consulclient.Reachability{Client: z.client}
	var down time.Time // first failed probe of the current outage
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		err := reach.Check(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if down.IsZero() {
				down = time.Now()
			}
			z.conn.markFailing()
			z.reread.Store(true)
		} else {
			down = time.Time{}
			reached := z.conn.lastOK.Load() != 0
			z.conn.lastOK.Store(time.Now().UnixNano())
			z.conn.failing.Store(false)
			if z.reread.Swap(false) && reached {
				go func() {
					if err := z.readAgent(); err != nil {
						z.log.Warn("reading the agent's settings after reconnecting", "err", err)
					}
				}()
			}
		}
		z.wmu.Lock()
		ws := make([]*watcher, 0, len(z.watchers))
		for _, w := range z.watchers {
			ws = append(ws, w)
		}
		z.wmu.Unlock()
		changed := false
		for _, w := range ws {
			switch {
			case err != nil && !w.outage.Swap(true):
				changed = w.markFailing() || changed
			case err == nil && w.outage.Swap(false):
				w.callMu.Lock()
				if w.call != nil {
					w.call()
				}
				w.callMu.Unlock()
			}
		}
		if err != nil && changed {
			z.log.Warn("Consul unreachable; answering from memory", "since", down.UTC().Format(time.RFC3339), "err", err)
			z.invalidate()
		}
	}
}

func (z *consulZone) queryOptions(ctx context.Context, idx uint64) *api.QueryOptions {
	return (&api.QueryOptions{AllowStale: true, WaitIndex: idx, WaitTime: 5 * time.Minute}).WithContext(ctx)
}

// fetchService watches the health of one service, name in lower case
// (Consul looks service names up without regard to case: the dnsforward
// tests compare with its DNS). An empty answer means no such service (or
// none the token may see): NXDOMAIN, as from Consul's DNS.
func (z *consulZone) fetchService(name string) fetchFunc {
	return func(ctx context.Context, w *watcher, idx uint64) (uint64, bool, error) {
		q := z.queryOptions(ctx, idx)
		// ?cached: Consul's streaming backend serves it from the agent's
		// materialized view from the first request, not a full server RPC,
		// and the view follows only this service.
		q.UseCache = true
		entries, meta, err := z.client.Health().Service(name, "", false, q)
		if err != nil {
			return 0, false, fmt.Errorf("health of service %s: %w", name, err)
		}
		w.services.Store(&entries)
		return meta.LastIndex, len(entries) > 0, nil
	}
}

// fetchNode watches one node (GET /v1/catalog/node/<name>, a stale
// blocking query; Consul looks node names up without regard to case). A
// nil node means no such node: NXDOMAIN.
func (z *consulZone) fetchNode(name string) fetchFunc {
	return func(ctx context.Context, w *watcher, idx uint64) (uint64, bool, error) {
		n, meta, err := z.client.Catalog().Node(name, z.queryOptions(ctx, idx))
		if err != nil {
			return 0, false, fmt.Errorf("catalog node %s: %w", name, err)
		}
		var node *api.Node
		if n != nil {
			node = n.Node
		}
		w.node.Store(node)
		return meta.LastIndex, node != nil, nil
	}
}

// getWatch returns the watch for key, starting it when absent. Starting one
// while maxUnknownWatches names not known to exist are watched drops one of
// those first.
func (z *consulZone) getWatch(ctx context.Context, key string, fetch func() fetchFunc) *watcher {
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
	w := z.startLocked(z.s.ctx, key, fetch())
	z.wmu.Unlock()
	if evicted {
		z.invalidate()
	}
	return w
}

// waitReady waits for a watch's first answer when wait is set.
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
	case <-t.C:
	case <-ctx.Done():
	}
	return false
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
	var domain, rest string
	for _, d := range z.s.settings.Load().domains {
		if strings.HasSuffix(name, "."+d) {
			domain, rest = d, name[:len(name)-len(d)-1]
			break
		}
	}
	if domain == "" {
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
		case len(prefix) == 2:
			tag, svc = prefix[0], prefix[1]
		default:
			a, err := z.nxdomain(name, qtype, domain, nil)
			return z.keep(name, qtype, gen, a, err)
		}
		svc = strings.ToLower(svc)
		w := z.getWatch(ctx, "service "+svc, func() fetchFunc { return z.fetchService(svc) })
		if !waitReady(ctx, w, wait, firstWait) {
			if wait {
				return nil, resForward, nil
			}
			return nil, resWait, nil
		}
		ch := &chaser{z: z, ctx: ctx, wait: wait, depth: depth}
		a, err := z.buildService(name, qtype, domain, svc, tag, w, ch)
		if ch.blocked {
			return nil, resWait, nil
		}
		if depth < maxChaseDepth {
			return a, resAnswer, err // cut short by the depth: not for clients
		}
		return z.keep(name, qtype, gen, a, err)
	case "node":
		if len(prefix) != 1 {
			return nil, resForward, nil
		}
		node := strings.ToLower(prefix[0])
		w := z.getWatch(ctx, "node "+node, func() fetchFunc { return z.fetchNode(node) })
		if !waitReady(ctx, w, wait, firstWait) {
			if wait {
				return nil, resForward, nil
			}
			return nil, resWait, nil
		}
		ch := &chaser{z: z, ctx: ctx, wait: wait, depth: depth}
		a, err := z.buildNode(name, qtype, domain, w, ch)
		if ch.blocked {
			return nil, resWait, nil
		}
		if depth < maxChaseDepth {
			return a, resAnswer, err
		}
		return z.keep(name, qtype, gen, a, err)
	default: // addr
		if len(prefix) != 1 {
			return nil, resForward, nil
		}
		a, err := z.buildAddr(name, qtype, domain, prefix[0])
		return z.keep(name, qtype, gen, a, err)
	}
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
	m.Ns = []dns.RR{z.s.settings.Load().soaRR(domain)}
	a, err := newAnswer(m, zoneConsul, false, false)
	if a != nil {
		a.watch = w
	}
	return a, err
}

func (z *consulZone) ttl(d time.Duration, w *watcher) uint32 {
	if w != nil && w.failing.Load() {
		d = z.s.cfg.StaleTTL
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

func hexIP(ip netip.Addr) string {
	b := ip.AsSlice()
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
		txt := k + "=" + meta[k]
		if strings.HasPrefix(k, "rfc1035-") {
			txt = meta[k]
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
	seenAddr := map[string]bool{}
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
		switch qtype {
		case dns.TypeA, dns.TypeAAAA, dns.TypeANY, dns.TypeTXT:
			if ipErr != nil {
				if cnameTarget == "" {
					cnameTarget = dns.Fqdn(addr)
				}
				continue
			}
			if !wantsAddr(qtype, ip) || seenAddr[addr] {
				continue
			}
			seenAddr[addr] = true
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
		m.Truncate(dns.MaxMsgSize)
	}
	limit := 0
	if qtype != dns.TypeSRV {
		limit = st.aRecordLimit // Consul: addServiceNodeRecordsToMessage
	}
	a, err := newAnswerLimit(m, zoneConsul, shuffle, false, limit)
	if a != nil {
		a.watch = w
		a.expires = ch.expires
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
	// Consul adds the node's meta as TXT whatever the target.
	extra = append(extra, metaTXT(nodeName, e.Node.Meta, ttl)...)
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
		} else {
			m.Extra = append(m.Extra, txt...)
		}
	case dns.TypeTXT:
		m.Answer = append(m.Answer, txt...)
	}
	a, err := newAnswer(m, zoneConsul, false, false)
	if a != nil {
		a.expires = ch.expires
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
	rr := addrRR(name, ip, ttl)
	if qtype == dns.TypeANY || (qtype == dns.TypeA && len(b) == 4) || (qtype == dns.TypeAAAA && len(b) == 16) {
		m.Answer = []dns.RR{rr}
	} else {
		m.Extra = []dns.RR{rr}
	}
	return newAnswer(m, zoneConsul, false, false)
}
