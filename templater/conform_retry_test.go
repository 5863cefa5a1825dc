package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
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
