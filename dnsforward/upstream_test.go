package main

// How often, over which transport and in which letter case dnsforward asks
// its upstreams, compared with dnsmasq run on the same input.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// udpSniffer counts the DNS questions sent over UDP to one loopback port,
// per name (lower case), from a raw socket: it sees them also when nothing
// listens on the port (the sender then gets ICMP port unreachable).
type udpSniffer struct {
	mu    sync.Mutex
	count map[string]int
}

func sniffUDP(t *testing.T, port int) *udpSniffer {
	t.Helper()
	c, err := net.ListenIP("ip4:udp", &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			t.Skip("needs root (CAP_NET_RAW) to see datagrams sent to a closed port")
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &udpSniffer{count: map[string]int{}}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 8 || int(binary.BigEndian.Uint16(buf[2:])) != port {
				continue
			}
			m := new(dns.Msg)
			if m.Unpack(buf[8:n]) != nil || len(m.Question) != 1 {
				continue
			}
			s.mu.Lock()
			s.count[strings.ToLower(m.Question[0].Name)]++
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *udpSniffer) queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[name]
}

// closedPort returns a loopback UDP address nothing listens on.
func closedPort(t *testing.T) (string, int) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	pc.Close()
	return addr.String(), addr.Port
}

// askWithin asks addr one question over UDP and waits up to wait for an
// answer, without asking again (nil when none came).
func askWithin(t *testing.T, addr, name string, wait time.Duration) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Timeout: wait}).Exchange(m, addr)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatalf("%s from %s: %v", name, addr, err)
	}
	return r
}

// settle waits for datagrams still on their way to a sniffer or an
// upstream to be counted.
func settle() { time.Sleep(200 * time.Millisecond) }

// TestClosedUpstreamAskedOnceAsDnsmasq: an upstream whose port is closed
// (each question gets ICMP port unreachable at once). dnsmasq asks it once
// per client question; dnsforward asked it about 22 times within half a
// second, in rounds, before answering SERVFAIL. With a working second
// upstream, dnsmasq asks the closed one with the first question only
// (sent to every server) and keeps to the one that answered; dnsforward
// asked the closed one first for every question.
func TestClosedUpstreamAskedOnceAsDnsmasq(t *testing.T) {
	closed, port := closedPort(t)
	sn := sniffUDP(t, port)
	_, addr := startServer(t, upstreamConfig(t, closed))
	dmAlone := startDnsmasqNoProbe(t, closed)
	good := startUpstream(t, zoneHandler)

	if r := askWithin(t, addr, "refused1.example.", 3*time.Second); r == nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("closed upstream: %v, want SERVFAIL", r)
	}
	if r := askWithin(t, dmAlone, "refused2.example.", 2*time.Second); r != nil {
		t.Logf("dnsmasq now answers %s (README, differences: it sent nothing)", dns.RcodeToString[r.Rcode])
	}
	settle()
	if f, d := sn.queries("refused1.example."), sn.queries("refused2.example."); f != d || d == 0 {
		t.Errorf("closed upstream asked %d times for one client question; by dnsmasq %d", f, d)
	}

	_, addr2 := startServer(t, upstreamConfig(t, closed, good.addr))
	dm2 := startDnsmasqNoProbe(t, closed, good.addr)
	for _, c := range []struct{ a, prefix string }{{addr2, "f"}, {dm2, "d"}} {
		for _, n := range []string{"1", "2", "3"} {
			if r := askWithin(t, c.a, c.prefix+"next"+n+".example.", 3*time.Second); r == nil || r.Rcode != dns.RcodeNameError {
				t.Fatalf("%snext%s.example. from %s with a good second upstream: %v", c.prefix, n, c.a, r)
			}
		}
	}
	settle()
	count := func(prefix string) (toClosed, toGood int) {
		for _, n := range []string{"1", "2", "3"} {
			name := prefix + "next" + n + ".example."
			toClosed += sn.queries(name)
			toGood += good.queries(name, "udp") + good.queries(name, "tcp")
		}
		return toClosed, toGood
	}
	fc, fg := count("f")
	dc, dg := count("d")
	if fc != dc || fg != dg {
		t.Errorf("3 questions: closed upstream asked %d times, good one %d; by dnsmasq %d and %d", fc, fg, dc, dg)
	}
}

// startDnsmasqNoProbe runs dnsmasq as startDnsmasq does, forwarding to ups,
// and waits until it listens (it answers the CHAOS name version.bind
// itself), without asking the upstreams anything.
func startDnsmasqNoProbe(t *testing.T, ups ...string) string {
	t.Helper()
	return startDnsmasqWith(t, func(addr string) bool {
		m := new(dns.Msg)
		m.SetQuestion("version.bind.", dns.TypeTXT)
		m.Question[0].Qclass = dns.ClassCHAOS
		_, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
		return err == nil
	}, ups...)
}

// TestDeadUpstreamAskedOnceAsDnsmasq: an upstream that never answers.
// dnsmasq asks it once for a client question (again only when the client
// asks again); dnsforward asked it again after every try timeout within
// its budget (4 times with the defaults). It now asks once and waits out
// the budget for the answer.
func TestDeadUpstreamAskedOnceAsDnsmasq(t *testing.T) {
	deadF, deadD := silentUpstream(t), silentUpstream(t)
	cfg := upstreamConfig(t, deadF.addr())
	_, addr := startServer(t, cfg)
	dm := startDnsmasqNoProbe(t, deadD.addr())
	if r := askWithin(t, addr, "dead.example.", cfg.Budget+2*time.Second); r == nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("dead upstream: %v, want SERVFAIL after the budget", r)
	}
	// dnsmasq does not answer; given as long as dnsforward's budget to ask
	// again if it would.
	askWithin(t, dm, "dead.example.", cfg.Budget+500*time.Millisecond)
	settle()
	if f, d := deadF.queries("dead.example."), deadD.queries("dead.example."); f != d {
		t.Errorf("dead upstream asked %d times for one client question (try timeout %s, budget %s); by dnsmasq %d", f, cfg.TryTimeout, cfg.Budget, d)
	}
}

// silent is a UDP upstream that counts the questions it gets and answers
// none.
type silent struct {
	pc    net.PacketConn
	mu    sync.Mutex
	count map[string]int
}

func silentUpstream(t *testing.T) *silent {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	s := &silent{pc: pc, count: map[string]int{}}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) != nil || len(m.Question) != 1 {
				continue
			}
			s.mu.Lock()
			s.count[strings.ToLower(m.Question[0].Name)]++
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *silent) addr() string { return s.pc.LocalAddr().String() }

func (s *silent) queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[name]
}

// TestTCPClientAskedUpstreamOverTCPAsDnsmasq: dnsmasq asks a TCP client's
// question upstream over TCP; dnsforward asked over UDP first (over TCP
// only when that answer was truncated).
func TestTCPClientAskedUpstreamOverTCPAsDnsmasq(t *testing.T) {
	upF, upD := startUpstream(t, zoneHandler), startUpstream(t, zoneHandler)
	_, addr := startServer(t, upstreamConfig(t, upF.addr))
	dm := startDnsmasq(t, upD.addr)
	for _, name := range []string{"tcpq.example.", "big.example."} {
		f, d := exchange(t, addr, name, dns.TypeA, "tcp"), exchange(t, dm, name, dns.TypeA, "tcp")
		if f.Rcode != d.Rcode || len(f.Answer) != len(d.Answer) {
			t.Errorf("%s over TCP: %s with %d records; dnsmasq %s with %d", name, dns.RcodeToString[f.Rcode], len(f.Answer), dns.RcodeToString[d.Rcode], len(d.Answer))
		}
		for _, network := range []string{"udp", "tcp"} {
			if f, d := upF.queries(name, network), upD.queries(name, network); f != d {
				t.Errorf("%s from a TCP client: upstream asked over %s %d times; by dnsmasq %d", name, network, f, d)
			}
		}
	}
}

// TestBadTCPUpstreamAnswerAsDnsmasq: TestBadUpstreamAnswerAskedOnceAsDnsmasq
// for a TCP client, whose question goes upstream over TCP: an answer that
// does not unpack, is for another question or announces three answer
// records and holds none. dnsforward checked the record counts over UDP
// only, and took the last as NODATA over TCP.
func TestBadTCPUpstreamAnswerAsDnsmasq(t *testing.T) {
	upF, upD := startUpstream(t, badAnswers), startUpstream(t, badAnswers)
	_, addr := startServer(t, upstreamConfig(t, upF.addr))
	dm := startDnsmasqNoProbe(t, upD.addr)
	rcode := func(a, name string) string {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, _, err := (&dns.Client{Net: "tcp", Timeout: 3 * time.Second}).Exchange(m, a)
		if err != nil {
			return "no answer"
		}
		return dns.RcodeToString[r.Rcode]
	}
	for _, name := range []string{"garbage.example.", "cut.example.", "other.example."} {
		got, want := rcode(addr, name), rcode(dm, name)
		if name == "garbage.example." && got != want {
			t.Errorf("%s over TCP: %s; dnsmasq %s", name, got, want)
		}
		if got != want {
			// dnsmasq sends nothing back for the other two (README,
			// differences): SERVFAIL here.
			t.Logf("%s over TCP: %s; dnsmasq %s", name, got, want)
		}
		for _, network := range []string{"udp", "tcp"} {
			if f, d := upF.queries(name, network), upD.queries(name, network); f != d {
				t.Errorf("%s from a TCP client: upstream asked over %s %d times; by dnsmasq %d", name, network, f, d)
			}
		}
	}
}

// TestUpstreamAskedInClientCaseAsDnsmasq: dnsmasq asks its upstream in the
// letter case the client wrote (and answers a later question from its
// cache with owner names in that question's case); dnsforward asked in
// lower case.
func TestUpstreamAskedInClientCaseAsDnsmasq(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{} // whose upstream: the names asked, as written
	record := func(who string) func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		return func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
			mu.Lock()
			seen[who] = append(seen[who], r.Question[0].Name)
			mu.Unlock()
			return zoneHandler(w, r)
		}
	}
	upF, upD := startUpstream(t, record("dnsforward")), startUpstream(t, record("dnsmasq"))
	_, addr := startServer(t, upstreamConfig(t, upF.addr))
	dm := startDnsmasqNoProbe(t, upD.addr)
	owners := func(r *dns.Msg) []string {
		var out []string
		for _, rr := range r.Answer {
			out = append(out, rr.Header().Name)
		}
		return out
	}
	for _, c := range []struct{ name, net string }{{"A.Example.", "udp"}, {"a.EXAMPLE.", "udp"}, {"Nx.ExAmple.", "tcp"}} {
		f, d := exchange(t, addr, c.name, dns.TypeA, c.net), exchange(t, dm, c.name, dns.TypeA, c.net)
		if f.Rcode != d.Rcode || !slices.Equal(owners(f), owners(d)) || f.Question[0].Name != d.Question[0].Name {
			t.Errorf("%s: %s %q %v; dnsmasq %s %q %v", c.name, dns.RcodeToString[f.Rcode], f.Question[0].Name, owners(f), dns.RcodeToString[d.Rcode], d.Question[0].Name, owners(d))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if f, d := seen["dnsforward"], seen["dnsmasq"]; !slices.Equal(f, d) {
		t.Errorf("upstream asked %q; by dnsmasq %q", f, d)
	}
}

// TestCDAndDOAsDnsmasq: dnsmasq 2.90 (without --dnssec) answers a question
// with CD set from its cache when it has the answer, and otherwise asks
// upstream with CD and keeps the answer out of its cache; a question with
// DO set it always asks upstream, with DO, and relays the answer (whose
// records but the signatures it caches for questions without DO).
// dnsforward answered both from its cache and asked upstream without CD
// and DO.
func TestCDAndDOAsDnsmasq(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{} // whose upstream: the questions asked, with CD and DO
	record := func(who string) func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		return func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
			do := false
			if o := r.IsEdns0(); o != nil {
				do = o.Do()
			}
			mu.Lock()
			seen[who] = append(seen[who], fmt.Sprintf("%s cd=%v do=%v", r.Question[0].Name, r.CheckingDisabled, do))
			mu.Unlock()
			q := r.Question[0]
			m := recursiveReply(r)
			m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN A 192.0.2.1"))
			if do {
				// As a signed zone's server answers DO: with the
				// signature, and DO copied (RFC 3225).
				m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN RRSIG A 8 2 60 20300101000000 20200101000000 12345 example. AAAA"))
				m.SetEdns0(1232, true)
			}
			return m
		}
	}
	upF, upD := startUpstream(t, record("dnsforward")), startUpstream(t, record("dnsmasq"))
	_, addr := startServer(t, upstreamConfig(t, upF.addr))
	dm := startDnsmasqNoProbe(t, upD.addr)
	ask := func(a, name string, cd, do bool) string {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.CheckingDisabled = cd
		m.SetEdns0(1232, do)
		r, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, a)
		if err != nil {
			t.Fatalf("%s cd=%v do=%v from %s: %v", name, cd, do, a, err)
		}
		rdo := false
		if o := r.IsEdns0(); o != nil {
			rdo = o.Do()
		}
		return fmt.Sprintf("%s %d records cd=%v do=%v", dns.RcodeToString[r.Rcode], len(r.Answer), r.CheckingDisabled, rdo)
	}
	for _, c := range []struct {
		name   string
		cd, do bool
	}{
		{"a.example.", false, false}, // now cached
		{"a.example.", true, false},
		{"a.example.", false, true},
		{"a.example.", false, true},
		{"a.example.", true, true},
		{"n5.example.", true, false},
		{"n5.example.", true, false},
		{"n5.example.", false, false},
		{"n5.example.", false, false},
		{"d5.example.", false, true},
		{"d5.example.", false, false},
	} {
		if got, want := ask(addr, c.name, c.cd, c.do), ask(dm, c.name, c.cd, c.do); got != want {
			t.Errorf("%s cd=%v do=%v: %s; dnsmasq %s", c.name, c.cd, c.do, got, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if f, d := seen["dnsforward"], seen["dnsmasq"]; !slices.Equal(f, d) {
		t.Errorf("upstream asked\n%q\nby dnsmasq\n%q", f, d)
	}
}

// TestLateAnswerRelayedAsDnsmasq: the only upstream answers after twice
// the try timeout, within the budget. dnsmasq relays the late answer;
// dnsforward, which asks it once, waits out the budget for it.
func TestLateAnswerRelayedAsDnsmasq(t *testing.T) {
	cfg := upstreamConfig(t)
	delay := 2 * cfg.TryTimeout
	late := func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		if strings.HasPrefix(strings.ToLower(r.Question[0].Name), "late") {
			time.Sleep(delay)
		}
		return zoneHandler(w, r)
	}
	upF, upD := startUpstream(t, late), startUpstream(t, late)
	cfg.Upstreams = []string{upF.addr}
	_, addr := startServer(t, cfg)
	dm := startDnsmasqNoProbe(t, upD.addr)
	f, d := askWithin(t, addr, "late.example.", cfg.Budget+time.Second), askWithin(t, dm, "late.example.", cfg.Budget+time.Second)
	if f == nil || d == nil || f.Rcode != d.Rcode {
		t.Errorf("late answer: %v; dnsmasq %v", f, d)
	}
	if f, d := upF.queries("late.example.", "udp"), upD.queries("late.example.", "udp"); f != d {
		t.Errorf("upstream asked %d times; by dnsmasq %d", f, d)
	}
}

// TestOwnServfailCopiesDOAsDnsmasq: dnsforward's own SERVFAIL (no upstream
// gave an answer) to a question with DO set carried an OPT record without
// DO. RFC 3225 section 3: the DO bit of the query is copied into the
// response. dnsmasq 2.90, run here on the same input, relays an upstream's
// SERVFAIL with the upstream's OPT, whose DO an RFC 3225 upstream copied
// from the question; its own SERVFAIL (an answer holding fewer records than
// its header counts) has no OPT at all, and to an upstream that never
// answers or whose port is closed it sends nothing (README, differences).
func TestOwnServfailCopiesDOAsDnsmasq(t *testing.T) {
	handler := func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		if !strings.HasPrefix(strings.ToLower(r.Question[0].Name), "sf") {
			return badAnswers(w, r)
		}
		m := recursiveReply(r)
		m.Rcode = dns.RcodeServerFailure
		if o := r.IsEdns0(); o != nil {
			m.SetEdns0(1232, o.Do()) // DO copied, as RFC 3225 says
		}
		return m
	}
	upF, upD := startUpstream(t, handler), startUpstream(t, handler)
	closed, _ := closedPort(t)
	_, addr := startServer(t, upstreamConfig(t, upF.addr))
	_, addrClosed := startServer(t, upstreamConfig(t, closed))
	dm := startDnsmasqNoProbe(t, upD.addr)
	dmClosed := startDnsmasqNoProbe(t, closed)
	// answer asks a with DO set or not, over network, and says what came:
	// the rcode and the DO bit of the OPT record ("no OPT" without one).
	answer := func(a, name, network string, do bool) string {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.SetEdns0(1232, do)
		r, _, err := (&dns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(m, a)
		if err != nil {
			return "no answer"
		}
		o := r.IsEdns0()
		if o == nil {
			return dns.RcodeToString[r.Rcode] + " no OPT"
		}
		return fmt.Sprintf("%s do=%v", dns.RcodeToString[r.Rcode], o.Do())
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, do := range []bool{true, false} {
			rfc := fmt.Sprintf("SERVFAIL do=%v", do)
			// The upstream's SERVFAIL: dnsmasq relays it, dnsforward
			// answers its own.
			name := fmt.Sprintf("sf-%s-%v.example.", network, do)
			if got, want := answer(addr, name, network, do), answer(dm, name, network, do); got != want || got != rfc {
				t.Errorf("%s over %s, do=%v, upstream SERVFAIL: %s; dnsmasq %s; want %s", name, network, do, got, want, rfc)
			}
			// No answer at all (a closed port), and an answer with fewer
			// records than its header counts: the RFC's DO.
			name = fmt.Sprintf("closed-%s-%v.example.", network, do)
			if got := answer(addrClosed, name, network, do); got != rfc {
				t.Errorf("%s over %s, do=%v, upstream port closed: %s, want %s", name, network, do, got, rfc)
			}
			if d := answer(dmClosed, name, network, do); d != "no answer" {
				t.Logf("%s over %s, do=%v, upstream port closed: dnsmasq now answers %s (README, differences: it sent nothing)", name, network, do, d)
			}
			name = fmt.Sprintf("garbage-%s-%v.example.", network, do)
			got, d := answer(addr, name, network, do), answer(dm, name, network, do)
			if got != rfc {
				t.Errorf("%s over %s, do=%v, upstream answer short of records: %s, want %s", name, network, do, got, rfc)
			}
			if d != "SERVFAIL no OPT" {
				t.Logf("%s over %s, do=%v: dnsmasq now answers %s (README, differences: its own SERVFAIL had no OPT)", name, network, do, d)
			}
		}
	}
}

// TestLateAnswerFromAnyUpstreamAsDnsmasq: the first upstream answers after
// 1.5 s, the second never. With the default try timeout (1 s) and budget
// (4 s), dnsforward gave up on the first at 1 s, asked the second, dropped
// the first's answer when it came and answered SERVFAIL once the budget
// ran out; dnsmasq relays the late answer from any server it asked. Now
// the first valid answer from any upstream asked is taken while the budget
// lasts, relayed and cached as a timely one.
func TestLateAnswerFromAnyUpstreamAsDnsmasq(t *testing.T) {
	const delay = 1500 * time.Millisecond
	slow := func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		time.Sleep(delay)
		m := recursiveReply(r)
		m.Answer = append(m.Answer, mustRR(r.Question[0].Name+" 300 IN A 192.0.2.77"))
		return m
	}
	slowF, slowD := startUpstream(t, slow), startUpstream(t, slow)
	deadF, deadD := silentUpstream(t), silentUpstream(t)
	cfg := upstreamConfig(t, slowF.addr, deadF.addr())
	cfg.TryTimeout, cfg.Budget = time.Second, 4*time.Second // the flags' defaults
	_, addr := startServer(t, cfg)
	dm := startDnsmasqNoProbe(t, slowD.addr, deadD.addr())
	// answer asks a once, waiting longer than the budget, and says what
	// came and after how long.
	answer := func(a, name string) (string, time.Duration) {
		start := time.Now()
		r := askWithin(t, a, name, cfg.Budget+time.Second)
		took := time.Since(start)
		if r == nil {
			return "no answer", took
		}
		var rrs []string
		for _, rr := range r.Answer {
			rrs = append(rrs, strings.TrimPrefix(rr.String(), rr.Header().String()))
		}
		return dns.RcodeToString[r.Rcode] + " " + strings.Join(rrs, " "), took
	}
	const want = "NOERROR 192.0.2.77"
	for _, name := range []string{"late1.example.", "late2.example."} {
		var got, d string
		var gotTook time.Duration
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); got, gotTook = answer(addr, name) }()
		go func() { defer wg.Done(); d, _ = answer(dm, name) }()
		wg.Wait()
		if got != want || d != want {
			t.Errorf("%s, the first upstream answering after %s, the second never: %s after %s; dnsmasq %s; want %s", name, delay, got, gotTook.Round(time.Millisecond), d, want)
		}
		if gotTook >= cfg.Budget {
			t.Errorf("%s: answered after %s, the budget (%s) run out", name, gotTook.Round(time.Millisecond), cfg.Budget)
		}
		// Cached as a timely answer: asked again, not asked upstream.
		if got, _ := answer(addr, name); got != want {
			t.Errorf("%s asked again: %s, want %s from the cache", name, got, want)
		}
		if f, d := slowF.queries(name, "udp"), slowD.queries(name, "udp"); f != 1 || d != 1 {
			t.Errorf("%s, asked twice: the first upstream asked %d times; by dnsmasq %d; want once", name, f, d)
		}
		if f, d := deadF.queries(name), deadD.queries(name); f != d {
			t.Logf("%s: the silent upstream asked %d times; by dnsmasq %d", name, f, d)
		}
	}
}
