package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
)

func TestChildEnvArgsAndExitCodes(t *testing.T) {
	a := consultest.Require(t, agent)
	r := runLR(t, a, "test/env", "printf", "%s|", "a b", "$HOME", `"q"`)
	if r.code != 0 || r.stdout != `a b|$HOME|"q"|` {
		t.Fatalf("args not exec'd as given: %q (exit %d, %s)", r.stdout, r.code, r.stderr)
	}
	r = runLR(t, a, "test/env", `echo one; echo "$CONSUL_LOCK_HELD $LOCKRUN_SESSION $LOCKRUN_TOKEN"`)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || lines[0] != "one" {
		t.Fatalf("shell string not run with sh -c: %q", r.stdout)
	}
	f := strings.Fields(lines[1])
	if len(f) != 3 || f[0] != "true" || len(f[1]) != 36 {
		t.Fatalf("child env: %q", lines[1])
	}
	if _, err := strconv.ParseUint(f[2], 10, 64); err != nil {
		t.Fatalf("LOCKRUN_TOKEN %q not a number", f[2])
	}
	// PREFIX -- COMMAND ARGS: the separator is not the command (issue 11).
	if r = runLR(t, a, "test/env", "--", "echo", "after", "dashes"); r.code != 0 || strings.TrimSpace(r.stdout) != "after dashes" {
		t.Fatalf("PREFIX -- COMMAND: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r = runLR(t, a, "-shell=true", "test/env", "echo", "joined", "words"); strings.TrimSpace(r.stdout) != "joined words" {
		t.Fatalf("-shell=true: %q", r.stdout)
	}
	if r = runLR(t, a, "-shell=false", "test/env", "echo hi"); r.code != exitChildStart || !strings.Contains(r.stderr, "echo hi") {
		t.Fatalf("-shell=false with one string: exit %d %q", r.code, r.stderr)
	}
	if r = runLR(t, a, "test/env", "exit 3"); r.code != 0 {
		t.Fatalf("failed child without -child-exit-code: exit %d, want 0 as consul lock", r.code)
	}
	if r = runLR(t, a, "-child-exit-code", "test/env", "exit 3"); r.code != 3 {
		t.Fatalf("-child-exit-code: exit %d, want 3", r.code)
	}
	if r = runLR(t, a, "-child-exit-code", "test/env", "kill -KILL $$"); r.code != 128+9 {
		t.Fatalf("-child-exit-code with signal death: exit %d, want 137", r.code)
	}
	// -pass-stdin
	cmd := command(a, lockrunB, "-pass-stdin", "test/env", "cat")
	cmd.Stdin = strings.NewReader("from stdin")
	out, err := cmd.Output()
	if err != nil || string(out) != "from stdin" {
		t.Fatalf("-pass-stdin: %q %v", out, err)
	}
	cmd = command(a, lockrunB, "test/env", "cat")
	cmd.Stdin = strings.NewReader("from stdin")
	if out, _ = cmd.Output(); len(out) != 0 {
		t.Fatalf("stdin given without -pass-stdin: %q", out)
	}
}

func TestBadInput(t *testing.T) {
	a := consultest.Require(t, agent)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "missing PREFIX"},
		{[]string{"only-prefix"}, exitUsage, "missing COMMAND"},
		{[]string{"-n", "0", "p", "true"}, exitUsage, "-n 0"},
		{[]string{"-n", "-3", "p", "true"}, exitUsage, "-n -3"},
		{[]string{"-timeout", "-1s", "p", "true"}, exitUsage, "-timeout"},
		{[]string{"-kill-timeout", "0s", "p", "true"}, exitUsage, "-kill-timeout"},
		{[]string{"-monitor-retry", "-1", "p", "true"}, exitUsage, "-monitor-retry"},
		{[]string{"-shell=maybe", "p", "true"}, exitUsage, "-shell"},
		{[]string{"-no-such-flag", "p", "true"}, exitUsage, "no-such-flag"},
		{[]string{"-log-format", "xml", "p", "true"}, exitUsage, "xml"},
		{[]string{"/", "true"}, exitUsage, "PREFIX"},
		{[]string{"-http-addr", "127.0.0.1:1", "-timeout", "1s", "p", "true"}, exitConsul, "unreachable"},
		{[]string{"-kill-timeout", "13s", "p", "true"}, exitUsage, "-kill-timeout 13s with -lock-delay 15s"},
		{[]string{"-lock-delay", "0s", "p", "true"}, exitUsage, "-lock-delay 0s"},
		{[]string{"p", "--"}, exitUsage, "missing COMMAND after --"},
		{[]string{"p", "/nonexistent/cmd"}, exitChildStart, "/nonexistent/cmd"},
	}
	for _, c := range cases {
		r := runLR(t, a, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("lockrun %q: exit %d stderr %q; want exit %d and %q", c.args, r.code, r.stderr, c.code, c.want)
		}
		if c.code == exitUsage && strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 && !strings.Contains(r.stderr, "Usage") {
			t.Errorf("lockrun %q: error is not one line: %q", c.args, r.stderr)
		}
	}
}

func TestACLTokenAndTLS(t *testing.T) {
	const token = "5d3c1a7e-0f7e-4c55-9a1b-7e2f7f1e9c42"
	a, tokenFile := consultest.StartSecureT(t, "lockrun-secure", token)
	base := func(extra ...string) *exec.Cmd {
		args := append(append([]string{"-verbose", "-http-addr", "https://" + a.HTTPSAddr()}, a.TLSFlags()...), extra...)
		cmd := exec.Command(lockrunB, args...)
		// A clean environment: nothing but what the flags give.
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		return cmd
	}
	cmd := base("-token-file", tokenFile, "test/secure", "echo held $LOCKRUN_TOKEN")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "held ") {
		t.Fatalf("over HTTPS with -token-file: %v\n%s", err, out)
	}
	if strings.Contains(string(out), token) {
		t.Fatalf("the token appears in lockrun's output:\n%s", out)
	}
	// The same token from the environment.
	cmd = base("test/secure", "true")
	cmd.Env = append(cmd.Env, "CONSUL_HTTP_TOKEN_FILE="+tokenFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CONSUL_HTTP_TOKEN_FILE: %v\n%s", err, out)
	}
	// No token: refused with the Consul-unreachable-or-refusing code.
	cmd = base("test/secure", "true")
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitConsul || !strings.Contains(string(out), "Permission denied") {
		t.Fatalf("without a token: %v\n%s", err, out)
	}
	// Wrong CA: refused, naming the TLS problem.
	cmd = base("-token-file", tokenFile, "-ca-file", tokenFile, "test/secure", "true")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "certificate") && !strings.Contains(strings.ToLower(string(out)), "tls") {
		t.Fatalf("bad CA file: %v\n%s", err, out)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	maddr := proctest.FreeAddr(t)
	startLR(t, a, "-metrics-addr", maddr, "test/metrics", "touch "+dir+"/held; sleep 300") // stopped at the end
	eventually.True(t, 20*time.Second, "holder", func() bool { _, err := os.Stat(dir + "/held"); return err == nil })
	proctest.WantMetrics(t, maddr,
		proctest.Sample{Name: "berth_lockrun_held", Value: 1},
		proctest.Sample{Name: "berth_lockrun_acquisitions_total", Value: 1},
		proctest.Sample{Name: "berth_lockrun_wait_seconds_count", Value: 1})
	if _, h := proctest.Get(t, maddr, "/health"); strings.TrimSpace(h) != "ok" {
		t.Errorf("/health = %q", h)
	}
	// A busy address is a usage error naming it.
	r := runLR(t, a, "-metrics-addr", maddr, "test/metrics2", "true")
	if r.code != exitUsage || !strings.Contains(r.stderr, "-metrics-addr") {
		t.Errorf("busy -metrics-addr: exit %d %q", r.code, r.stderr)
	}
}
