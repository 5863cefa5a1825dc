package main

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// TestHostNameAddressesLikeConsul: services and nodes whose address is a
// host name, inside the Consul domain or outside it, answer with the CNAME
// and the records it resolves to (in the answer for A/AAAA/ANY/TXT, as
// additional records for SRV), as Consul's DNS does with recursors set.
// Both ask the same hermetic upstream; Consul's DNS is the oracle.
func TestHostNameAddressesLikeConsul(t *testing.T) {
	requireDig(t)
	up := startUpstream(t, outsideZone)
	a := consultest.StartT(t, consultest.Options{NodeName: "hostnames", ExtraHCL: fmt.Sprintf("recursors = [%q]\n", up.addr)})
	c := a.Client()
	ag := c.Agent()
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "inner1", Name: "inner", Port: 80, Address: "10.20.0.1"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "inner2", Name: "inner", Port: 80, Address: "fd00::20"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "toinner", Name: "toinner", Port: 81, Address: "inner.service.consul"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "legacy", Name: "legacy", Port: 82, Address: "legacy.example.net"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "alias", Name: "alias", Port: 83, Address: "alias.example.net"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "nowhere", Name: "nowhere", Port: 84, Address: "nothing.example.net"}))
	// Host names in mixed case, outside and inside the domain: Consul keeps
	// the case as written in the CNAME target and the chased records.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "mixedout", Name: "mixedout", Port: 91, Address: "Legacy.Example.NET"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "mixedin", Name: "mixedin", Port: 92, Address: "Inner.Service.Consul"}))
	// A chain inside the domain: chain1 → chain2 → chain3 → chain4 → inner.
	for i := 1; i <= 4; i++ {
		target := fmt.Sprintf("chain%d.service.consul", i+1)
		if i == 4 {
			target = "inner.service.consul"
		}
		must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: fmt.Sprintf("chain%d", i), Name: fmt.Sprintf("chain%d", i), Port: 85, Address: target}))
	}
	// A node with a host name as address, and a service on it without one.
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "extnode", Address: "nodehost.example.net",
		Service: &api.AgentService{ID: "onext", Service: "onext", Port: 86}}, nil)
	must(t, err)

	// Tagged addresses: Consul answers lan_ipv4 for A, lan_ipv6 for AAAA
	// and for SRV (translateAddressAccept), the address otherwise.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "tagged", Name: "tagged", Port: 87, Address: "tagged.example.net",
		TaggedAddresses: map[string]api.ServiceAddress{"lan_ipv4": {Address: "10.50.0.1", Port: 87}, "lan_ipv6": {Address: "fd00::50", Port: 87}}}))
	// A service address equal to its node's; two instances on one node,
	// address and port (one SRV record).
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "sameaddr", Name: "sameaddr", Port: 88, Address: "127.0.0.1"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "dup1", Name: "dup", Port: 89, Address: "10.52.0.1"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "dup2", Name: "dup", Port: 89, Address: "10.52.0.1"}))
	_, err = c.Catalog().Register(&api.CatalogRegistration{Node: "tagnode", Address: "tagnode.example.net", TaggedAddresses: map[string]string{"lan_ipv4": "10.51.0.1"},
		Service: &api.AgentService{ID: "ontag", Service: "ontag", Port: 90}}, nil)
	must(t, err)

	cfg := baseConfig(a)
	cfg.AgentDNSConfig = true // as main runs it
	cfg.Upstreams = []string{up.addr}
	_, addr := startServer(t, cfg)
	waitSeeded(t, a, addr, map[string][]string{"dup.service.consul A": {"10.52.0.1"}, "ontag.service.consul A": {"10.51.0.1"}})
	var cases []string
	for _, svc := range []string{"toinner", "legacy", "mixedout", "mixedin", "alias", "nowhere", "chain1", "chain3", "onext", "tagged", "sameaddr", "dup", "ontag"} {
		for _, qt := range []string{"A", "AAAA", "SRV", "ANY", "TXT", "MX"} {
			cases = append(cases, svc+".service.consul "+qt)
		}
	}
	cases = append(cases, "extnode.node.consul A", "extnode.node.consul AAAA", "extnode.node.consul ANY",
		"tagnode.node.consul A", "tagnode.node.consul AAAA", "tagnode.node.consul ANY")
	compareWithConsul(t, addr, a.DNSAddr(), cases)

	// What glibc needs: the address records in the same answer.
	r := exchange(t, addr, "legacy.service.consul.", dns.TypeA, "udp")
	if got := addrs(r); strings.Join(got, " ") != "192.0.2.10 192.0.2.11" {
		t.Errorf("legacy A: addresses %v in %v", got, r.Answer)
	}
	r = exchange(t, addr, "toinner.service.consul.", dns.TypeA, "udp")
	if got := addrs(r); strings.Join(got, " ") != "10.20.0.1 fd00::20" {
		t.Errorf("toinner A: addresses %v in %v", got, r.Answer)
	}
}

// TestAgentTargetLastGoodWhileAgentDNSDown: a service and a node whose
// address is a host name dnsforward passes to the agent (a prepared query)
// answer with the CNAME and the target's records from the agent's DNS.
// While the agent's DNS cannot be asked (it stopped answering, or the
// agent stopped and its port is closed), dnsforward answered the CNAME
// alone once the answer was built again (a second later); it now keeps
// the target's last good records, served with -stale-ttl and counted
// stale, says so in the log once, and takes the agent's answer again
// when it comes.
func TestAgentTargetLastGoodWhileAgentDNSDown(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{NodeName: "lastgood"})
	c := a.Client()
	ag := c.Agent()
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "lginner1", Name: "lginner", Port: 80, Address: "10.61.0.1"}))
	_, _, err := c.PreparedQuery().Create(&api.PreparedQueryDefinition{Name: "lgpq", Service: api.ServiceQuery{Service: "lginner"}}, nil)
	must(t, err)
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "viaq", Name: "viaq", Port: 81, Address: "lgpq.query.consul"}))
	_, err = c.Catalog().Register(&api.CatalogRegistration{Node: "qnode", Address: "lgpq.query.consul"}, nil)
	must(t, err)

	// The agent's DNS through a relay that can stop answering, as a cut
	// off agent: dnsforward's -consul-dns.
	var relaying atomic.Bool
	relaying.Store(true)
	relay := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		if !relaying.Load() {
			return nil
		}
		resp, _, err := (&dns.Client{Net: w.RemoteAddr().Network(), Timeout: 2 * time.Second}).Exchange(r, a.DNSAddr())
		if err != nil {
			return nil
		}
		return resp
	})
	const secret = "00000000-0000-0000-0000-5ec2e7000000" // ignored: the agent has no ACLs
	conf := a.Config()
	conf.Token = secret
	client, err := api.NewClient(conf)
	must(t, err)
	var logs eventually.Buffer
	cfg := baseConfig(a)
	cfg.Client = client
	cfg.ConsulDNS = relay.addr
	cfg.StaleTTL = 7 * time.Second
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	s, addr := startServer(t, cfg)
	// The same, asking the agent's DNS directly (its port is closed once
	// the agent stops).
	cfg2 := baseConfig(a)
	s2, addr2 := startServer(t, cfg2)

	const svc, node = "viaq.service.consul.", "qnode.node.consul."
	// records is r's answer as "TYPE data TTL", and whether it holds the
	// CNAME followed by the target's A records (want, in any order).
	records := func(r *dns.Msg, want ...string) (bool, string) {
		var got, as []string
		cname := false
		for _, rr := range r.Answer {
			switch v := rr.(type) {
			case *dns.CNAME:
				cname = v.Target == "lgpq.query.consul."
			case *dns.A:
				as = append(as, v.A.String())
			}
			got = append(got, fmt.Sprintf("%s %s %d", dns.TypeToString[rr.Header().Rrtype], strings.TrimPrefix(rr.String(), rr.Header().String()), rr.Header().Ttl))
		}
		return cname && strings.Join(set(as), " ") == strings.Join(set(want), " "), dns.RcodeToString[r.Rcode] + " " + strings.Join(got, ", ")
	}
	// ttls is the TTLs of r's A records.
	ttls := func(r *dns.Msg) []uint32 {
		var out []uint32
		for _, rr := range r.Answer {
			if rr.Header().Rrtype == dns.TypeA {
				out = append(out, rr.Header().Ttl)
			}
		}
		return out
	}
	for _, srv := range []string{addr, addr2} {
		for _, name := range []string{svc, node} {
			eventually.Holds(t, seedTimeout, name+" with the target's records", func() (bool, string) {
				return records(exchange(t, srv, name, dns.TypeA, "udp"), "10.61.0.1")
			})
		}
	}

	// The agent's DNS stops answering: for three rebuilds of the answer
	// (chaseRetry apart), every answer still holds the target's records,
	// with -stale-ttl once built from the last good ones.
	relaying.Store(false)
	sawStale := false
	for end := time.Now().Add(3*chaseRetry + cfg.TryTimeout); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, name := range []string{svc, node} {
			r := exchange(t, addr, name, dns.TypeA, "udp")
			ok, got := records(r, "10.61.0.1")
			if !ok {
				t.Fatalf("%s while the agent's DNS does not answer: %s; want the CNAME and the last good A record", name, got)
			}
			if ttl := ttls(r); ttl[0] == 7 {
				sawStale = true
			} else if ttl[0] != 0 {
				t.Fatalf("%s while the agent's DNS does not answer: %s; want TTL 0 (fresh) or -stale-ttl 7", name, got)
			}
		}
	}
	if !sawStale {
		t.Error("no answer with -stale-ttl while the agent's DNS did not answer")
	}
	if n := s.m.stale[cacheConsul].Load(); n == 0 {
		t.Error("no stale answer counted while the agent's DNS did not answer")
	}
	out := logs.String()
	for _, want := range []string{"last good records until the agent's DNS answers again", "target=lgpq.query.consul.", "consul_dns=" + relay.addr} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "last good records until"); n != 1 {
		t.Errorf("said %d times that the agent's DNS cannot be asked, want once:\n%s", n, out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the log holds the token:\n%s", out)
	}

	// It answers again: a change of the target shows, fresh.
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "lginner2", Name: "lginner", Port: 80, Address: "10.61.0.2"}))
	relaying.Store(true)
	for _, name := range []string{svc, node} {
		eventually.Holds(t, 10*time.Second, name+" with the agent's new answer", func() (bool, string) {
			r := exchange(t, addr, name, dns.TypeA, "udp")
			ok, got := records(r, "10.61.0.1", "10.61.0.2")
			return ok && ttls(r)[0] == 0, got
		})
	}
	eventually.True(t, 5*time.Second, "the log to say the agent's DNS answers again", func() bool {
		return strings.Contains(logs.String(), "answers for a host-name address again")
	})

	// The agent stops: its DNS port is closed, its HTTP API too.
	for _, name := range []string{svc, node} {
		eventually.Holds(t, 10*time.Second, name+" with the agent's new answer, asked directly", func() (bool, string) {
			return records(exchange(t, addr2, name, dns.TypeA, "udp"), "10.61.0.1", "10.61.0.2")
		})
	}
	a.Stop()
	for end := time.Now().Add(3*chaseRetry + cfg.TryTimeout); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, name := range []string{svc, node} {
			if ok, got := records(exchange(t, addr2, name, dns.TypeA, "udp"), "10.61.0.1", "10.61.0.2"); !ok {
				t.Fatalf("%s with the agent stopped: %s; want the CNAME and the last good A records", name, got)
			}
		}
	}
	if n := s2.m.stale[cacheConsul].Load(); n == 0 {
		t.Error("no stale answer counted with the agent stopped")
	}
}
