// Command lockrun-bench compares lockrun with `consul lock` on one dev agent:
// (a) wall time of an uncontended run of `true`, and (b) hand-off latency:
// a holder's child exits → the next holder's child starts, with 3
// contenders × 10 runs. Run it through bench/lockrun.sh.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/pkg/consultest"
)

func main() {
	lockrunBin := flag.String("lockrun", "bin/lockrun", "lockrun binary")
	runs := flag.Int("runs", 30, "uncontended runs per tool")
	contenders := flag.Int("contenders", 3, "contenders for the hand-off test")
	perContender := flag.Int("per-contender", 10, "runs per contender")
	flag.Parse()
	if err := run(*lockrunBin, *runs, *contenders, *perContender); err != nil {
		fmt.Fprintf(os.Stderr, "lockrun-bench: %v\n", err)
		os.Exit(1)
	}
}

type tool struct {
	name string
	// argv builds the command line running script (a bash script) under prefix.
	argv func(prefix, script string) []string
}

func run(lockrunBin string, runs, contenders, perContender int) error {
	agent, err := consultest.Start(consultest.Options{NodeName: "bench"})
	if err != nil {
		return err
	}
	defer agent.Close()
	abs, err := filepath.Abs(lockrunBin)
	if err != nil {
		return err
	}
	tools := []tool{
		{"lockrun", func(p, s string) []string { return []string{abs, p, "/bin/bash", "-c", s} }},
		// consul lock runs its command with $SHELL -c (bash here).
		{"consul lock", func(p, s string) []string { return []string{agent.Bin, "lock", p, s} }},
	}
	env := append(append(os.Environ(), agent.Env()...), "SHELL=/bin/bash")
	dir, err := os.MkdirTemp("", "lockrun-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Printf("lockrun vs consul lock (Consul %s dev agent on %s), %s\n\n", consultest.ConsulVersion(), agent.HTTPAddr(), time.Now().UTC().Format(time.RFC3339))

	// (a) uncontended run of `true`, interleaved so both see the same machine.
	wall := map[string][]time.Duration{}
	for i := 0; i < runs+3; i++ {
		for _, t := range tools {
			argv := t.argv("bench/uncontended-"+strings.ReplaceAll(t.name, " ", "-"), "true")
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = env
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v: %s", t.name, err, out)
			}
			if i >= 3 { // warm-up runs not counted
				wall[t.name] = append(wall[t.name], time.Since(start))
			}
		}
	}

	// (b) hand-off latency, in alternating rounds so that neither tool
	// always runs on a warmer or colder machine.
	hand := map[string][]time.Duration{}
	rounds := 5
	for round := 0; round < rounds; round++ {
		order := tools
		if round%2 == 1 {
			order = []tool{tools[1], tools[0]}
		}
		for _, t := range order {
			d, err := handoffRound(t, env, dir, round, contenders, max(1, perContender/rounds*2))
			if err != nil {
				return err
			}
			hand[t.name] = append(hand[t.name], d...)
		}
	}

	fmt.Printf("(a) uncontended run of `true`, wall time per run, %d runs each\n", runs)
	fmt.Printf("  %-12s %9s %9s %9s\n", "tool", "p50", "p90", "mean")
	for _, t := range tools {
		p50, p90, mean := stats(wall[t.name])
		fmt.Printf("  %-12s %9s %9s %9s\n", t.name, ms(p50), ms(p90), ms(mean))
	}
	fmt.Printf("\n(b) hand-off latency (holder's child exits → next holder's child starts), %d contenders × %d runs\n", contenders, perContender)
	fmt.Printf("  %-12s %9s %9s %9s %6s\n", "tool", "p50", "p90", "max", "n")
	for _, t := range tools {
		p50, p90, _ := stats(hand[t.name])
		fmt.Printf("  %-12s %9s %9s %9s %6d\n", t.name, ms(p50), ms(p90), ms(slices.Max(hand[t.name])), len(hand[t.name]))
	}
	if err := holdCost(tools, agent, env); err != nil {
		return err
	}
	a50, _, _ := stats(wall["lockrun"])
	b50, _, _ := stats(wall["consul lock"])
	h50, h90, _ := stats(hand["lockrun"])
	c50, c90, _ := stats(hand["consul lock"])
	fmt.Println()
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	fmt.Printf("(a) run p50: lockrun %s vs consul lock %s (%.2fx): %s\n", ms(a50), ms(b50), float64(a50)/float64(b50), verdict(a50 <= b50))
	fmt.Printf("(b) hand-off p50: %s vs %s, p90: %s vs %s: %s\n", ms(h50), ms(c50), ms(h90), ms(c90), verdict(h50 <= c50 && h90 <= c90))
	if a50 > b50 || h50 > c50 || h90 > c90 {
		return fmt.Errorf("lockrun slower than consul lock")
	}
	return nil
}

// handoffRound runs contenders processes, each running the tool runs times in
// a row on one prefix, and returns the hand-off gaps.
func handoffRound(t tool, env []string, dir string, round, contenders, runs int) ([]time.Duration, error) {
	name := strings.ReplaceAll(t.name, " ", "-")
	log := filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, round))
	script := fmt.Sprintf(`echo "start $EPOCHREALTIME" >> %[1]s; sleep 0.05; echo "end $EPOCHREALTIME" >> %[1]s`, log)
	prefix := fmt.Sprintf("bench/handoff-%s-%d", name, round)
	var wg sync.WaitGroup
	errs := make(chan error, contenders)
	for c := 0; c < contenders; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < runs; r++ {
				argv := t.argv(prefix, script)
				cmd := exec.Command(argv[0], argv[1:]...)
				cmd.Env = env
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("%s: %v: %s", t.name, err, out)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	return handoffs(log)
}

// handoffs reads start/end stamps in file order and returns, for every start
// after the first, the gap since the previous end.
func handoffs(path string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []time.Duration
	var lastEnd float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		ts, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bad time %q", path, fields[1])
		}
		switch fields[0] {
		case "start":
			if lastEnd > 0 {
				out = append(out, time.Duration((ts-lastEnd)*float64(time.Second)))
			}
		case "end":
			lastEnd = ts
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no hand-offs recorded", path)
	}
	return out, sc.Err()
}

func stats(d []time.Duration) (p50, p90, mean time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*90/100)], sum / time.Duration(len(s))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// holdCost counts the HTTP requests each tool sends its agent while holding
// the lock for holdFor uncontended (through a counting proxy): lockrun's lease
// confirmations and renewals against consul lock's renewals and blocking
// monitor. Report only: safety costs requests; the figure says how many.
func holdCost(tools []tool, agent *consultest.Agent, env []string) error {
	const holdFor = 20 * time.Second
	target, err := url.Parse("http://" + agent.HTTPAddr())
	if err != nil {
		return err
	}
	var mu sync.Mutex
	counts := map[string]int{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	// A blocking query cut when its tool exits is no error worth printing.
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) }
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := r.Method + " " + r.URL.Path
		if i := strings.Index(r.URL.Path[min(len(r.URL.Path), 4):], "/"); i >= 0 {
			// /v1/session/renew/<id>, /v1/kv/<key>: keep the endpoint, drop the name.
			parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/v1/"), "/", 3)
			kind = r.Method + " /v1/" + strings.Join(parts[:min(2, len(parts))], "/")
		}
		if r.URL.Query().Has("consistent") {
			kind += "?consistent"
		}
		mu.Lock()
		counts[kind]++
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Printf("\n(c) requests to the agent while holding %s uncontended (report only)\n", holdFor)
	for _, t := range tools {
		mu.Lock()
		clear(counts)
		mu.Unlock()
		argv := t.argv("bench/hold-"+strings.ReplaceAll(t.name, " ", "-"), fmt.Sprintf("sleep %g", holdFor.Seconds()))
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(env, "CONSUL_HTTP_ADDR="+ln.Addr().String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", t.name, err, out)
		}
		mu.Lock()
		total := 0
		var kinds []string
		for k, n := range counts {
			total += n
			kinds = append(kinds, fmt.Sprintf("%s ×%d", k, n))
		}
		mu.Unlock()
		slices.Sort(kinds)
		fmt.Printf("  %-12s %3d requests (%.2f/s): %s\n", t.name, total, float64(total)/holdFor.Seconds(), strings.Join(kinds, ", "))
	}
	return nil
}
