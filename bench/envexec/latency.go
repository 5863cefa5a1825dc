// Command latency measures change latency for bench/envexec.sh: it starts a
// supervisor command (envexec, or envconsul when present) whose child prints
// the value of $BENCH_V once at start, then writes new values to Consul and
// times each write (from just before the PUT) to the line with that value on
// the command's output, i.e. the restarted child printing it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8500", "Consul HTTP address")
	key := flag.String("key", "bench/envexec/BENCH_V", "key to write")
	n := flag.Int("n", 50, "writes")
	pause := flag.Duration("pause", 100*time.Millisecond, "pause between a restart and the next write")
	label := flag.String("label", "envexec", "name in the output")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: latency [flags] -- COMMAND...")
		os.Exit(2)
	}
	cfg := api.DefaultConfig()
	cfg.Address = *addr
	client, err := api.NewClient(cfg)
	if err != nil {
		fail(err)
	}
	kv := client.KV()
	if _, err := kv.Put(&api.KVPair{Key: *key, Value: []byte("v0")}, nil); err != nil {
		fail(err)
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fail(err)
	}
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
		close(lines)
	}()
	waitFor := func(v string) (time.Time, error) {
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return time.Time{}, fmt.Errorf("%s exited", *label)
				}
				if l == v {
					return time.Now(), nil
				}
			case <-timeout:
				return time.Time{}, fmt.Errorf("%s: no line %q within 30s", *label, v)
			}
		}
	}
	if _, err := waitFor("v0"); err != nil {
		fail(err)
	}
	var ds []time.Duration
	for i := 1; i <= *n; i++ {
		time.Sleep(*pause)
		v := fmt.Sprintf("v%d", i)
		t0 := time.Now()
		if _, err := kv.Put(&api.KVPair{Key: *key, Value: []byte(v)}, nil); err != nil {
			fail(err)
		}
		t1, err := waitFor(v)
		if err != nil {
			fail(err)
		}
		ds = append(ds, t1.Sub(t0))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	pct := func(p float64) time.Duration { return ds[int(p*float64(len(ds)-1)+0.5)] }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
	fmt.Printf("%s %s %s %s\n", *label, ms(pct(0.5)), ms(pct(0.99)), ms(ds[len(ds)-1]))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "latency:", err)
	os.Exit(1)
}
