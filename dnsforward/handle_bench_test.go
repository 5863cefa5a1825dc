package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/proctest"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

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
	s, err := New(baseConfig(a))
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
