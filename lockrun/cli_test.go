package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/cliapp/clitest"
	"github.com/berth/berth/pkg/consultest"
)

// TestPeerInvocations replays `consul lock` command lines as its
// documentation writes them (consul lock [options] prefix child...; the
// options -child-exit-code, -monitor-retry, -n, -name, -pass-stdin,
// -shell, -timeout, -try, -verbose and the HTTP API options), plus the
// LOCKRUN_* variables: each parses to the same lock and command.
func TestPeerInvocations(t *testing.T) {
	clitest.Replay(t, "lockrun", parse, cliView, []clitest.Case{
		{Args: []string{"service/foo/lock", "./run.sh", "-a", "b"},
			Want: clitest.View{"prefix": "service/foo/lock", "argv": []string{"./run.sh", "-a", "b"}, "n": 1}},
		{Args: []string{"-n=3", "-name=batch", "service/foo/sem", "echo hi; sleep 1"}, Env: map[string]string{"SHELL": ""},
			Want: clitest.View{"n": 3, "name": "batch", "argv": []string{"/bin/sh", "-c", "echo hi; sleep 1"}}},
		{Args: []string{"-shell", "p", "echo", "{a,b}"}, Env: map[string]string{"SHELL": "/bin/zsh"},
			Want: clitest.View{"argv": []string{"/bin/zsh", "-c", "echo {a,b}"}}},
		{Args: []string{"p", "echo {a,b}"}, Env: map[string]string{"SHELL": "/usr/sbin/nologin"},
			Want: clitest.View{"argv": []string{"/bin/sh", "-c", "echo {a,b}"}}},
		{Args: []string{"-child-exit-code", "-timeout=30s", "-verbose", "-monitor-retry=0", "locks/x", "cmd", "arg"},
			Want: clitest.View{"child-exit-code": true, "timeout": "30s", "log-level": "debug", "monitor-retry": "0"}},
		{Args: []string{"-try", "5s", "-shell=false", "-pass-stdin", "p", "echo a,b"},
			Want: clitest.View{"timeout": "5s", "pass-stdin": true, "argv": []string{"echo a,b"}}},
		{Args: []string{"-http-addr=127.0.0.1:8500", "-token=secret", "-datacenter=dc2", "-stale", "p", "--", "cmd", "-n", "2"},
			Want: clitest.View{"consul-address": "127.0.0.1:8500", "consul-token": "secret", "consul-datacenter": "dc2", "consul-stale": true,
				"argv": []string{"cmd", "-n", "2"}, "n": 1}},
		{Args: []string{"-n", "2", "p", "cmd"}, Env: map[string]string{"LOCKRUN_N": "5", "LOCKRUN_TIMEOUT": "1m", "CONSUL_HTTP_ADDR": "10.1.1.1:8500"},
			Want: clitest.View{"n": 2, "timeout": "1m0s", "consul-address": "10.1.1.1:8500"}},
	})
}

// cliView is a parsed command line as the cases name it.
func cliView(o *options) clitest.View {
	return clitest.View{"prefix": o.prefix, "argv": o.argv, "n": o.limit, "name": o.name, "timeout": o.timeout, "child-exit-code": o.childExitCode,
		"log-level": o.cli.Log.Level, "monitor-retry": o.monitorRetry.String(), "pass-stdin": o.passStdin}.WithConsul(&o.cli.Consul)
}

// TestHelpAsConsulLock: consul lock -h prints its help on standard output
// and exits 0 (Consul's cli.Command help); lockrun's goes there too, so
// `lockrun -h | less` works as it did. The real binary is the oracle.
func TestHelpAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	run := func(bin string, args ...string) (int, string, string) {
		cmd := command(a, bin, args...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}
	wantCode, wantOut, wantErr := run(a.Bin, "lock", "-h")
	code, out, errOut := run(lockrunPath(t), "-h")
	if code != wantCode || (out != "") != (wantOut != "") || (errOut != "") != (wantErr != "") {
		t.Errorf("lockrun -h: exit %d, %d bytes out, %d bytes err; consul lock -h: exit %d, %d bytes out, %d bytes err",
			code, len(out), len(errOut), wantCode, len(wantOut), len(wantErr))
	}
}
