package cluster

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dnsforward under cluster faults. Its host cut off: every name answered
// before the cut keeps being answered from memory, counted as stale; after
// the heal a change made during the cut is answered as soon as the host's
// agent has it. Its agent restarted with its state wiped: never NXDOMAIN for
// a service that exists, and answered once the agent has synced.

const dnsListen = "127.0.0.1:5353"

// dnsAnswer is one line of dnsq's output.
type dnsAnswer struct {
	at               time.Time
	name, rcode, ips string
}

func parseDNSQ(out string) []dnsAnswer {
	var as []dnsAnswer
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		a := dnsAnswer{at: time.Unix(0, ns), name: f[1], rcode: f[2], ips: f[3]}
		if a.rcode == "ERR" {
			a.ips = "" // the error text
		}
		as = append(as, a)
	}
	return as
}

// dnsq starts the DNS client on h against dnsforward.
func dnsq(t *testing.T, c *Cluster, h *Node, n int, interval time.Duration, until string, names ...string) *Proc {
	t.Helper()
	args := []string{"/bin/dnsq", "-server", dnsListen, "-n", strconv.Itoa(n), "-interval", interval.String()}
	if until != "" {
		args = append(args, "-until", until)
	}
	return mustStart(t, c, h, append(args, names...)...)
}

func dnsqAnswers(t *testing.T, p *Proc) []dnsAnswer {
	t.Helper()
	out, err := p.Stdout(long)
	if err != nil {
		t.Fatal(err)
	}
	return parseDNSQ(out)
}

// staleAnswers reads dnsforward's count of Consul answers served stale.
func staleAnswers(t *testing.T, c *Cluster, h *Node) int {
	t.Helper()
	out, err := c.Exec(h, "wget", "-qO-", "http://127.0.0.1:9153/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, `berth_dnsforward_stale_answers_total{cache="consul"}`) {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return int(v)
		}
	}
	t.Fatalf("no stale answer counter in the metrics:\n%s", out)
	return 0
}

// agentHas says whether h's agent answers service name with exactly ips
// (passing instances, stale read: what the agent itself can give).
func agentHas(h *Node, name, ips string) error {
	var entries []struct{ Service struct{ Address string } }
	if err := h.Get("/v1/health/service/"+name+"?passing&stale", &entries); err != nil {
		return err
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Service.Address)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != ips {
		return fmt.Errorf("agent on %s has %s = %v, want %s", h.Short(), name, got, ips)
	}
	return nil
}

func registerSvc(t *testing.T, h *Node, id, name, addr string) {
	t.Helper()
	body := fmt.Sprintf(`{"ID":%q,"Name":%q,"Address":%q,"Port":80}`, id, name, addr)
	if err := h.Do(http.MethodPut, "/v1/agent/service/register", body); err != nil {
		t.Fatal(err)
	}
}

func TestDnsforwardFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster fault tests: not with -short")
	}
	c := New(t, Options{Hosts: 2, Programs: []string{"dnsforward"}, Extra: map[string]string{"dnsq": "test/cluster/dnsq"}})
	host, svcHost := c.Hosts[0], c.Hosts[1]
	registerSvc(t, svcHost, "web-1", "web", "10.8.0.1")
	registerSvc(t, svcHost, "api-1", "api", "10.8.1.1")
	registerSvc(t, svcHost, "db-1", "db", "10.8.2.1")
	for name, ip := range map[string]string{"web": "10.8.0.1", "api": "10.8.1.1", "db": "10.8.2.1"} {
		if _, err := waitUntil(long, func() error { return agentHas(host, name, ip) }); err != nil {
			t.Fatal(err)
		}
	}
	startLogged(t, c, host, "dnsforward", "/bin/dnsforward", "-listen", dnsListen, "-upstream", "127.0.0.1:9", "-metrics-addr", "127.0.0.1:9153")
	web, api, db := "web.service.consul", "api.service.consul", "db.service.consul"
	if _, err := waitUntil(long, func() error {
		as := parseDNSQ(mustOut(c.Exec(host, "/bin/dnsq", "-server", dnsListen, web, api)))
		if len(as) != 2 || as[0].ips != "10.8.0.1" || as[1].ips != "10.8.1.1" {
			return fmt.Errorf("answers %+v", as)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, c.LogText("dnsforward"))
	}

	// 1. The host is cut off; 150 rounds of both names over ~15 s, while
	// web's instance is replaced in the cluster.
	stale0 := staleAnswers(t, c, host)
	if err := c.Cut(host); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	q := dnsq(t, c, host, 150, 100*time.Millisecond, "", web, api)
	time.Sleep(2 * time.Second)
	registerSvc(t, svcHost, "web-2", "web", "10.8.0.2")
	if err := svcHost.Put("/v1/agent/service/deregister/web-1"); err != nil {
		t.Fatal(err)
	}
	changedAt := time.Now()
	as := dnsqAnswers(t, q)
	want := map[string]string{web: "10.8.0.1", api: "10.8.1.1"}
	answered := 0
	for _, a := range as {
		if a.rcode == "NOERROR" && a.ips == want[a.name] {
			answered++
		} else {
			t.Errorf("during the cut, %s at +%s: %s %s (want NOERROR %s)", a.name, a.at.Sub(cutAt).Round(time.Millisecond), a.rcode, a.ips, want[a.name])
		}
	}
	health, err := c.Exec(host, "wget", "-qO-", "http://127.0.0.1:9153/health")
	if err != nil || !strings.HasPrefix(health, "degraded: Consul unreachable since ") {
		t.Errorf("/health during the cut: %q %v, want 200 degraded", health, err)
	}
	stale := staleAnswers(t, c, host) - stale0
	t.Logf("cut: %d of %d answers from memory over %s; %d counted stale; /health %q", answered, len(as), as[len(as)-1].at.Sub(cutAt).Round(time.Millisecond), stale, health)
	if stale == 0 {
		t.Errorf("dnsforward answered from memory during a cut-off without counting a stale answer")
	}

	// 2. Heal: the change made during the cut is answered as soon as the
	// agent has it.
	q = dnsq(t, c, host, 2400, 25*time.Millisecond, "10.8.0.2", web)
	healAt := time.Now() // the network is back from here on; Heal also joins
	if err := c.Heal(host); err != nil {
		t.Fatal(err)
	}
	agentAt, err := waitUntil(long, func() error { return agentHas(host, "web", "10.8.0.2") })
	if err != nil {
		t.Fatal(err)
	}
	as = dnsqAnswers(t, q)
	var dnsAt time.Time
	var bad []string
	onlyNX := true
	for _, a := range as {
		if a.rcode != "NOERROR" {
			bad = append(bad, fmt.Sprintf("%s at +%s: %s", a.name, a.at.Sub(healAt).Round(time.Millisecond), a.rcode))
			onlyNX = onlyNX && a.rcode == "NXDOMAIN"
		}
		if dnsAt.IsZero() && a.ips == "10.8.0.2" {
			dnsAt = a.at
		}
	}
	switch {
	case len(bad) == 0:
	case onlyNX && c.MarkedFailed(svcHost, healAt):
		// The rejoining host's gossip can get the servers to mark the
		// service's host failed for a moment (memberlist spreads the dead
		// verdicts the cut-off host reached; the node refutes them): then
		// the cluster itself has no healthy instance of web, and Consul's
		// DNS answers NXDOMAIN too. Not an outage answered from memory.
		t.Logf("after the heal the servers marked %s failed (gossip of the heal): %d NXDOMAIN while web had no healthy instance in the catalog: %s",
			svcHost.Short(), len(bad), strings.Join(bad, "; "))
	default:
		for _, b := range bad {
			t.Errorf("after the heal, %s", b)
		}
	}
	if dnsAt.IsZero() {
		t.Fatalf("the change made during the cut was never answered after the heal\n%s", c.LogText("dnsforward"))
	}
	t.Logf("heal: change (made %s before the heal) in the agent %s after the heal, answered %s after the heal (%s after the agent had it, polled every 25–50 ms)",
		healAt.Sub(changedAt).Round(time.Millisecond), agentAt.Sub(healAt).Round(time.Millisecond), dnsAt.Sub(healAt).Round(time.Millisecond), dnsAt.Sub(agentAt).Round(time.Millisecond))
	if err := c.WaitHealthy(long); err != nil {
		t.Fatal(err)
	}

	// 3. The agent restarted with its state wiped; db was never asked for
	// before. Never NXDOMAIN; every name answered once the agent has synced.
	q = dnsq(t, c, host, 200, 50*time.Millisecond, "", web, db)
	time.Sleep(500 * time.Millisecond)
	restartAt := time.Now()
	if err := c.RestartAgent(host); err != nil {
		t.Fatal(err)
	}
	syncedAt, err := waitUntil(long, func() error {
		for name, ip := range map[string]string{"web": "10.8.0.2", "db": "10.8.2.1"} {
			if err := agentHas(host, name, ip); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	during := dnsqAnswers(t, q)
	var after []dnsAnswer
	misses := map[string]int{}
	answeredAt, err := waitUntil(long, func() error {
		out, err := c.Exec(host, "/bin/dnsq", "-server", dnsListen, web, db)
		if err != nil {
			misses[err.Error()]++
			return err
		}
		as := parseDNSQ(out)
		after = append(after, as...)
		if len(as) != 2 || as[0].ips != "10.8.0.2" || as[1].ips != "10.8.2.1" {
			misses[out]++
			return fmt.Errorf("answers %+v", as)
		}
		return nil
	})
	if err != nil {
		t.Errorf("after the agent synced: %v", err)
	}
	rcodes := map[string]int{}
	var early []string // NXDOMAIN before the restart
	for _, a := range append(during, after...) {
		rcodes[a.name+" "+a.rcode+" "+a.ips]++
		if a.rcode != "NXDOMAIN" {
			continue
		}
		what := fmt.Sprintf("%s NXDOMAIN %s after the agent restart (agent synced at +%s)", a.name, a.at.Sub(restartAt).Round(time.Millisecond), syncedAt.Sub(restartAt).Round(time.Millisecond))
		if a.at.Before(restartAt) {
			early = append(early, what)
			continue
		}
		t.Error(what)
	}
	switch {
	case len(early) == 0:
	case c.MarkedFailed(svcHost, healAt):
		// As after the heal above: the heal's gossip got the servers to
		// mark the service's host failed a while later, and with no
		// healthy instance in the catalog Consul's DNS answers NXDOMAIN
		// too. Before the restart, so not what this step tests.
		t.Logf("before the restart the servers marked %s failed (gossip of the heal): %s", svcHost.Short(), strings.Join(early, "; "))
	default:
		for _, e := range early {
			t.Error(e)
		}
	}
	// The first round after the sync in which both names were right (the
	// client that ran through the restart may have seen it before the poll).
	okAt := map[string]time.Time{}
	for _, a := range during {
		if a.at.After(syncedAt) && a.rcode == "NOERROR" && a.ips == map[string]string{web: "10.8.0.2", db: "10.8.2.1"}[a.name] {
			if _, ok := okAt[a.name]; !ok {
				okAt[a.name] = a.at
			}
		}
	}
	if len(okAt) == 2 {
		answeredAt = okAt[web]
		if okAt[db].After(answeredAt) {
			answeredAt = okAt[db]
		}
	}
	t.Logf("agent restarted wiped: synced %s after the restart, both names answered %s after the sync; answers through the restart and after %v; failed polls after the sync %v",
		syncedAt.Sub(restartAt).Round(time.Millisecond), answeredAt.Sub(syncedAt).Round(time.Millisecond), rcodes, misses)
}

func mustOut(s string, err error) string {
	if err != nil {
		return "exec failed: " + err.Error()
	}
	return s
}
