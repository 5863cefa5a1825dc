package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// TestDisableCompressionLikeConsul: with the agent's
// dns_config.disable_compression, Consul's DNS sends its answers without
// name compression; dnsforward's answers of the Consul domain, built from
// memory or passed from the agent (a reverse name), are then uncompressed
// too, of the same size, with the answer records' owner in the question's
// letter case, and are cut for a client measured uncompressed as Consul
// measures them. Without the setting both compress, as before.
func TestDisableCompressionLikeConsul(t *testing.T) {
	requireDig(t)
	for _, tc := range []struct {
		name       string
		hcl        string
		compressed bool
	}{
		{"disable_compression", "dns_config { disable_compression = true }", false},
		{"default", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := consultest.StartT(t, consultest.Options{NodeName: "cmpnode", ExtraHCL: tc.hcl})
			c := a.Client()
			must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "w1", Name: "cmpweb", Port: 80, Address: "10.45.0.1"}))
			must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "w2", Name: "cmpweb", Port: 81, Address: "10.45.0.2"}))
			must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "o1", Name: "cmpone", Port: 90, Address: "10.45.1.1"}))
			const many = 60
			for i := 0; i < many; i++ {
				must(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: fmt.Sprintf("m%d", i), Name: "cmpmany", Port: 1000 + i, Address: fmt.Sprintf("10.46.0.%d", i+1)}))
			}
			cfg := baseConfig(a)
			cfg.AgentDNSConfig = true
			cfg.Explicit = map[string]bool{}
			s, addr := startServer(t, cfg)
			eventually.Holds(t, 10*time.Second, "the agent's settings", func() (bool, string) {
				return s.zone.settingsRead.Load(), "not read"
			})
			waitSeeded(t, a, addr, map[string][]string{"cmpone.service.consul SRV": {"1 1 90 0a2d0101.addr.dc1.consul."}})
			eventually.Holds(t, seedTimeout, "all cmpmany instances", func() (bool, string) {
				r, err := ask(addr, "cmpmany.service.consul.", dns.TypeA, "tcp")
				if err != nil || len(r.Answer) != many {
					return false, fmt.Sprintf("%v %v", r, err)
				}
				return true, ""
			})

			// Same record sets: same sizes, compression pointers in both or in neither.
			for _, q := range []struct {
				name    string
				qtype   uint16
				bufsize int // 0: no EDNS
				ecs     bool
			}{
				{"cmpweb.service.consul.", dns.TypeA, 0, false},
				{"cmpweb.service.consul.", dns.TypeA, 1232, false},
				{"cmpweb.service.consul.", dns.TypeA, 1232, true},
				{"cmpone.service.consul.", dns.TypeSRV, 1232, true},
				{"CmpWeb.Service.CONSUL.", dns.TypeA, 0, false},
				{"cmpone.service.consul.", dns.TypeSRV, 0, false},
				{"cmpnode.node.consul.", dns.TypeA, 0, false},
				{"nosuch.service.consul.", dns.TypeA, 0, false},
				{"cmpweb.service.consul.", dns.TypeTXT, 0, false},
				{"1.0.0.127.in-addr.arpa.", dns.TypePTR, 0, false},
				{"1.0.0.127.IN-ADDR.arpa.", dns.TypePTR, 0, false},
			} {
				what := fmt.Sprintf("%s %s bufsize %d client-subnet %v", q.name, dns.TypeToString[q.qtype], q.bufsize, q.ecs)
				got, want := rawUDP(t, addr, q.name, q.qtype, q.bufsize, q.ecs), rawUDP(t, a.DNSAddr(), q.name, q.qtype, q.bufsize, q.ecs)
				gm, wm := unpackOrFail(t, what, got), unpackOrFail(t, what, want)
				if gm.Rcode != wm.Rcode || len(gm.Answer) != len(wm.Answer) || len(wm.Answer)+len(wm.Ns) == 0 {
					t.Errorf("%s: %s with %d answer records, Consul's DNS %s with %d\n%v\nConsul's DNS:\n%v", what,
						dns.RcodeToString[gm.Rcode], len(gm.Answer), dns.RcodeToString[wm.Rcode], len(wm.Answer), gm, wm)
					continue
				}
				for i, rr := range gm.Answer {
					if n, w := rr.Header().Name, wm.Answer[i].Header().Name; n != w {
						t.Errorf("%s: answer owner %q, Consul's DNS %q", what, n, w)
					}
				}
				for _, x := range []struct {
					who string
					pk  []byte
				}{{"dnsforward", got}, {"Consul's DNS", want}} {
					ptr, err := hasPointer(x.pk)
					if err != nil {
						t.Fatalf("%s from %s: %v", what, x.who, err)
					}
					if ptr != tc.compressed {
						t.Errorf("%s from %s: compression pointers %v, want %v", what, x.who, ptr, tc.compressed)
					}
				}
				if len(got) != len(want) {
					t.Errorf("%s: %d bytes, Consul's DNS %d\n%v\nConsul's DNS:\n%v", what, len(got), len(want), gm, wm)
				}
			}

			// A cut answer: as many records as Consul's DNS keeps (or one
			// fewer, as TestCutSRVKeepsGlueLikeConsul allows), measured as
			// packed, within the client's buffer.
			for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
				what := fmt.Sprintf("cmpmany %s bufsize 1232", dns.TypeToString[qtype])
				got, want := rawUDP(t, addr, "cmpmany.service.consul.", qtype, 1232, false), rawUDP(t, a.DNSAddr(), "cmpmany.service.consul.", qtype, 1232, false)
				gm, wm := unpackOrFail(t, what, got), unpackOrFail(t, what, want)
				if n, w := len(gm.Answer), len(wm.Answer); n != w && n != w-1 {
					t.Errorf("%s: %d answer records, Consul's DNS %d", what, n, w)
				}
				if len(got) > 1232 {
					t.Errorf("%s: %d bytes", what, len(got))
				}
				if ptr, err := hasPointer(got); err != nil || ptr != tc.compressed {
					t.Errorf("%s: compression pointers %v (%v), want %v", what, ptr, err, tc.compressed)
				}
			}
		})
	}
}

// rawUDP asks addr one question over UDP (with an EDNS0 OPT record of
// bufsize when it is not 0, holding a client-subnet option 10.47.0.0/16
// when ecs is set) and returns the reply's bytes as received.
func rawUDP(t *testing.T, addr, name string, qtype uint16, bufsize int, ecs bool) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if bufsize > 0 {
		m.SetEdns0(uint16(bufsize), false)
		if ecs {
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 16, Address: net.IPv4(10, 47, 0, 0).To4()})
		}
	}
	q, err := m.Pack()
	must(t, err)
	conn, err := net.Dial("udp", addr)
	must(t, err)
	defer conn.Close()
	must(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = conn.Write(q)
	must(t, err)
	buf := make([]byte, 65536)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", name, dns.TypeToString[qtype], addr, err)
	}
	return buf[:n]
}

func unpackOrFail(t *testing.T, what string, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("%s: unpack: %v", what, err)
	}
	return m
}

// hasPointer reports whether packed message pk holds a compression pointer
// (RFC 1035 section 4.1.4) in a name: the question's, each record's owner,
// or one in the data of the types that carry names here (CNAME, NS, PTR,
// SOA, SRV, MX).
func hasPointer(pk []byte) (bool, error) {
	if len(pk) < 12 {
		return false, errors.New("short header")
	}
	found := false
	name := func(off int) (int, error) {
		for {
			if off >= len(pk) {
				return 0, errors.New("name runs off the message")
			}
			l := int(pk[off])
			switch {
			case l == 0:
				return off + 1, nil
			case l&0xc0 == 0xc0:
				found = true
				return off + 2, nil
			case l&0xc0 != 0:
				return 0, fmt.Errorf("label type %#x", l)
			}
			off += 1 + l
		}
	}
	off, err := name(12)
	if err != nil {
		return false, err
	}
	off += 4
	n := int(binary.BigEndian.Uint16(pk[6:])) + int(binary.BigEndian.Uint16(pk[8:])) + int(binary.BigEndian.Uint16(pk[10:]))
	for i := 0; i < n; i++ {
		if off, err = name(off); err != nil {
			return false, err
		}
		if off+10 > len(pk) {
			return false, errors.New("record header runs off the message")
		}
		rrtype := binary.BigEndian.Uint16(pk[off:])
		rdlen := int(binary.BigEndian.Uint16(pk[off+8:]))
		rd := off + 10
		switch rrtype {
		case dns.TypeCNAME, dns.TypeNS, dns.TypePTR:
			_, err = name(rd)
		case dns.TypeSOA:
			var o int
			if o, err = name(rd); err == nil {
				_, err = name(o)
			}
		case dns.TypeSRV:
			_, err = name(rd + 6)
		case dns.TypeMX:
			_, err = name(rd + 2)
		}
		if err != nil {
			return false, err
		}
		off = rd + rdlen
	}
	if off != len(pk) {
		return false, fmt.Errorf("%d bytes after the last record", len(pk)-off)
	}
	return found, nil
}

// TestDisableCompressionFollowsReload: a `consul reload` turning
// dns_config.disable_compression on is followed: the answers kept in
// memory, packed compressed, are dropped and packed again uncompressed,
// of the size of the agent's own.
func TestDisableCompressionFollowsReload(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{NodeName: "cmpreload"})
	register := func() { // a dev agent drops API registrations on reload
		must(t, a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "w1", Name: "cmpweb", Port: 80, Address: "10.45.0.1"}))
	}
	register()
	cfg := baseConfig(a)
	cfg.AgentDNSConfig = true
	cfg.Explicit = map[string]bool{}
	cfg.AgentRefresh = 200 * time.Millisecond
	_, addr := startServer(t, cfg)
	state := func(compressed bool) func() (bool, string) {
		return func() (bool, string) {
			got, want := rawUDP(t, addr, "cmpweb.service.consul.", dns.TypeA, 0, false), rawUDP(t, a.DNSAddr(), "cmpweb.service.consul.", dns.TypeA, 0, false)
			gp, gerr := hasPointer(got)
			wp, werr := hasPointer(want)
			gm, wm := unpackOrFail(t, "cmpweb A", got), unpackOrFail(t, "cmpweb A", want)
			return len(gm.Answer) == 1 && len(wm.Answer) == 1 && gerr == nil && werr == nil && gp == compressed && wp == compressed && len(got) == len(want),
				fmt.Sprintf("dnsforward: %d records, %d bytes, pointers %v (%v); Consul's DNS: %d records, %d bytes, pointers %v (%v)",
					len(gm.Answer), len(got), gp, gerr, len(wm.Answer), len(want), wp, werr)
		}
	}
	eventually.Holds(t, 15*time.Second, "compressed answers", state(true))
	must(t, a.Reload("dns_config { disable_compression = true }"))
	register()
	eventually.Holds(t, 15*time.Second, "uncompressed answers after consul reload", state(false))
}
