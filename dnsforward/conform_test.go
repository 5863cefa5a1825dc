package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/hashicorp/consul/api"
)

// compareExact asks each "name TYPE [dig options]" case of dnsforward at
// addr and of Consul's DNS at consulAddr with dig and compares status,
// flags (but RA) and every section's records with their letter case.
func compareExact(t *testing.T, addr, consulAddr string, cases []string) {
	t.Helper()
	for _, c := range cases {
		f := strings.Fields(c)
		got := dig(t, addr, f...)
		want := dig(t, consulAddr, f...)
		if got.status != want.status {
			t.Errorf("%s: status %s, Consul's DNS %s", c, got.status, want.status)
		}
		if g, w := withoutRA(got.flags), withoutRA(want.flags); g != w {
			t.Errorf("%s: flags %q, Consul's DNS %q (ra aside)", c, g, w)
		}
		for _, s := range []struct {
			name      string
			got, want []string
		}{{"answer", got.answer, want.answer}, {"authority", got.auth, want.auth}, {"additional", got.extra, want.extra}} {
			if g, w := set(s.got), set(s.want); !reflect.DeepEqual(g, w) {
				t.Errorf("%s: %s\n%s\nConsul's DNS:\n%s", c, s.name, strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
		}
	}
}

// TestLetterCaseLikeConsul: the names Consul writes in the question's
// letter case (the NS records' owner, the SOA and NS of the apex, a
// .virtual answer's owner) come in the same case from dnsforward, which
// passes these questions to the agent as the client wrote them.
func TestLetterCaseLikeConsul(t *testing.T) {
	a := consultest.Require(t, agent)
	requireDig(t)
	seed(t, a)
	// A service with a sidecar proxy has a virtual IP (vweb.virtual.consul).
	consultest.Register(t, a.Client(), &api.AgentServiceRegistration{ID: "vweb1", Name: "vweb", Port: 80, Address: "10.9.0.1"})
	consultest.Register(t, a.Client(), &api.AgentServiceRegistration{ID: "vweb1-proxy", Name: "vweb-sidecar-proxy", Kind: api.ServiceKindConnectProxy,
		Port: 21000, Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: "vweb", DestinationServiceID: "vweb1"}})
	cfg := baseConfig(a)
	cfg.AgentDNSConfig = true
	_, addr := startServer(t, cfg)
	time.Sleep(200 * time.Millisecond)
	if r := dig(t, a.DNSAddr(), "vweb.virtual.consul", "A"); len(r.answer) != 1 {
		t.Fatalf("no virtual IP for vweb from Consul's DNS:\n%s", r.raw)
	}
	compareExact(t, addr, a.DNSAddr(), []string{
		"VWEB.Virtual.CONSUL A", "vweb.virtual.Consul A", "Vweb.Virtual.Consul ANY", "VWEB.Connect.Consul A",
		"CONSUL SOA", "CONSUL NS", "Consul SOA", "Consul NS", "consul NS",
		"WEB.Service.CONSUL SOA", "WEB.Service.CONSUL NS", "Web.Service.Consul NS",
		"NoSuch.Service.Consul SOA", "Pq.Query.CONSUL SRV",
		"WEB.Connect.Consul A", "Web.Service.DC2.Consul A",
	})
}

// TestReverseNamesAnyTypeLikeConsul: Consul answers every question under
// arpa. as a reverse lookup, whatever its type (agent/dns.go handlePtr):
// an A, TXT, ANY or SRV question for a node's or service's reverse name
// gets its PTR record. dnsforward passes them to the agent as it does PTR
// questions; a name Consul does not know still goes to the upstreams.
func TestReverseNamesAnyTypeLikeConsul(t *testing.T) {
	a := consultest.Require(t, agent)
	requireDig(t)
	seed(t, a)
	up := startUpstream(t, outsideZone)
	cfg := baseConfig(a)
	cfg.AgentDNSConfig = true
	cfg.Upstreams = []string{up.addr}
	_, addr := startServer(t, cfg)
	time.Sleep(200 * time.Millisecond)
	var cases []string
	for _, n := range []string{"1.0.0.127.in-addr.arpa", "2.0.0.10.in-addr.arpa", "3.2.1.10.in-addr.arpa",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa"} {
		for _, typ := range []string{"PTR", "A", "AAAA", "TXT", "ANY", "SRV", "MX", "SOA"} {
			cases = append(cases, n+" "+typ)
		}
	}
	cases = append(cases, "1.0.0.127.IN-ADDR.ARPA A", "2.0.0.10.in-addr.arpa A +subnet=192.0.2.0/24")
	compareWithConsul(t, addr, a.DNSAddr(), cases)
	// Not Consul's: the upstreams answer (here NXDOMAIN, from outsideZone).
	if got := dig(t, addr, "9.2.0.192.in-addr.arpa", "A"); got.status != "NXDOMAIN" {
		t.Errorf("an address Consul does not know: %s", got.raw)
	}
	if n := up.queries("9.2.0.192.in-addr.arpa.", "udp"); n != 1 {
		t.Errorf("upstream asked %d times for an address Consul does not know, want 1", n)
	}
}
