package main

import (
	"testing"

	"github.com/berth/berth/pkg/consultest"
	"github.com/hashicorp/consul/api"
)

// TestAddressInDomainNotFromMemoryLikeConsul: a service or node whose
// address is a name in the Consul domain that dnsforward does not answer
// from memory (a prepared query, .connect, .virtual, another datacenter)
// gets the CNAME followed by what the agent's DNS answers for that name,
// as Consul answers it from its own DNS; in SRV answers those records are
// the additional ones.
func TestAddressInDomainNotFromMemoryLikeConsul(t *testing.T) {
	a := consultest.Require(t, agent)
	requireDig(t)
	addr := startSeeded(t, a) // seeds the prepared query pq (web)
	c := a.Client()
	for _, r := range []*api.AgentServiceRegistration{
		{ID: "inpq1", Name: "inpq", Port: 80, Address: "pq.query.consul"},
		{ID: "inpqcase1", Name: "inpqcase", Port: 80, Address: "PQ.Query.Consul"},
		{ID: "inpqnx1", Name: "inpqnx", Port: 80, Address: "nopq.query.consul"},
		{ID: "inconnect1", Name: "inconnect", Port: 80, Address: "web.connect.consul"},
		{ID: "indc2", Name: "indc2", Port: 80, Address: "web.service.dc2.consul"},
		// A chain: a service at a service at a prepared query.
		{ID: "inchain1", Name: "inchain", Port: 80, Address: "inpq.service.consul"},
	} {
		consultest.Register(t, c, r)
	}
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "pqnode", Address: "pq.query.consul",
		Service: &api.AgentService{ID: "onpqnode1", Service: "onpqnode", Port: 9}}, nil)
	must(t, err)
	t.Cleanup(func() { _, _ = c.Catalog().Deregister(&api.CatalogDeregistration{Node: "pqnode"}, nil) })
	waitSeeded(t, a, addr, map[string][]string{
		"inchain.service.consul SRV":  {"1 1 80 inpq.service.consul."},
		"onpqnode.service.consul SRV": {"1 1 9 pq.query.consul."},
	})
	var cases []string
	for _, n := range []string{"inpq", "inpqcase", "inpqnx", "inconnect", "indc2", "inchain", "onpqnode", "INPQ"} {
		for _, typ := range []string{"A", "AAAA", "SRV", "ANY", "TXT", "MX"} {
			cases = append(cases, n+".service.consul "+typ)
		}
	}
	cases = append(cases, "pqnode.node.consul A", "pqnode.node.consul ANY", "PqNode.Node.consul AAAA",
		"inpq.service.consul SRV +noedns", "inpq.service.consul A +tcp")
	compareWithConsul(t, addr, a.DNSAddr(), cases)
}
