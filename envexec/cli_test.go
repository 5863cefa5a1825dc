package main

import (
	"io"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestPeerInvocations replays envconsul command lines as its README writes
// them (envconsul [options] <command>: -prefix repeated, -upcase, -sanitize,
// -pristine, -once, -no-prefix=false, -consul-addr=, -exec, -kill-signal=,
// "--" before the command, a command's own flags after it), plus the
// ENVEXEC_* variables.
func TestPeerInvocations(t *testing.T) {
	for _, k := range []string{"CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "ENVEXEC_PREFIX", "ENVEXEC_UPCASE"} {
		t.Setenv(k, "")
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		chk  func(o *options) bool
	}{
		{[]string{"-prefix", "my-app", "env"}, nil, func(o *options) bool {
			return len(o.prefixes) == 1 && o.prefixes[0].path == "my-app" && o.prefixes[0].noPrefix && slices.Equal(o.argv, []string{"env"})
		}},
		{[]string{"-upcase", "-consul-addr=demo.consul.io:80", "-prefix", "redis/config", "redis-server", "--port", "6380"}, nil, func(o *options) bool {
			cfg, err := o.consul.Config()
			return o.naming.upcase && err == nil && cfg.Address == "demo.consul.io:80" && slices.Equal(o.argv, []string{"redis-server", "--port", "6380"})
		}},
		{[]string{"-sanitize", "-upcase", "-prefix", "global/config", "-prefix", "app/config", "--", "./server", "-listen", ":8080"}, nil, func(o *options) bool {
			return len(o.prefixes) == 2 && o.prefixes[1].path == "app/config" && o.naming.sanitize && slices.Equal(o.argv, []string{"./server", "-listen", ":8080"})
		}},
		{[]string{"-pristine", "-once", "-no-prefix=false", "-prefix", "app/config", "env"}, nil, func(o *options) bool {
			return o.pristine && o.once && !o.prefixes[0].noPrefix
		}},
		{[]string{"-service=web", "-exec", "env | sort", "-kill-signal=SIGTERM", "-exec-kill-timeout=5s", "-log-level=debug"}, nil, func(o *options) bool {
			return len(o.services) == 1 && o.services[0].name == "web" && o.killSignal == syscall.SIGTERM && o.killTimeout == 5*time.Second &&
				o.logs.Level == "debug" && slices.Equal(o.argv, []string{"/bin/sh", "-c", "env | sort"})
		}},
		{[]string{"-env-allow", "PATH,LC_*", "-prefix", "app/config", "-format", "APP_{{ key }}", "./server"}, nil, func(o *options) bool {
			return slices.Equal(o.envAllow, []string{"PATH", "LC_*"}) && o.pristine && o.prefixes[0].fmtSrc == "APP_{{ key }}"
		}},
		{[]string{"-prefix", "b", "env"}, map[string]string{"ENVEXEC_PREFIX": "a", "ENVEXEC_UPCASE": "true"}, func(o *options) bool {
			return len(o.prefixes) == 2 && o.prefixes[0].path == "a" && o.prefixes[1].path == "b" && o.naming.upcase
		}},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		o, err := parse(tc.args, io.Discard, io.Discard)
		if err != nil || !tc.chk(o) {
			t.Errorf("envexec %q (env %v): %v; options %+v", tc.args, tc.env, err, o)
		}
		for k := range tc.env {
			t.Setenv(k, "")
		}
	}
}
