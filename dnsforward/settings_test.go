package main

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// agentSettingsHCL is an agent whose DNS settings all differ from the
// defaults dnsforward would use without reading them.
const agentSettingsHCL = `
domain = "berth.test"
alt_domain = "alt.test"
dns_config {
  only_passing = true
  node_ttl = "7s"
  service_ttl {
    "*" = "5s"
    "web*" = "11s"
    "webx" = "13s"
  }
  soa {
    min_ttl = 17
    refresh = 100
    retry = 50
    expire = 1000
  }
  a_record_limit = 2
  udp_answer_limit = 1
  enable_truncate = true
}
`

// TestAgentDNSSettings: with no flag given, dnsforward answers with the
// agent's domain, alt_domain and dns_config; the agent's own DNS is the
// oracle. A flag given explicitly wins.
func TestAgentDNSSettings(t *testing.T) {
	requireDig(t)
	a := consultest.StartT(t, consultest.Options{NodeName: "settings", ExtraHCL: agentSettingsHCL})
	ag := a.Client().Agent()
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "w1", Name: "web", Port: 80, Address: "10.40.0.1"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "w2", Name: "web", Port: 81, Address: "10.40.0.2"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "w3", Name: "web", Port: 82, Address: "10.40.0.3",
		Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthWarning}}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "x1", Name: "webx", Port: 80, Address: "10.41.0.1"}))
	must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: "o1", Name: "other", Port: 80, Address: "10.42.0.1"}))
	var five []string // their SRV records, seeded last
	for i := 1; i <= 5; i++ {
		must(t, ag.ServiceRegister(&api.AgentServiceRegistration{ID: fmt.Sprintf("f%d", i), Name: "five", Port: 80, Address: fmt.Sprintf("10.43.0.%d", i)}))
		five = append(five, fmt.Sprintf("1 1 80 0a2b00%02x.addr.dc1.berth.test.", i))
	}
	var logs eventually.Buffer
	cfg := baseConfig(a)
	cfg.AgentDNSConfig = true
	cfg.Explicit = map[string]bool{}
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	s, addr := startServer(t, cfg)
	eventually.Holds(t, 10*time.Second, "the agent's settings", func() (bool, string) {
		d := s.settings.Load().domains
		return d[0] == "berth.test.", fmt.Sprintf("domains %v", d)
	})
	waitSeeded(t, a, addr, map[string][]string{"five.service.berth.test SRV": five})
	cases := []string{
		"web.service.berth.test A", "web.service.berth.test SRV", "web.service.alt.test SRV", "web.service.berth.test AAAA",
		"webx.service.berth.test A", "other.service.alt.test A", "other.service.berth.test SRV",
		"nosuch.service.berth.test A", "nosuch.service.alt.test A", "settings.node.berth.test A", "settings.node.alt.test TXT",
		"nosuch.node.berth.test A", "0a000001.addr.berth.test A",
	}
	compareWithConsul(t, addr, a.DNSAddr(), cases)
	// a_record_limit 2 of 5: the same count, every record one of the five.
	for i := 0; i < 5; i++ {
		got := dig(t, addr, "five.service.berth.test", "A")
		want := dig(t, a.DNSAddr(), "five.service.berth.test", "A")
		if len(got.answer) != len(want.answer) || len(got.answer) != 2 {
			t.Fatalf("a_record_limit: %d records, Consul's DNS %d, want 2", len(got.answer), len(want.answer))
		}
		for _, r := range got.answer {
			if !strings.Contains(r, "10.43.0.") {
				t.Fatalf("a_record_limit: %q", r)
			}
		}
	}
	// udp_answer_limit 1 with enable_truncate, for clients without EDNS0:
	// one record and TC, as the agent.
	for _, q := range []string{"five.service.berth.test A", "web.service.berth.test SRV", "+bufsize=512 five.service.berth.test A"} {
		opt := "+noedns"
		if strings.HasPrefix(q, "+") {
			opt, q, _ = strings.Cut(q, " ")
		}
		f := append([]string{opt, "+ignore"}, strings.Fields(q)...)
		got, want := dig(t, addr, f...), dig(t, a.DNSAddr(), f...)
		if len(got.answer) != len(want.answer) || len(got.answer) != 1 || withoutRA(got.flags) != withoutRA(want.flags) || len(got.extra) != len(want.extra) {
			t.Errorf("%s without EDNS: %d records (%d additional), flags %q; Consul's DNS %d (%d), %q", q, len(got.answer), len(got.extra), got.flags,
				len(want.answer), len(want.extra), want.flags)
		}
	}
	// The default domain is not the agent's any more.
	if r := exchange(t, addr, "web.service.consul.", dns.TypeA, "udp"); r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
		t.Errorf("web.service.consul answered from memory although the agent's domain is berth.test: %v", r.Answer)
	}

	// Flags given win; a -domain other than the agent's is one warning.
	cfg2 := baseConfig(a)
	cfg2.AgentDNSConfig = true
	cfg2.Explicit = map[string]bool{"only-passing": true, "service-ttl": true, "domain": true}
	cfg2.ServiceTTL = 3 * time.Second
	cfg2.Log = slog.New(slog.NewTextHandler(&logs, nil))
	s2, addr2 := startServer(t, cfg2)
	eventually.Holds(t, 10*time.Second, "the agent's settings", func() (bool, string) {
		ttl := s2.settings.Load().nodeTTL
		return ttl == 7*time.Second, fmt.Sprintf("node TTL %s", ttl)
	})
	r := exchange(t, addr2, "web.service.consul.", dns.TypeSRV, "tcp")
	if len(r.Answer) != 3 || r.Answer[0].Header().Ttl != 3 {
		t.Errorf("-only-passing=false -service-ttl 3s given: %v, want 3 records with TTL 3", r.Answer)
	}
	if n := strings.Count(logs.String(), "-domain differs from the agent's domain"); n != 1 {
		t.Errorf("%d warnings about -domain, want 1:\n%s", n, logs.String())
	}
	// After an outage the settings are read again: forget them (as if the
	// agent had been reconfigured), restart the agent, and they are back.
	s.settings.Store(settingsFromFlags(&s.cfg))
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually.Holds(t, 30*time.Second, "the agent's settings read again after its restart", func() (bool, string) {
		d := s.settings.Load().domains
		return d[0] == "berth.test.", fmt.Sprintf("domains %v", d)
	})
}

// TestAgentNodeMetaTXTSetting: with the agent's dns_config
// enable_additional_node_meta_txt = false, node meta is left out of the
// additional section of node and SRV answers and still answers TXT and ANY
// questions of a node, as from the agent's own DNS.
func TestAgentNodeMetaTXTSetting(t *testing.T) {
	requireDig(t)
	a := consultest.StartT(t, consultest.Options{NodeName: "metanode", ExtraHCL: `
node_meta { rack = "r1", "rfc1035-x" = "raw" }
dns_config { enable_additional_node_meta_txt = false }
`})
	must(t, a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "m1", Name: "metasvc", Port: 80}))
	must(t, a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "m2", Name: "metasvc2", Port: 81, Address: "10.44.0.1"}))
	cfg := baseConfig(a)
	cfg.AgentDNSConfig = true
	cfg.Explicit = map[string]bool{}
	s, addr := startServer(t, cfg)
	eventually.Holds(t, 10*time.Second, "the agent's settings", func() (bool, string) {
		return s.zone.settingsRead.Load(), "not read"
	})
	waitSeeded(t, a, addr, map[string][]string{"metasvc2.service.consul SRV": {"1 1 81 0a2c0001.addr.dc1.consul."}})
	compareWithConsul(t, addr, a.DNSAddr(), []string{
		"metanode.node.consul A", "metanode.node.consul AAAA", "metanode.node.consul TXT", "metanode.node.consul ANY",
		"metasvc.service.consul SRV", "metasvc2.service.consul SRV", "metasvc.service.consul A", "metasvc.service.consul ANY",
	})
}
