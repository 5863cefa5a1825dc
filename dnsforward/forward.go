package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Upstream selection policies.
const (
	policySequential = "sequential"
	policyRandom     = "random"
	policyRoundRobin = "round_robin"
)

// forwarder sends names outside the Consul domain upstream, with a cache
// and coalescing of identical in-flight queries.
type forwarder struct {
	s         *Server
	upstreams []string
	next      atomic.Uint32

	mu    sync.RWMutex
	cache map[string]*answer

	flights flights[string, *answer, *asking]

	// failedAt holds, per upstream, when a try of it last got no answer (a
	// timeout or an error such as a closed port; unix ns; 0 once it
	// answers): order puts it last for retestAfter.
	failedAt map[string]*atomic.Int64
}

// retestAfter is how long an upstream that gave no answer is asked only after
// the others. dnsmasq keeps sending to the server that answered (the
// fastest) and asks all of them again every 20 seconds (or 50 queries), so
// a dead first server costs it no wait; dnsforward waited the try timeout
// for it on every query not in the cache.
const retestAfter = 20 * time.Second

func newForwarder(s *Server, upstreams []string) *forwarder {
	f := &forwarder{s: s, upstreams: upstreams, cache: map[string]*answer{}, failedAt: map[string]*atomic.Int64{}}
	for _, up := range upstreams {
		f.failedAt[up] = new(atomic.Int64)
	}
	return f
}

func (f *forwarder) cacheLen() float64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return float64(len(f.cache))
}

// cached returns a fresh cache entry for key, or (with fresh false) an
// expired one kept for -serve-stale.
func (f *forwarder) cached(key []byte, now int64) (a *answer, fresh bool) {
	f.mu.RLock()
	a = f.cache[string(key)]
	f.mu.RUnlock()
	if a == nil {
		return nil, false
	}
	return a, now < a.expires
}

func (f *forwarder) store(key string, a *answer) {
	if f.s.cfg.CacheSize <= 0 {
		return
	}
	f.mu.Lock()
	if _, ok := f.cache[key]; !ok && len(f.cache) >= f.s.cfg.CacheSize {
		// Evict: expired entries first, else whatever map order gives.
		now := f.s.now()
		evicted := 0
		for k, e := range f.cache {
			if now >= e.staleEnd || now >= e.expires && evicted == 0 {
				delete(f.cache, k)
				evicted++
			}
			if evicted >= 8 {
				break
			}
		}
		if evicted == 0 {
			for k := range f.cache {
				delete(f.cache, k)
				break
			}
		}
	}
	f.cache[key] = a
	f.mu.Unlock()
}

// flush empties the cache (SIGHUP, as dnsmasq does).
func (f *forwarder) flush() {
	f.mu.Lock()
	clear(f.cache)
	f.mu.Unlock()
}

// order lists the upstreams in the order to try them for one query.
func (f *forwarder) order() []string {
	n := len(f.upstreams)
	out := make([]string, n)
	switch f.s.cfg.Policy {
	case policyRandom:
		for i, j := range rand.Perm(n) {
			out[i] = f.upstreams[j]
		}
	case policyRoundRobin:
		start := int(f.next.Add(1)-1) % n
		for i := range out {
			out[i] = f.upstreams[(start+i)%n]
		}
	default:
		copy(out, f.upstreams)
	}
	// Upstreams that gave no answer lately go last, in the same order.
	now := time.Now().UnixNano()
	late := func(up string) bool {
		t := f.failedAt[up].Load()
		return t != 0 && now-t < int64(retestAfter)
	}
	if slices.ContainsFunc(out, late) {
		slices.SortStableFunc(out, func(a, b string) int {
			la, lb := late(a), late(b)
			switch {
			case la == lb:
				return 0
			case lb:
				return -1
			}
			return 1
		})
	}
	return out
}

// upQuestion is a question to ask upstream: the name in the letter case
// to ask it in (the client's, as dnsmasq asks), over TCP first when tcp is
// set (a TCP client's question, as dnsmasq asks it), with the client's CD
// and DO bits.
type upQuestion struct {
	name          string
	qtype, qclass uint16
	tcp, cd, do   bool
}

// resolve answers key (name, type, class) from upstream, joining an identical
// query already in flight. An answer asked with CD is not cached (dnsmasq
// keeps it out of its cache); one asked with DO is cached without its
// DNSSEC records, for questions without DO (dnsmasq caches its records,
// and answers a question with DO from upstream only). src is the UDP
// client that asked (the zero source for others): a repeat that joins a
// question in flight may send it upstream again, as dnsmasq does (see
// asking.repeat); a repeat of a question src already has in flight (the
// same address and ID) gets errRepeated once the question is answered:
// the client's first datagram gets the answer, once, as from dnsmasq.
func (f *forwarder) resolve(ctx context.Context, key string, uq upQuestion, src source) (*answer, error) {
	fkey := key
	if uq.cd || uq.do {
		fkey += string([]byte{0, b2i(uq.cd), b2i(uq.do)})
	}
	dup := false
	a, err := f.flights.do(ctx, fkey, func() *asking { return newAsking(src, time.Now()) }, func(st *asking) {
		f.s.m.coalesced.Inc()
		dup = st.repeat(src, time.Now())
	}, func(st *asking) (*answer, error) {
		resp, err := f.exchange(ctx, uq, st)
		if err != nil {
			return nil, err
		}
		if uq.do && !uq.cd {
			if kept, err := f.toAnswer(withoutDNSSEC(resp)); err == nil && kept.expires > kept.stored {
				f.store(key, kept)
			}
		}
		a, err := f.toAnswer(resp)
		if a != nil && a.expires > a.stored && !uq.cd && !uq.do {
			f.store(key, a)
		}
		return a, err
	})
	if dup {
		return nil, errRepeated
	}
	return a, err
}

// errRepeated: the question was a client's repeat of one it has in flight
// (the same address and ID), whose answer goes to its first datagram.
var errRepeated = errors.New("a repeat of a question in flight")

// source is a UDP client that asked a question: its address and the ID it
// asked with.
type source struct {
	from netip.AddrPort
	id   uint16
}

// Sending a repeat upstream again, as dnsmasq 2.90 does (measured with it
// on loopback, TestRepeatSentAgainOnlyAsDnsmasq): again from a client that
// asked the question, with the ID it asked with, at once, to every
// upstream; from another client, or with another ID, once the clock's
// second has moved on by repeatAfter since the question was first sent,
// to the upstream asked last (every one, after a repeat sent to every
// one); else the repeat only joins the question in flight.
const (
	againNone = iota
	againLast
	againAll
)

// repeatAfter is the clock's whole seconds after which dnsmasq sends a
// repeat from another client (or with another ID) upstream again: a
// repeat 1.1 s after the first question was sent again when the second
// changed twice meanwhile, one 1.93 s after not when it changed once.
const repeatAfter = 2

// resendGap is the least time between two sends of a question upstream
// again (a repeat meanwhile only joins it). dnsmasq sends each repeat
// again, even 50 ms apart; here a forwarding loop through an upstream
// (whose every question sent again would come back as another repeat)
// cannot bounce a question as fast as the loopback carries it. Clients ask
// again after a second or more.
const resendGap = 250 * time.Millisecond

// asking is a question in flight upstream as its repeats see it.
type asking struct {
	first int64 // the clock's second (Unix) when it was first sent

	mu      sync.Mutex
	sources map[source]struct{} // the UDP clients that asked it
	again   int                 // a send again waiting for exchange: againNone, againLast, againAll
	wake    chan struct{}       // exchange has a send again to make (capacity 1)
}

func newAsking(src source, now time.Time) *asking {
	a := &asking{first: now.Unix(), sources: map[source]struct{}{}, wake: make(chan struct{}, 1)}
	if src.from.IsValid() {
		a.sources[src] = struct{}{}
	}
	return a
}

// repeat notes a question from src that joins this one at now, asks
// exchange to send it upstream again as dnsmasq would, and reports
// whether src had asked it already (the same address and ID).
func (a *asking) repeat(src source, now time.Time) (dup bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	again := againNone
	if _, dup = a.sources[src]; dup {
		again = againAll
	} else {
		if src.from.IsValid() {
			a.sources[src] = struct{}{}
		}
		if now.Unix()-a.first >= repeatAfter {
			again = againLast
		}
	}
	if again > a.again {
		a.again = again
	}
	if again != againNone {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
	return dup
}

// take returns the send again asked for, if any, and clears it.
func (a *asking) take() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	again := a.again
	a.again = againNone
	return again
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// withoutDNSSEC is a copy of m without the DNSSEC records an answer to a
// question with DO may hold (RRSIG, NSEC, NSEC3), unless asked for.
func withoutDNSSEC(m *dns.Msg) *dns.Msg {
	c := m.Copy()
	keep := func(rrs []dns.RR) []dns.RR {
		out := rrs[:0]
		for _, rr := range rrs {
			switch rr.Header().Rrtype {
			case dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3:
				if rr.Header().Rrtype != c.Question[0].Qtype {
					continue
				}
			}
			out = append(out, rr)
		}
		return out
	}
	c.Answer, c.Ns, c.Extra = keep(c.Answer), keep(c.Ns), keep(c.Extra)
	return c
}

var errNoUpstream = errors.New("no upstream resolver configured")

// exchange asks each upstream at most once, in order, within the overall
// budget, and takes the first valid answer from any upstream it has asked,
// as dnsmasq relays a late answer from any server it asked. The next
// upstream is asked once the newest one asked got no answer within the
// per-try timeout (that one is still listened to until the budget ends),
// or at once when it failed: an error (a closed port), SERVFAIL, REFUSED,
// an answer that does not unpack, is for another question or holds fewer
// records than its header counts. A truncated UDP answer is asked again
// over TCP. dnsmasq sends a client's question once to the server it uses
// (again only when the client asks again), where dnsforward asked a
// silent upstream again after every try timeout and a closed one about 22
// times within half a second; and it gave up on an upstream at its try
// timeout, dropping the answer that came a little later. A client's
// repeat sends the question again as st says (asking.repeat): to every
// upstream, or to the one asked last, each such try listened to as the
// others.
func (f *forwarder) exchange(ctx context.Context, uq upQuestion, st *asking) (*dns.Msg, error) {
	if len(f.upstreams) == 0 {
		return nil, errNoUpstream
	}
	ctx, cancel := context.WithTimeout(ctx, f.s.cfg.Budget)
	defer cancel() // the tries still waiting stop
	req := new(dns.Msg)
	req.SetQuestion(uq.name, uq.qtype)
	req.Question[0].Qclass = uq.qclass
	req.RecursionDesired = true
	req.CheckingDisabled = uq.cd
	req.SetEdns0(ednsSize, uq.do)
	order := f.order()
	type result struct {
		i    int // the upstream, in order
		resp *dns.Msg
		err  error
	}
	results := make(chan result, len(order))
	// Per upstream: given up on (its try timeout passed, or it failed),
	// tries still waiting for a result, and refused.
	late := make([]bool, len(order))
	waiting := make([]int, len(order))
	refusedBy := make([]bool, len(order))
	var lastErr error
	refused, asked, pending := 0, 0, 0
	var tryTimer *time.Timer
	var tryOver <-chan time.Time
	defer func() {
		if tryTimer != nil {
			tryTimer.Stop()
		}
	}()
	// noAnswer marks upstream i as having given no answer in its try (a
	// timeout, a closed port): asked after the others for a while, as
	// dnsmasq keeps to the server that answered.
	noAnswer := func(i int) {
		f.failedAt[order[i]].Store(time.Now().UnixNano())
	}
	try := func(i int) {
		pending++
		waiting[i]++
		r := req.Copy() // each try sets its own ID
		go func() {
			resp, err := f.s.exchangeWith(ctx, order[i], r, f.s.cfg.Budget, uq.tcp)
			select {
			case results <- result{i, resp, err}:
			case <-ctx.Done():
			}
		}()
	}
	ask := func() {
		i := asked
		asked++
		if tryTimer != nil {
			tryTimer.Stop()
		}
		tryOver = nil
		if asked < len(order) {
			tryTimer = time.NewTimer(f.s.cfg.TryTimeout)
			tryOver = tryTimer.C
		}
		try(i)
	}
	// A repeat's send again: to the upstream asked last, or to every
	// upstream (then no other is asked on a timeout: all were), and to
	// every one on a repeat after that. Not within resendGap of the last.
	var wake <-chan struct{}
	if st != nil {
		wake = st.wake
	}
	sentAll := false
	var lastAgain time.Time
	again := func(kind int) {
		if kind == againNone || time.Since(lastAgain) < resendGap {
			return
		}
		lastAgain = time.Now()
		if kind == againLast && !sentAll {
			try(asked - 1)
			return
		}
		sentAll = true
		for i := range order {
			try(i)
		}
		asked = len(order)
		tryOver = nil
	}
	ask()
	for {
		select {
		case <-wake:
			again(st.take())
			continue
		case <-tryOver:
			// The newest try got no answer in time: the next upstream
			// is asked, and this one still listened to.
			i := asked - 1
			late[i] = true
			f.s.m.upstreamFailures.WithLabelValues(order[i], "timeout").Inc()
			lastErr = fmt.Errorf("%s: no answer within %s", order[i], f.s.cfg.TryTimeout)
			noAnswer(i)
			ask()
			continue
		case <-ctx.Done():
			// The budget is over: the upstreams not given up on yet
			// timed out.
			for i := range order {
				if waiting[i] > 0 && !late[i] {
					f.s.m.upstreamFailures.WithLabelValues(order[i], "timeout").Inc()
					noAnswer(i)
				}
			}
			if lastErr == nil {
				lastErr = ctx.Err()
			}
			return nil, fmt.Errorf("upstreams gave no answer within %s: %w", f.s.cfg.Budget, lastErr)
		case r := <-results:
			pending--
			waiting[r.i]--
			up := order[r.i]
			switch {
			case r.err != nil:
				lastErr = fmt.Errorf("%s: %w", up, r.err)
				if !errors.Is(r.err, errBadAnswer) && !late[r.i] {
					if isTimeout(r.err) {
						f.s.m.upstreamFailures.WithLabelValues(up, "timeout").Inc()
					}
					noAnswer(r.i)
				}
			case r.resp.Rcode == dns.RcodeServerFailure, r.resp.Rcode == dns.RcodeRefused:
				f.failedAt[up].Store(0)
				f.s.m.upstreamFailures.WithLabelValues(up, strings.ToLower(dns.RcodeToString[r.resp.Rcode])).Inc()
				lastErr = fmt.Errorf("%s: %s", up, dns.RcodeToString[r.resp.Rcode])
				if r.resp.Rcode == dns.RcodeRefused && !refusedBy[r.i] {
					refusedBy[r.i] = true
					refused++
				}
			default:
				f.failedAt[up].Store(0)
				return r.resp, nil
			}
			if r.i == asked-1 && asked < len(order) {
				ask() // the newest try failed: the next at once
			}
		}
		if pending == 0 && asked == len(order) {
			break
		}
	}
	if refused == len(order) {
		return nil, fmt.Errorf("%w: %w", errAllRefused, lastErr)
	}
	return nil, lastErr
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// errBadAnswer: an upstream answered, but with a packet that does not
// unpack or is for another question.
var errBadAnswer = errors.New("bad answer")

// errAllRefused: every upstream answered REFUSED. The client then gets
// REFUSED, as from dnsmasq, which passes the last server's REFUSED on when
// no server answered otherwise.
var errAllRefused = errors.New("every upstream refused")

// exchangeWith sends req to addr over UDP, then over TCP if the answer came
// back truncated (over TCP alone when tcp is set), and checks the answer
// is for the question asked.
func (s *Server) exchangeWith(ctx context.Context, addr string, req *dns.Msg, timeout time.Duration, tcp bool) (*dns.Msg, error) {
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout = left
		}
	}
	if timeout <= 0 {
		return nil, context.DeadlineExceeded
	}
	start := time.Now()
	var resp *dns.Msg
	var err error
	if !tcp {
		req.Id = dns.Id()
		resp, err = exchangeOver(ctx, "udp", addr, req, timeout)
	}
	if tcp || err == nil && resp.Truncated {
		req.Id = dns.Id()
		resp, err = exchangeOver(ctx, "tcp", addr, req, timeout)
	}
	if err != nil {
		reason := "error"
		var de *dns.Error
		switch {
		case ctx.Err() != nil || isTimeout(err):
			// No answer in time (the budget is over, or another
			// upstream answered): exchange counts the timeouts.
			return nil, err
		case errors.Is(err, errBadAnswer):
		case errors.As(err, &de):
			// miekg/dns's own errors: the answer came but could not be
			// read.
			err = fmt.Errorf("%w: %w", errBadAnswer, err)
		}
		s.m.upstreamFailures.WithLabelValues(addr, reason).Inc()
		return nil, err
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, req.Question[0].Name) || resp.Question[0].Qtype != req.Question[0].Qtype {
		s.m.upstreamFailures.WithLabelValues(addr, "mismatch").Inc()
		return nil, fmt.Errorf("%w: for another question", errBadAnswer)
	}
	s.m.upstreamLatency.WithLabelValues(addr).Observe(time.Since(start).Seconds())
	return resp, nil
}

// exchangeOver sends req to addr over network ("udp" or "tcp") and reads
// the answer with the ID asked. Over UDP it reads into a buffer of
// maxUDPAnswer bytes: miekg/dns's Client reads into a buffer of the
// request's EDNS0 size (ednsSize, 1232), so an upstream answer a little
// larger than the size asked for, without TC (servers that advertise 4096
// and fill it), was cut at 1232 bytes, failed to unpack and counted as an
// upstream error; dnsmasq, whose receive buffer is its EDNS0 size plus a
// name and a record header, takes such answers.
func exchangeOver(ctx context.Context, network, addr string, req *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: timeout}
	co, err := c.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	if err := co.SetDeadline(dl); err != nil {
		return nil, err
	}
	// Given up on (another upstream answered, the budget is over): the
	// read ends now rather than at its deadline.
	stop := context.AfterFunc(ctx, func() { _ = co.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := co.WriteMsg(req); err != nil {
		return nil, err
	}
	size := maxUDPAnswer
	if network == "tcp" {
		size = dns.MaxMsgSize
	}
	buf := make([]byte, size)
	for {
		n, err := co.Read(buf)
		if err != nil {
			return nil, err
		}
		if n < 12 || binary.BigEndian.Uint16(buf) != req.Id {
			if network == "tcp" {
				return nil, fmt.Errorf("%w: ID %d, asked %d", errBadAnswer, binary.BigEndian.Uint16(buf), req.Id)
			}
			continue // not an answer, or a late one to an earlier query
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(buf[:n]); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadAnswer, err)
		}
		// miekg/dns takes a packet that ends before the records its
		// header counts as holding fewer; dnsmasq answers SERVFAIL to it,
		// over UDP and TCP. Only a truncated answer may be cut short.
		if !resp.Truncated && (len(resp.Answer) != int(binary.BigEndian.Uint16(buf[6:])) ||
			len(resp.Ns) != int(binary.BigEndian.Uint16(buf[8:])) ||
			len(resp.Extra) != int(binary.BigEndian.Uint16(buf[10:]))) {
			return nil, fmt.Errorf("%w: fewer records than its header counts", errBadAnswer)
		}
		return resp, nil
	}
}

// toAnswer packs an upstream reply and works out how long to cache it:
// positive answers by their smallest TTL, negative ones by the SOA minimum,
// both capped.
func (f *forwarder) toAnswer(resp *dns.Msg) (*answer, error) {
	extra := resp.Extra[:0]
	for _, rr := range resp.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	resp.Extra = extra
	// The question in lower case, and records owned by its name too: they
	// are then packed as pointers to the question, whose letter case each
	// client's own replaces (patch). The upstream was asked in the first
	// asker's case; dnsmasq answers from its cache in the asker's case too.
	qn := strings.ToLower(resp.Question[0].Name)
	resp.Question[0].Name = qn
	for _, rrs := range [][]dns.RR{resp.Answer, resp.Ns, resp.Extra} {
		for _, rr := range rrs {
			if h := rr.Header(); strings.EqualFold(h.Name, qn) {
				h.Name = qn
			}
		}
	}
	resp.Truncated = false
	// Not authoritative here, even when the upstream was: a forwarder's
	// (and cache's) answer, as dnsmasq's from its cache (RFC 1035 4.1.1:
	// AA is for a server that is an authority for the name). Recursion is
	// available here whatever the upstream said, as dnsmasq always says;
	// AD is not passed on, as dnsmasq without proxy-dnssec does not (RFC
	// 6840 5.8: only a validating resolver, or one whose upstream path is
	// trusted, may set it).
	resp.Authoritative = false
	resp.RecursionAvailable = true
	resp.AuthenticatedData = false
	a, err := newAnswer(resp, zoneUpstream, false, true)
	if err != nil {
		return nil, err
	}
	// Counted in the wall clock's whole seconds, as dnsmasq 2.90 counts
	// (cache.c: an entry's ttd is time(NULL) + TTL, it expires when
	// time(NULL) reaches ttd and is answered with TTL ttd - time(NULL)):
	// stored the second the answer came in, asked again once the clock's
	// whole second has moved on by the TTL (TestCachedTTLCountsAsDnsmasq).
	now := f.s.now()
	now -= now % int64(time.Second)
	a.stored = now
	var ttl time.Duration
	cacheable := false
	switch {
	case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0:
		min := uint32(1<<31 - 1)
		for _, rr := range resp.Answer {
			if t := rr.Header().Ttl; t < min {
				min = t
			}
		}
		ttl = time.Duration(min) * time.Second
		if ttl > f.s.cfg.CacheMaxTTL {
			ttl = f.s.cfg.CacheMaxTTL
		}
		cacheable = ttl > 0
	case resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError:
		a.negative = true
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				t := soa.Minttl
				if soa.Hdr.Ttl < t {
					t = soa.Hdr.Ttl
				}
				ttl = time.Duration(t) * time.Second
				if ttl > f.s.cfg.CacheNegMaxTTL {
					ttl = f.s.cfg.CacheNegMaxTTL
				}
				cacheable = ttl > 0
			}
		}
	}
	if cacheable {
		a.expires = now + int64(ttl)
		a.staleEnd = a.expires
		if f.s.cfg.ServeStale {
			a.staleEnd += int64(f.s.cfg.ServeStaleMax)
		}
	}
	return a, nil
}

// staleCopy is a with every TTL set to the serve-stale TTL (RFC 8767: 30s).
func staleCopy(a *answer) *answer {
	c := *a
	c.servedTTL = 30
	return &c
}
