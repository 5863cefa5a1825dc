package main

import (
	"context"
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
			rrs = c.agent(asGiven)
		case err != nil || a == nil:
			return nil
		default:
			c.note(a.expires)
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
func (c *chaser) agent(target string) []dns.RR {
	if _, _, ok := cutDomain(c.z.s.settings.Load().domains, strings.ToLower(target)); !ok {
		return nil // the apex: Consul does not resolve it itself
	}
	if !c.wait {
		c.blocked = true
		return nil
	}
	c.note(time.Now().Add(chaseRetry).UnixNano())
	resp, err := c.z.s.askAgent(c.ctx, target, dns.TypeANY, false, false, nil)
	if err != nil {
		return nil
	}
	rrs := make([]dns.RR, len(resp.Answer))
	for i, rr := range resp.Answer {
		rrs[i] = dns.Copy(rr) // resp is shared with other askers
	}
	return rrs
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
	a, err := s.fwd.resolve(c.ctx, key, upQuestion{name: target, qtype: dns.TypeA, qclass: dns.ClassINET})
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
