package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// result is one measured row: a watch kind run by one program.
type result struct {
	kind, prog string
	watchers   int
	// startup and change are totals over all watchers, background removed;
	// change covers `changes` changes.
	startup, change Counts
	changes         int
	hasStartup      bool
	// missed counts watcher-changes not seen within the deadline.
	missed int
	err    error
}

// bench holds what every phase needs.
type bench struct {
	cfg    config
	p      *procs
	cl     *cluster
	m      *meter
	bg     Counts // background per second (gossip-driven syncs, coordinates)
	bgSecs float64
}

// measure returns the counts between two readings with the background for
// the elapsed time removed.
func (b *bench) measure(ctx context.Context, fn func() error) (Counts, error) {
	s0, err := b.m.read(ctx)
	if err != nil {
		return Counts{}, err
	}
	t0 := time.Now()
	if err := fn(); err != nil {
		return Counts{}, err
	}
	s1, err := b.m.read(ctx)
	if err != nil {
		return Counts{}, err
	}
	d := s1.sub(s0)
	bg := b.bg.scale(time.Since(t0).Seconds())
	d.RPCs -= bg.RPCs
	d.Streams -= bg.Streams
	d.Bytes -= bg.Bytes
	d.CPUms -= bg.CPUms
	d.Methods = subMap(d.Methods, bg.Methods)
	return d, nil
}

// measureBeyond is measure less what goes by the clock rather than by
// changes: perSec (a cost per second measured apart, such as the watchers'
// own idle cost) for the time fn took, except for the RPCs of method
// clockMethod, which are taken out as counted in this very window (the
// server's trace lines), not as estimated from perSec: a probe every 5 s
// per watcher is too lumpy for a rate measured in another window.
func (b *bench) measureBeyond(ctx context.Context, perSec Counts, clockMethod string, fn func() error) (Counts, error) {
	t0 := time.Now()
	d, err := b.measure(ctx, fn)
	if err != nil {
		return d, err
	}
	est := perSec.scale(time.Since(t0).Seconds())
	est.RPCs = d.Methods[clockMethod]
	est.Methods[clockMethod] = d.Methods[clockMethod]
	return d.sub(est), nil
}

// dnsIdleSecs is how long the forwarders' idle cost is measured.
const dnsIdleSecs = 15

// probeMethod is the RPC of dnsforward's reachability probe (at most one
// every 5 s per forwarder, by the clock).
const probeMethod = "Status.Leader"

// roundMap rounds a map's values to 3 decimals and drops those near 0,
// for printing.
func roundMap(m map[string]float64) map[string]float64 {
	r := map[string]float64{}
	for k, v := range m {
		if v := math.Round(v*1000) / 1000; v > 0 {
			r[k] = v
		}
	}
	return r
}

// background measures the idle cluster's cost per second.
func (b *bench) background(ctx context.Context, secs float64) error {
	s0, err := b.m.read(ctx)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(secs * float64(time.Second))):
	}
	s1, err := b.m.read(ctx)
	if err != nil {
		return err
	}
	b.bg = s1.sub(s0).scale(1 / secs)
	b.bg.Paths = nil
	b.bgSecs = secs
	return nil
}

// templateKind is one template watch kind.
type templateKind struct {
	name    string
	tmpl    func(prog string) string
	initial func(prog string) string // text every first rendering holds
	change  func(ctx context.Context, c *api.Client, prog string, n int) error
}

func marker(n int) string { return fmt.Sprintf("m%dx", n) }

func serviceName(prog string) string {
	if prog == "consul-template" {
		return bigCT
	}
	return bigBerth
}

func serviceSet(ctx context.Context, c *api.Client, node string, svc api.AgentService) error {
	ok, resp, _, err := c.Txn().Txn([]*api.TxnOp{{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: node, Service: svc}}}, (&api.QueryOptions{}).WithContext(ctx))
	if err == nil && !ok {
		err = fmt.Errorf("txn rolled back: %v", resp.Errors)
	}
	return err
}

func nodeSet(ctx context.Context, c *api.Client, node, addr string) error {
	ok, resp, _, err := c.Txn().Txn([]*api.TxnOp{{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: node, Address: addr}}}}, (&api.QueryOptions{}).WithContext(ctx))
	if err == nil && !ok {
		err = fmt.Errorf("txn rolled back: %v", resp.Errors)
	}
	return err
}

var templateKinds = []templateKind{
	{
		name: "service (1,000 inst.)",
		tmpl: func(prog string) string {
			return fmt.Sprintf("{{ range service %q }}{{ .Node }} {{ .Address }}:{{ .Port }} {{ .Tags }}\n{{ end }}", serviceName(prog))
		},
		initial: func(string) string { return bigNode(bigInstances) + " " },
		change: func(ctx context.Context, c *api.Client, prog string, n int) error {
			name := serviceName(prog)
			return serviceSet(ctx, c, bigNode(1), api.AgentService{ID: name, Service: name, Port: 8080, Tags: []string{marker(n)}})
		},
	},
	{
		name:    "kv tree (500 keys)",
		tmpl:    func(string) string { return "{{ range tree \"fleet/kv\" }}{{ .Key }}={{ .Value }}\n{{ end }}" },
		initial: func(string) string { return fmt.Sprintf("k%03d=", kvKeys-1) },
		change: func(ctx context.Context, c *api.Client, _ string, n int) error {
			_, err := c.KV().Put(&api.KVPair{Key: kvPrefix + "k000", Value: []byte(marker(n))}, (&api.WriteOptions{}).WithContext(ctx))
			return err
		},
	},
	{
		name:    "services",
		tmpl:    func(string) string { return "{{ range services }}{{ .Name }} {{ .Tags }}\n{{ end }}" },
		initial: func(string) string { return "flag " },
		change: func(ctx context.Context, c *api.Client, _ string, n int) error {
			return serviceSet(ctx, c, "flag-node", api.AgentService{ID: "flag", Service: "flag", Port: 80, Tags: []string{marker(n)}})
		},
	},
}

// waitFiles polls the files until each holds token or the deadline passes;
// it returns how many never did.
func waitFiles(ctx context.Context, files []string, token string, within time.Duration) int {
	left := map[string]bool{}
	for _, f := range files {
		left[f] = true
	}
	deadline := time.Now().Add(within)
	for len(left) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		for f := range left {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), token) {
				delete(left, f)
			}
		}
		if len(left) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return len(left)
}

// templatePhase starts every watcher at once (PerAgent on each agent), then
// makes the changes one at a time, each followed by every watcher.
func (b *bench) templatePhase(ctx context.Context, k templateKind, prog string) result {
	r := result{kind: k.name, prog: prog, watchers: b.cfg.PerAgent * len(ClientIPs), changes: b.cfg.Changes, hasStartup: true}
	dir := filepath.Join(b.cfg.Work, strings.Fields(k.name)[0]+"-"+prog)
	if r.err = os.MkdirAll(dir, 0o700); r.err != nil {
		return r
	}
	src := filepath.Join(dir, "t.tmpl")
	if r.err = os.WriteFile(src, []byte(k.tmpl(prog)), 0o600); r.err != nil {
		return r
	}
	var cmds []*exec.Cmd
	defer func() { b.p.stop(cmds...) }()
	var files []string
	r.startup, r.err = b.measure(ctx, func() error {
		for i := 0; i < r.watchers; i++ {
			addr := ClientIPs[i%len(ClientIPs)] + ":8500"
			dst := filepath.Join(dir, fmt.Sprintf("%d.out", i))
			files = append(files, dst)
			var args []string
			bin := b.cfg.Templater
			if prog == "consul-template" {
				bin = b.cfg.ConsulTemplate
				args = []string{"-consul-addr", addr, "-template", src + ":" + dst, "-log-level", "err"}
			} else {
				args = []string{"-http-addr", addr, "-template", src + ":" + dst, "-log-level", "err"}
			}
			cmd, err := b.p.start(fmt.Sprintf("%s/%d", filepath.Base(dir), i), bin, args...)
			if err != nil {
				return err
			}
			cmds = append(cmds, cmd)
		}
		if n := waitFiles(ctx, files, k.initial(prog), 3*time.Minute); n > 0 {
			return fmt.Errorf("%d of %d watchers rendered nothing in 3 minutes (logs in %s)", n, len(files), dir)
		}
		return sleep(ctx, 2*time.Second) // the follow-up blocking queries belong to start-up
	})
	if r.err != nil {
		return r
	}
	r.change, r.err = b.measure(ctx, func() error {
		for n := 1; n <= b.cfg.Changes; n++ {
			if err := k.change(ctx, b.cl.serverAPI, prog, n); err != nil {
				return fmt.Errorf("change %d: %w", n, err)
			}
			r.missed += waitFiles(ctx, files, marker(n), 30*time.Second)
		}
		return sleep(ctx, time.Second)
	})
	if r.err != nil {
		return r
	}
	// A stopped watcher leaves its last blocking query waiting in its agent
	// and the server: it would end (full answer and all) at its wait time,
	// up to 60 s later, in the next phase's readings. One more change, not
	// counted, ends them now. (consul_rpc_queries_blocking cannot tell when
	// they are gone: Consul's blockingquery.Query, agent/blockingquery, sets
	// that gauge when a query starts and never when one ends.)
	b.p.stop(cmds...)
	cmds = nil
	flushed, err := b.measure(ctx, func() error {
		if err := k.change(ctx, b.cl.serverAPI, prog, b.cfg.Changes+1); err != nil {
			return err
		}
		return sleep(ctx, 3*time.Second)
	})
	if err != nil {
		r.err = fmt.Errorf("ending the stopped watchers' queries: %w", err)
		return r
	}
	fmt.Printf("   after stopping: one more change ended the stopped watchers' queries: %s, %.0f RPCs (not counted)\n", human(math.Max(flushed.Bytes, 0)), math.Max(flushed.RPCs, 0))
	return r
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// lookupA asks server for name's A records (UDP, 1 s timeout).
func lookupA(server, name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Timeout: time.Second}
	in, _, err := c.Exchange(m, server)
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok {
			ips = append(ips, a.A.String())
		}
	}
	return ips, nil
}

// waitDNS asks every forwarder for name until its answer holds ip (every
// 100 ms, up to within); it returns how many never answered so.
func waitDNS(ctx context.Context, servers []string, name, ip string, within time.Duration) int {
	var mu sync.Mutex
	missed := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, s := range servers {
		wg.Add(1)
		go func(s string) {
			defer wg.Done()
			deadline := time.Now().Add(within)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				sem <- struct{}{}
				ips, err := lookupA(s, name)
				<-sem
				if err == nil && containsStr(ips, ip) {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			mu.Lock()
			missed++
			mu.Unlock()
		}(s)
	}
	wg.Wait()
	return missed
}

func containsStr(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// dnsPhases runs PerAgent forwarders per agent (each one a host's resolver)
// through: service-name lookups and changes to that service; node-name
// lookups and changes to that node; changes to a service no forwarder asked
// about; nodes joining that no forwarder asked about.
func (b *bench) dnsPhases(ctx context.Context) []result {
	n := b.cfg.PerAgent * len(ClientIPs)
	mk := func(kind string, startup bool) result {
		return result{kind: kind, prog: "dnsforward", watchers: n, changes: b.cfg.Changes, hasStartup: startup}
	}
	names, nodes, unasked, joins := mk("dns: service name", true), mk("dns: node name", true), mk("dns: unasked service", false), mk("dns: unasked node join", false)
	dir := filepath.Join(b.cfg.Work, "dns")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		names.err = err
		return []result{names}
	}
	var cmds []*exec.Cmd
	defer func() { b.p.stop(cmds...) }()
	var servers []string
	names.startup, names.err = b.measure(ctx, func() error {
		for i := 0; i < n; i++ {
			ip := ClientIPs[i%len(ClientIPs)]
			listen := net.JoinHostPort(ip, fmt.Sprint(b.cfg.DNSPortBase+i))
			servers = append(servers, listen)
			cmd, err := b.p.start(fmt.Sprintf("dns/%d", i), b.cfg.DNSForward, "-listen", listen, "-http-addr", ip+":8500",
				"-consul-dns", ip+":8600", "-upstream", "127.0.0.1:9", "-udp-readers", "1", "-log-level", "warn")
			if err != nil {
				return err
			}
			cmds = append(cmds, cmd)
		}
		if m := waitDNS(ctx, servers, "web.service.consul", "10.2.0.3", 2*time.Minute); m > 0 {
			return fmt.Errorf("%d of %d forwarders never answered web.service.consul (logs in %s)", m, n, dir)
		}
		return sleep(ctx, 2*time.Second)
	})
	if names.err != nil {
		return []result{names}
	}
	names.change, names.err = b.measure(ctx, func() error {
		for c := 1; c <= b.cfg.Changes; c++ {
			ip := fmt.Sprintf("10.9.0.%d", c)
			if err := serviceSet(ctx, b.cl.serverAPI, "web-node-1", api.AgentService{ID: "web", Service: "web", Port: 80, Address: ip}); err != nil {
				return err
			}
			names.missed += waitDNS(ctx, servers, "web.service.consul", ip, 30*time.Second)
		}
		return sleep(ctx, time.Second)
	})
	nodes.startup, nodes.err = b.measure(ctx, func() error {
		if m := waitDNS(ctx, servers, "ask-node.node.consul", "10.8.0.0", time.Minute); m > 0 {
			return fmt.Errorf("%d of %d forwarders never answered ask-node.node.consul", m, n)
		}
		return sleep(ctx, 2*time.Second)
	})
	if nodes.err == nil {
		nodes.change, nodes.err = b.measure(ctx, func() error {
			for c := 1; c <= b.cfg.Changes; c++ {
				ip := fmt.Sprintf("10.8.0.%d", c)
				if err := nodeSet(ctx, b.cl.serverAPI, "ask-node", ip); err != nil {
					return err
				}
				nodes.missed += waitDNS(ctx, servers, "ask-node.node.consul", ip, 30*time.Second)
			}
			return sleep(ctx, time.Second)
		})
	}
	// What the forwarders cost with nothing changing, their watches open:
	// the reachability probe's Status.Leader RPC (every 5 s each) and
	// anything else that goes by the clock, not by changes. It is printed
	// and taken out of the two workloads of changes nobody asked about,
	// whose goal is that a change costs nothing.
	idle, err := b.measure(ctx, func() error { return sleep(ctx, dnsIdleSecs*time.Second) })
	if err != nil {
		unasked.err, joins.err = err, err
		return []result{names, nodes, unasked, joins}
	}
	rate := idle.scale(1.0 / dnsIdleSecs / float64(n))
	fmt.Printf("   dnsforward idle (%d forwarders, watches open, nothing changing): %.3f RPC/s, %.1f B/s, %.2f ms CPU/s per forwarder %v;\n"+
		"   taken out of the unasked workloads (their %s calls as counted there)\n",
		n, rate.RPCs, rate.Bytes, rate.CPUms, roundMap(rate.Methods), probeMethod)
	// Nothing to wait for when nobody asked: one second after each change
	// lets every watch that wakes on it be answered.
	unasked.change, unasked.err = b.measureBeyond(ctx, idle.scale(1.0/dnsIdleSecs), probeMethod, func() error {
		for c := 1; c <= b.cfg.Changes; c++ {
			if err := serviceSet(ctx, b.cl.serverAPI, "other-node", api.AgentService{ID: "other", Service: "other", Port: 80, Address: fmt.Sprintf("10.7.0.%d", c)}); err != nil {
				return err
			}
			if err := sleep(ctx, time.Second); err != nil {
				return err
			}
		}
		return nil
	})
	joins.change, joins.err = b.measureBeyond(ctx, idle.scale(1.0/dnsIdleSecs), probeMethod, func() error {
		for c := 1; c <= b.cfg.Changes; c++ {
			if err := nodeSet(ctx, b.cl.serverAPI, fmt.Sprintf("join-%d", c), fmt.Sprintf("10.6.0.%d", c)); err != nil {
				return err
			}
			if err := sleep(ctx, time.Second); err != nil {
				return err
			}
		}
		return nil
	})
	return []result{names, nodes, unasked, joins}
}
