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
	id, _, err := c.PreparedQuery().Create(&api.PreparedQueryDefinition{Name: "bigq", Service: api.ServiceQuery{Service: "big"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.PreparedQuery().Delete(id, nil)
		for i := 0; i < 10; i++ {
			_, _ = c.Catalog().Deregister(&api.CatalogDeregistration{Node: fmt.Sprintf("bignode%d", i)}, nil)
		}
	})
	_, addr := startServer(t, baseConfig(a))
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
		for _, opt := range []string{"+bufsize=4096", "+noedns"} {
			udp := dig(t, addr, opt, "+ignore", "bigq.query.consul", qt)
			if !strings.Contains(" "+udp.flags+" ", " tc ") || len(udp.answer) >= n {
				t.Errorf("%s over UDP %s: %d records, flags %q: want fewer than %d and tc", qt, opt, len(udp.answer), udp.flags, n)
			}
		}
	}
	// A client that retries over TCP on TC gets everything.
	r := exchange(t, addr, "bigq.query.consul.", dns.TypeA, "udp")
	if !r.Truncated {
		t.Errorf("UDP without EDNS: no TC with %d records", len(r.Answer))
	}
}
