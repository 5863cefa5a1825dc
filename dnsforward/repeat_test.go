package main

// A client's repeat of a question still in flight upstream, compared with
// dnsmasq run on the same input: when it is sent upstream again, to which
// upstreams, and what each client gets back.

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// repeatSend is one datagram a test client sends: from client (each
// client its own UDP socket, so its own source port), with ID id, at
// after the first datagram.
type repeatSend struct {
	client int
	id     uint16
	at     time.Duration
}

// askRepeated sends the question name (type A) to addr as sends say and
// returns, per client, the replies it got within listen of the first
// send, as "ID RCODE answers=N", sorted.
func askRepeated(t *testing.T, addr, name string, sends []repeatSend, listen time.Duration) map[int][]string {
	t.Helper()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conns := map[int]*net.UDPConn{}
	var mu sync.Mutex
	got := map[int][]string{}
	var wg sync.WaitGroup
	for _, s := range sends {
		if conns[s.client] != nil {
			continue
		}
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[s.client] = c
		got[s.client] = nil
	}
	start := time.Now()
	for client, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(start.Add(listen))
			buf := make([]byte, 65536)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				m := new(dns.Msg)
				r := "junk"
				if m.Unpack(buf[:n]) == nil {
					r = fmt.Sprintf("%d %s answers=%d", m.Id, dns.RcodeToString[m.Rcode], len(m.Answer))
				}
				mu.Lock()
				got[client] = append(got[client], r)
				mu.Unlock()
			}
		}()
	}
	for _, s := range sends {
		time.Sleep(time.Until(start.Add(s.at)))
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.Id = s.id
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conns[s.client].WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for _, rs := range got {
		slices.Sort(rs)
	}
	return got
}

// losesFirst is an upstream handler that drops the first question it gets
// for each name starting "lost" (a datagram lost on the way) and answers
// every other question with an A record.
func losesFirst() func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		name := strings.ToLower(r.Question[0].Name)
		mu.Lock()
		first := !seen[name]
		seen[name] = true
		mu.Unlock()
		if first && strings.HasPrefix(name, "lost") {
			return nil
		}
		m := recursiveReply(r)
		m.Answer = append(m.Answer, mustRR(r.Question[0].Name+" 60 IN A 192.0.2.7"))
		return m
	}
}

// TestRepeatAfterLostQuestionAsDnsmasq: the only upstream loses the first
// question. dnsmasq sends the client's repeat upstream again and answers:
// a repeat from the same socket with the same ID (glibc's resolver asks
// again so) at once, a repeat from another socket (dig asks
// again from a new port with the same ID) once the question has been in
// flight for two seconds of the clock; every client that asked gets the
// answer, once. dnsforward joined the repeat to the question in flight,
// never asked again, and answered SERVFAIL to both at the end of its
// budget.
func TestRepeatAfterLostQuestionAsDnsmasq(t *testing.T) {
	upF, upD := startUpstream(t, losesFirst()), startUpstream(t, losesFirst())
	cfg := upstreamConfig(t, upF.addr)
	cfg.TryTimeout, cfg.Budget = time.Second, 4*time.Second // the flags' defaults
	_, addr := startServer(t, cfg)
	dm := startDnsmasq(t, upD.addr)
	listen := cfg.Budget + time.Second
	cases := []struct {
		name  string
		sends []repeatSend
	}{
		{"lost-same.example.", []repeatSend{{0, 100, 0}, {0, 100, time.Second}}},
		{"lost-other.example.", []repeatSend{{0, 100, 0}, {1, 100, 2200 * time.Millisecond}}},
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]string{}
	for _, c := range cases {
		for _, side := range []struct {
			who, addr string
			up        *upstream
		}{{"dnsforward", addr, upF}, {"dnsmasq", dm, upD}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got := askRepeated(t, side.addr, c.name, c.sends, listen)
				mu.Lock()
				results[c.name+" "+side.who] = fmt.Sprintf("%v, upstream asked %d times", got, side.up.queries(c.name, "udp"))
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for _, c := range cases {
		f, d := results[c.name+" dnsforward"], results[c.name+" dnsmasq"]
		if f != d {
			t.Errorf("%s, sends %v: %s; dnsmasq %s", c.name, c.sends, f, d)
		}
	}
}

// TestRepeatSentAgainOnlyAsDnsmasq: two upstreams that never answer
// questions starting "never", so every repeat stays a repeat of a
// question in flight, and a try timeout as long as the budget, so that
// dnsforward asks one upstream as dnsmasq does (the one that answered its
// last question). Which repeats dnsmasq sends upstream again, and to which
// upstreams: a question again from a client that asked it, with the ID it
// asked with, at once, to every upstream; one from another client, or
// with another ID, only once the question has been in flight for two
// seconds of the clock (a repeat within the first second never is), to
// the upstream it was last sent to (every one, after a repeat sent to
// every one); it is joined to the question in flight otherwise. The
// upstreams' counts are compared sorted: dnsmasq's last upstream is the
// one that answered its readiness question first.
func TestRepeatSentAgainOnlyAsDnsmasq(t *testing.T) {
	silentNever := func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		if strings.HasPrefix(strings.ToLower(r.Question[0].Name), "never") {
			return nil
		}
		return zoneHandler(w, r)
	}
	upF := []*upstream{startUpstream(t, silentNever), startUpstream(t, silentNever)}
	upD := []*upstream{startUpstream(t, silentNever), startUpstream(t, silentNever)}
	cfg := upstreamConfig(t, upF[0].addr, upF[1].addr)
	cfg.Budget = 4 * time.Second
	cfg.TryTimeout = cfg.Budget
	_, addr := startServer(t, cfg)
	dm := startDnsmasq(t, upD[0].addr, upD[1].addr)
	const soon, late = 300 * time.Millisecond, 2200 * time.Millisecond
	cases := []struct {
		name  string
		sends []repeatSend
	}{
		{"never-other-soon.example.", []repeatSend{{0, 100, 0}, {1, 200, soon}}},
		{"never-other-id-soon.example.", []repeatSend{{0, 100, 0}, {0, 200, soon}}},
		{"never-same-soon.example.", []repeatSend{{0, 100, 0}, {0, 100, soon}}},
		{"never-other-late.example.", []repeatSend{{0, 100, 0}, {1, 100, late}}},
		{"never-joined-again.example.", []repeatSend{{0, 100, 0}, {1, 200, soon}, {1, 200, 2 * soon}}},
		{"never-same-then-other-late.example.", []repeatSend{{0, 100, 0}, {0, 100, soon}, {1, 300, late}}},
	}
	// counts is how often each of ups was asked name over UDP, sorted.
	counts := func(ups []*upstream, name string) []int {
		var n []int
		for _, u := range ups {
			n = append(n, u.queries(name, "udp"))
		}
		slices.Sort(n)
		return n
	}
	var wg sync.WaitGroup
	for _, c := range cases {
		for _, a := range []string{addr, dm} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				askRepeated(t, a, c.name, c.sends, c.sends[len(c.sends)-1].at+500*time.Millisecond)
			}()
		}
	}
	wg.Wait()
	for _, c := range cases {
		if f, d := counts(upF, c.name), counts(upD, c.name); !slices.Equal(f, d) {
			t.Errorf("%s, sends %v: upstreams asked %v times; by dnsmasq %v", c.name, c.sends, f, d)
		}
	}
}

// TestRepeatLoopThroughUpstreamDies: an upstream that sends every question
// it gets back to dnsforward, with the ID it got, from a new port (as
// Consul's recursors forward a question), and answers none: a forwarding
// loop. Every question sent upstream again comes back as another repeat;
// sent again at once, one client's repeat would bounce between them as
// fast as the loopback carries it until the budget ends. A question is
// sent again at most once in resendGap, so the loop dies at the first
// bounce.
func TestRepeatLoopThroughUpstreamDies(t *testing.T) {
	var target atomic.Value // dnsforward's address, once known
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
		if a, ok := target.Load().(string); ok && strings.HasPrefix(strings.ToLower(r.Question[0].Name), "loop") {
			go func() {
				c, err := net.Dial("udp", a)
				if err != nil {
					return
				}
				defer c.Close()
				b, err := r.Pack()
				if err == nil {
					_, _ = c.Write(b)
				}
			}()
			return nil
		}
		return zoneHandler(w, r)
	})
	cfg := upstreamConfig(t, up.addr)
	cfg.TryTimeout, cfg.Budget = time.Second, 4*time.Second
	_, addr := startServer(t, cfg)
	target.Store(addr)
	// Asked, then asked again from another client after two seconds: sent
	// upstream again, which starts the bouncing.
	askRepeated(t, addr, "loop.example.", []repeatSend{{0, 100, 0}, {1, 200, 2200 * time.Millisecond}}, cfg.Budget+time.Second)
	if n := up.queries("loop.example.", "udp"); n > 10 {
		t.Errorf("a forwarding loop through the upstream: asked %d times within the budget (%s)", n, cfg.Budget)
	} else {
		t.Logf("upstream asked %d times", n)
	}
}
