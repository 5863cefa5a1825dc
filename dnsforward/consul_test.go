package main

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// seed registers the catalog the comparison test asks about.
func seed(t *testing.T, a *consultest.Agent) {
	t.Helper()
	c := a.Client()
	ag := c.Agent()
	// web: three healthy instances (one with a warning), one critical.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "web1", Name: "web", Tags: []string{"v1", "prod"}, Port: 8080}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "web2", Name: "web", Tags: []string{"v2"}, Port: 8081, Address: "10.1.2.3"}))
	// A second instance on the agent's node (same address as web1).
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "web1b", Name: "web", Tags: []string{"v3"}, Port: 8090}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "web-warn", Name: "web", Tags: []string{"v2"}, Port: 8082, Address: "10.1.2.4",
		Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthWarning}}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "web-crit", Name: "web", Tags: []string{"v1"}, Port: 8083, Address: "10.1.2.5",
		Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthCritical}}))
	// api: only a critical instance (NXDOMAIN like an unknown name).
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "api1", Name: "api", Port: 9000,
		Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthCritical}}))
	// A second node with meta, carrying web and an IPv6 service.
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "node2", Address: "10.0.0.2", NodeMeta: map[string]string{"rack": "r1"},
		Service: &api.AgentService{ID: "web3", Service: "web", Port: 9090, Tags: []string{"v1"}}}, nil)
	must(t, err)
	_, err = c.Catalog().Register(&api.CatalogRegistration{Node: "node2", Address: "10.0.0.2", NodeMeta: map[string]string{"rack": "r1"},
		Service: &api.AgentService{ID: "db1", Service: "db", Port: 5432, Address: "fd00::1"}}, nil)
	must(t, err)
	// A service with a host name as one instance's address.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "hosty1", Name: "hosty", Port: 80, Address: "backend.example.org"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "hosty2", Name: "hosty", Port: 81, Address: "10.5.5.5"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "cname1", Name: "cname", Port: 80, Address: "other.example.org"}))
	// A service address naming the service itself: the node's address.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "selfy1", Name: "selfy", Port: 80, Address: "selfy.service.consul"}))
	// Names in mixed case: Consul looks service and node names up without
	// regard to case, and "Dup" and "dup" are one service to it.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "mixed1", Name: "MixedCase", Port: 7000, Address: "10.2.2.2"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "dup1", Name: "Dup", Port: 7001, Address: "10.2.2.3"}))
	_, err = c.Catalog().Register(&api.CatalogRegistration{Node: "node2", Address: "10.0.0.2", NodeMeta: map[string]string{"rack": "r1"},
		Service: &api.AgentService{ID: "dup2", Service: "dup", Port: 7002, Address: "10.2.2.4"}}, nil)
	must(t, err)
	_, err = c.Catalog().Register(&api.CatalogRegistration{Node: "Node3", Address: "10.0.0.3", NodeMeta: map[string]string{"Rack": "R3"}}, nil)
	must(t, err)
	// A tag holding a dot: the labels before the name are the tag.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "dotty1", Name: "dotty", Tags: []string{"x.y", "_u"}, Port: 1, Address: "10.3.0.1"}))
	// An IPv4-mapped IPv6 service address, and the same address plain (one
	// A record for both).
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "mapped1", Name: "mapped", Port: 5, Address: "::ffff:10.3.0.5"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "mapped2", Name: "mapped", Port: 6, Address: "10.3.0.5"}))
	// Node meta with a backquote (RFC 1464 doubles it) and an rfc1035-
	// key in capitals (the value alone).
	_, err = c.Catalog().Register(&api.CatalogRegistration{Node: "metanode", Address: "10.0.0.30",
		NodeMeta: map[string]string{"k": "a`b", "RFC1035-x": "raw=1"}}, nil)
	must(t, err)
	// A prepared query (answered through the agent's DNS).
	_, _, err = c.PreparedQuery().Create(&api.PreparedQueryDefinition{Name: "pq", Service: api.ServiceQuery{Service: "web"}}, nil)
	must(t, err)
	t.Cleanup(func() {
		for _, id := range []string{"web1", "web1b", "web2", "web-warn", "web-crit", "api1", "hosty1", "hosty2", "cname1", "mixed1", "dup1", "dotty1", "mapped1", "mapped2", "selfy1"} {
			_ = ag.ServiceDeregister(id)
		}
		_, _ = c.Catalog().Deregister(&api.CatalogDeregistration{Node: "node2"}, nil)
		_, _ = c.Catalog().Deregister(&api.CatalogDeregistration{Node: "Node3"}, nil)
		_, _ = c.Catalog().Deregister(&api.CatalogDeregistration{Node: "metanode"}, nil)
		qs, _, _ := c.PreparedQuery().List(nil)
		for _, q := range qs {
			_, _ = c.PreparedQuery().Delete(q.ID, nil)
		}
	})
}

// seededLast is the answers to the names seed registers last, for
// waitSeeded: both mapped instances (one target for their one address,
// their ports apart) and metanode's meta.
var seededLast = map[string][]string{
	"mapped.service.consul SRV": {"1 1 5 0a030005.addr.dc1.consul.", "1 1 6 0a030005.addr.dc1.consul."},
	"metanode.node.consul TXT":  {"\"k=a``b\"", `"raw=1"`},
}

// startSeeded seeds agent a (seed) and starts dnsforward on it with the
// agent's DNS settings, as main runs it, and with upstreams; it returns
// dnsforward's address once dnsforward and Consul's DNS both see the seed.
func startSeeded(t *testing.T, a *consultest.Agent, upstreams ...string) string {
	t.Helper()
	seed(t, a)
	cfg := baseConfig(a)
	cfg.AgentDNSConfig = true
	cfg.Upstreams = upstreams
	_, addr := startServer(t, cfg)
	waitSeeded(t, a, addr, seededLast)
	return addr
}

func TestSameAnswersAsConsulDNS(t *testing.T) {
	a := consultest.Require(t, agent)
	requireDig(t)
	addr := startSeeded(t, a)
	node := a.NodeName
	cases := []string{
		"web.service.consul A", "web.service.consul SRV", "web.service.consul AAAA", "web.service.consul ANY",
		"web.service.consul TXT", "web.service.consul MX", "WEB.Service.Consul A",
		"v1.web.service.consul A", "v2.web.service.consul SRV", "v3.web.service.consul SRV", "prod.web.service.consul A", "nosuch.web.service.consul A",
		"_web._v1.service.consul SRV", "_web._tcp.service.consul SRV", "web.service.dc1.consul A", "web.service.dc1.consul SRV",
		"db.service.consul AAAA", "db.service.consul A", "db.service.consul SRV", "db.service.consul ANY",
		"api.service.consul A", "api.service.consul SRV", "nosuch.service.consul A", "nosuch.service.consul SRV",
		"x.y.web.service.consul A",
		"hosty.service.consul A", "hosty.service.consul AAAA", "hosty.service.consul SRV", "cname.service.consul A", "cname.service.consul SRV",
		node + ".node.consul A", node + ".node.consul TXT", node + ".node.consul ANY", node + ".node.consul AAAA", node + ".node.consul SRV",
		"node2.node.consul A", "node2.node.consul TXT", "node2.node.dc1.consul A", "nosuch.node.consul A",
		"0a000002.addr.consul A", "0a000002.addr.dc1.consul AAAA", "fd000000000000000000000000000001.addr.consul AAAA", "zz.addr.consul A",
		"mixedcase.service.consul A", "MIXEDCASE.service.consul SRV", "MixedCase.service.consul ANY", "dup.service.consul A", "DUP.service.consul SRV",
		"node3.node.consul A", "NODE3.node.consul TXT", "Node3.node.consul ANY", "NoDe2.node.consul A", "_mixedcase._tcp.service.consul SRV",
		"V1.WEB.service.consul A", "_WEB._V2.service.consul SRV", "NoSuch.Node.consul A",
		"web.service.dc2.consul A", "pq.query.consul A", "consul SOA", "consul NS", "foo.consul A",
		// SOA and NS of any name in the domain: the apex's (agent/dns.go
		// handleQuery), for names that exist or not.
		"web.service.consul SOA", "web.service.consul NS", "v1.web.service.consul NS", "nosuch.service.consul SOA",
		"nosuch.service.consul NS", node + ".node.consul SOA", node + ".node.consul NS", "service.consul SOA", "pq.query.consul NS",
		"WEB.Service.Consul SOA",
		"1.0.0.127.in-addr.arpa PTR", "web.connect.consul A", "web.ingress.consul A", "web.virtual.consul A",
		// CD copied into the reply, from memory and from the agent.
		"web.service.consul A +cdflag", "web.service.consul SRV +cdflag", "nosuch.service.consul A +cdflag",
		"pq.query.consul SRV +cdflag", "consul SOA +cdflag",
		// The client-subnet option echoed with Consul's scope.
		"web.service.consul A +subnet=192.0.2.0/24", "web.service.consul SRV +subnet=2001:db8::/56", "nosuch.service.consul A +subnet=192.0.2.0/24",
		"pq.query.consul A +subnet=192.0.2.0/24", "nosuch.query.consul A +subnet=192.0.2.0/24", "consul SOA +subnet=192.0.2.0/24",
		"1.0.0.127.in-addr.arpa PTR +subnet=192.0.2.0/24",
		// A tag with a dot; an underscore tag; RFC 2782 with a dotted tag.
		"x.y.dotty.service.consul A", "x.y.dotty.service.consul SRV", "_u.dotty.service.consul A", "_dotty._x.y.service.consul SRV",
		// Other types of a node name: NOERROR, no SOA, known or not.
		"nosuch.node.consul SRV", "nosuch.node.consul MX", "nosuch.node.consul TXT", "node2.node.consul MX",
		// IPv4-mapped addresses: 8 hex digits in SRV targets, and 32 hex
		// digits under .addr are an AAAA record.
		"mapped.service.consul SRV", "mapped.service.consul A", "mapped.service.consul AAAA", "00000000000000000000ffff0a000002.addr.consul AAAA",
		"00000000000000000000ffff0a000002.addr.consul A",
		// A host-name instance answers any type but SRV with its CNAME.
		"cname.service.consul MX", "cname.service.consul CNAME", "hosty.service.consul MX", "cname.service.consul HINFO",
		"selfy.service.consul A", "selfy.service.consul ANY", "selfy.service.consul MX", "selfy.service.consul SRV", "selfy.service.consul TXT",
		// Node meta as RFC 1464 TXT.
		"metanode.node.consul TXT", "metanode.node.consul A", "metanode.node.consul ANY",
		// Class ANY is asked as IN, from memory and from the agent.
		"web.service.consul A -c ANY", "web.service.consul SRV -c ANY", "nosuch.service.consul A -c ANY",
		"pq.query.consul A -c ANY", "consul SOA -c ANY",
		// The client's letter case in the answer's owner names: with the
		// client-subnet option, and from the agent (asked in lower case).
		"WEB.Service.Consul A +subnet=192.0.2.0/24", "WEB.Service.Consul TXT +subnet=192.0.2.0/24", "Pq.Query.Consul A",
		"N" + strings.ToUpper(node[:1]) + node[1:] + ".Node.Consul A +subnet=192.0.2.0/24",
	}
	compareWithConsul(t, addr, a.DNSAddr(), cases)
	// A negative answer's SOA as Consul writes it, whatever the question's
	// letter case (compareWithConsul compares the authority without case).
	for _, c := range []string{"NOSUCH.Service.Consul A", "web.service.Consul MX", "V1.WEB.SERVICE.CONSUL AAAA", "Nosuch.Node.Consul A"} {
		f := strings.Fields(c)
		if got, want := dig(t, addr, f...), dig(t, a.DNSAddr(), f...); !reflect.DeepEqual(set(got.auth), set(want.auth)) {
			t.Errorf("%s: authority %q, Consul's DNS %q", c, got.auth, want.auth)
		}
	}
}

// digBoth asks the "name TYPE [dig options]" case c of dnsforward at addr
// and of Consul's DNS at consulAddr with dig, reports a status or flags
// (but RA) that differ, and returns both answers.
func digBoth(t *testing.T, addr, consulAddr, c string) (got, want digResult) {
	t.Helper()
	f := strings.Fields(c)
	got, want = dig(t, addr, f...), dig(t, consulAddr, f...)
	if got.status != want.status {
		t.Errorf("%s: status %s, Consul's DNS %s", c, got.status, want.status)
	}
	if g, w := withoutRA(got.flags), withoutRA(want.flags); g != w {
		t.Errorf("%s: flags %q, Consul's DNS %q (ra aside)", c, g, w)
	}
	return got, want
}

// compareWithConsul asks each "name TYPE [dig options]" case of dnsforward
// at addr and of Consul's DNS at consulAddr with dig, and compares status,
// flags (but RA), the record sets of each section and the number of answer
// records.
func compareWithConsul(t *testing.T, addr, consulAddr string, cases []string) {
	t.Helper()
	shown := false
	for _, c := range cases {
		got, want := digBoth(t, addr, consulAddr, c)
		// RA on every reply, the agent's too (README: recursion is
		// available through the upstreams).
		if !strings.Contains(" "+got.flags+" ", " ra ") {
			t.Errorf("%s: flags %q, no RA", c, got.flags)
		}
		if got.subnet != want.subnet {
			t.Errorf("%s: client-subnet option %q, Consul's DNS %q", c, got.subnet, want.subnet)
		}
		if g, w := set(got.answer), set(want.answer); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: answer\n%s\nConsul's DNS:\n%s", c, strings.Join(g, "\n"), strings.Join(w, "\n"))
		}
		if len(got.answer) != len(want.answer) {
			t.Errorf("%s: %d answer records, Consul's DNS %d", c, len(got.answer), len(want.answer))
		}
		// Outside the answer section names are compared without regard to
		// letter case (RFC 4343): Consul copies the question's case into
		// SRV targets, dnsforward writes them in lower case from memory
		// (README, differences; TestLetterCaseLikeConsul compares the
		// answers passed to the agent with their case).
		if g, w := set(lowerAll(got.auth)), set(lowerAll(want.auth)); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: authority\n%s\nConsul's DNS:\n%s", c, strings.Join(g, "\n"), strings.Join(w, "\n"))
		}
		// Consul repeats a node's records in the additional section for
		// each of its instances; dnsforward sends each record once
		// (RFC 2181 section 5; in the README's differences).
		if g, w := set(lowerAll(got.extra)), set(lowerAll(want.extra)); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: additional\n%s\nConsul's DNS:\n%s", c, strings.Join(g, "\n"), strings.Join(w, "\n"))
		}
		if g := set(got.extra); len(g) != len(got.extra) {
			t.Errorf("%s: %d additional records, %d of them different", c, len(got.extra), len(g))
		}
		if t.Failed() && !shown {
			shown = true // once: the first difference's whole replies
			t.Logf("%s: dig's output from dnsforward:\n%s\nfrom Consul's DNS:\n%s", c, got.raw, want.raw)
		}
	}
}

func TestOnlyPassingAndShuffle(t *testing.T) {
	a := consultest.Require(t, agent)
	seed(t, a)
	cfg := baseConfig(a)
	cfg.OnlyPassing = true
	cfg.ServiceTTL = 7 * time.Second
	_, addr := startServer(t, cfg)
	r := exchange(t, addr, "web.service.consul.", dns.TypeA, "udp")
	if got, want := addrs(r), []string{"10.0.0.2", "10.1.2.3", "127.0.0.1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("-only-passing: got %v, want %v (warning and critical left out)", got, want)
	}
	if ttl := r.Answer[0].Header().Ttl; ttl != 7 {
		t.Errorf("-service-ttl 7s: TTL %d", ttl)
	}
	orders := map[string]bool{}
	for i := 0; i < 60 && len(orders) < 2; i++ {
		r := exchange(t, addr, "web.service.consul.", dns.TypeA, "udp")
		var o []string
		for _, rr := range r.Answer {
			o = append(o, rr.(*dns.A).A.String())
		}
		orders[strings.Join(o, ",")] = true
	}
	if len(orders) < 2 {
		t.Errorf("60 answers came in one order: %v", orders)
	}
	orders = map[string]bool{}
	for i := 0; i < 60 && len(orders) < 2; i++ {
		r := exchange(t, addr, "web.service.consul.", dns.TypeSRV, "udp")
		var o []string
		for _, rr := range r.Answer {
			o = append(o, fmt.Sprint(rr.(*dns.SRV).Port))
		}
		orders[strings.Join(o, ",")] = true
	}
	if len(orders) < 2 {
		t.Errorf("60 SRV answers came in one order: %v", orders)
	}
}

// pollUntil asks name until cond holds and returns how long that took after
// start; it fails after limit.
func pollUntil(t *testing.T, addr, name string, start time.Time, limit time.Duration, cond func(*dns.Msg) bool) time.Duration {
	t.Helper()
	for {
		r := exchange(t, addr, name, dns.TypeA, "udp")
		if cond(r) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: still %v after %s", name, addrs(r), limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func has(m *dns.Msg, ip string) bool {
	for _, a := range addrs(m) {
		if a == ip {
			return true
		}
	}
	return false
}

// TestFreshAfterChange: a deregistered or critical instance leaves the
// answers without waiting for a cache to expire. How fast is logged, not
// bounded (a slow machine is not a failure); bench/dnsforward.sh measures it.
func TestFreshAfterChange(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client()
	ag := c.Agent()
	for i, ip := range []string{"10.7.0.1", "10.7.0.2", "10.7.0.3"} {
		consultest.Register(t, c, &api.AgentServiceRegistration{ID: fmt.Sprintf("fresh%d", i), Name: "fresh", Port: 80, Address: ip,
			Check: &api.AgentServiceCheck{CheckID: fmt.Sprintf("fresh%d-ttl", i), TTL: "10m", Status: api.HealthPassing}})
	}
	_, addr := startServer(t, baseConfig(a))
	pollUntil(t, addr, "fresh.service.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return len(addrs(m)) == 3 })

	// Deregistration.
	start := time.Now()
	if err := ag.ServiceDeregister("fresh0"); err != nil {
		t.Fatal(err)
	}
	d := pollUntil(t, addr, "fresh.service.consul.", start, 10*time.Second, func(m *dns.Msg) bool { return !has(m, "10.7.0.1") })
	t.Logf("deregistered instance gone after %s (bench/dnsforward.sh measures this)", d)
	// A check going critical.
	start = time.Now()
	if err := ag.UpdateTTL("fresh1-ttl", "down", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	d = pollUntil(t, addr, "fresh.service.consul.", start, 10*time.Second, func(m *dns.Msg) bool { return !has(m, "10.7.0.2") })
	t.Logf("critical instance gone after %s", d)
	// And back.
	if err := ag.UpdateTTL("fresh1-ttl", "up", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, addr, "fresh.service.consul.", time.Now(), 5*time.Second, func(m *dns.Msg) bool { return has(m, "10.7.0.2") })
}

func TestIdleWatchDropped(t *testing.T) {
	a := consultest.Require(t, agent)
	consultest.Register(t, a.Client(), &api.AgentServiceRegistration{ID: "idle1", Name: "idle", Port: 80, Address: "10.8.0.1"})
	cfg := baseConfig(a)
	cfg.IdleTimeout = 300 * time.Millisecond
	s, addr := startServer(t, cfg)
	current := func() *watcher {
		s.zone.wmu.Lock()
		defer s.zone.wmu.Unlock()
		return s.zone.watchers["service idle"]
	}
	open := func() int {
		if current() != nil {
			return 1
		}
		return 0
	}
	pollUntil(t, addr, "idle.service.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return has(m, "10.8.0.1") })
	if open() != 1 {
		t.Fatal("no watch for the service after its first lookup")
	}
	// Kept while in use: asked for a second, every 50ms, the same watch.
	first := current()
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		exchange(t, addr, "idle.service.consul.", dns.TypeA, "udp")
		if current() != first {
			t.Fatal("watch dropped while the service was being asked for")
		}
	}
	eventually.True(t, 10*time.Second, "the idle watch to be dropped (-idle-timeout 300ms)", func() bool { return open() == 0 })
	// Asked again: a new watch, the same answer.
	if r := exchange(t, addr, "idle.service.consul.", dns.TypeA, "udp"); !has(r, "10.8.0.1") {
		t.Fatalf("after the watch was dropped: %v", r)
	}
	if open() != 1 {
		t.Fatal("no new watch after asking again")
	}
}

func TestConsulOutageServesCachedThenFresh(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{NodeName: "outage"})
	ag := a.Client().Agent()
	if err := ag.ServiceRegister(&api.AgentServiceRegistration{ID: "o1", Name: "outage-svc", Port: 80, Address: "10.9.0.1"}); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(a)
	s, addr := startServer(t, cfg)
	pollUntil(t, addr, "outage-svc.service.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return has(m, "10.9.0.1") })
	exchange(t, addr, "outage-svc.service.consul.", dns.TypeSRV, "udp")
	a.Stop()
	// For two seconds of outage: the cached answers, never NXDOMAIN or SERVFAIL.
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		for _, qt := range []uint16{dns.TypeA, dns.TypeSRV} {
			r := exchange(t, addr, "outage-svc.service.consul.", qt, "udp")
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("Consul stopped: %s %s answered %s with %d records", "outage-svc", dns.TypeToString[qt], dns.RcodeToString[r.Rcode], len(r.Answer))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.m.stale[cacheConsul].Load() == 0 {
		t.Error("no stale answers counted while Consul was stopped")
	}
	// Restarted (a dev agent comes back empty): the new registration shows.
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "o1", Name: "outage-svc", Port: 80, Address: "10.9.0.2"}); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, addr, "outage-svc.service.consul.", time.Now(), 20*time.Second, func(m *dns.Msg) bool {
		return has(m, "10.9.0.2") && !has(m, "10.9.0.1")
	})
}

func TestTruncation40Instances(t *testing.T) {
	a := consultest.Require(t, agent)
	requireDig(t)
	for i := 0; i < 40; i++ {
		consultest.Register(t, a.Client(), &api.AgentServiceRegistration{ID: fmt.Sprintf("many%d", i), Name: "many", Port: 1000 + i, Address: fmt.Sprintf("10.40.0.%d", i+1)})
	}
	_, addr := startServer(t, baseConfig(a))
	pollUntil(t, addr, "many.service.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return len(m.Answer) == 40 || m.Truncated })
	for _, qt := range []string{"A", "SRV"} {
		udp := dig(t, addr, "+noedns", "+ignore", "many.service.consul", qt)
		if !strings.Contains(" "+udp.flags+" ", " tc ") {
			t.Errorf("%s over UDP without EDNS: flags %q, want tc", qt, udp.flags)
		}
		if len(udp.answer) >= 40 {
			t.Errorf("%s over UDP without EDNS: %d records in 512 bytes?", qt, len(udp.answer))
		}
		tcp := dig(t, addr, "+tcp", "many.service.consul", qt)
		if len(set(tcp.answer)) != 40 || strings.Contains(" "+tcp.flags+" ", " tc ") {
			t.Errorf("%s over TCP: %d records, flags %q; want all 40, no tc", qt, len(set(tcp.answer)), tcp.flags)
		}
	}
	// dig without +ignore retries over TCP itself and gets all 40.
	if r := dig(t, addr, "+noedns", "many.service.consul", "A"); len(r.answer) != 40 {
		t.Errorf("dig retrying over TCP: %d records", len(r.answer))
	}
	// EDNS0 with a 4096 buffer: the 40 A records fit.
	if r := dig(t, addr, "+bufsize=4096", "many.service.consul", "A"); len(r.answer) != 40 || strings.Contains(r.flags, "tc") {
		t.Errorf("EDNS0 4096: %d records, flags %q", len(r.answer), r.flags)
	}
}

func TestAltDomain(t *testing.T) {
	a := consultest.Require(t, agent)
	consultest.Register(t, a.Client(), &api.AgentServiceRegistration{ID: "alt1", Name: "alt", Port: 81, Address: "10.11.0.1"})
	cfg := baseConfig(a)
	cfg.Domains = []string{"consul.", "berth.internal."}
	_, addr := startServer(t, cfg)
	pollUntil(t, addr, "alt.service.berth.internal.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return has(m, "10.11.0.1") })
	r := exchange(t, addr, "alt.service.berth.internal.", dns.TypeSRV, "udp")
	if len(r.Answer) != 1 || r.Answer[0].(*dns.SRV).Target != "0a0b0001.addr.dc1.berth.internal." {
		t.Errorf("SRV in the alt domain: %v", r.Answer)
	}
	if r := exchange(t, addr, "nosuch.service.berth.internal.", dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Name != "berth.internal." {
		t.Errorf("NXDOMAIN in the alt domain: %v", r)
	}
}

func TestMaxStale(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{NodeName: "maxstale"})
	if err := a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "m1", Name: "ms", Port: 80, Address: "10.12.0.1"}); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(a)
	cfg.MaxStale = 700 * time.Millisecond
	cfg.StaleTTL = 3 * time.Second
	s, addr := startServer(t, cfg)
	pollUntil(t, addr, "ms.service.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return has(m, "10.12.0.1") })
	a.Stop()
	// Within -max-stale: the old answer, with -stale-ttl once the watch has
	// noticed the outage.
	r := exchange(t, addr, "ms.service.consul.", dns.TypeA, "udp")
	if !has(r, "10.12.0.1") {
		t.Fatalf("just after the stop: %v", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r = exchange(t, addr, "ms.service.consul.", dns.TypeA, "udp")
		if r.Rcode == dns.RcodeServerFailure {
			break
		}
		if len(r.Answer) != 1 {
			t.Fatalf("during the outage: %v", r)
		}
		if ttl := r.Answer[0].Header().Ttl; ttl != 0 && ttl != 3 {
			t.Fatalf("TTL %d during the outage, want 0 or -stale-ttl 3", ttl)
		}
		if time.Now().After(deadline) {
			t.Fatal("still answering 5s into the outage with -max-stale 700ms")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Within -max-stale the outage is "degraded"; past it, unhealthy.
	healthy := func() bool {
		var d *telemetry.DegradedError
		err := s.health()
		return err == nil || errors.As(err, &d)
	}
	for deadline := time.Now().Add(5 * time.Second); healthy(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("/health still not failed 5s into the outage with -max-stale 700ms: %v", s.health())
		}
	}
	t.Logf("health: %v", s.health())
}

// TestPortableUDPPath runs queries through the UDP path used where the raw
// recvmmsg readers are not available (x/net batches).
func TestPortableUDPPath(t *testing.T) {
	a := consultest.Require(t, agent)
	for i := 0; i < 40; i++ {
		consultest.Register(t, a.Client(), &api.AgentServiceRegistration{ID: fmt.Sprintf("port%d", i), Name: "portable", Port: 80, Address: fmt.Sprintf("10.13.0.%d", i+1)})
	}
	cfg := baseConfig(a)
	cfg.portableUDP = true
	_, addr := startServer(t, cfg)
	pollUntil(t, addr, "portable.service.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return m.Truncated })
	if r := exchange(t, addr, "portable.service.consul.", dns.TypeA, "tcp"); len(r.Answer) != 40 {
		t.Errorf("over TCP: %d records", len(r.Answer))
	}
	if r := exchange(t, addr, "nosuch.service.consul.", dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError {
		t.Errorf("nosuch: %s", dns.RcodeToString[r.Rcode])
	}
}

// TestClientSubnetReachesTheAgent: a question's client-subnet option goes
// with it to the agent, so a prepared query with Near "_ip" puts the
// instance on the node with that address first, as when the client asks
// the agent itself (prepared_query_endpoint.go: the node whose address is
// the source IP). Without it the agent would see dnsforward's address,
// match no node and leave the order shuffled.
func TestClientSubnetReachesTheAgent(t *testing.T) {
	requireDig(t)
	a := consultest.StartT(t, consultest.Options{NodeName: "nearip"})
	c := a.Client()
	for i := 1; i <= 5; i++ {
		_, err := c.Catalog().Register(&api.CatalogRegistration{Node: fmt.Sprintf("near%d", i), Address: fmt.Sprintf("10.77.0.%d", i),
			Service: &api.AgentService{ID: "nearsvc", Service: "nearsvc", Port: 80}}, nil)
		must(t, err)
	}
	_, _, err := c.PreparedQuery().Create(&api.PreparedQueryDefinition{Name: "nearip", Service: api.ServiceQuery{Service: "nearsvc", Near: "_ip"}}, nil)
	must(t, err)
	cfg := baseConfig(a)
	cfg.AgentDNSConfig = true
	_, addr := startServer(t, cfg)
	for _, server := range []string{a.DNSAddr(), addr} {
		for i := 0; i < 10; i++ {
			r := dig(t, server, "+subnet=10.77.0.4/32", "nearip.query.consul", "A")
			if len(r.answer) != 5 || !strings.HasSuffix(r.answer[0], " 10.77.0.4") {
				t.Fatalf("%s: nearip.query.consul A +subnet=10.77.0.4/32: %v, want 5 records, 10.77.0.4 first", server, r.answer)
			}
		}
	}
}

// lowerAll is records with their letters in lower case.
func lowerAll(records []string) []string {
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = strings.ToLower(r)
	}
	return out
}
