package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

var agent *consultest.Agent

// TestMain doubles the test binary as envexec itself (argv[1] == "__envexec")
// and as the child that records what it was given (argv[1] == "__child"), so
// no other build is needed and every run goes through real processes.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "__envexec":
			os.Exit(run(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
		case "__child":
			os.Exit(childMain(os.Args[2:]))
		}
	}
	os.Exit(consultest.Main(m, &agent))
}

// proc is a running envexec: the test binary run as envexec (see TestMain).
type proc struct {
	t              *testing.T
	run            *proctest.Proc
	stdout, stderr *eventually.Buffer // run's output
	code           int                // the exit code, once wait has returned it
}

// startEnvexec runs envexec with args against addr, with extra environment.
func startEnvexec(t *testing.T, addr string, extraEnv []string, args ...string) *proc {
	t.Helper()
	return startEnvexecArgs(t, extraEnv, append([]string{"-http-addr", addr}, args...))
}

// startEnvexecArgs runs envexec with exactly args, with extra environment.
func startEnvexecArgs(t *testing.T, extraEnv []string, args []string) *proc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{"__envexec"}, args...)...)
	cmd.Env = append(append(os.Environ(), "CONSUL_HTTP_TOKEN=", "CONSUL_HTTP_TOKEN_FILE="), extraEnv...)
	run := proctest.Start(t, cmd, proctest.Options{})
	return &proc{t: t, run: run, stdout: run.Stdout, stderr: run.Stderr}
}

// wait waits for envexec to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	p.code = p.run.Wait(p.t, timeout)
	return p.code
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	p.run.Signal(p.t, sig)
}

// runEnvexec runs envexec to completion.
func runEnvexec(t *testing.T, addr string, extraEnv []string, args ...string) *proc {
	t.Helper()
	p := startEnvexec(t, addr, extraEnv, args...)
	p.wait(60 * time.Second)
	return p
}

func put(t *testing.T, c *api.Client, key, value string) {
	t.Helper()
	consultest.Put(t, c, key, value)
}

func del(t *testing.T, c *api.Client, key string) {
	t.Helper()
	if _, err := c.KV().Delete(key, nil); err != nil {
		t.Fatal(err)
	}
}

// nsWith is how most tests start: the package's agent (the test skips
// without one), a client for it, and the test's own KV namespace (ns)
// holding kv, pairs of a key relative to the namespace and its value.
func nsWith(t *testing.T, kv ...string) (*consultest.Agent, *api.Client, string) {
	t.Helper()
	if len(kv)%2 != 0 {
		t.Fatalf("nsWith: key %q has no value", kv[len(kv)-1])
	}
	a := consultest.Require(t, agent)
	c := a.Client()
	n := ns(t)
	for i := 0; i < len(kv); i += 2 {
		put(t, c, n+"/"+kv[i], kv[i+1])
	}
	return a, c, n
}

// ns is a KV namespace of the test's own.
func ns(t *testing.T) string {
	return "envexec-test/" + regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(t.Name(), "-")
}

// onlyConsul keeps the variables of env that are not in the test process's
// own environment (those envexec added).
func onlyConsul(env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if _, inherited := os.LookupEnv(k); inherited && k != "PORT" {
			continue
		}
		switch k {
		case "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_HTTP_ADDR":
			continue
		}
		out[k] = v
	}
	return out
}

func fmtEnv(env map[string]string) string {
	var lines []string
	for k, v := range env {
		lines = append(lines, fmt.Sprintf("%s=%q", k, v))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func c(a *consultest.Agent) *api.Client { return a.Client() }
