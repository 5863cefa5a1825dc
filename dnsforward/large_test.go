package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/berth/berth/pkg/consultest"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// TestLargeAnswersFromTheAgent: a prepared query (answered by the agent's
// DNS, not from memory) with 300 instances. Over TCP dnsforward asks the
// agent over TCP and gives every record, as Consul's DNS does over TCP; over
// UDP it cuts the answer to the client's buffer and sets TC.
func TestLargeAnswersFromTheAgent(t *testing.T) {
	a := consultest.Require(t, agent)
	requireDig(t)
	c := a.Client()
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := c.Catalog().Register(&api.CatalogRegistration{Node: fmt.Sprintf("bignode%d", i%10), Address: fmt.Sprintf("10.31.0.%d", i%10+1),
				Service: &api.AgentService{ID: fmt.Sprintf("big%d", i), Service: "big", Port: 2000 + i, Address: fmt.Sprintf("10.30.%d.%d", i/250, i%250+1)}}, nil)
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	addr := preparedQueryServer(t, a, "bigq", "big", "bignode", 10)
	for _, qt := range []string{"A", "SRV"} {
		want := dig(t, a.DNSAddr(), "+tcp", "bigq.query.consul", qt)
		got := dig(t, addr, "+tcp", "bigq.query.consul", qt)
		if len(set(want.answer)) != n {
			t.Fatalf("Consul's DNS over TCP: %d %s records, want %d (the test's premise)", len(set(want.answer)), qt, n)
		}
		if len(got.answer) != len(want.answer) || strings.Join(set(got.answer), "\n") != strings.Join(set(want.answer), "\n") {
			t.Errorf("%s over TCP: %d records, Consul's DNS %d", qt, len(got.answer), len(want.answer))
		}
		if strings.Join(set(got.extra), "\n") != strings.Join(set(want.extra), "\n") {
			t.Errorf("%s over TCP: %d additional records, Consul's DNS %d", qt, len(set(got.extra)), len(set(want.extra)))
		}
		// A 4096-byte client: as much as fits, with TC (the agent sets
		// none without enable_truncate: a client could not know).
		udp := dig(t, addr, "+bufsize=4096", "+ignore", "bigq.query.consul", qt)
		if !strings.Contains(" "+udp.flags+" ", " tc ") || len(udp.answer) >= n {
			t.Errorf("%s over UDP +bufsize=4096: %d records, flags %q: want fewer than %d and tc", qt, len(udp.answer), udp.flags, n)
		}
		// A 512-byte client: the agent's udp_answer_limit (3 by default),
		// its additional records, its flags; the agent is the oracle.
		for _, opt := range []string{"+noedns", "+bufsize=512"} {
			got, want := dig(t, addr, opt, "+ignore", "bigq.query.consul", qt), dig(t, a.DNSAddr(), opt, "+ignore", "bigq.query.consul", qt)
			if len(got.answer) != len(want.answer) || len(got.extra) != len(want.extra) || withoutRA(got.flags) != withoutRA(want.flags) {
				t.Errorf("%s over UDP %s: %d records (%d additional), flags %q; Consul's DNS %d (%d), %q", qt, opt,
					len(got.answer), len(got.extra), got.flags, len(want.answer), len(want.extra), want.flags)
			}
		}
	}
	// Without the agent's settings (flags only: no udp_answer_limit), a
	// client without EDNS gets what fits 512 bytes and TC, and retries over
	// TCP for everything.
	cfg := baseConfig(a)
	cfg.AgentDNSConfig = false
	_, flagsOnly := startServer(t, cfg)
	r := exchange(t, flagsOnly, "bigq.query.consul.", dns.TypeA, "udp")
	if !r.Truncated || len(r.Answer) >= n {
		t.Errorf("UDP without EDNS, flags only: TC %v with %d records; want TC", r.Truncated, len(r.Answer))
	}
}

// TestCutSRVKeepsGlueLikeConsul: an SRV answer too large for the client's
// EDNS0 buffer is cut as Consul's DNS cuts it: answer records and their
// address records go together, the additional section holds the address
// of each kept target and nothing else (agent/dns.go trimUDPResponse,
// syncExtra). Consul's DNS is the oracle, from memory and for a prepared
// query passed to the agent. dnsforward keeps its OPT record in the
// client's buffer where Consul drops it, so it may keep one record fewer;
// it sets TC where the agent, without enable_truncate, does not (the
// README's differences).
func TestCutSRVKeepsGlueLikeConsul(t *testing.T) {
	a := consultest.Require(t, agent)
	requireDig(t)
	c := a.Client()
	const n = 150
	for i := 0; i < n; i++ {
		_, err := c.Catalog().Register(&api.CatalogRegistration{Node: fmt.Sprintf("cutnode%d", i%4), Address: fmt.Sprintf("10.41.0.%d", i%4+1),
			Service: &api.AgentService{ID: fmt.Sprintf("cut%d", i), Service: "cutsrv", Port: 3000 + i, Address: fmt.Sprintf("10.40.%d.%d", i/200, i%200+1)}}, nil)
		must(t, err)
	}
	addr := preparedQueryServer(t, a, "cutq", "cutsrv", "cutnode", 4)
	for _, name := range []string{"cutsrv.service.consul", "cutq.query.consul"} {
		for _, bufsize := range []string{"+bufsize=1232", "+bufsize=700", "+bufsize=4096"} {
			want := dig(t, a.DNSAddr(), bufsize, "+ignore", name, "SRV")
			got := dig(t, addr, bufsize, "+ignore", name, "SRV")
			what := name + " SRV " + bufsize
			if len(want.answer) == 0 || len(want.answer) >= n {
				t.Fatalf("%s: Consul's DNS gave %d of %d records: the test wants a cut answer", what, len(want.answer), n)
			}
			if len(got.answer) != len(want.answer) && len(got.answer) != len(want.answer)-1 {
				t.Errorf("%s: %d SRV records, Consul's DNS %d", what, len(got.answer), len(want.answer))
			}
			// The additional section: exactly one address record per
			// kept target, as from Consul.
			for _, r := range []digResult{want, got} {
				targets := map[string]bool{}
				for _, rec := range r.answer {
					f := strings.Fields(rec)
					targets[f[len(f)-1]] = true
				}
				owners := map[string]bool{}
				for _, rec := range r.extra {
					f := strings.Fields(rec)
					if f[3] != "A" || !targets[f[0]] {
						t.Errorf("%s: additional record %q is not the address of a kept target\n%s", what, rec, r.raw)
					}
					owners[f[0]] = true
				}
				if len(owners) != len(targets) {
					t.Errorf("%s: %d targets, %d with their address\n%s", what, len(targets), len(owners), r.raw)
				}
			}
			if !strings.Contains(" "+got.flags+" ", " tc ") {
				t.Errorf("%s: flags %q, want tc", what, got.flags)
			}
		}
	}
}

// TestCutSRVKeepsAddressNotMeta: an SRV answer cut for a 512-byte client
// keeps each kept target's address record, also when the target is a node
// whose meta TXT record comes first in the whole answer's additional
// section (there Consul's cut keeps the TXT record instead: its indexRRs
// keeps a name's first record of any type).
func TestCutSRVKeepsAddressNotMeta(t *testing.T) {
	a := consultest.Require(t, agent)
	addr := startSeeded(t, a) // with the agent's udp_answer_limit, as main runs it
	// The set-up holds the fault's cause: a target with both an address
	// and a meta TXT record in the whole answer.
	full := exchange(t, addr, "web.service.consul.", dns.TypeSRV, "tcp")
	types := map[string]map[uint16]bool{}
	for _, rr := range full.Extra {
		n := strings.ToLower(rr.Header().Name)
		if types[n] == nil {
			types[n] = map[uint16]bool{}
		}
		types[n][rr.Header().Rrtype] = true
	}
	both := false
	for _, rr := range full.Answer {
		ty := types[strings.ToLower(rr.(*dns.SRV).Target)]
		both = both || ty[dns.TypeA] && ty[dns.TypeTXT]
	}
	if !both {
		t.Fatalf("no SRV target with both an A and a TXT record in the whole answer: %v", full.Extra)
	}
	for i := 0; i < 40; i++ {
		r := exchange(t, addr, "web.service.consul.", dns.TypeSRV, "udp")
		if len(r.Answer) == 0 || len(r.Answer) >= len(full.Answer) {
			t.Fatalf("512-byte client: %d SRV records of %d, want a cut answer", len(r.Answer), len(full.Answer))
		}
		glue := map[string]bool{}
		for _, rr := range r.Extra {
			switch rr.Header().Rrtype {
			case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME:
				glue[strings.ToLower(rr.Header().Name)] = true
			}
		}
		for _, rr := range r.Answer {
			if target := rr.(*dns.SRV).Target; !glue[strings.ToLower(target)] {
				t.Fatalf("cut answer: SRV target %s without its address record; additional: %v", target, r.Extra)
			}
		}
	}
}

// TestTrimLikeConsulFits: whatever the answer, a cut one packs within the
// size asked with its OPT record kept, TC set, and each kept SRV record's
// target address, and only those, in the additional section; with
// compress false (dns_config.disable_compression), packed without a
// compression pointer.
func TestTrimLikeConsulFits(t *testing.T) {
	for _, compress := range []bool{true, false} {
		for _, glue := range []bool{true, false} {
			for _, size := range []int{512, 700, 1232, 4096} {
				m := new(dns.Msg)
				m.SetQuestion("many.service.consul.", dns.TypeSRV)
				for i := 0; i < 300; i++ {
					target := fmt.Sprintf("0a%06x.addr.dc1.consul.", i)
					m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: "many.service.consul.", Rrtype: dns.TypeSRV, Class: dns.ClassINET},
						Priority: 1, Weight: 1, Port: uint16(1000 + i), Target: target})
					if glue {
						m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: []byte{10, 0, byte(i >> 8), byte(i)}},
							&dns.TXT{Hdr: dns.RR_Header{Name: fmt.Sprintf("node%d.node.dc1.consul.", i%7), Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{"consul-version=1.21.0"}})
					}
				}
				m.SetEdns0(uint16(size), false)
				trimLikeConsul(m, size, compress)
				p, err := m.Pack()
				if err != nil {
					t.Fatal(err)
				}
				what := fmt.Sprintf("compress %v, glue %v, %d bytes", compress, glue, size)
				if len(p) > size || len(m.Answer) == 0 || len(m.Answer) == 300 || !m.Truncated || m.IsEdns0() == nil {
					t.Errorf("%s: %d bytes, %d records, TC %v, OPT %v", what, len(p), len(m.Answer), m.Truncated, m.IsEdns0() != nil)
				}
				slack := 60 // a compressed SRV record and its address
				if !compress {
					slack = 110
				}
				if len(p) < size-slack {
					t.Errorf("%s: %d bytes: more records would fit", what, len(p))
				}
				if ptr, err := hasPointer(p); err != nil || ptr != compress {
					t.Errorf("%s: compression pointers %v (%v)", what, ptr, err)
				}
				targets := map[string]bool{}
				for _, rr := range m.Answer {
					targets[rr.(*dns.SRV).Target] = true
				}
				n := 0
				for _, rr := range m.Extra {
					if rr.Header().Rrtype == dns.TypeOPT {
						continue
					}
					if _, ok := rr.(*dns.A); !ok || !targets[rr.Header().Name] {
						t.Errorf("%s: additional %v", what, rr)
					}
					n++
				}
				if glue && n != len(targets) {
					t.Errorf("%s: %d targets, %d addresses", what, len(targets), n)
				}
			}
		}
	}
	// Address records, uncompressed: cut as SRV answers are, measured so.
	for _, size := range []int{512, 1232} {
		m := new(dns.Msg)
		m.SetQuestion("many.service.consul.", dns.TypeA)
		for i := 0; i < 300; i++ {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "many.service.consul.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: []byte{10, 0, byte(i >> 8), byte(i)}})
		}
		m.SetEdns0(uint16(size), false)
		trimLikeConsul(m, size, false)
		p, err := m.Pack()
		must(t, err)
		ptr, err := hasPointer(p)
		if len(p) > size || len(p) < size-40 || !m.Truncated || m.IsEdns0() == nil || ptr || err != nil {
			t.Errorf("A records, uncompressed, %d bytes: %d bytes, %d records, TC %v, OPT %v, pointers %v (%v)", size, len(p), len(m.Answer), m.Truncated, m.IsEdns0() != nil, ptr, err)
		}
	}
}

// preparedQueryServer creates prepared query name for service on a's
// catalog and starts a dnsforward reading the agent's settings, as the
// program runs; at the end of the test the query and the nodes
// nodePrefix0..nodes-1 are removed. It returns dnsforward's address.
func preparedQueryServer(t *testing.T, a *consultest.Agent, name, service, nodePrefix string, nodes int) string {
	t.Helper()
	c := a.Client()
	id, _, err := c.PreparedQuery().Create(&api.PreparedQueryDefinition{Name: name, Service: api.ServiceQuery{Service: service}}, nil)
	must(t, err)
	t.Cleanup(func() {
		_, _ = c.PreparedQuery().Delete(id, nil)
		for i := 0; i < nodes; i++ {
			_, _ = c.Catalog().Deregister(&api.CatalogDeregistration{Node: fmt.Sprintf("%s%d", nodePrefix, i)}, nil)
		}
	})
	cfg := baseConfig(a)
	cfg.AgentDNSConfig = true
	cfg.Explicit = map[string]bool{}
	_, addr := startServer(t, cfg)
	return addr
}
