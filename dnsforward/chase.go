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
		if res == resWait {
			c.blocked = true
			return nil
		}
		if err != nil || res != resAnswer || a == nil {
			return nil
		}
		c.note(a.expires)
		rrs = unpackAnswer(a)
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
