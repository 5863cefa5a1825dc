package main

import (
	"slices"
	"testing"
	"time"

	"github.com/berth/berth/pkg/cliapp/clitest"
)

// TestPeerInvocations replays `consul lock` command lines as its
// documentation writes them (consul lock [options] prefix child...; the
// options -child-exit-code, -monitor-retry, -n, -name, -pass-stdin,
// -shell, -timeout, -try, -verbose and the HTTP API options), plus the
// LOCKRUN_* variables: each parses to the same lock and command.
func TestPeerInvocations(t *testing.T) {
	clitest.Replay(t, "lockrun", parse,
		[]clitest.Case[*options]{
			{Args: []string{"service/foo/lock", "./run.sh", "-a", "b"}, Check: func(o *options) bool {
				return o.prefix == "service/foo/lock" && slices.Equal(o.argv, []string{"./run.sh", "-a", "b"}) && o.limit == 1
			}},
			{Args: []string{"-n=3", "-name=batch", "service/foo/sem", "echo hi; sleep 1"}, Check: func(o *options) bool {
				return o.limit == 3 && o.name == "batch" && slices.Equal(o.argv, []string{"/bin/sh", "-c", "echo hi; sleep 1"})
			}},
			{Args: []string{"-child-exit-code", "-timeout=30s", "-verbose", "-monitor-retry=0", "locks/x", "cmd", "arg"}, Check: func(o *options) bool {
				return o.childExitCode && o.timeout == 30*time.Second && o.cli.Log.Level == "debug" && o.monitorRetry.set && o.monitorRetry.v == 0
			}},
			{Args: []string{"-try", "5s", "-shell=false", "-pass-stdin", "p", "echo a,b"}, Check: func(o *options) bool {
				return o.timeout == 5*time.Second && o.passStdin && slices.Equal(o.argv, []string{"echo a,b"})
			}},
			{Args: []string{"-http-addr=127.0.0.1:8500", "-token=secret", "-datacenter=dc2", "-stale", "p", "--", "cmd", "-n", "2"}, Check: func(o *options) bool {
				cfg, err := o.cli.Consul.Config()
				return err == nil && cfg.Address == "127.0.0.1:8500" && cfg.Token == "secret" && cfg.Datacenter == "dc2" && o.cli.Consul.Stale() &&
					slices.Equal(o.argv, []string{"cmd", "-n", "2"}) && o.limit == 1
			}},
			{Args: []string{"-n", "2", "p", "cmd"}, Env: map[string]string{"LOCKRUN_N": "5", "LOCKRUN_TIMEOUT": "1m", "CONSUL_HTTP_ADDR": "10.1.1.1:8500"}, Check: func(o *options) bool {
				cfg, err := o.cli.Consul.Config()
				return o.limit == 2 && o.timeout == time.Minute && err == nil && cfg.Address == "10.1.1.1:8500"
			}},
		}...)
}
