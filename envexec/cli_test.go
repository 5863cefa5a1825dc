package main

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/cliapp/clitest"
)

// TestPeerInvocations replays envconsul command lines as its README writes
// them (envconsul [options] <command>: -prefix repeated, -upcase, -sanitize,
// -pristine, -once, -no-prefix=false, -consul-addr=, -exec, -kill-signal=,
// "--" before the command, a command's own flags after it), plus the
// ENVEXEC_* variables.
func TestPeerInvocations(t *testing.T) {
	clitest.Replay(t, "envexec", parse,
		[]clitest.Case[*options]{
			{Args: []string{"-prefix", "my-app", "env"}, Check: func(o *options) bool {
				return len(o.prefixes) == 1 && o.prefixes[0].path == "my-app" && o.prefixes[0].noPrefix && slices.Equal(o.argv, []string{"env"})
			}},
			{Args: []string{"-upcase", "-consul-addr=demo.consul.io:80", "-prefix", "redis/config", "redis-server", "--port", "6380"}, Check: func(o *options) bool {
				cfg, err := o.cli.Consul.Config()
				return o.naming.upcase && err == nil && cfg.Address == "demo.consul.io:80" && slices.Equal(o.argv, []string{"redis-server", "--port", "6380"})
			}},
			{Args: []string{"-sanitize", "-upcase", "-prefix", "global/config", "-prefix", "app/config", "--", "./server", "-listen", ":8080"}, Check: func(o *options) bool {
				return len(o.prefixes) == 2 && o.prefixes[1].path == "app/config" && o.naming.sanitize && slices.Equal(o.argv, []string{"./server", "-listen", ":8080"})
			}},
			{Args: []string{"-pristine", "-once", "-no-prefix=false", "-prefix", "app/config", "env"}, Check: func(o *options) bool {
				return o.pristine && o.once && !o.prefixes[0].noPrefix
			}},
			{Args: []string{"-service=web", "-exec", "env | sort", "-kill-signal=SIGTERM", "-exec-kill-timeout=5s", "-log-level=debug"}, Check: func(o *options) bool {
				return len(o.services) == 1 && o.services[0].name == "web" && o.killSignal == syscall.SIGTERM && o.killTimeout == 5*time.Second &&
					o.cli.Log.Level == "debug" && slices.Equal(o.argv, []string{"/bin/sh", "-c", "env | sort"})
			}},
			{Args: []string{"-env-allow", "PATH,LC_*", "-prefix", "app/config", "-format", "APP_{{ key }}", "./server"}, Check: func(o *options) bool {
				return slices.Equal(o.envAllow, []string{"PATH", "LC_*"}) && o.pristine && o.prefixes[0].fmtSrc == "APP_{{ key }}"
			}},
			{Args: []string{"-prefix", "b", "env"}, Env: map[string]string{"ENVEXEC_PREFIX": "a", "ENVEXEC_UPCASE": "true"}, Check: func(o *options) bool {
				return len(o.prefixes) == 2 && o.prefixes[0].path == "a" && o.prefixes[1].path == "b" && o.naming.upcase
			}},
		}...)
}
