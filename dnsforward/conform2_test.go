package main

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
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
	cases = append(cases, "pqnode.node.consul A", "pqnode.node.consul ANY", "PqNode.Node.Consul AAAA",
		"inpq.service.consul SRV +noedns", "inpq.service.consul A +tcp")
	compareWithConsul(t, addr, a.DNSAddr(), cases)
}

// TestHostNameAddressCaseLikeConsul: a CNAME to a host-name address in the
// Consul domain, and the target's records, are written as the address was
// registered, whatever the letter case of the question (its domain
// included), as from Consul; only the CNAME's owner follows the question.
func TestHostNameAddressCaseLikeConsul(t *testing.T) {
	a := consultest.Require(t, agent)
	requireDig(t)
	addr := startSeeded(t, a)
	c := a.Client()
	consultest.Register(t, c, &api.AgentServiceRegistration{ID: "inweb1", Name: "inweb", Port: 80, Address: "web.service.consul"})
	consultest.Register(t, c, &api.AgentServiceRegistration{ID: "indb1", Name: "indb", Port: 80, Address: "DB.Service.Consul"})
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "webnode", Address: "web.service.consul"}, nil)
	must(t, err)
	t.Cleanup(func() { _, _ = c.Catalog().Deregister(&api.CatalogDeregistration{Node: "webnode"}, nil) })
	waitSeeded(t, a, addr, map[string][]string{
		"inweb.service.consul SRV": {"1 1 80 web.service.consul."},
		"indb.service.consul SRV":  {"1 1 80 DB.Service.Consul."},
		"webnode.node.consul A":    {"web.service.consul.", "127.0.0.1", "10.1.2.3", "10.1.2.4", "10.0.0.2"},
	})
	var cases []string
	for _, n := range []string{"inweb.service.consul", "InWeb.Service.Consul", "inweb.service.CONSUL", "INWEB.SERVICE.CONSUL",
		"indb.service.consul", "InDb.Service.Consul", "webnode.node.consul", "WebNode.Node.Consul", "webnode.node.Consul"} {
		for _, typ := range []string{"A", "AAAA", "ANY", "TXT", "MX"} {
			cases = append(cases, n+" "+typ)
		}
	}
	cases = append(cases, "InWeb.Service.Consul A +tcp", "InWeb.Service.Consul SRV")
	compareWithConsul(t, addr, a.DNSAddr(), cases)
	// Cut to the agent's udp_answer_limit (3) for a client without EDNS0:
	// which A records are kept is chosen at random by both, so the records
	// are compared by owner and type, the CNAME whole.
	for _, c := range []string{"WebNode.Node.CONSUL A +noedns", "InWeb.Service.Consul A +noedns", "inweb.service.CONSUL ANY +noedns"} {
		got, want := digBoth(t, addr, a.DNSAddr(), c)
		if g, w := ownersAndCNAMEs(got.answer), ownersAndCNAMEs(want.answer); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: answer\n%s\nConsul's DNS:\n%s", c, strings.Join(got.answer, "\n"), strings.Join(want.answer, "\n"))
		}
	}
}

// ownersAndCNAMEs is each record's owner and type, a CNAME record whole,
// in order.
func ownersAndCNAMEs(rs []string) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		if f := strings.Fields(r); len(f) >= 4 && f[3] != "CNAME" {
			r = f[0] + " " + f[3]
		}
		out = append(out, r)
	}
	return out
}

// TestLongNodeMetaTXT: a node meta value longer than a TXT
// character-string (255 bytes; Consul accepts values of up to 512) is
// answered as one TXT record of several strings, which join to
// "key=value" (RFC 1464; README, differences: Consul's DNS sends no reply
// to a question whose answer holds it).
func TestLongNodeMetaTXT(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client()
	long := strings.Repeat("0123456789", 40)
	_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "longmeta", Address: "10.0.0.40",
		NodeMeta: map[string]string{"long": long},
		Service:  &api.AgentService{ID: "onlong1", Service: "onlong", Port: 9}}, nil)
	must(t, err)
	t.Cleanup(func() { _, _ = c.Catalog().Deregister(&api.CatalogDeregistration{Node: "longmeta"}, nil) })
	_, addr := startServer(t, baseConfig(a))
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"longmeta.node.consul.", dns.TypeTXT}, {"longmeta.node.consul.", dns.TypeANY}, {"onlong.service.consul.", dns.TypeSRV}} {
		var txt []*dns.TXT
		eventually.Holds(t, seedTimeout, "the long meta value from dnsforward", func() (bool, string) {
			r, err := ask(addr, q.name, q.qtype, "tcp") // the whole answer
			if err != nil {
				return false, err.Error()
			}
			txt = txt[:0]
			for _, rr := range append(r.Answer, r.Extra...) {
				if v, ok := rr.(*dns.TXT); ok {
					txt = append(txt, v)
				}
			}
			return len(txt) > 0, fmt.Sprint(r)
		})
		if len(txt) != 1 || strings.Join(txt[0].Txt, "") != "long="+long {
			t.Errorf("%s %s: TXT %v, want one record of \"long=\" and the value", q.name, dns.TypeToString[q.qtype], txt)
			continue
		}
		for _, s := range txt[0].Txt {
			if len(s) > 255 {
				t.Errorf("%s %s: a string of %d bytes", q.name, dns.TypeToString[q.qtype], len(s))
			}
		}
	}
}
