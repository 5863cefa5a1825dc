package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/logging"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

func packQuery(name string, qtype uint16, edns bool) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	b, _ := m.Pack()
	return b
}

// hostilePackets are the bad packets both the live test and the fuzz seed
// corpus use, with the rcodes an answer may carry (-1: no answer).
func hostilePackets() map[string][]byte {
	ok := packQuery("web.service.consul.", dns.TypeA, false)
	p := map[string][]byte{}
	p["short header"] = ok[:5]
	p["header only, one question claimed"] = ok[:12]
	p["question cut"] = ok[:len(ok)-3]
	two := append([]byte(nil), ok...)
	two[5] = 2
	p["qdcount 2, one question"] = two
	an := append([]byte(nil), ok...)
	an[7] = 5
	p["ancount 5, no answers"] = an
	loop := append(append([]byte(nil), ok[:12]...), 0xc0, 0x0c, 0, 1, 0, 1)
	p["label loop"] = loop
	fwd := append(append([]byte(nil), ok[:12]...), 0xc0, 0x20, 0, 1, 0, 1)
	p["pointer past the end"] = fwd
	long := append(append([]byte(nil), ok[:12]...), 63)
	long = append(long, bytes.Repeat([]byte{'a'}, 70)...)
	p["label longer than the packet says"] = long
	huge := packQuery("web.service.consul.", dns.TypeA, true)
	binary.BigEndian.PutUint16(huge[len(huge)-11+3:], 65535)
	p["EDNS size 65535"] = huge
	class := append([]byte(nil), ok...)
	binary.BigEndian.PutUint16(class[len(class)-2:], 0x1234)
	p["unknown class"] = class
	qr := append([]byte(nil), ok...)
	qr[2] |= 0x80
	p["an answer, not a query"] = qr
	op := append([]byte(nil), ok...)
	op[2] |= 5 << 3
	p["opcode UPDATE"] = op
	ver := packQuery("web.service.consul.", dns.TypeA, true)
	ver[len(ver)-11+6] = 1
	p["EDNS version 1"] = ver
	p["random bytes"] = []byte{0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03}
	p["trailing garbage"] = append(append([]byte(nil), ok...), 1, 2, 3, 4)
	return p
}

func TestHostilePackets(t *testing.T) {
	cfg := upstreamConfig(t)
	_, addr := startServer(t, cfg)
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// REFUSED: a packet without its question, as from Consul's DNS.
	allowed := map[int]bool{dns.RcodeFormatError: true, dns.RcodeNotImplemented: true, dns.RcodeSuccess: true, dns.RcodeNameError: true,
		dns.RcodeRefused: true}
	chaos := packQuery("version.bind.", dns.TypeTXT, false)
	binary.BigEndian.PutUint16(chaos[len(chaos)-2:], dns.ClassCHAOS)
	// Forwarded with its class, as dnsmasq forwards it: no upstream here.
	if r := exchangeRaw(t, conn, chaos); r == nil || r.Rcode != dns.RcodeRefused {
		t.Errorf("CHAOS class: %v, want REFUSED", r)
	}
	for name, pkt := range hostilePackets() {
		buf, err := roundTrip(t, conn, pkt, 300*time.Millisecond)
		if err != nil {
			t.Logf("%s: dropped", name)
		} else {
			n := len(buf)
			m := new(dns.Msg)
			if err := m.Unpack(buf); err != nil && n < 12 {
				t.Errorf("%s: unreadable answer: %v", name, err)
				continue
			}
			rc := int(buf[3]&0x0f) | int(m.Rcode)&^0x0f
			if m.Rcode == dns.RcodeBadVers {
				rc = dns.RcodeBadVers
			}
			t.Logf("%s: %s", name, dns.RcodeToString[rc])
			if !allowed[rc] && rc != dns.RcodeBadVers {
				t.Errorf("%s: answered %s", name, dns.RcodeToString[rc])
			}
			// An undefined class is answered as IN, as Consul answers it
			// (TestMalformedLikeConsul).
			if name == "ancount 5, no answers" && rc != dns.RcodeFormatError {
				t.Errorf("%s: answered %s, want FORMERR", name, dns.RcodeToString[rc])
			}
			if binary.BigEndian.Uint16(buf) != binary.BigEndian.Uint16(pkt) {
				t.Errorf("%s: answer ID does not match", name)
			}
		}
		// Still answering.
		if r := exchange(t, addr, "nosuch.service.consul.", dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError {
			t.Fatalf("after %s: %s", name, dns.RcodeToString[r.Rcode])
		}
	}
	// Over TCP too, including a length prefix longer than what follows.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte{0x10, 0x00, 1, 2, 3})
	c.Close()
	if r := exchange(t, addr, "nosuch.service.consul.", dns.TypeA, "tcp"); r.Rcode != dns.RcodeNameError {
		t.Fatalf("after a cut TCP message: %s", dns.RcodeToString[r.Rcode])
	}
}

// FuzzHandle feeds the request path (parsing, the answer caches, writing,
// truncation, the slow path with unreachable upstreams) arbitrary packets.
// go test runs the seeds; fuzz with: go test -fuzz FuzzHandle ./dnsforward
func FuzzHandle(f *testing.F) {
	for _, p := range hostilePackets() {
		f.Add(p, false)
	}
	for _, n := range []string{"web.service.consul.", "a.example.", "1.0.0.127.in-addr.arpa.", "x.node.consul.", "0a000001.addr.consul."} {
		f.Add(packQuery(n, dns.TypeA, true), true)
		f.Add(packQuery(n, dns.TypeSRV, false), false)
	}
	cc := api.DefaultConfig()
	cc.Address = "127.0.0.1:1" // nothing listens there: watches fail and retry
	client, err := api.NewClient(cc)
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{Client: client,
		Listen: "127.0.0.1:0", Domains: []string{"consul."}, ConsulDNS: "127.0.0.1:1", Upstreams: []string{"127.0.0.1:1"},
		Policy: policySequential, TryTimeout: 20 * time.Millisecond, Budget: 50 * time.Millisecond, CacheSize: 100,
		CacheMaxTTL: time.Hour, CacheNegMaxTTL: time.Minute, IdleTimeout: time.Minute, Log: logging.Discard(),
	})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	s.ctx = ctx
	storeUpstreamAnswer(f, s) // so the cache-hit path runs too
	f.Fuzz(func(t *testing.T, pkt []byte, tcp bool) {
		r := newReader()
		resp, job := s.handle(r, pkt, tcp)
		if job != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			resp = s.slow(ctx, job)
			cancel()
		}
		if resp == nil {
			return
		}
		if len(resp) < 12 || resp[0] != pkt[0] || resp[1] != pkt[1] || resp[2]&0x80 == 0 {
			t.Fatalf("answer %x to %x: not a reply with the query's ID", resp, pkt)
		}
		if !tcp && len(resp) > maxUDPAnswer {
			t.Fatalf("UDP answer of %d bytes", len(resp))
		}
		if len(resp) > 12 {
			if err := new(dns.Msg).Unpack(resp); err != nil {
				t.Fatalf("answer does not unpack: %v", err)
			}
		}
	})
}

// storeUpstreamAnswer puts an upstream answer for a.example. A (192.0.2.1,
// TTL 60) into s's upstream cache, as if it had been asked before.
func storeUpstreamAnswer(tb testing.TB, s *Server) {
	tb.Helper()
	m := new(dns.Msg)
	m.SetQuestion("a.example.", dns.TypeA)
	m.Response = true
	m.Answer = []dns.RR{mustRR("a.example. 60 IN A 192.0.2.1")}
	a, err := s.fwd.toAnswer(m)
	if err != nil {
		tb.Fatal(err)
	}
	s.fwd.store("a.example.\x00\x01\x00\x01", a)
}

// TestHotPathAllocations checks that answers from memory (a Consul name and
// a cached upstream name) are sent without allocating.
func TestHotPathAllocations(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0", Domains: []string{"consul."}, CacheSize: 10, CacheMaxTTL: time.Hour,
		CacheNegMaxTTL: time.Minute, IdleTimeout: time.Minute, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.zone.buildAddr("0a000001.addr.consul.", dns.TypeA, "consul.", "0a000001")
	if err != nil {
		t.Fatal(err)
	}
	s.zone.store("0a000001.addr.consul.\x00\x01", s.zone.generation(), a)
	storeUpstreamAnswer(t, s)
	r := newReader()
	for _, q := range [][]byte{packQuery("0A000001.addr.consul.", dns.TypeA, true), packQuery("a.example.", dns.TypeA, false)} {
		resp, job := s.handle(r, q, false)
		if resp == nil || job != nil {
			t.Fatalf("not answered from memory: %x", q)
		}
		if allocs := testing.AllocsPerRun(200, func() { s.handle(r, q, false) }); allocs != 0 {
			t.Errorf("%d allocations per answer from memory", int(allocs))
		}
	}
}

// TestLargeAnswerCutWithoutAllocating: a 300-instance answer that does not
// fit the client's UDP size is cut (TC set), a different choice of records
// each time, from memory and without allocating (A records in place, SRV
// from packed orders cut once per size).
func TestLargeAnswerCutWithoutAllocating(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0", Domains: []string{"consul."}, IdleTimeout: time.Minute, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	for _, qt := range []uint16{dns.TypeA, dns.TypeSRV} {
		m := new(dns.Msg)
		m.SetQuestion("big.service.consul.", qt)
		m.Response = true
		for i := 0; i < 300; i++ {
			ip := fmt.Sprintf("10.30.%d.%d", i/250, i%250+1)
			if qt == dns.TypeA {
				m.Answer = append(m.Answer, mustRR("big.service.consul. 0 IN A "+ip))
			} else {
				m.Answer = append(m.Answer, mustRR(fmt.Sprintf("big.service.consul. 0 IN SRV 1 1 %d node%d.node.dc1.consul.", 2000+i, i)))
				m.Extra = append(m.Extra, mustRR(fmt.Sprintf("node%d.node.dc1.consul. 0 IN A %s", i, ip)))
			}
		}
		a, err := newAnswer(m, zoneConsul, true, false)
		if err != nil {
			t.Fatal(err)
		}
		s.zone.store("big.service.consul.\x00"+string(rune(qt)), s.zone.generation(), a)
		r := newReader()
		for _, edns := range []bool{false, true} {
			q := packQuery("big.service.consul.", qt, edns)
			seen := map[string]bool{}
			for i := 0; i < 20; i++ {
				resp, job := s.handle(r, q, false)
				if resp == nil || job != nil {
					t.Fatalf("%s edns=%v: not answered from memory", dns.TypeToString[qt], edns)
				}
				var got dns.Msg
				if err := got.Unpack(resp); err != nil {
					t.Fatal(err)
				}
				if !got.Truncated || len(got.Answer) == 0 || len(got.Answer) >= 300 || len(resp) > 512 && !edns || len(resp) > 1232 {
					t.Fatalf("%s edns=%v: %d bytes, %d records, TC %v", dns.TypeToString[qt], edns, len(resp), len(got.Answer), got.Truncated)
				}
				seen[got.Answer[0].String()] = true
			}
			if len(seen) < 3 {
				t.Errorf("%s edns=%v: the first record was one of only %d in 20 answers: not shuffled", dns.TypeToString[qt], edns, len(seen))
			}
			if allocs := testing.AllocsPerRun(200, func() { s.handle(r, q, false) }); allocs != 0 {
				t.Errorf("%s edns=%v: %d allocations per cut answer", dns.TypeToString[qt], edns, int(allocs))
			}
		}
	}
}

// BenchmarkHandle measures the in-memory answer path of one UDP query
// (parse, cache look-up, shuffled copy) against a real agent: ns and
// allocations per query, without the system calls.
func BenchmarkHandle(b *testing.B) {
	a := consultest.Require(b, agent)
	c := a.Client()
	for i := 0; i < 300; i++ {
		reg := &api.CatalogRegistration{Node: fmt.Sprintf("bhn%d", i%10), Address: fmt.Sprintf("10.41.0.%d", i%10+1),
			Service: &api.AgentService{ID: fmt.Sprintf("bh%d", i), Service: "benchbig", Port: 2000 + i, Address: fmt.Sprintf("10.40.%d.%d", i/250, i%250+1)}}
		if _, err := c.Catalog().Register(reg, nil); err != nil {
			b.Fatal(err)
		}
	}
	cfg := baseConfig(a)
	cfg.HostsFiles = []string{defaultHostsFile} // read by default, looked up first
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		b.Fatal(err)
	}
	proctest.Go(b, "the server", s.Serve)
	for _, c := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{{"benchbig.service.consul.", dns.TypeA, true}, {"benchbig.service.consul.", dns.TypeSRV, true}, {"benchbig.service.consul.", dns.TypeA, false}} {
		b.Run(fmt.Sprintf("%s_edns_%v", dns.TypeToString[c.qtype], c.edns), func(b *testing.B) {
			m := new(dns.Msg)
			m.SetQuestion(c.name, c.qtype)
			if c.edns {
				m.SetEdns0(4096, false)
			}
			raw, err := m.Pack()
			if err != nil {
				b.Fatal(err)
			}
			r := newReader()
			for i := 0; i < 200; i++ {
				resp, job := s.handle(r, raw, false)
				if resp != nil {
					break
				}
				if job != nil {
					s.slow(context.Background(), job)
				}
				time.Sleep(10 * time.Millisecond)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if resp, job := s.handle(r, raw, false); resp == nil || job != nil {
					b.Fatalf("not answered from memory at %d: resp %d bytes, job %v", i, len(resp), job != nil)
				}
			}
		})
	}
}

func TestLongNodeMeta(t *testing.T) {
	rrs := metaTXT("n.node.consul.", map[string]string{"k": strings.Repeat("v", 600), "a": "b"}, 0)
	m := new(dns.Msg)
	m.SetQuestion("n.node.consul.", dns.TypeTXT)
	m.Answer = rrs
	if _, err := m.Pack(); err != nil {
		t.Fatalf("long node meta does not pack: %v", err)
	}
	if got := strings.Join(rrs[1].(*dns.TXT).Txt, ""); got != "k="+strings.Repeat("v", 600) {
		t.Errorf("split TXT joins to %d bytes", len(got))
	}
}

// roundTrip writes pkt to conn and reads one answer within wait (an error:
// none came). A failed write fails t.
func roundTrip(t *testing.T, conn net.Conn, pkt []byte, wait time.Duration) ([]byte, error) {
	t.Helper()
	if _, err := conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	n, err := conn.Read(buf)
	return buf[:n], err
}

// exchangeRaw sends pkt and returns the answer, or nil when none came
// within 2 s or it does not unpack.
func exchangeRaw(t *testing.T, conn net.Conn, pkt []byte) *dns.Msg {
	t.Helper()
	buf, err := roundTrip(t, conn, pkt, 2*time.Second)
	if err != nil {
		return nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf); err != nil {
		return nil
	}
	return m
}
