package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
)

// TestConformRetrySettings: with retries disabled, or a number of attempts
// given (flag or consul { retry { } }), a Consul that does not answer stops
// templater with consul-template's exit code once the retries are used up
// (consul-template config/retry.go RetryFunc, watch/view.go poll). The
// address is a loopback port nothing listens on.
func TestConformRetrySettings(t *testing.T) {
	port, err := consultest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("127.0.0.1:%d", port)
	files := map[string]string{
		"in.tmpl":   `{{ key "ct/name" }}`,
		"retry.hcl": fmt.Sprintf("consul {\n  address = %q\n  retry {\n    attempts = 2\n    backoff = \"10ms\"\n    max_backoff = \"20ms\"\n  }\n}\n", dead),
		"off.hcl":   fmt.Sprintf("consul {\n  address = %q\n  retry {\n    enabled = false\n  }\n}\n", dead),
	}
	for _, c := range [][]string{
		{"-consul-addr", dead, "-consul-retry-attempts=1", "-consul-retry-backoff=10ms"},
		{"-consul-addr", dead, "-consul-retry=false"},
		{"-config", "retry.hcl"},
		{"-config", "off.hcl"},
		{"-once", "-consul-addr", dead, "-consul-retry-attempts=1", "-consul-retry-backoff=10ms"},
	} {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			t.Parallel()
			res, _ := bothIn(t, files, "out", append([]string{"-log-level", "err", "-template", "in.tmpl:out"}, c...)...)
			if res[0].Code == -1 {
				t.Fatalf("consul-template still running after 30s: the case shows nothing")
			}
			sameOutcome(t, strings.Join(c, " "), res[0], res[1])
			if !strings.Contains(res[1].Stderr, "ct/name") {
				t.Errorf("templater's error does not name the query: %q", res[1].Stderr)
			}
		})
	}
}

// TestConformRetryAfterOutage: both tools render from their own agent, which
// then stops; with -consul-retry-attempts both give up with the same exit
// code, the rendered file kept. Their blocking queries succeeded for a
// while first, so the count is of failures in a row.
func TestConformRetryAfterOutage(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{})
	put(t, a.Client(), "retry/k", "v1")
	files := map[string]string{"in.tmpl": `{{ key "retry/k" }}`}
	ds, dirs := startBoth(t, files, "-consul-addr", a.HTTPAddr(), "-log-level", "err",
		"-consul-retry-attempts=2", "-consul-retry-backoff=50ms", "-consul-retry-max-backoff=100ms", "-template", "in.tmpl:out")
	for _, dir := range dirs {
		eventually.True(t, 20*time.Second, "first render", func() bool { return readFile(filepath.Join(dir, "out")) == "v1" })
	}
	a.Stop()
	var codes [2]int
	for i, d := range ds {
		codes[i] = exitOrKill(d)
		if got := readFile(filepath.Join(dirs[i], "out")); got != "v1" {
			t.Errorf("%s: the rendered file became %q", tools(t)[i].name, got)
		}
	}
	if codes[0] != codes[1] {
		t.Errorf("agent gone with -consul-retry-attempts=2: consul-template exit %d, templater %d\n%s", codes[0], codes[1], ds[1].Stdout.String())
	}
}

// TestConformRetryDelays: against a Consul that answers every KV read with
// a 500, consul-template and templater (each with its own such server) read
// as often, wait as long between the reads (compared to the peer's measured
// gaps, not to figures of our own), log as many retries, and end with the
// same exit code. Without backoff flags this compares the default delays;
// with them, the doubling and the cap, a backoff of 0, a backoff above the
// cap, and no delay at all.
func TestConformRetryDelays(t *testing.T) {
	for _, c := range [][]string{
		{"-consul-retry-attempts=3"},
		{"-consul-retry-attempts=5", "-consul-retry-backoff=50ms", "-consul-retry-max-backoff=300ms"},
		{"-consul-retry-attempts=2", "-consul-retry-backoff=0", "-consul-retry-max-backoff=100ms"},
		{"-consul-retry-attempts=2", "-consul-retry-backoff=200ms", "-consul-retry-max-backoff=50ms"},
		{"-consul-retry-attempts=3", "-consul-retry-backoff=0", "-consul-retry-max-backoff=0"},
	} {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			var reads [2][]time.Time
			var wg sync.WaitGroup
			for i, tl := range tools(t) {
				var mu sync.Mutex
				var seen []time.Time // this tool's KV reads
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
						mu.Lock()
						seen = append(seen, time.Now())
						mu.Unlock()
					}
					http.Error(w, "unavailable", http.StatusInternalServerError)
				}))
				defer srv.Close()
				dir := t.TempDir()
				proctest.WriteFile(t, filepath.Join(dir, "in.tmpl"), `{{ key "ct/name" }}`)
				wg.Add(1)
				go func() {
					defer wg.Done()
					res[i] = runTool(t, tl.bin, dir, filepath.Join(dir, "out"), 30*time.Second,
						append([]string{"-log-level", "warn", "-consul-addr", srv.Listener.Addr().String(), "-template", "in.tmpl:out"}, c...)...)
					mu.Lock()
					reads[i] = seen
					mu.Unlock()
				}()
			}
			wg.Wait()
			if res[0].Code == -1 {
				t.Fatalf("consul-template still running after 30s: the case shows nothing")
			}
			sameOutcome(t, strings.Join(c, " "), res[0], res[1])
			if len(reads[0]) != len(reads[1]) {
				t.Fatalf("KV reads: consul-template %d, templater %d", len(reads[0]), len(reads[1]))
			}
			for n := 1; n < len(reads[0]); n++ {
				peer, ours := reads[0][n].Sub(reads[0][n-1]), reads[1][n].Sub(reads[1][n-1])
				// A tenth of the peer's gap, and 10 ms for the two processes' own
				// latencies: jitter of ±20% shows, a busy machine does not.
				if diff := (ours - peer).Abs(); diff > peer/10+10*time.Millisecond {
					t.Errorf("gap before read %d: consul-template %s, templater %s", n+1, peer, ours)
				}
			}
			peerRetries := strings.Count(res[0].Stderr, "(retry attempt ")
			ourRetries := strings.Count(res[1].Stderr, "retrying")
			if peerRetries != ourRetries || !strings.Contains(res[0].Stderr, "exceeded maximum retries") || !strings.Contains(res[1].Stderr, "giving up") {
				t.Errorf("retry lines: consul-template %d, templater %d; give-up lines expected from both\nconsul-template:\n%s\ntemplater:\n%s", peerRetries, ourRetries, res[0].Stderr, res[1].Stderr)
			}
		})
	}
}

// TestRetryJitter: -consul-retry-jitter (templater's own; consul-template
// has no such flag, so nothing to compare with) varies the retry waits,
// which without it are consul-template's (TestConformRetryDelays).
func TestRetryJitter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "unavailable", http.StatusInternalServerError)
	}))
	defer srv.Close()
	dir := t.TempDir()
	proctest.WriteFile(t, filepath.Join(dir, "in.tmpl"), `{{ key "ct/name" }}`)
	args := []string{"-log-level", "warn", "-consul-addr", srv.Listener.Addr().String(), "-template", "in.tmpl:out",
		"-consul-retry-attempts=4", "-consul-retry-backoff=40ms", "-consul-retry-max-backoff=200ms"}
	retryIn := regexp.MustCompile(`retry_in=(\S+)`)
	delays := func(args ...string) string {
		res := runTool(t, binary(t), dir, filepath.Join(dir, "out"), 30*time.Second, args...)
		var got []string
		for _, m := range retryIn.FindAllStringSubmatch(res.Stderr, -1) {
			got = append(got, m[1])
		}
		return strings.Join(got, " ")
	}
	exact := delays(args...)
	if strings.Count(exact, " ") != 3 {
		t.Fatalf("retry delays %q, want 4", exact)
	}
	if got := delays(append(args, "-consul-retry-jitter")...); strings.Count(got, " ") != 3 || got == exact {
		t.Errorf("-consul-retry-jitter: retry delays %q, want 4 other than %q", got, exact)
	}
}
