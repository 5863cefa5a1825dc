package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/logging"
	"github.com/berth/berth/pkg/proctest"
	"github.com/miekg/dns"
)

var agent *consultest.Agent

// runMainEnv makes the test binary run dnsforward itself (for tests that
// run it as another user).
const runMainEnv = "DNSFORWARD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, nil))
	}
	os.Exit(consultest.Main(m, &agent))
}

// baseConfig is a test configuration for agent a.
func baseConfig(a *consultest.Agent) Config {
	return Config{
		Listen:         "127.0.0.1:0",
		Domains:        []string{"consul."},
		ConsulDNS:      a.DNSAddr(),
		Policy:         policySequential,
		TryTimeout:     300 * time.Millisecond,
		Budget:         2 * time.Second,
		CacheSize:      1000,
		CacheMaxTTL:    time.Hour,
		CacheNegMaxTTL: 5 * time.Minute,
		ServeStaleMax:  time.Hour,
		IdleTimeout:    10 * time.Minute,
		MaxStale:       time.Hour,
		UDPReaders:     2,
		Client:         a.Client(),
		Log:            logging.Discard(),
	}
}

// startServer runs a Server for the test and returns it with its address.
func startServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	s, _ := startStoppable(t, cfg)
	return s, s.Addr()
}

// startStoppable runs a Server for the test, as startServer, and returns
// it with a stop that cancels Serve and waits for it to return.
func startStoppable(t *testing.T, cfg Config) (*Server, func()) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	task := proctest.Go(t, "the server", s.Serve)
	// Wait until the probe has reached Consul.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.zone.q.Reached() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, func() { task.Stop() }
}

// runReady runs dnsforward (run) with args until stop or the end of the
// test, its log going to stderr (nil: discarded), and returns the DNS
// address it answers on once ready. The test fails when run exits first
// (naming its exit code and log) or is not ready within 15 s. stop cancels
// run, waits for it (10 s at most) and returns its exit code.
func runReady(t *testing.T, args []string, stderr io.Writer) (addr string, stop func() int) {
	t.Helper()
	if stderr == nil {
		stderr = io.Discard
	}
	ready := make(chan string, 1)
	task := proctest.Go(t, "run", func(ctx context.Context) int {
		return run(ctx, args, io.Discard, stderr, func(s string) { ready <- s })
	})
	select {
	case addr = <-ready:
	case <-task.Done():
		t.Fatalf("run exited %d: %v", task.Result(), stderr)
	case <-time.After(15 * time.Second):
		t.Fatal("not ready within 15s")
	}
	return addr, task.Stop
}

// requireDig returns the path of dig (see proctest.Tool).
func requireDig(t *testing.T) string {
	t.Helper()
	return proctest.Tool(t, "dig", "Debian package bind9-dnsutils")
}

// digResult is what dig printed, normalised for comparison.
type digResult struct {
	status string
	flags  string
	answer []string
	auth   []string
	extra  []string
	subnet string // the client-subnet option of the OPT record, as dig prints it
	raw    string // dig's whole output, for failure messages
}

var (
	statusRE = regexp.MustCompile(`status: ([A-Z]+)`)
	subnetRE = regexp.MustCompile(`; CLIENT-SUBNET: (\S+)`)
	flagsRE  = regexp.MustCompile(`;; flags: ([a-z ]*);`)
)

// dig runs the real dig against addr.
func dig(t *testing.T, addr string, args ...string) digResult {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	all := append([]string{"-p", port, "@" + host, "+tries=1", "+time=3", "+noall", "+comments", "+answer", "+authority", "+additional"}, args...)
	var out []byte
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		var err error
		out, err = exec.CommandContext(ctx, requireDig(t), all...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", strings.Join(all, " "), err, out)
		}
		// dig read its own query: the kernel gave dig's connected socket
		// the server's port as its ephemeral source port (the server
		// listens on an ephemeral port too), and a connected socket
		// matching both ends wins the datagram over the server's. Seen
		// once in CI; dig then warns "query response not set". Asked
		// again from another port.
		if try < 2 && bytes.Contains(out, []byte("query response not set")) {
			t.Logf("dig %s got its own query back (its source port was the server's); asking again", strings.Join(all, " "))
			continue
		}
		break
	}
	r := digResult{raw: string(out)}
	if bytes.Contains(out, []byte("malformed")) || bytes.Contains(out, []byte("mismatch")) {
		// dig could not read the reply as sent (a malformed packet, an ID
		// or question mismatch): the parsed sections would mislead.
		t.Errorf("dig %s: dig warns about the reply\n%s", strings.Join(all, " "), out)
	}
	if m := statusRE.FindSubmatch(out); m != nil {
		r.status = string(m[1])
	}
	if m := flagsRE.FindSubmatch(out); m != nil {
		r.flags = string(m[1])
	}
	if m := subnetRE.FindSubmatch(out); m != nil {
		r.subnet = string(m[1])
	}
	section := ""
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION"):
			section = "an"
		case strings.HasPrefix(line, ";; AUTHORITY SECTION"):
			section = "ns"
		case strings.HasPrefix(line, ";; ADDITIONAL SECTION"):
			section = "ar"
		case strings.HasPrefix(line, ";") || strings.TrimSpace(line) == "":
			if strings.TrimSpace(line) == "" {
				section = ""
			}
		default:
			rec := normRecord(line)
			switch section {
			case "an":
				r.answer = append(r.answer, rec)
			case "ns":
				r.auth = append(r.auth, rec)
			case "ar":
				r.extra = append(r.extra, rec)
			}
		}
	}
	return r
}

// normRecord drops the SOA serial (Consul's is the clock).
func normRecord(line string) string {
	f := strings.Fields(line)
	if len(f) >= 7 && f[3] == "SOA" {
		f[6] = "SERIAL"
	}
	return strings.Join(f, " ")
}

// withoutRA is dig's flags without ra: RA differs by design (dnsforward
// always recurses, Consul only with recursors).
func withoutRA(flags string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(" "+flags+" ", " ra ", " ")), " ")
}

// set sorts and de-duplicates records (Consul repeats some additional ones).
func set(rs []string) []string {
	m := map[string]bool{}
	for _, r := range rs {
		m[r] = true
	}
	out := make([]string, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// exchange asks addr one question with miekg/dns (for tight polling loops).
func exchange(t *testing.T, addr, name string, qtype uint16, net string) *dns.Msg {
	t.Helper()
	r, err := ask(addr, name, qtype, net)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return r
}

// ask asks addr one question with miekg/dns, as exchange, and returns the
// error instead of failing the test.
func ask(addr, name string, qtype uint16, net string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: net, Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// seedTimeout bounds waitSeeded. It is generous on purpose: the wait ends
// as soon as both servers see the seed, and one that never does is a
// broken set-up, not a slow machine.
const seedTimeout = 30 * time.Second

// waitSeeded waits until both servers a test compares see the catalog it
// seeded on agent a: dnsforward at addr and Consul's DNS both answer each
// question of last ("name TYPE", for the names seeded last) with exactly
// the records' data given there (over TCP, so no answer is cut; the data
// as dig prints it, in any order). It fails the test with what was still
// missing after seedTimeout.
func waitSeeded(t *testing.T, a *consultest.Agent, addr string, last map[string][]string) {
	t.Helper()
	questions := make([]string, 0, len(last))
	for q := range last {
		questions = append(questions, q)
	}
	sort.Strings(questions)
	servers := []struct{ name, addr string }{{"dnsforward", addr}, {"Consul's DNS", a.DNSAddr()}}
	eventually.Holds(t, seedTimeout, "dnsforward and Consul's DNS to see the seeded catalog", func() (bool, string) {
		for _, q := range questions {
			f := strings.Fields(q)
			for _, s := range servers {
				r, err := ask(s.addr, dns.Fqdn(f[0]), dns.StringToType[f[1]], "tcp")
				if err != nil {
					return false, fmt.Sprintf("%s from %s: %v", q, s.name, err)
				}
				var data []string
				for _, rr := range r.Answer {
					data = append(data, strings.TrimPrefix(rr.String(), rr.Header().String()))
				}
				if got, want := set(data), set(last[q]); !reflect.DeepEqual(got, want) {
					return false, fmt.Sprintf("%s from %s: %s %q, want %q", q, s.name, dns.RcodeToString[r.Rcode], got, want)
				}
			}
		}
		return true, ""
	})
}

func addrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	sort.Strings(out)
	return out
}

// upstream is a hermetic upstream resolver on loopback (UDP and TCP).
type upstream struct {
	addr    string
	mu      sync.Mutex
	count   map[string]int
	handler func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg
	total   atomic.Int64
}

func startUpstream(t *testing.T, h func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg) *upstream {
	t.Helper()
	u := &upstream{count: map[string]int{}, handler: h}
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		u.addr = pc.LocalAddr().String()
		if ln, err = net.Listen("tcp", u.addr); err == nil {
			break
		}
		pc.Close()
		if i > 20 {
			t.Fatal(err)
		}
	}
	handle := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.total.Add(1)
		u.mu.Lock()
		u.count[strings.ToLower(r.Question[0].Name)+"/"+w.RemoteAddr().Network()]++
		u.mu.Unlock()
		u.mu.Lock()
		h := u.handler
		u.mu.Unlock()
		if resp := h(w, r); resp != nil {
			_ = w.WriteMsg(resp)
		}
	})
	us := &dns.Server{PacketConn: pc, Handler: handle}
	ts := &dns.Server{Listener: ln, Handler: handle}
	go func() { _ = us.ActivateAndServe() }()
	go func() { _ = ts.ActivateAndServe() }()
	t.Cleanup(func() { _ = us.Shutdown(); _ = ts.Shutdown() })
	return u
}

func (u *upstream) setHandler(h func(w dns.ResponseWriter, r *dns.Msg) *dns.Msg) {
	u.mu.Lock()
	u.handler = h
	u.mu.Unlock()
}

func (u *upstream) queries(name, network string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.count[name+"/"+network]
}

// must stops the test with err unless it is nil.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// outsideZone is the hermetic upstream both Consul (as its recursors) and
// dnsforward (as its upstream) ask for host names outside the domain.
func outsideZone(w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
	m := recursiveReply(r)
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	add := func(s string) {
		rr := mustRR(s)
		if strings.EqualFold(rr.Header().Name, q.Name) {
			rr.Header().Name = q.Name // as resolvers do: the question's case
		}
		m.Answer = append(m.Answer, rr)
	}
	switch {
	case name == "legacy.example.net." && q.Qtype == dns.TypeA:
		add("legacy.example.net. 300 IN A 192.0.2.10")
		add("legacy.example.net. 300 IN A 192.0.2.11")
	case name == "legacy.example.net." && q.Qtype == dns.TypeAAAA:
		add("legacy.example.net. 300 IN AAAA 2001:db8::10")
	case name == "alias.example.net.":
		add("alias.example.net. 300 IN CNAME legacy.example.net.")
		if q.Qtype == dns.TypeA {
			add("legacy.example.net. 300 IN A 192.0.2.10")
			add("legacy.example.net. 300 IN A 192.0.2.11")
		}
	case name == "nodehost.example.net." && q.Qtype == dns.TypeA:
		add("nodehost.example.net. 300 IN A 192.0.2.20")
	case strings.HasSuffix(name, ".example.net."):
		// NOERROR, no records of the type.
	default:
		m.Rcode = dns.RcodeNameError
	}
	return m
}

// mustRR parses one record in zone-file syntax (RFC 1035 section 5.1); a
// typo in a test's record panics instead of giving a nil record.
func mustRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil || rr == nil {
		panic(fmt.Sprintf("record %q: %v", s, err))
	}
	return rr
}

// recursiveReply is a recursive server's answer skeleton for r: the
// question echoed, RA set.
func recursiveReply(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	return m
}
