package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Goal thresholds. "Nothing" is judged with a little room for the
// background that is subtracted (anti-entropy and coordinate updates of
// four agents land at random in a phase): 0.05 RPC and 50 bytes per host
// per change are far below one real watch wake-up (1 RPC and ~1 KB).
const (
	nothingRPCs  = 0.05
	nothingBytes = 50.0
	// fullSlack allows stream framing around the one full answer per agent.
	fullSlack = 1.25
)

func human(b float64) string {
	a := math.Abs(b)
	switch {
	case a >= 1e9:
		return fmt.Sprintf("%.2f GB", b/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2f MB", b/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.1f KB", b/1e3)
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// clamp shows a background-corrected figure that fell below zero as 0.
func clamp(c Counts) Counts {
	c.RPCs, c.Streams, c.Bytes, c.CPUms = math.Max(c.RPCs, 0), math.Max(c.Streams, 0), math.Max(c.Bytes, 0), math.Max(c.CPUms, 0)
	return c
}

func printTables(cfg config, results []result) {
	agents := float64(len(ClientIPs))
	hosts := float64(cfg.Hosts)
	head := func(title string) {
		fmt.Printf("\n%s\n", title)
		fmt.Printf("%-24s %-16s %11s %9s %9s %11s %8s | %11s %9s %9s\n", "kind", "program", "B/watcher", "RPC/w", "CPUms/w", "B/agent", "streams", "B x10k", "RPC x10k", "CPUs x10k")
	}
	row := func(r result, c Counts, per float64, extra string) {
		w := clamp(c.scale(1 / (per * float64(r.watchers))))
		a := clamp(c.scale(1 / (per * agents)))
		fmt.Printf("%-24s %-16s %11s %9s %9.2f %11s %8s | %11s %9s %9.1f%s\n", r.kind, r.prog, human(w.Bytes), num(w.RPCs), w.CPUms, human(a.Bytes), num(a.Streams),
			human(a.Bytes*hosts), num(a.RPCs*hosts), a.CPUms*hosts/1000, extra)
	}
	fmt.Printf("\nServer costs, background removed. Per watcher = total / %d watchers; per agent = total / %d agents (%d watchers each);\n"+
		"x10k = per agent x %d: a fleet of %d hosts, each one agent with %d watchers like these. Loopback, shared 2-core machine: under load.\n",
		cfg.PerAgent*len(ClientIPs), len(ClientIPs), cfg.PerAgent, cfg.Hosts, cfg.Hosts, cfg.PerAgent)
	head("START-UP (every watcher started at once, until all rendered/answered, + 2 s)")
	for _, r := range results {
		if r.err == nil && r.hasStartup {
			row(r, r.startup, 1, "")
		}
	}
	head(fmt.Sprintf("PER CHANGE (%d changes, one at a time, each followed by every watcher before the next)", cfg.Changes))
	for _, r := range results {
		if r.err == nil {
			extra := ""
			if r.missed > 0 {
				extra = fmt.Sprintf("  (%d watcher-changes not seen in 30 s)", r.missed)
			}
			row(r, r.change, float64(r.changes), extra)
		}
	}
	fmt.Println("\nServer RPCs by method (its rpc_server_call trace lines, net/rpc), per watcher; then what the watchers asked their agents (consul_api_http_count).\n" +
		"Txn.Apply and KVS.Apply are the benchmark's own changes, made through the server's HTTP API in-process: they are not in the RPC columns above.")
	for _, r := range results {
		if r.err != nil {
			continue
		}
		if r.hasStartup {
			w := r.startup.scale(1 / float64(r.watchers))
			fmt.Printf("  %-24s %-16s start-up:   %s\n  %41s             asked: %s\n", r.kind, r.prog, top(w.Methods), "", top(w.Paths))
		}
		w := r.change.scale(1 / float64(r.watchers*r.changes))
		fmt.Printf("  %-24s %-16s per change: %s\n  %41s             asked: %s\n", r.kind, r.prog, top(w.Methods), "", top(w.Paths))
	}
}

// top lists the five largest counts.
func top(m map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var l []kv
	for k, v := range m {
		if v > 0.005 {
			l = append(l, kv{k, v})
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v })
	if len(l) > 5 {
		l = l[:5]
	}
	var s []string
	for _, e := range l {
		s = append(s, fmt.Sprintf("%s %.2f", e.k, e.v))
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}

func find(results []result, kind, prog string) (result, bool) {
	for _, r := range results {
		if strings.HasPrefix(r.kind, kind) && r.prog == prog {
			return r, r.err == nil
		}
	}
	return result{}, false
}

// goals prints a PASS/FAIL line per goal of issue 16 and reports whether
// all passed.
func goals(cfg config, full Counts, results []result) bool {
	ok := true
	line := func(pass bool, format string, a ...any) {
		word := "PASS"
		if !pass {
			word, ok = "FAIL", false
		}
		fmt.Printf("%s %s\n", word, fmt.Sprintf(format, a...))
	}
	fmt.Println()
	agents := float64(len(ClientIPs))
	if cfg.Only == "dns" {
		fmt.Println("SKIP start-up of service watchers: not run (-only dns)")
	} else if r, good := find(results, "service", "templater"); good {
		perAgent := r.startup.Bytes / agents
		line(perAgent <= fullSlack*full.Bytes, "start-up of %d service watchers on one agent: %s from the server per agent (goal: at most one full answer, %s, x%.2f)",
			cfg.PerAgent, human(perAgent), human(full.Bytes), fullSlack)
	} else {
		line(false, "start-up of service watchers: not measured (%v)", r.err)
	}
	for _, kind := range []string{"dns: unasked service", "dns: unasked node join"} {
		if cfg.Only == "templates" {
			fmt.Printf("SKIP %s: not run (-only templates)\n", kind)
			continue
		}
		r, good := find(results, kind, "dnsforward")
		if !good {
			line(false, "%s: not measured (%v)", kind, r.err)
			continue
		}
		h := clamp(r.change.scale(1 / float64(r.watchers*r.changes)))
		line(h.RPCs <= nothingRPCs && h.Bytes <= nothingBytes, "%s: %.2f RPCs and %s per host per change (goal: nothing; at most %.2f RPC and %.0f B allowed for background noise)",
			kind, h.RPCs, human(h.Bytes), nothingRPCs, nothingBytes)
	}
	missed, broken := 0, []string{}
	for _, r := range results {
		if r.prog == "consul-template" {
			continue
		}
		missed += r.missed
		if r.err != nil {
			broken = append(broken, r.kind)
		}
	}
	line(missed == 0 && len(broken) == 0, "freshness: every berth watcher saw every change within 30 s (%d watcher-changes missed; failed workloads: %v)", missed, broken)
	return ok
}
