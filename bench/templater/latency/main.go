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
	key := flag.String("key", "bench/value", "measure: key to write")
	file := flag.String("file", "", "measure: rendered file to watch")
	n := flag.Int("n", 100, "measure: writes")
	pid := flag.Int("pid", 0, "measure: renderer's PID for CPU and RSS")
	label := flag.String("label", "", "measure: row label")
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
	cpu0 := cpuTicks(*pid)
	var lat []time.Duration
	for i := 0; i < *n; i++ {
		val := fmt.Sprintf("v-%d-%d", time.Now().UnixNano(), i)
		start := time.Now()
		if _, err := c.KV().Put(&api.KVPair{Key: *key, Value: []byte(val)}, nil); err != nil {
			return err
		}
		want := []byte(val)
		deadline := start.Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(*file)
			if bytes.Contains(b, want) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %s never showed %q", *label, *file, val)
			}
			time.Sleep(100 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
		time.Sleep(20 * time.Millisecond)
	}
	cpu1 := cpuTicks(*pid)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[int(float64(len(lat)-1)*q)] }
	cpuPer := float64(cpu1-cpu0) * 10 / float64(*n) // ticks are 10ms
	fmt.Printf("%s %.2f %.2f %.2f %d\n", *label, ms(p(0.5)), ms(p(0.99)), cpuPer, rssKB(*pid))
	return nil
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
