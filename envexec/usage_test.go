package main

import (
	"strings"
	"testing"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/proctest"
)

func TestBadInput(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := childDir(t)
	child := childArgs(dir, "exit", 0)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{"-prefix", "app"}, "no command given"},
		{"no source", child, "give at least one -prefix"},
		{"empty dc", append([]string{"-prefix", "app@"}, child...), `"app@": empty datacenter`},
		{"empty path", append([]string{"-prefix", "@dc1"}, child...), `"@dc1": empty key path`},
		{"two @", append([]string{"-prefix", "app@a@b"}, child...), "more than one"},
		{"double slash", append([]string{"-prefix", "app//x"}, child...), "empty path segment"},
		{"unknown kill signal", append([]string{"-prefix", "app", "-kill-signal", "SIGBOGUS"}, child...), `unknown signal "SIGBOGUS"`},
		{"unknown change signal", append([]string{"-prefix", "app", "-change-signal", "NOPE"}, child...), `unknown signal "NOPE"`},
		{"bad on-change", append([]string{"-prefix", "app", "-on-change", "reload"}, child...), "want restart, signal or none"},
		{"format before prefix", append([]string{"-format", "X_{{ key }}", "-prefix", "app"}, child...), "after the -prefix"},
		{"bad format", append([]string{"-prefix", "app", "-format", "X_{{ key "}, child...), "format"},
		{"bad export", []string{"-prefix", "app", "-export", "yaml"}, `-export "yaml"`},
		{"export with command", append([]string{"-prefix", "app", "-export", "json"}, child...), "drop the command"},
		{"bad service", append([]string{"-service", "tag.@dc"}, child...), "empty service name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := runEnvexec(t, a.HTTPAddr(), nil, tc.args...)
			if p.code != exitUsage {
				t.Errorf("exit %d, want %d", p.code, exitUsage)
			}
			if !strings.Contains(p.stderr.String(), tc.want) {
				t.Errorf("stderr %q does not say %q", p.stderr, tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(p.stderr.String()), "\n"); lines > 0 {
				t.Errorf("want a one-line error, got:\n%s", p.stderr)
			}
		})
	}
	if len(starts(dir)) != 0 {
		t.Errorf("a child was started on bad input: %v", events(dir))
	}

	// Consul unreachable: it says what it waits for, gives up at
	// -wait-timeout with a clear message, and never starts the command.
	dead := proctest.FreeAddr(t) // nothing listens there
	p := runEnvexec(t, dead, nil, append([]string{"-prefix", "app/config", "-wait-timeout", "2500ms"}, child...)...)
	if p.code != exitWaitTimeout {
		t.Errorf("exit %d, want %d\n%s", p.code, exitWaitTimeout, p.stderr)
	}
	errOut := p.stderr.String()
	for _, want := range []string{"waiting for Consul before starting the command", "-wait-timeout 2.5s expired", "prefix app/config", "connection refused", "not started"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not say %q:\n%s", want, errOut)
		}
	}
	if len(starts(dir)) != 0 {
		t.Errorf("a child was started although Consul never answered")
	}
}
