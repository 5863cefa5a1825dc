package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWholeKVStorePrefix: -prefix / (one leading "/" dropped: envconsul
// config_prefix.go ParsePrefixConfig), -prefix "" and a file's prefix
// block without a path list the whole KV store, each variable named by its
// whole key, as envconsul's KV query does with an empty path
// (consul-template v0.41.1 dependency/kv_list.go NewKVListQuery, Fetch).
// Such a blank prefix stays when it is last or alone; followed by others it
// is overwritten by them (envconsul's PrefixConfigs.Finalize, three times,
// see envconsulPrefixList).
func TestWholeKVStorePrefix(t *testing.T) {
	a, _, n := nsWith(t, "app/X", "1")
	whole := n + "/app/X"
	cases := []struct {
		name      string
		args      []string
		wantWhole bool // the whole key as a name
		wantX     bool // X from -prefix n/app
	}{
		{"slash", []string{"-prefix", "/"}, true, false},
		{"empty", []string{"-prefix", ""}, true, false},
		{"blank last", []string{"-prefix", n + "/app", "-prefix", "/"}, true, true},
		{"blank first", []string{"-prefix", "/", "-prefix", n + "/app"}, false, true},
		// Two blanks first: one pass of Finalize leaves "", app, app; envconsul
		// finalizes three times (cli.go loadConfigs, cli.go Run, runner.go
		// init), which leaves app three times: no whole store.
		{"two blanks first", []string{"-prefix", "/", "-prefix", "", "-prefix", n + "/app"}, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := childDir(t)
			p := runEnvexec(t, a.HTTPAddr(), nil, append(append([]string{"-once"}, tc.args...), childArgs(dir, "exit", 0)...)...)
			if p.code != 0 {
				t.Fatalf("exit %d\n%s", p.code, p.stderr)
			}
			env := lastEnv(t, dir)
			if got := env[whole] == "1"; got != tc.wantWhole {
				t.Errorf("%s=%q, want it set: %v", whole, env[whole], tc.wantWhole)
			}
			if got := env["X"] == "1"; got != tc.wantX {
				t.Errorf("X=%q, want it set: %v", env["X"], tc.wantX)
			}
		})
	}

	// A file's prefix block without a path, with a format.
	cfg := filepath.Join(t.TempDir(), "c.hcl")
	if err := os.WriteFile(cfg, []byte(`prefix { format = "W_{{ key }}" }`), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := childDir(t)
	p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-once", "-config", cfg}, childArgs(dir, "exit", 0)...)...)
	if p.code != 0 {
		t.Fatalf("prefix block without a path: exit %d\n%s", p.code, p.stderr)
	}
	if env := lastEnv(t, dir); env["W_"+whole] != "1" {
		t.Errorf("prefix block without a path: W_%s=%q, want 1", whole, env["W_"+whole])
	}
}

// TestPrefixQueryForm: a -prefix (and a -service) must have the form consul-template
// v0.41.1 accepts (dependency/kv_list.go NewKVListQuery, KVListQueryRe):
// a path of any characters but "@" and "?" (non-ASCII too), then ?QUERY and
// @DC of ASCII word characters; envconsul refuses others when it builds its
// runner (runner.go init), exit 14 (cli.go ExitCodeRunnerError), and so
// does envexec, with one line naming the part at fault.
func TestPrefixQueryForm(t *testing.T) {
	a, _, n := nsWith(t, "ünï/K", "v")
	dir := childDir(t)
	p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-once", "-prefix", n + "/ünï"}, childArgs(dir, "exit", 0)...)...)
	if env := lastEnv(t, dir); p.code != 0 || env["K"] != "v" {
		t.Errorf("non-ASCII path: exit %d, K=%q\n%s", p.code, env["K"], p.stderr)
	}
	for _, tc := range []struct{ prefix, want string }{
		{n + "@dç", `datacenter "dç": only ASCII`},
		{n + "?ns=tëam", `query "ns=tëam": only ASCII`},
		{n + "?ns=a b", `query "ns=a b": only ASCII`},
		{n + "@dc1?ns=x", "the ?query comes before the @datacenter"},
		{n + "?", `empty query after "?"`},
		{"?ns=x", `empty key path before "?"`},
	} {
		dir := childDir(t)
		p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", tc.prefix}, childArgs(dir, "exit", 0)...)...)
		out := strings.TrimSpace(p.stderr.String())
		if p.code != exitRunner || !strings.Contains(out, tc.want) || strings.Contains(out, "\n") {
			t.Errorf("-prefix %q: exit %d, want %d and one line saying %q:\n%s", tc.prefix, p.code, exitRunner, tc.want, out)
		}
		if len(starts(dir)) != 0 {
			t.Errorf("-prefix %q: the command started", tc.prefix)
		}
	}
	// -service likewise (catalog_service.go NewCatalogServiceQuery), all
	// ASCII.
	for _, svc := range []string{"wëb", "web@dç", "web?ns=tëam", "web@dc1?ns=x", "web~", "a b"} {
		dir := childDir(t)
		p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-service", svc}, childArgs(dir, "exit", 0)...)...)
		out := strings.TrimSpace(p.stderr.String())
		if p.code != exitRunner || !strings.Contains(out, fmt.Sprintf("%q: not a service query", svc)) || strings.Contains(out, "\n") {
			t.Errorf("-service %q: exit %d, want %d and one line saying it is not a service query:\n%s", svc, p.code, exitRunner, out)
		}
	}
}
