package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/proctest"
	"github.com/miekg/dns"
)

// totalQueries is every query dnsforward has counted (all zones, types and
// rcodes) plus the refused loop questions.
func totalQueries(s *Server) uint64 {
	var n uint64
	for z := range s.m.queries {
		for t := range s.m.queries[z] {
			for r := range s.m.queries[z][t] {
				n += s.m.queries[z][t][r].Load()
			}
		}
	}
	return n
}

// waitQuiet polls until the query counter stops growing (no new query for
// 500ms), failing after a generous deadline: a loop keeps it growing.
func waitQuiet(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := totalQueries(s)
	for {
		time.Sleep(500 * time.Millisecond)
		n := totalQueries(s)
		if n == last {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("query counter still growing after 30s (%d, +%d in the last 500ms): a loop", n, n-last)
		}
		last = n
	}
}

// TestNoLoopWithAgentRecursors: the agent's recursors point at dnsforward
// (the documented way to resolve outside names through Consul). Questions
// dnsforward passes to the agent and the agent does not know come back; they
// must not circulate: the client gets an answer and the counters settle.
func TestNoLoopWithAgentRecursors(t *testing.T) {
	requireDig(t)
	listen := proctest.FreeAddr(t)
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(r)
		if r.Question[0].Qtype == dns.TypePTR {
			m.Answer = []dns.RR{mustRR(r.Question[0].Name + " 60 IN PTR outside.example.")}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		return m
	})
	a := consultest.StartT(t, consultest.Options{NodeName: "loopnode", ExtraHCL: fmt.Sprintf("recursors = [%q]\n", listen)})
	cfg := baseConfig(a)
	cfg.Listen = listen
	cfg.Upstreams = []string{up.addr}
	// berth.test is ours but not the agent's: a name there that goes to the
	// agent is outside its domain, so it recurses it back too.
	cfg.Domains = []string{"consul.", "berth.test."}
	s, addr := startServer(t, cfg)

	cases := []struct {
		args   []string
		status string
		ptr    bool
	}{
		{[]string{"-x", "203.0.113.79"}, "NOERROR", true},
		{[]string{"-x", "2001:db8::79"}, "NOERROR", true},
		{[]string{"+norecurse", "-x", "203.0.113.80"}, "NOERROR", true},
		{[]string{"+tcp", "-x", "203.0.113.81"}, "NOERROR", true},
		{[]string{"pq.query.berth.test", "A"}, "", false},
	}
	for _, c := range cases {
		r := dig(t, addr, c.args...)
		if c.status != "" && r.status != c.status {
			t.Errorf("dig %s: status %s, want %s", strings.Join(c.args, " "), r.status, c.status)
		}
		if c.ptr && (len(r.answer) != 1 || !strings.HasSuffix(r.answer[0], "PTR outside.example.")) {
			t.Errorf("dig %s: answer %q, want the upstream's PTR", strings.Join(c.args, " "), r.answer)
		}
		waitQuiet(t, s)
	}
	// A client of the agent's own DNS: the agent recurses to us, we ask the
	// agent (which sends it back: refused), then the upstream.
	if r := dig(t, a.DNSAddr(), "-x", "203.0.113.82"); r.status != "NOERROR" || len(r.answer) != 1 {
		t.Errorf("through the agent: %s %q", r.status, r.answer)
	}
	waitQuiet(t, s)
	if s.m.loops.Load() == 0 {
		t.Error("no loop counted: did the questions reach the agent at all?")
	}
	t.Logf("queries %d, loops refused %d, upstream queries %d", totalQueries(s), s.m.loops.Load(), up.total.Load())
}
