package main

import (
	"fmt"
	"net"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/miekg/dns"
)

// zoneHandler answers like a small authoritative server for example. (names
// without regard to case):
// a.example. A (TTL 60), big.example. (40 A records: TC over UDP),
// slow.example. (after 400ms), nx. NXDOMAIN with SOA minimum 60.
func zoneHandler(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
	m := recursiveReply(r)
	q := r.Question[0]
	name := strings.ToLower(q.Name) // the records keep the question's case
	switch name {
	case "a.example.", "slow.example.", "short.example.":
		if name == "slow.example." {
			time.Sleep(400 * time.Millisecond)
		}
		ttl := "60"
		if name == "short.example." {
			ttl = "1"
		}
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, mustRR(q.Name+" "+ttl+" IN A 192.0.2.1"))
		} else {
			m.Ns = append(m.Ns, mustRR("example. 60 IN SOA ns.example. h.example. 1 3600 600 86400 30"))
		}
	case "big.example.":
		if w.RemoteAddr().Network() == "udp" {
			m.Truncated = true
		} else {
			for i := 1; i <= 40; i++ {
				m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN A 192.0.2."+strconv.Itoa(i)))
			}
		}
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, mustRR("example. 300 IN SOA ns.example. h.example. 1 3600 600 86400 60"))
	}
	return m
}

func upstreamConfig(t *testing.T, ups ...string) Config {
	a := consultest.Require(t, agent)
	cfg := baseConfig(a)
	cfg.Upstreams = ups
	return cfg
}

func TestUpstreamCacheAndNegativeCache(t *testing.T) {
	up := startUpstream(t, zoneHandler)
	_, addr := startServer(t, upstreamConfig(t, up.addr))
	for i := 0; i < 5; i++ {
		r := exchange(t, addr, "A.Example.", dns.TypeA, "udp")
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
			t.Fatalf("a.example.: %v", r)
		}
		if r.Question[0].Name != "A.Example." {
			t.Errorf("question case not kept: %s", r.Question[0].Name)
		}
		if ttl := r.Answer[0].Header().Ttl; ttl > 60 || ttl < 58 {
			t.Errorf("cached TTL %d, want about 60", ttl)
		}
	}
	if n := up.queries("a.example.", "udp"); n != 1 {
		t.Errorf("upstream asked %d times for a cached name, want 1", n)
	}
	for i := 0; i < 3; i++ {
		r := exchange(t, addr, "nx.example.", dns.TypeA, "udp")
		if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
			t.Fatalf("nx.example.: %v", r)
		}
	}
	if n := up.queries("nx.example.", "udp"); n != 1 {
		t.Errorf("upstream asked %d times for a negatively cached name, want 1", n)
	}
	// NODATA is cached too (by the SOA minimum, 30s here).
	for i := 0; i < 3; i++ {
		if r := exchange(t, addr, "a.example.", dns.TypeAAAA, "udp"); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Fatalf("a.example. AAAA: %v", r)
		}
	}
	if n := up.queries("a.example.", "udp"); n != 2 {
		t.Errorf("upstream asked %d times (A once, AAAA once), want 2", n)
	}
	// The Consul domain never goes upstream.
	exchange(t, addr, "nosuch.service.consul.", dns.TypeA, "udp")
	exchange(t, addr, "whatever.consul.", dns.TypeA, "udp")
	if n := up.queries("nosuch.service.consul.", "udp") + up.queries("whatever.consul.", "udp"); n != 0 {
		t.Errorf("Consul names forwarded upstream %d times", n)
	}
}

func TestUpstreamFailover(t *testing.T) {
	// A dead upstream: a socket that never answers (so each try times out).
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	servfail := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		return m
	})
	refused := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		return m
	})
	good := startUpstream(t, zoneHandler)
	cfg := upstreamConfig(t, dead.LocalAddr().String(), servfail.addr, refused.addr, good.addr)
	s, addr := startServer(t, cfg)
	start := time.Now()
	r := exchange(t, addr, "a.example.", dns.TypeA, "udp")
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("after failover: %v", r)
	}
	t.Logf("answered after %s (per-try timeout %s)", time.Since(start), cfg.TryTimeout)
	if servfail.total.Load() == 0 || refused.total.Load() == 0 {
		t.Error("SERVFAIL and REFUSED upstreams were not tried in order")
	}
	_ = s

	// All upstreams down: SERVFAIL after the budget.
	cfg2 := upstreamConfig(t, dead.LocalAddr().String())
	cfg2.Budget = 700 * time.Millisecond
	_, addr2 := startServer(t, cfg2)
	start = time.Now()
	if r := exchange(t, addr2, "b.example.", dns.TypeA, "udp"); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("all upstreams down: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("SERVFAIL after %s, before the 700ms budget ran out", d)
	}
}

func TestServeStale(t *testing.T) {
	for _, stale := range []bool{true, false} {
		up := startUpstream(t, zoneHandler)
		cfg := upstreamConfig(t, up.addr)
		cfg.ServeStale = stale
		cfg.Budget = 500 * time.Millisecond
		_, addr := startServer(t, cfg)
		if r := exchange(t, addr, "short.example.", dns.TypeA, "udp"); len(r.Answer) != 1 {
			t.Fatalf("short.example.: %v", r)
		}
		up.setHandler(func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg { return nil }) // now silent
		time.Sleep(1100 * time.Millisecond)                                           // the 1s TTL runs out
		r := exchange(t, addr, "short.example.", dns.TypeA, "udp")
		switch {
		case stale && (r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 30):
			t.Errorf("-serve-stale, upstream down: %v; want the old answer with TTL 30", r)
		case !stale && r.Rcode != dns.RcodeServerFailure:
			t.Errorf("no -serve-stale, upstream down: %s; want SERVFAIL", dns.RcodeToString[r.Rcode])
		}
	}
}

// TestUpstreamTruncatedRetriesOverTCP: a UDP client's question goes
// upstream over UDP, and again over TCP when that answer is truncated (a
// TCP client's goes over TCP alone: TestTCPClientAskedUpstreamOverTCPAsDnsmasq).
func TestUpstreamTruncatedRetriesOverTCP(t *testing.T) {
	up := startUpstream(t, zoneHandler)
	_, addr := startServer(t, upstreamConfig(t, up.addr))
	// Our UDP client without EDNS gets TC.
	r := exchange(t, addr, "big.example.", dns.TypeA, "udp")
	if !r.Truncated {
		t.Errorf("40 records over UDP in 512 bytes without TC")
	}
	if up.queries("big.example.", "udp") != 1 || up.queries("big.example.", "tcp") != 1 {
		t.Errorf("upstream asked udp %d, tcp %d times; want one each", up.queries("big.example.", "udp"), up.queries("big.example.", "tcp"))
	}
	// Over TCP, the whole answer (from the cache).
	r = exchange(t, addr, "big.example.", dns.TypeA, "tcp")
	if len(r.Answer) != 40 {
		t.Fatalf("big.example. over TCP: %d records, want 40", len(r.Answer))
	}
}

func TestCoalescing(t *testing.T) {
	up := startUpstream(t, zoneHandler)
	cfg := upstreamConfig(t, up.addr)
	cfg.TryTimeout = 3 * time.Second // slow.example. takes 400ms
	cfg.Budget = 4 * time.Second
	_, addr := startServer(t, cfg)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := new(dns.Msg)
			m.SetQuestion("slow.example.", dns.TypeA)
			c := &dns.Client{Timeout: 5 * time.Second}
			r, _, err := c.Exchange(m, addr)
			if err != nil || len(r.Answer) != 1 {
				t.Errorf("slow.example.: %v %v", r, err)
			}
		}()
	}
	wg.Wait()
	if n := up.queries("slow.example.", "udp"); n != 1 {
		t.Errorf("two identical concurrent queries made %d upstream queries, want 1", n)
	}
}

func TestNoUpstreamRefused(t *testing.T) {
	_, addr := startServer(t, upstreamConfig(t))
	if r := exchange(t, addr, "a.example.", dns.TypeA, "udp"); r.Rcode != dns.RcodeRefused {
		t.Errorf("no upstream: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

func TestIsSelf(t *testing.T) {
	for _, c := range []struct {
		up, listen string
		want       bool
	}{
		{"127.0.0.1:53", "127.0.0.1:53", true},
		{"127.0.0.1:53", "0.0.0.0:53", true},
		{"127.0.0.1:5353", "127.0.0.1:53", false},
		{"10.0.0.1:53", "127.0.0.1:53", false},
		{"[::1]:53", "[::]:53", true},
	} {
		if got := isSelf(c.up, c.listen); got != c.want {
			t.Errorf("isSelf(%s, %s) = %v", c.up, c.listen, got)
		}
	}
}

func TestPolicies(t *testing.T) {
	for _, policy := range []string{policyRoundRobin, policyRandom} {
		u1 := startUpstream(t, zoneHandler)
		u2 := startUpstream(t, zoneHandler)
		cfg := upstreamConfig(t, u1.addr, u2.addr)
		cfg.Policy = policy
		cfg.CacheSize = 0
		_, addr := startServer(t, cfg)
		for i := 0; i < 20; i++ {
			exchange(t, addr, "a.example.", dns.TypeA, "udp")
		}
		if u1.total.Load() == 0 || u2.total.Load() == 0 {
			t.Errorf("-policy %s: upstream queries %d and %d, want both used", policy, u1.total.Load(), u2.total.Load())
		}
	}
	u1 := startUpstream(t, zoneHandler)
	u2 := startUpstream(t, zoneHandler)
	cfg := upstreamConfig(t, u1.addr, u2.addr)
	cfg.CacheSize = 0
	_, addr := startServer(t, cfg)
	for i := 0; i < 10; i++ {
		exchange(t, addr, "a.example.", dns.TypeA, "udp")
	}
	if u1.total.Load() != 10 || u2.total.Load() != 0 {
		t.Errorf("-policy sequential: upstream queries %d and %d, want 10 and 0", u1.total.Load(), u2.total.Load())
	}
}

func TestPTRConsulThenUpstream(t *testing.T) {
	a := consultest.Require(t, agent)
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{mustRR(r.Question[0].Name + " 60 IN PTR host.example.")}
		return m
	})
	_, addr := startServer(t, upstreamConfig(t, up.addr))
	// The agent's own address: Consul answers with its node name.
	r := exchange(t, addr, "1.0.0.127.in-addr.arpa.", dns.TypePTR, "udp")
	if len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != a.NodeName+".node.dc1.consul." {
		t.Errorf("PTR of the agent: %v", r.Answer)
	}
	if n := up.total.Load(); n != 0 {
		t.Errorf("PTR of a Consul address went upstream %d times", n)
	}
	// Another address: Consul does not know it, the upstream does (and it is cached).
	for i := 0; i < 3; i++ {
		r = exchange(t, addr, "9.2.0.192.in-addr.arpa.", dns.TypePTR, "udp")
		if len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "host.example." {
			t.Fatalf("PTR of an outside address: %v", r.Answer)
		}
	}
	if n := up.total.Load(); n != 1 {
		t.Errorf("upstream asked %d times for a cached PTR, want 1", n)
	}
}

// startDnsmasq runs dnsmasq on a free loopback port, forwarding every name
// to the upstream at upAddr (and more), and returns its address once it
// answers a.example. (asked upstream).
func startDnsmasq(t *testing.T, upAddr string, more ...string) string {
	t.Helper()
	// Asked without dig, which fails the test on the "connection refused"
	// of a dnsmasq not listening yet.
	return startDnsmasqWith(t, func(addr string) bool {
		m := new(dns.Msg)
		m.SetQuestion("a.example.", dns.TypeA)
		_, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
		return err == nil
	}, append([]string{upAddr}, more...)...)
}

// startDnsmasqWith runs dnsmasq on a free loopback port, forwarding every
// name to the upstreams ups, and returns its address once ready(addr).
func startDnsmasqWith(t *testing.T, ready func(addr string) bool, ups ...string) string {
	t.Helper()
	addr, _ := startDnsmasqArgs(t, ready, nil, ups...)
	return addr
}

// startDnsmasqArgs is startDnsmasqWith with more dnsmasq options (after
// --no-hosts) and the process, for its signals.
func startDnsmasqArgs(t *testing.T, ready func(addr string) bool, more []string, ups ...string) (string, *proctest.Proc) {
	t.Helper()
	dnsmasq := proctest.Tool(t, "dnsmasq", "Debian package dnsmasq-base")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	addr := proctest.FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address=" + host, "--port=" + port, "--user=" + me.Username, "--pid-file=", "--log-facility=-"}
	for _, up := range ups {
		h, p, _ := net.SplitHostPort(up)
		args = append(args, "--server="+h+"#"+p)
	}
	p := proctest.Start(t, exec.Command(dnsmasq, append(args, more...)...), proctest.Options{})
	eventually.True(t, 10*time.Second, "dnsmasq answering", func() bool { return ready(addr) })
	return addr, p
}

// TestForwardedNotAuthoritativeAsDnsmasq: an upstream's AA bit is not
// passed on, fresh or from the cache: dnsmasq, run here on the same
// upstream, clears it (a forwarder is no authority for the name).
func TestForwardedNotAuthoritativeAsDnsmasq(t *testing.T) {
	requireDig(t)
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		m := zoneHandler(w, r)
		m.Authoritative = true
		return m
	})
	_, addr := startServer(t, upstreamConfig(t, up.addr))
	dmAddr := startDnsmasq(t, up.addr)
	aa := func(a string) bool {
		r := dig(t, a, "a.example", "A")
		return strings.Contains(" "+r.flags+" ", " aa ")
	}
	// startDnsmasq's readiness probe asked dnsmasq for a.example: both
	// answer from their caches here (dnsmasq passes AA on a fresh answer;
	// README, differences).
	aa(addr)
	want := aa(dmAddr)
	if got := aa(addr); got != want {
		t.Errorf("cached: AA %v; dnsmasq's %v", got, want)
	}
}

// TestForwardedFlagsAsDnsmasq: an upstream that sets AD and not RA:
// dnsmasq (without proxy-dnssec) answers with RA and without AD, fresh and
// cached; so does dnsforward.
func TestForwardedFlagsAsDnsmasq(t *testing.T) {
	requireDig(t)
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		m := zoneHandler(w, r)
		m.RecursionAvailable, m.AuthenticatedData = false, true
		return m
	})
	_, addr := startServer(t, upstreamConfig(t, up.addr))
	dmAddr := startDnsmasq(t, up.addr)
	flags := func(a string) string {
		f := strings.Fields(dig(t, a, "b.example", "A").flags)
		slices.Sort(f)
		return strings.Join(f, " ")
	}
	for _, what := range []string{"fresh", "cached"} {
		if got, want := flags(addr), flags(dmAddr); got != want {
			t.Errorf("%s: flags %q; dnsmasq's %q", what, got, want)
		}
	}
}

// TestAllRefusedAsDnsmasq: when the upstream refuses a name, the client
// gets the rcode dnsmasq gives it on the same upstream (REFUSED), not
// SERVFAIL.
func TestAllRefusedAsDnsmasq(t *testing.T) {
	requireDig(t)
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		m := recursiveReply(r)
		m.Rcode = dns.RcodeRefused
		return m
	})
	_, addr := startServer(t, upstreamConfig(t, up.addr))
	dmAddr := startDnsmasq(t, up.addr)
	for _, name := range []string{"nosuch.invalid", "b.example"} {
		want := dig(t, dmAddr, name, "A").status
		if got := dig(t, addr, name, "A").status; got != want {
			t.Errorf("%s: %s; dnsmasq %s", name, got, want)
		}
	}
}

// TestOversizedUDPAnswerAsDnsmasq: an upstream whose UDP answer is larger
// than the 1232 bytes asked for, without TC (60 uncompressed A records,
// about 1.7 kB): dnsmasq relays it, asking once; dnsforward read it into a
// 1232-byte buffer, failed to unpack it and gave SERVFAIL after asking 22
// times.
func TestOversizedUDPAnswerAsDnsmasq(t *testing.T) {
	requireDig(t)
	handler := func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		m := recursiveReply(r)
		q := r.Question[0]
		if strings.HasPrefix(strings.ToLower(q.Name), "many") && q.Qtype == dns.TypeA {
			for i := 1; i <= 60; i++ {
				m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN A 192.0.2."+strconv.Itoa(i)))
			}
		}
		return m // miekg/dns sends it uncompressed, whatever its size
	}
	upF, upD := startUpstream(t, handler), startUpstream(t, handler)
	_, addr := startServer(t, upstreamConfig(t, upF.addr))
	dmAddr := startDnsmasq(t, upD.addr)
	for _, args := range [][]string{{"many.example", "A", "+bufsize=4096"}, {"many2.example", "A", "+tcp"}} {
		got, want := dig(t, addr, args...), dig(t, dmAddr, args...)
		if got.status != want.status || len(got.answer) != len(want.answer) {
			t.Errorf("%v: %s with %d records; dnsmasq %s with %d", args, got.status, len(got.answer), want.status, len(want.answer))
		}
		name := args[0] + "."
		if f, d := upF.queries(name, "udp")+upF.queries(name, "tcp"), upD.queries(name, "udp")+upD.queries(name, "tcp"); f != d {
			t.Errorf("%v: upstream asked %d times; by dnsmasq %d", args, f, d)
		}
	}
}

// badAnswers answers names starting "cut" with a packet cut in its
// question, "garbage" with one announcing three answer records and
// holding none, "other" with an answer for another question.
func badAnswers(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
	m := recursiveReply(r)
	switch n := strings.ToLower(r.Question[0].Name); {
	case strings.HasPrefix(n, "cut"):
		b, err := m.Pack()
		if err != nil {
			panic(err)
		}
		_, _ = w.Write(b[:len(b)-3])
		return nil
	case strings.HasPrefix(n, "garbage"):
		b, err := m.Pack()
		if err != nil {
			panic(err)
		}
		b[7] = 3 // ANCOUNT 3, and no records
		_, _ = w.Write(b)
		return nil
	case strings.HasPrefix(n, "other"):
		m.Question[0].Name = "elsewhere.example."
	}
	return m
}

// TestBadUpstreamAnswerAskedOnceAsDnsmasq: an upstream whose UDP answer
// does not unpack (cut in its question), is for another question, or
// announces three answer records and holds none. dnsmasq asks it once,
// answers the last SERVFAIL and does not answer the first two; dnsforward
// asked again 22 times within half a second before its SERVFAIL, and took
// the last as NODATA (miekg/dns reads a packet ending early as holding
// fewer records). It now asks once and answers SERVFAIL (or the next
// upstream's answer).
func TestBadUpstreamAnswerAskedOnceAsDnsmasq(t *testing.T) {
	handler := badAnswers
	upF, upD := startUpstream(t, handler), startUpstream(t, handler)
	good := startUpstream(t, zoneHandler)
	_, addr := startServer(t, upstreamConfig(t, upF.addr))
	_, addr2 := startServer(t, upstreamConfig(t, upF.addr, good.addr))
	dmAddr := startDnsmasq(t, upD.addr)
	for _, name := range []string{"cut.example.", "other.example.", "garbage.example."} {
		if r := exchange(t, addr, name, dns.TypeA, "udp"); r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: %s, want SERVFAIL", name, dns.RcodeToString[r.Rcode])
		}
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, dmAddr)
		if err == nil && r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: dnsmasq answers %s", name, dns.RcodeToString[r.Rcode])
		}
		if f, d := upF.queries(name, "udp"), upD.queries(name, "udp"); f != d {
			t.Errorf("%s: upstream asked %d times; by dnsmasq %d", name, f, d)
		}
	}
	// With a second upstream, its answer.
	for _, name := range []string{"cut.example.", "other.example.", "garbage.example."} {
		if r := exchange(t, addr2, name, dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s with a good second upstream: %s, want its NXDOMAIN", name, dns.RcodeToString[r.Rcode])
		}
	}
}

// TestOPTFollowsTheClientNotTheUpstream: the reply has OPT when the client
// sent one, whatever the upstream sent (RFC 6891 sections 6.1.1 and 7).
// dnsmasq relays a fresh answer's OPT, or its lack, as the upstream sent
// it (README, differences); checked against it here so a change in either
// shows.
func TestOPTFollowsTheClientNotTheUpstream(t *testing.T) {
	requireDig(t)
	handler := func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		m := recursiveReply(r)
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, mustRR("example. 300 IN SOA ns.example. h.example. 1 3600 600 86400 60"))
		if strings.HasPrefix(strings.ToLower(r.Question[0].Name), "withopt") {
			m.SetEdns0(4096, false)
		}
		return m
	}
	up := startUpstream(t, handler)
	_, addr := startServer(t, upstreamConfig(t, up.addr))
	dmAddr := startDnsmasq(t, up.addr)
	hasOPT := func(r digResult) bool { return strings.Contains(r.raw, "; EDNS: version") }
	for _, c := range []struct {
		name, edns string
		want       bool
	}{{"noopt.example", "+edns=0", true}, {"withopt.example", "+noedns", false}} {
		got, dm := dig(t, addr, c.name, "A", c.edns), dig(t, dmAddr, c.name, "A", c.edns)
		if hasOPT(got) != c.want {
			t.Errorf("%s %s: OPT %v, want %v\n%s", c.name, c.edns, hasOPT(got), c.want, got.raw)
		}
		if hasOPT(dm) == c.want {
			t.Logf("%s %s: dnsmasq now follows the RFC too (README, differences)", c.name, c.edns)
		}
		if got.status != dm.status {
			t.Errorf("%s: %s; dnsmasq %s", c.name, got.status, dm.status)
		}
	}
}

// TestDeadFirstUpstreamAsDnsmasq: the first upstream never answers. dnsmasq
// answers every name at once from the second (after its first query, sent
// to both, it keeps to the server that answered); dnsforward waited the
// try timeout for the dead one on every name not in its cache. It now asks
// an upstream that timed out last, for 20 seconds.
func TestDeadFirstUpstreamAsDnsmasq(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	good := startUpstream(t, zoneHandler)
	cfg := upstreamConfig(t, dead.LocalAddr().String(), good.addr)
	_, addr := startServer(t, cfg)
	dmAddr := startDnsmasq(t, dead.LocalAddr().String(), good.addr)
	took := func(a, name string) time.Duration {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		start := time.Now()
		r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, a)
		if err != nil || r.Rcode != dns.RcodeNameError {
			t.Fatalf("%s from %s: %v %v", name, a, r, err)
		}
		return time.Since(start)
	}
	took(addr, "first.example.") // times the dead one out once
	for _, name := range []string{"n1.example.", "n2.example.", "n3.example."} {
		dm, got := took(dmAddr, name), took(addr, name)
		if got >= cfg.TryTimeout/2 {
			t.Errorf("%s: answered after %s (try timeout %s); dnsmasq after %s", name, got, cfg.TryTimeout, dm)
		}
		if dm >= cfg.TryTimeout/2 {
			t.Errorf("%s: dnsmasq answered after %s", name, dm)
		}
	}
}

// TestCachedTTLCountsAsDnsmasq: a cached upstream answer's TTL counts
// down, and the answer expires, with the wall clock's whole seconds, as
// dnsmasq 2.90 counts them: stored at second x.5 with TTL 60, it is
// answered with TTL 59 at x+1.2 (not 60: only 0.7 s passed); with TTL 2
// it is asked upstream again at x+2.2 (not answered with TTL 1).
// Each trial asks both within one wall-clock second; a trial a busy
// machine spread over two is made again with a new name.
func TestCachedTTLCountsAsDnsmasq(t *testing.T) {
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		m := recursiveReply(r)
		ttl := "60"
		if strings.HasPrefix(r.Question[0].Name, "short") {
			ttl = "2"
		}
		m.Answer = append(m.Answer, mustRR(r.Question[0].Name+" "+ttl+" IN A 192.0.2.7"))
		return m
	})
	_, addr := startServer(t, upstreamConfig(t, up.addr))
	dmAddr := startDnsmasq(t, up.addr)
	// at sleeps until the wall clock's fraction of a second is frac, in
	// the second after the current one when next, and returns that second.
	at := func(frac float64, next bool) int64 {
		now := time.Now().UnixNano()
		sec := now / 1e9
		if next {
			sec++
		}
		target := sec*1e9 + int64(frac*1e9)
		if target < now {
			target += 1e9
		}
		time.Sleep(time.Duration(target - now))
		return target / 1e9
	}
	// both asks dnsforward and dnsmasq for name, and reports their TTLs
	// and whether both were asked within second sec.
	both := func(name string, sec int64) (got, want uint32, ok bool) {
		for i, a := range []string{addr, dmAddr} {
			r := exchange(t, a, name, dns.TypeA, "udp")
			if len(r.Answer) != 1 {
				t.Fatalf("%s A from %s: %v", name, a, r)
			}
			if i == 0 {
				got = r.Answer[0].Header().Ttl
			} else {
				want = r.Answer[0].Header().Ttl
			}
		}
		return got, want, time.Now().Unix() == sec
	}
	for _, c := range []struct {
		prefix string
		later  float64 // seconds after x.5, asked at a fraction 0.2
	}{{"long", 1}, {"short", 2}} {
		for try := 0; ; try++ {
			if try == 20 {
				t.Fatalf("%s: no trial asked both within one second", c.prefix)
			}
			name := fmt.Sprintf("%s%d.example.", c.prefix, try)
			sec := at(0.5, false)
			if _, _, ok := both(name, sec); !ok {
				continue
			}
			time.Sleep(time.Duration(c.later-1) * time.Second)
			sec = at(0.2, true)
			got, want, ok := both(name, sec)
			if !ok {
				continue
			}
			if got != want {
				t.Errorf("%s A asked at second +%v, 0.2: TTL %d; dnsmasq's %d", name, c.later, got, want)
			}
			break
		}
	}
}
