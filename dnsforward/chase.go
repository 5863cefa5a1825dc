package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// chaser finds the records a host-name address resolves to, for the
// answers of services and nodes whose address is a host name. Consul adds
// them after its CNAME (hashicorp/consul agent/dns.go resolveCNAME): a name
// inside the Consul domain is answered from its own data (type ANY, at most
// maxChaseDepth names deep), any other name is asked of its recursors (type
// A only). dnsforward does the same from memory and through its upstreams
// (and their cache); the upstream path never carries the Consul domain, so
// chasing cannot loop, and the depth bounds chains inside the domain.
type chaser struct {
	z     *consulZone
	ctx   context.Context
	wait  bool // false on the fast path: anything not in memory blocks
	depth int

	blocked bool  // a record was not in memory and wait was false
	expires int64 // unix ns when upstream records used expire (0: none)
	stale   bool  // records kept from the agent's last good answer were used
}

// chaseRetry is how soon an answer whose chase failed or used records not
// cacheable (TTL 0) is built again.
const chaseRetry = time.Second

func (c *chaser) note(exp int64) {
	if exp > 0 && (c.expires == 0 || exp < c.expires) {
		c.expires = exp
	}
}

// records returns what target resolves to: CNAME, A and AAAA records;
// with setTTL their TTL is ttl (as Consul does for service addresses).
// Records owned by target carry its letter case as given, as from Consul:
// it asks its own DNS or its recursors for the name as written, and both
// answer with the question's case.
func (c *chaser) records(target string, ttl uint32, setTTL bool) []dns.RR {
	if c == nil || c.blocked {
		return nil
	}
	asGiven := dns.Fqdn(target)
	target = strings.ToLower(asGiven)
	var rrs []dns.RR
	if c.z.s.inConsulDomain([]byte(target)) {
		if c.depth < 1 {
			return nil
		}
		a, res, err := c.z.resolveDepth(c.ctx, target, dns.TypeANY, c.wait, c.depth-1)
		switch {
		case res == resWait:
			c.blocked = true
			return nil
		case res == resForward:
			// Not answered from memory (a prepared query, .connect,
			// .virtual, another datacenter, ...): Consul answers the
			// target from its own DNS, so the agent's DNS is asked.
			var stale bool
			rrs, stale = c.agent(asGiven)
			if stale {
				// Served stale: with -stale-ttl, as every answer from
				// memory while Consul cannot be asked.
				c.stale = true
				ttl, setTTL = uint32(c.z.s.cfg.StaleTTL/time.Second), true
			}
		case err != nil || a == nil:
			return nil
		default:
			c.note(a.expires)
			c.stale = c.stale || a.staleChase
			rrs = unpackAnswer(a)
		}
	} else {
		a := c.upstream(target)
		if a == nil {
			return nil
		}
		rrs = unpackAnswer(a)
	}
	out := rrs[:0]
	for _, rr := range rrs {
		switch rr.Header().Rrtype {
		case dns.TypeCNAME, dns.TypeA, dns.TypeAAAA:
			if setTTL {
				rr.Header().Ttl = ttl
			}
			if strings.EqualFold(rr.Header().Name, asGiven) {
				rr.Header().Name = asGiven
			}
			out = append(out, rr)
		}
	}
	return out
}

// agent asks the agent's DNS what target (in the Consul domain, not the
// apex) resolves to, type ANY as Consul asks itself. The answer is not
// watched: one built with it is built again after chaseRetry.
//
// While the agent's DNS cannot be asked (no answer, an error, SERVFAIL:
// the agent stopped, cut off, or its servers electing a leader), the
// target's records from its last good answer are used, as every answer
// from memory is served from the last good state during an outage
// (stale is then true): for -max-stale from the first failed ask, then
// no longer (the CNAME alone, as before any answer). The agent is asked
// again at most every chaseRetry meanwhile, so an answer is not held up
// by a dead agent more than once in that time.
func (c *chaser) agent(target string) (rrs []dns.RR, stale bool) {
	if _, _, ok := cutDomain(c.z.s.settings.Load().domains, strings.ToLower(target)); !ok {
		return nil, false // the apex: Consul does not resolve it itself
	}
	z := c.z
	now := time.Now().UnixNano()
	if last, ok := z.targetState(target, now); ok && last.failSince != 0 && now-last.tried < int64(chaseRetry) {
		// Asked lately without an answer: not again before chaseRetry.
		c.note(last.tried + int64(chaseRetry))
		return z.lastGood(last, now)
	}
	if !c.wait {
		c.blocked = true
		return nil, false
	}
	c.note(now + int64(chaseRetry))
	resp, err := z.s.askAgent(c.ctx, target, dns.TypeANY, false, false, nil)
	if err == nil && resp.Rcode == dns.RcodeServerFailure {
		err = errors.New("SERVFAIL")
	}
	if err != nil {
		return z.lastGood(z.agentFailed(target, now, err), now)
	}
	rrs = make([]dns.RR, len(resp.Answer))
	for i, rr := range resp.Answer {
		rrs[i] = dns.Copy(rr) // resp is shared with other askers
	}
	z.agentAnswered(target, rrs, now)
	return rrs, false
}

// agentTarget is what the agent's DNS last said of one host-name target
// (chaser.agent), kept in consulZone.targets.
type agentTarget struct {
	name      string   // the target as the address gives it
	rrs       []dns.RR // the last good answer's records (copied when used)
	good      bool     // rrs is an answer (it may hold no record)
	goodAt    int64    // unix ns of the last good answer
	failSince int64    // unix ns of the first failed ask since; 0 while it answers
	tried     int64    // unix ns of the last failed ask
	expired   bool     // failing for longer than -max-stale: said in the log
	used      int64    // unix ns of the last use (dropIdle forgets old ones)
}

// maxAgentTargets bounds consulZone.targets (host-name addresses are
// catalog data, not names clients make up: a bound against the odd
// catalog, not against clients).
const maxAgentTargets = 10000

// targetState returns a copy of what is kept for target, marking it used.
func (z *consulZone) targetState(target string, now int64) (agentTarget, bool) {
	z.tmu.Lock()
	defer z.tmu.Unlock()
	t := z.targets[target]
	if t == nil {
		return agentTarget{}, false
	}
	t.used = now
	return *t, true
}

// targetLocked returns the entry of target, made when absent; z.tmu is
// held.
func (z *consulZone) targetLocked(target string, now int64) *agentTarget {
	t := z.targets[target]
	if t == nil {
		if z.targets == nil || len(z.targets) >= maxAgentTargets {
			z.targets = map[string]*agentTarget{}
		}
		t = &agentTarget{name: target}
		z.targets[target] = t
	}
	t.used = now
	return t
}

// agentAnswered keeps rrs as target's last good records.
func (z *consulZone) agentAnswered(target string, rrs []dns.RR, now int64) {
	kept := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		kept[i] = dns.Copy(rr) // the caller changes its own
	}
	z.tmu.Lock()
	t := z.targetLocked(target, now)
	since := t.failSince
	t.rrs, t.good, t.goodAt, t.failSince, t.expired = kept, true, now, 0, false
	z.tmu.Unlock()
	if since != 0 {
		z.log.Info("the agent's DNS answers for a host-name address again: its records are current",
			"target", target, "consul_dns", z.s.cfg.ConsulDNS, "failed_for", time.Duration(now-since).Round(time.Millisecond))
	}
}

// agentFailed records a failed ask of target and returns its entry. The
// first failure since the last answer says in the log what the answers
// carry until the agent's DNS answers again (the address asked and the
// error: no token or other secret is part of either).
func (z *consulZone) agentFailed(target string, now int64, err error) agentTarget {
	z.tmu.Lock()
	t := z.targetLocked(target, now)
	first := t.failSince == 0
	if first {
		t.failSince = now
	}
	t.tried = now
	last := *t
	z.tmu.Unlock()
	if !first {
		return last
	}
	if last.good {
		z.log.Warn("the agent's DNS cannot be asked for a host-name address: answering with its last good records until the agent's DNS answers again",
			"target", target, "consul_dns", z.s.cfg.ConsulDNS, "err", err, "records", len(last.rrs),
			"good_since", time.Duration(now-last.goodAt).Round(time.Millisecond), "max_stale", z.s.cfg.MaxStale)
	} else {
		z.log.Warn("the agent's DNS cannot be asked for a host-name address, and no good answer of it is kept: answering with the CNAME alone until the agent's DNS answers",
			"target", target, "consul_dns", z.s.cfg.ConsulDNS, "err", err)
	}
	return last
}

// lastGood is a copy of the last good records of t, the agent's DNS
// failing since t.failSince, with stale true; none past -max-stale.
func (z *consulZone) lastGood(t agentTarget, now int64) ([]dns.RR, bool) {
	if !t.good {
		return nil, false
	}
	if maxStale := z.s.cfg.MaxStale; maxStale > 0 && now-t.failSince > int64(maxStale) {
		z.tmu.Lock()
		first := false
		if cur := z.targets[t.name]; cur != nil && !cur.expired && cur.failSince == t.failSince {
			cur.expired, first = true, true
		}
		z.tmu.Unlock()
		if first {
			z.log.Warn("the agent's DNS has not answered for a host-name address for longer than -max-stale: its last good records are no longer used",
				"target", t.name, "consul_dns", z.s.cfg.ConsulDNS, "max_stale", maxStale)
		}
		return nil, false
	}
	rrs := make([]dns.RR, len(t.rrs))
	for i, rr := range t.rrs {
		rrs[i] = dns.Copy(rr)
	}
	return rrs, true
}

// upstream asks the upstreams (or their cache) for target's A records.
func (c *chaser) upstream(target string) *answer {
	s := c.z.s
	key := target + string([]byte{0, byte(dns.TypeA), 0, byte(dns.ClassINET)})
	now := s.now()
	if a, fresh := s.fwd.cached([]byte(key), now); a != nil && fresh {
		c.note(a.expires)
		return a
	}
	if !c.wait {
		c.blocked = true
		return nil
	}
	a, err := s.fwd.resolve(c.ctx, key, upQuestion{name: target, qtype: dns.TypeA, qclass: dns.ClassINET}, source{})
	if err != nil || a == nil {
		c.note(time.Now().Add(chaseRetry).UnixNano())
		return nil
	}
	if a.expires > time.Now().UnixNano() {
		c.note(a.expires)
	} else {
		c.note(time.Now().Add(chaseRetry).UnixNano())
	}
	return a
}

// unpackAnswer is the answer section of a stored answer.
func unpackAnswer(a *answer) []dns.RR {
	m := new(dns.Msg)
	if err := m.Unpack(a.packed); err != nil {
		return nil
	}
	return m.Answer
}
