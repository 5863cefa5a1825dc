// Command latency is the measuring half of bench/templater.sh: it seeds the
// agent, then writes a key N times and times how long a renderer takes to
// put the new value into its file, with the renderer's CPU time and RSS.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "measure", "seed | measure")
	instances := flag.Int("instances", 2000, "seed: instances of service bench-svc")
	targetsF := flag.String("targets", "", "measure: LABEL=KEY=FILE=PID,... renderers to time, taking turns")
	n := flag.Int("n", 100, "measure: writes per target")
	rotate := flag.Int("rotate", 50, "measure: with %d in KEY and FILE, the writes go round templates 1..rotate")
	flag.Parse()
	c, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		return err
	}
	switch *mode {
	case "seed":
		for i := 0; i < *instances; i++ {
			_, err := c.Catalog().Register(&api.CatalogRegistration{
				Node: fmt.Sprintf("bench-node-%d", i%20), Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1),
				Service: &api.AgentService{ID: fmt.Sprintf("bench-svc-%d", i), Service: "bench-svc", Port: 20000 + i, Tags: []string{"bench"}},
			}, nil)
			if err != nil {
				return fmt.Errorf("register %d: %w", i, err)
			}
		}
		return nil
	case "measure":
	default:
		return fmt.Errorf("unknown -mode %q", *mode)
	}
	var targets []*target
	for _, spec := range strings.Split(*targetsF, ",") {
		f := strings.SplitN(spec, "=", 4)
		if len(f) != 4 {
			return fmt.Errorf("-targets: %q is not LABEL=KEY=FILE=PID", spec)
		}
		pid, _ := strconv.Atoi(f[3])
		targets = append(targets, &target{label: f[0], key: f[1], file: f[2], pid: pid})
	}
	for _, tg := range targets {
		tg.cpu0 = cpuTicks(tg.pid)
	}
	// The targets take turns, one write each, so that load from elsewhere on
	// the machine falls on all of them alike.
	for i := 0; i < *n; i++ {
		for _, tg := range targets {
			val := fmt.Sprintf("v-%d-%d", time.Now().UnixNano(), i)
			start := time.Now()
			key, file := tg.key, tg.file
			if strings.Contains(key, "%d") {
				// rotate over the templates: each write goes to the next one
				key, file = fmt.Sprintf(key, i%*rotate+1), fmt.Sprintf(file, i%*rotate+1)
			}
			if _, err := c.KV().Put(&api.KVPair{Key: key, Value: []byte(val)}, nil); err != nil {
				return err
			}
			want := []byte(val)
			deadline := start.Add(10 * time.Second)
			for {
				b, _ := os.ReadFile(file)
				if bytes.Contains(b, want) {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s: %s never showed %q", tg.label, file, val)
				}
				time.Sleep(100 * time.Microsecond)
			}
			tg.lat = append(tg.lat, time.Since(start))
			// Let every renderer finish its work on this change (its CPU time
			// stops growing) before the next write, so one's tail does not
			// land on the other's turn.
			for _, o := range targets {
				settle(o.pid)
			}
		}
	}
	for _, tg := range targets {
		lat := tg.lat
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p := func(q float64) time.Duration { return lat[int(float64(len(lat)-1)*q)] }
		cpuPer := float64(cpuTicks(tg.pid)-tg.cpu0) * 10 / float64(*n) // ticks are 10ms
		fmt.Printf("%s %.2f %.2f %.2f %d\n", tg.label, ms(p(0.5)), ms(p(0.99)), cpuPer, rssKB(tg.pid))
	}
	return nil
}

type target struct {
	label, key, file string
	pid              int
	cpu0             int64
	lat              []time.Duration
}

// settle waits (up to 3s) until pid used no CPU for 50ms.
func settle(pid int) {
	deadline := time.Now().Add(3 * time.Second)
	last := cpuTicks(pid)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		now := cpuTicks(pid)
		if now == last {
			return
		}
		last = now
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func cpuTicks(pid int) int64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	s = s[strings.LastIndex(s, ")")+2:]
	f := strings.Fields(s)
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

func rssKB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}
