package main

import (
	"testing"

	"github.com/berth/berth/pkg/cliapp/clitest"
	"github.com/berth/berth/pkg/supervisor"
)

// TestPeerInvocations replays envconsul command lines as its README writes
// them (envconsul [options] <command>: -prefix repeated, -upcase, -sanitize,
// -pristine, -once, -no-prefix=false, -consul-addr=, -exec, -kill-signal=,
// "--" before the command, a command's own flags after it), plus the
// ENVEXEC_* variables.
func TestPeerInvocations(t *testing.T) {
	clitest.Replay(t, "envexec", parse, cliView, []clitest.Case{
		{Args: []string{"-prefix", "my-app", "env"},
			Want: clitest.View{"prefixes": []string{"my-app"}, "prefix-no-prefix": []bool{true}, "argv": []string{"env"}}},
		{Args: []string{"-upcase", "-consul-addr=demo.consul.io:80", "-prefix", "redis/config", "redis-server", "--port", "6380"},
			Want: clitest.View{"upcase": true, "consul-address": "demo.consul.io:80", "argv": []string{"redis-server", "--port", "6380"}}},
		{Args: []string{"-sanitize", "-upcase", "-prefix", "global/config", "-prefix", "app/config", "--", "./server", "-listen", ":8080"},
			Want: clitest.View{"prefixes": []string{"global/config", "app/config"}, "sanitize": true, "argv": []string{"./server", "-listen", ":8080"}}},
		{Args: []string{"-pristine", "-once", "-no-prefix=false", "-prefix", "app/config", "env"},
			Want: clitest.View{"pristine": true, "once": true, "prefix-no-prefix": []bool{false}}},
		{Args: []string{"-service=web", "-exec", "env | sort", "-kill-signal=SIGTERM", "-exec-kill-timeout=5s", "-log-level=debug"},
			Want: clitest.View{"services": []string{"web"}, "kill-signal": "SIGTERM", "kill-timeout": "5s", "log-level": "debug",
				"argv": []string{"/bin/sh", "-c", "env | sort"}}},
		{Args: []string{"-env-allow", "PATH,LC_*", "-prefix", "app/config", "-format", "APP_{{ key }}", "./server"},
			Want: clitest.View{"env-allow": []string{"PATH", "LC_*"}, "pristine": true, "prefix-formats": []string{"APP_{{ key }}"}}},
		{Args: []string{"-prefix", "b", "env"}, Env: map[string]string{"ENVEXEC_PREFIX": "a", "ENVEXEC_UPCASE": "true"},
			Want: clitest.View{"prefixes": []string{"a", "b"}, "upcase": true}},
	})
}

// cliView is a parsed command line as the cases name it.
func cliView(o *options) clitest.View {
	var paths, formats, services []string
	var noPrefix []bool
	for _, p := range o.prefixes {
		paths, formats, noPrefix = append(paths, p.path), append(formats, p.fmtSrc), append(noPrefix, p.noPrefix)
	}
	for _, s := range o.services {
		services = append(services, s.name)
	}
	return clitest.View{"prefixes": paths, "prefix-formats": formats, "prefix-no-prefix": noPrefix, "services": services,
		"upcase": o.naming.upcase, "sanitize": o.naming.sanitize, "pristine": o.pristine, "once": o.once, "env-allow": o.envAllow,
		"kill-signal": supervisor.SignalName(o.killSignal), "kill-timeout": o.killTimeout, "log-level": o.cli.Log.Level,
		"argv": o.argv}.WithConsul(&o.cli.Consul)
}
