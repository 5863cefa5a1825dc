package main

// The differential conformance suite: every case renders the same template
// (or config, or flags) with consul-template v0.41.1 itself and with
// templater, both with -once against the package's shared agent and its
// seeded data, and compares the written bytes and the exit codes. The peer is
// the oracle; no case states an expected output of its own.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

// ctVersion is the consul-template release the suite compares with (the
// Makefile's CT_VERSION, bench/templater.sh's CT_VERSION).
const ctVersion = "v0.41.1"

// peerBinary finds consul-template: $CONSUL_TEMPLATE_BIN, else the path
// `make peers` installs to (keyed by version), else the one
// bench/templater.sh installs. Missing: proctest.Need (fails with CI=true,
// skips otherwise).
func peerBinary(t testing.TB) string {
	t.Helper()
	var cands []string
	if p := os.Getenv("CONSUL_TEMPLATE_BIN"); p != "" {
		cands = append(cands, p)
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	if first := strings.Split(strings.TrimSpace(string(gopath)), ":")[0]; first != "" {
		peers := filepath.Join(first, "berth-tools", "peers")
		cands = append(cands, filepath.Join(peers, "consul-template-"+ctVersion), filepath.Join(peers, "consul-template"))
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	proctest.Need(t, "consul-template "+ctVersion+" (`make peers`)", fmt.Errorf("not found (tried %s)", strings.Join(cands, ", ")))
	return ""
}

// outcome is what one tool did with one case.
type outcome struct {
	Code   int    // exit code; -1: still running at the deadline (killed)
	Out    string // the destination's bytes
	Wrote  bool   // whether the destination exists
	Stdout string
	Stderr string
}

func (o outcome) String() string {
	if !o.Wrote {
		return fmt.Sprintf("exit %d, nothing written", o.Code)
	}
	return fmt.Sprintf("exit %d, wrote %q", o.Code, o.Out)
}

// ctEnv is the environment both tools run with: the same for both, nothing
// of the test process's own.
var ctEnv = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "CT_ENV=from-env", "CT_EMPTY=", "CT_SPACES=  a b  "}

// runTool runs one tool with args in dir and returns its outcome, reading
// dst afterwards. A run still going after the deadline is killed (Code -1).
func runTool(t *testing.T, bin, dir, dst string, deadline time.Duration, args ...string) outcome {
	t.Helper()
	return runToolEnv(t, bin, dir, dst, deadline, nil, args...)
}

// runToolEnv is runTool with NAME=VALUE entries added to ctEnv.
func runToolEnv(t *testing.T, bin, dir, dst string, deadline time.Duration, env []string, args ...string) outcome {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(append([]string{}, ctEnv...), env...)
	p := proctest.Start(t, cmd, proctest.Options{})
	o := outcome{Code: -1}
	if !p.Exited(deadline) {
		_ = cmd.Process.Kill()
		<-p.Done()
	} else {
		var ee *exec.ExitError
		switch err := p.Err(); {
		case err == nil:
			o.Code = 0
		case errors.As(err, &ee):
			o.Code = ee.ExitCode()
		default:
			t.Fatalf("run %s: %v", bin, err)
		}
	}
	o.Stdout, o.Stderr = p.Stdout.String(), p.Stderr.String()
	if dst != "" {
		if b, err := os.ReadFile(dst); err == nil {
			o.Out, o.Wrote = string(b), true
		}
	}
	return o
}

// both runs consul-template and templater on the same template text, each in
// a folder of its own, with the given extra flags, and returns both outcomes.
func both(t *testing.T, text string, flags ...string) (peer, ours outcome) {
	t.Helper()
	ct := peerBinary(t)
	a := consultest.Require(t, agent)
	run := func(bin, name string) outcome {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		src, dst := filepath.Join(dir, "in.tmpl"), filepath.Join(dir, "out")
		if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-once", "-consul-addr", a.HTTPAddr(), "-log-level", "err", "-template", src + ":" + dst}, flags...)
		return runTool(t, bin, dir, dst, 30*time.Second, args...)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); peer = run(ct, "peer") }()
	ours = run(binary(t), "ours")
	wg.Wait()
	return peer, ours
}

// sameOutcome fails t when the outcomes differ in exit code or bytes.
func sameOutcome(t *testing.T, what string, peer, ours outcome) {
	t.Helper()
	if peer.Code != ours.Code || peer.Wrote != ours.Wrote || peer.Out != ours.Out {
		t.Errorf("%s:\nconsul-template: %s\n  stderr: %s\ntemplater:       %s\n  stderr: %s", what, peer, lastLines(peer.Stderr), ours, lastLines(ours.Stderr))
	}
}

func lastLines(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > 4 {
		l = l[len(l)-4:]
	}
	return strings.Join(l, "\n    ")
}

var (
	conformOnce sync.Once
	conformErr  error
)

// seedConform puts the suite's data into the shared agent once: values of
// tricky shapes under ct/, services with several instances, tags, meta and
// every health state. Only this suite reads ct/ and the ct-* services.
func seedConform(t *testing.T) *api.Client {
	t.Helper()
	c := seed(t)
	conformOnce.Do(func() { conformErr = seedConformData(c) })
	if conformErr != nil {
		t.Fatalf("seed: %v", conformErr)
	}
	return c
}

func seedConformData(c *api.Client) error {
	kv := map[string]string{
		"ct/name": "hello", "ct/empty": "", "ct/spaces": "  padded  ", "ct/multi": "l1\nl2\n\nl4",
		"ct/unicode/ключ": "значение ✓", "ct/unicode/日本": "語", "ct/dotted.key": "dv", "ct/dotted/a.b/c": "deep",
		"ct/app/sub/x": "1", "ct/app/sub/deep/y": "2", "ct/app/top": "t", "ct/app/sub/empty": "",
		"ct/apple/x": "sibling", "ct/applejuice": "prefix-not-folder",
		"ct/json":        `{"b":[1,2,{"c":"d"}],"a":{"n":null,"t":true,"f":1.5},"html":"<a&b>","big":12345678901234567890}`,
		"ct/jsonlist":    `[{"name":"x","port":1},{"name":"y","port":2}]`,
		"ct/badjson":     `{"a":`,
		"ct/yaml":        "a: 1\nb:\n  - x\n  - y\nc:\n  d: e\n",
		"ct/list":        "a,b,,c",
		"ct/map":         "a=1,b=2,c,d=x=y",
		"ct/num":         "42",
		"ct/neg":         "-7",
		"ct/float":       "1.5",
		"ct/bool":        "true",
		"ct/b64":         "aGVsbG8gd29ybGQ=",
		"ct/cfg/db/host": "db1", "ct/cfg/db/port": "5432", "ct/cfg/web/port": "80", "ct/cfg/top": "x",
	}
	for k, v := range kv {
		if _, err := c.KV().Put(&api.KVPair{Key: k, Value: []byte(v), Flags: 7}, nil); err != nil {
			return err
		}
	}
	for _, k := range []string{"ct/app/folder/", "ct/cfg/emptyfolder/"} {
		if _, err := c.KV().Put(&api.KVPair{Key: k}, nil); err != nil {
			return err
		}
	}
	regs := []*api.AgentServiceRegistration{
		{ID: "ctw1", Name: "ctweb", Port: 8101, Tags: []string{"prod", "v1"}, Meta: map[string]string{"zone": "a", "ver": "1"}},
		{ID: "ctw2", Name: "ctweb", Port: 8102, Tags: []string{"v2", "prod"}, Meta: map[string]string{"zone": "b"}, Address: "127.0.0.2"},
		{ID: "ctw3", Name: "ctweb", Port: 8103, Tags: []string{"prod"}, Check: &api.AgentServiceCheck{TTL: "10m", Status: "critical"}},
		{ID: "ctw4", Name: "ctweb", Port: 8104, Tags: []string{"canary"}, Check: &api.AgentServiceCheck{TTL: "10m", Status: "warning"}},
		{ID: "ctw5", Name: "ctweb", Port: 8105, Tags: []string{"maint"}, Weights: &api.AgentWeights{Passing: 3, Warning: 1}},
		{ID: "ctdot", Name: "ct.dotted", Port: 9200, Tags: []string{"x"}},
		{ID: "ctnative", Name: "ctnative", Port: 9300, Connect: &api.AgentServiceConnect{Native: true}},
	}
	for _, r := range regs {
		if err := c.Agent().ServiceRegister(r); err != nil {
			return err
		}
	}
	if err := c.Agent().EnableServiceMaintenance("ctw5", "conformance"); err != nil {
		return err
	}
	for i := 0; i < 200; i++ {
		es, _, err := c.Health().Service("ctweb", "", false, nil)
		if err == nil && len(es) == 5 {
			n := 0
			for _, e := range es {
				n += len(e.Checks)
			}
			if n >= 8 { // serf for all five, own TTL check for ctw3 and ctw4, maintenance for ctw5
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("ctweb instances did not show up with their checks")
}
