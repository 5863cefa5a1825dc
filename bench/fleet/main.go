// Command fleet is the driver of bench/fleet.sh: what each host's watches
// cost the Consul servers (issue 16). It starts one Consul server
// (127.0.0.2) and four client agents (127.0.0.11-14), all with default ports
// on their own loopback address, seeds the catalog and KV through the
// server, and for each watch kind runs PerAgent watchers on every agent:
// templater and consul-template on `service` (1,000 instances), a 500-key
// `tree` and `services`; dnsforward on a service name, a node name, and
// changes nobody asked about. For each it reads the server's RPCs, bytes
// sent and CPU (see Counts) at start-up and over Changes changes, prints
// them per watcher, per agent and for 10,000 hosts, and checks the issue's
// goals. Exit status: 0 all goals met (or -report-only), 1 a goal not met,
// 2 the benchmark itself failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type config struct {
	Consul, Templater, ConsulTemplate, DNSForward string
	Work                                          string
	PerAgent, Changes, Hosts, DNSPortBase         int
	BackgroundSecs                                float64
	ReportOnly                                    bool
	Only                                          string // "", "templates" or "dns"
}

func main() {
	var cfg config
	flag.StringVar(&cfg.Consul, "consul", "", "consul binary (pinned v1.21.0)")
	flag.StringVar(&cfg.Templater, "templater", "", "templater binary")
	flag.StringVar(&cfg.ConsulTemplate, "consul-template", "", "consul-template v0.41.1 binary")
	flag.StringVar(&cfg.DNSForward, "dnsforward", "", "dnsforward binary")
	flag.StringVar(&cfg.Work, "work", "", "scratch directory (templates, outputs, logs)")
	flag.IntVar(&cfg.PerAgent, "per-agent", 10, "watchers per client agent")
	flag.IntVar(&cfg.Changes, "changes", 20, "changes per workload")
	flag.IntVar(&cfg.Hosts, "hosts", 10000, "fleet size to extrapolate to")
	flag.IntVar(&cfg.DNSPortBase, "dns-port-base", 18600, "forwarder i listens on its agent's address, this port + i")
	flag.Float64Var(&cfg.BackgroundSecs, "background", 20, "seconds of idle cluster measured as background")
	flag.BoolVar(&cfg.ReportOnly, "report-only", false, "exit 0 even when a goal is not met")
	flag.StringVar(&cfg.Only, "only", "", "run only the `templates` or the `dns` workloads (goals of the others are then not measured)")
	flag.Parse()
	if cfg.Only != "" && cfg.Only != "templates" && cfg.Only != "dns" {
		fmt.Fprintf(os.Stderr, "fleet: -only %q: want templates or dns\n", cfg.Only)
		os.Exit(2)
	}
	for name, v := range map[string]string{"-consul": cfg.Consul, "-templater": cfg.Templater, "-consul-template": cfg.ConsulTemplate, "-dnsforward": cfg.DNSForward, "-work": cfg.Work} {
		if v == "" {
			fmt.Fprintf(os.Stderr, "fleet: %s is required\n", name)
			os.Exit(2)
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	p := newProcs(cfg.Work)
	code := run(ctx, cfg, p)
	p.stopAll()
	cancel()
	os.Exit(code)
}

func run(ctx context.Context, cfg config, p *procs) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "fleet:", err); return 2 }
	for _, ip := range append([]string{ServerIP}, ClientIPs...) {
		if err := checkAddress(ip); err != nil {
			return fail(err)
		}
	}
	for i := 0; i < cfg.PerAgent*len(ClientIPs); i++ {
		addr := net.JoinHostPort(ClientIPs[i%len(ClientIPs)], fmt.Sprint(cfg.DNSPortBase+i))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fail(fmt.Errorf("forwarder address %s: %w (set -dns-port-base)", addr, err))
		}
		l.Close()
	}
	t0 := time.Now()
	fmt.Printf("== one server (%s) and %d client agents (%v), default ports; %d watchers per agent, %d changes per workload\n",
		ServerIP, len(ClientIPs), ClientIPs, cfg.PerAgent, cfg.Changes)
	data := cfg.Work
	// Raft's fsyncs on a shared disk would only add noise to server CPU.
	if d, err := os.MkdirTemp("/dev/shm", "berth-fleet-"); err == nil {
		data = d
		defer func() { p.stopAll(); os.RemoveAll(d) }()
	}
	cl, err := startCluster(ctx, p, cfg.Consul, cfg.Work, data)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("   cluster up in %.1f s; seeding 1,000 nodes x 2 services, 500 keys\n", time.Since(t0).Seconds())
	if err := seed(ctx, cl.serverAPI); err != nil {
		return fail(err)
	}
	b := &bench{cfg: cfg, p: p, cl: cl, m: newMeter(ctx, cl.serverPID)}
	ready := make(chan struct{})
	go b.m.monitor(ctx, ready)
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		return fail(fmt.Errorf("cannot follow the server's log at %s:8500/v1/agent/monitor", ServerIP))
	}
	if err := sleep(ctx, 3*time.Second); err != nil {
		return fail(err)
	}
	if err := b.background(ctx, cfg.BackgroundSecs); err != nil {
		return fail(err)
	}
	fmt.Printf("   background (idle cluster): %.2f RPC/s, %.0f B/s, %.1f ms CPU/s\n", b.bg.RPCs, b.bg.Bytes, b.bg.CPUms)
	full, err := b.fullAnswer(ctx)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("   one full answer of service %q (a plain non-blocking query through one agent): %s, %.1f RPCs\n", bigCT, human(full.Bytes), full.RPCs)
	var results []result
	for _, k := range templateKinds {
		if cfg.Only == "dns" {
			break
		}
		for _, prog := range []string{"consul-template", "templater"} {
			fmt.Printf("== %s: %s\n", k.name, prog)
			r := b.templatePhase(ctx, k, prog)
			results = append(results, r)
			if r.err != nil {
				fmt.Printf("   error: %v\n", r.err)
			}
		}
	}
	var dnsResults []result
	if cfg.Only != "templates" {
		fmt.Println("== dnsforward")
		dnsResults = b.dnsPhases(ctx)
	}
	for _, r := range dnsResults {
		results = append(results, r)
		if r.err != nil {
			fmt.Printf("   error (%s): %v\n", r.kind, r.err)
		}
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	printTables(cfg, results)
	fmt.Printf("\n(run took %.0f s)\n", time.Since(t0).Seconds())
	if !goals(cfg, full, results) && !cfg.ReportOnly {
		return 1
	}
	return 0
}

// fullAnswer measures one plain health query of the 1,000-instance service
// through one agent (the mean of three): the unit of the start-up goal.
func (b *bench) fullAnswer(ctx context.Context) (Counts, error) {
	const n = 3
	c, err := b.measure(ctx, func() error {
		for i := 0; i < n; i++ {
			if _, _, err := b.cl.clients[0].Health().Service(bigCT, "", true, nil); err != nil {
				return fmt.Errorf("full answer: %w", err)
			}
		}
		return nil
	})
	return c.scale(1.0 / n), err
}
