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
