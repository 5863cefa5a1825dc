package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/consultest"
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
