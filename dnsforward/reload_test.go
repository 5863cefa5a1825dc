package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// TestAgentSettingsFollowReload: a `consul reload` that changes dns_config
// is followed, every AgentRefresh and at once on Reload (SIGHUP); the
// agent's own DNS is the oracle.
func TestAgentSettingsFollowReload(t *testing.T) {
	requireDig(t)
	hcl := func(ttl string, limit int) string {
		return fmt.Sprintf("dns_config {\n  service_ttl { \"*\" = %q }\n  a_record_limit = %d\n}\n", ttl, limit)
	}
	a := consultest.StartT(t, consultest.Options{NodeName: "reload", ExtraHCL: hcl("7s", 2)})
	// A dev agent drops services registered through the API when it
	// reloads: register again after each reload.
	register := func() {
		for i := 1; i <= 4; i++ {
			must(t, a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{
				ID: fmt.Sprintf("r%d", i), Name: "four", Port: 80, Address: fmt.Sprintf("10.44.0.%d", i)}))
		}
	}
	register()
	// ttlCount is the TTL and the number of records addr answers for
	// four.service.consul A.
	ttlCount := func(addr string) (uint32, int) {
		r := exchange(t, addr, "four.service.consul.", dns.TypeA, "udp")
		if len(r.Answer) == 0 {
			return 0, 0
		}
		return r.Answer[0].Header().Ttl, len(r.Answer)
	}
	sameAsAgent := func(addr string, ttl uint32, n int) func() (bool, string) {
		return func() (bool, string) {
			gt, gn := ttlCount(addr)
			at, an := ttlCount(a.DNSAddr())
			return gt == ttl && gn == n && at == ttl && an == n,
				fmt.Sprintf("dnsforward: TTL %d, %d records; the agent: TTL %d, %d", gt, gn, at, an)
		}
	}
	cfg := baseConfig(a)
	cfg.AgentDNSConfig = true
	cfg.Explicit = map[string]bool{}
	cfg.AgentRefresh = 200 * time.Millisecond
	_, addr := startServer(t, cfg)
	onHUP := baseConfig(a)
	onHUP.AgentDNSConfig = true
	onHUP.Explicit = map[string]bool{}
	onHUP.AgentRefresh = time.Hour // only Reload reads them again
	var logs eventually.Buffer
	onHUP.Log = slog.New(slog.NewTextHandler(&logs, nil))
	s2, addr2 := startServer(t, onHUP)
	eventually.Holds(t, 10*time.Second, "the agent's first settings", sameAsAgent(addr, 7, 2))
	eventually.Holds(t, 10*time.Second, "the agent's first settings (second server)", sameAsAgent(addr2, 7, 2))

	must(t, a.Reload(hcl("9s", 1)))
	register()
	eventually.Holds(t, 10*time.Second, "the settings after consul reload", sameAsAgent(addr, 9, 1))
	if gt, gn := ttlCount(addr2); gt != 7 || gn != 2 {
		t.Fatalf("without a refresh or Reload: TTL %d, %d records; want the old 7s and 2", gt, gn)
	}
	s2.Reload()
	eventually.Holds(t, 10*time.Second, "the settings after Reload", sameAsAgent(addr2, 9, 1))
	eventually.True(t, 10*time.Second, "a log line saying the settings changed", func() bool {
		return strings.Contains(logs.String(), "the agent's DNS settings changed")
	})
}

// TestSIGHUPEmptiesCache: SIGHUP does what it does to dnsmasq (empties the
// cache of upstream answers) and does not stop the process.
func TestSIGHUPEmptiesCache(t *testing.T) {
	answer := func(ip string) func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		return func(_ dns.ResponseWriter, r *dns.Msg) *dns.Msg {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Answer = []dns.RR{mustRR(r.Question[0].Name + " 300 IN A " + ip)}
			return m
		}
	}
	up := startUpstream(t, answer("192.0.2.1"))
	listen := proctest.FreeAddr(t)
	cmd := exec.Command(os.Args[0], "-listen", listen, "-http-addr", agent.HTTPAddr(), "-consul-dns", agent.DNSAddr(), "-upstream", up.addr)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	p := proctest.Start(t, cmd, proctest.Options{Combined: true})
	eventually.True(t, 15*time.Second, "dnsforward answering", func() bool {
		return strings.Contains(p.Stdout.String(), "answering DNS")
	})
	first := func() string {
		r := exchange(t, listen, "hup.example.", dns.TypeA, "udp")
		if len(r.Answer) != 1 {
			return r.String()
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	if got := first(); got != "192.0.2.1" {
		t.Fatalf("hup.example.: %s", got)
	}
	up.setHandler(answer("192.0.2.2"))
	if got := first(); got != "192.0.2.1" {
		t.Fatalf("hup.example. before SIGHUP: %s, want the cached 192.0.2.1", got)
	}
	must(t, cmd.Process.Signal(syscall.SIGHUP))
	eventually.Holds(t, 10*time.Second, "the upstream's new answer after SIGHUP", func() (bool, string) {
		got := first()
		return got == "192.0.2.2", got
	})
	if !p.Alive() {
		t.Fatalf("dnsforward exited on SIGHUP (code %d):\n%s", p.Code(), p.Stdout.String())
	}
	if !strings.Contains(p.Stdout.String(), "SIGHUP: upstream cache emptied") {
		t.Errorf("no log line for SIGHUP:\n%s", p.Stdout.String())
	}
}

// TestRefusedAskedOnce: an upstream that answers REFUSED or SERVFAIL is
// not asked again for the same client query (it was asked 22 times in
// 450 ms); the client gets SERVFAIL.
func TestRefusedAskedOnce(t *testing.T) {
	rcode := func(c int) func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		return func(_ dns.ResponseWriter, r *dns.Msg) *dns.Msg {
			m := new(dns.Msg)
			m.SetRcode(r, c)
			return m
		}
	}
	refused, servfail := startUpstream(t, rcode(dns.RcodeRefused)), startUpstream(t, rcode(dns.RcodeServerFailure))
	_, addr := startServer(t, upstreamConfig(t, refused.addr, servfail.addr))
	if r := exchange(t, addr, "no.example.", dns.TypeA, "udp"); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if a, b := refused.queries("no.example.", "udp"), servfail.queries("no.example.", "udp"); a != 1 || b != 1 {
		t.Errorf("REFUSED upstream asked %d times, SERVFAIL one %d; want once each", a, b)
	}
}

// TestHTTPDownAgentDNSAnswers: with the agent's HTTP API unreachable (a
// wrong -http-addr) and its DNS up, Consul names are passed to the agent's
// DNS without waiting out firstWait for a watch whose calls fail (each
// query waited 3 s).
func TestHTTPDownAgentDNSAnswers(t *testing.T) {
	must(t, agent.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "httpdown1", Name: "httpdown", Port: 80, Address: "10.45.0.1"}))
	t.Cleanup(func() { _ = agent.Client().Agent().ServiceDeregister("httpdown1") })
	cfg := baseConfig(agent)
	closed, err := api.NewClient(&api.Config{Address: proctest.FreeAddr(t)})
	must(t, err)
	cfg.Client = closed
	s, err := New(cfg)
	must(t, err)
	must(t, s.Listen())
	proctest.Go(t, "the server", s.Serve)
	for i := 0; i < 3; i++ {
		start := time.Now()
		r := exchange(t, s.Addr(), "httpdown.service.consul.", dns.TypeA, "udp")
		took := time.Since(start)
		if got := addrs(r); len(got) != 1 || got[0] != "10.45.0.1" {
			t.Fatalf("query %d: %v, want the agent's answer 10.45.0.1", i+1, r)
		}
		if took >= firstWait {
			t.Errorf("query %d took %s: it waited out firstWait (%s) for a watch whose calls fail", i+1, took, firstWait)
		}
	}
}
