package main

import (
	"io"
	"strings"
	"testing"
)

func TestNameProblem(t *testing.T) {
	// Any name the kernel's NAME=value can carry passes, as envconsul passes
	// any non-blank key (runner.go, appendPrefixes).
	for s, ok := range map[string]bool{
		"A": true, "_x": true, "db_host": true, "1A": true, "db/host": true, "a-b": true, "log.level": true, "é": true, "a b": true,
		"": false, "  ": false, "a=b": false, "a\x00b": false,
	} {
		if got := nameProblem(s) == ""; got != ok {
			t.Errorf("nameProblem(%q) = %q", s, nameProblem(s))
		}
	}
	for s, want := range map[string]bool{"A": true, "_x1": true, "1A": false, "a-b": false, "db/host": false, "": false} {
		if shellName(s) != want {
			t.Errorf("shellName(%q) != %v", s, want)
		}
	}
}

func TestKVName(t *testing.T) {
	mustPrefix := func(s, format string) *prefixSpec {
		p, err := parsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		if format != "" {
			if p.format, err = parseFormat(format, false); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	cases := []struct {
		n      naming
		noPfx  bool
		prefix string
		format string
		rel    string
		want   string
	}{
		{naming{}, true, "app/config", "", "db/host", "db/host"},
		{naming{}, true, "app/config", "", "bad-name", "bad-name"},
		{naming{sanitize: true}, true, "app/config", "", "bad-name", "bad_name"},
		{naming{sanitize: true, upcase: true}, true, "app/config", "", "db/host.x", "DB_HOST_X"},
		{naming{}, false, "app/config@dc2", "", "port", "app_config_dc2_port"}, // envconsul sanitizes the prefix as given
		{naming{}, false, "app/config/", "", "port", "app_config__port"},
		{naming{}, false, "my-app/config", "", "port", "my_app_config_port"},
		{naming{upcase: true}, true, "app", "APP_{{ key }}", "db/host", "APP_DB/HOST"},
		{naming{upcase: true, sanitize: true}, true, "app", "APP_{{ key }}", "db/host", "APP_DB_HOST"},
		{naming{}, true, "app", "{{ key | upper }}_V", "x", "X_V"},
		{naming{sanitize: true}, false, "app", "p.{{ key }}", "x", "p_app_x"},
	}
	for _, tc := range cases {
		p := mustPrefix(tc.prefix, tc.format)
		p.noPrefix = tc.noPfx
		got, err := tc.n.kvName(p, tc.rel)
		if err != nil || got != tc.want {
			t.Errorf("%+v %s %q %s: got %q, %v; want %q", tc.n, tc.prefix, tc.format, tc.rel, got, err, tc.want)
		}
	}
}

func TestMergeSkipsAndLaterWins(t *testing.T) {
	env, skips := merge([][]namedVar{
		{{key: "a/X", name: "X", value: "1"}, {key: "a/bad=name", name: "bad=name", value: "secret"}, {key: "a/ok-name", name: "ok-name", value: "v"}},
		{{key: "b/X", name: "X", value: "2"}, {key: "b/NUL", name: "NUL", value: "a\x00b"}},
	})
	if env["X"] != "2" || env["ok-name"] != "v" || len(env) != 2 {
		t.Errorf("env %v", env)
	}
	if len(skips) != 2 || skips[0].key != "a/bad=name" || skips[1].key != "b/NUL" {
		t.Errorf("skips %+v", skips)
	}
	for _, s := range skips {
		if strings.Contains(s.reason, "secret") {
			t.Errorf("a reason holds the value: %q", s.reason)
		}
	}
}

func TestChildEnv(t *testing.T) {
	parent := []string{"PATH=/bin", "HOME=/root", "LC_ALL=C", "X=parent", "X=dup"}
	vars := map[string]string{"X": "consul", "Y": "a\nb"}
	got := strings.Join(childEnv(parent, vars, false, nil, envPolicy{}), "|")
	if got != "PATH=/bin|HOME=/root|LC_ALL=C|X=consul|Y=a\nb" {
		t.Errorf("inherited: %q", got)
	}
	got = strings.Join(childEnv(parent, vars, true, []string{"PATH", "LC_*"}, envPolicy{}), "|")
	if got != "PATH=/bin|LC_ALL=C|X=consul|Y=a\nb" {
		t.Errorf("pristine: %q", got)
	}
	// exec { env { allowlist, denylist, custom } }: filters over everything,
	// Consul variables included; custom last and winning.
	got = strings.Join(childEnv(parent, vars, false, nil, envPolicy{allowlist: []string{"L*", "X", "Y", "HOME"}, denylist: []string{"Y"}, custom: []string{"HOME=/custom", "Z=1"}}), "|")
	if got != "LC_ALL=C|X=consul|HOME=/custom|Z=1" && got != "LC_ALL=C|X=consul|Z=1|HOME=/custom" {
		t.Errorf("env policy: %q", got)
	}
	// exec { env { pristine = true } }: only the custom entries, the Consul
	// variables dropped too (envconsul runner.go applyConfigEnv returns the
	// custom map alone; as documented in envconsul PR #201), the last entry
	// of a name winning; with no custom entries an empty environment.
	got = strings.Join(childEnv(parent, vars, false, nil, envPolicy{pristine: true, allowlist: []string{"*"}, custom: []string{"A=1", "B=2", "A=3"}}), "|")
	if got != "B=2|A=3" && got != "A=3|B=2" {
		t.Errorf("exec.env.pristine: %q", got)
	}
	if got := childEnv(parent, vars, true, []string{"PATH"}, envPolicy{pristine: true}); got == nil || len(got) != 0 {
		t.Errorf("exec.env.pristine without custom: %q, want an empty environment", got)
	}
}

// TestEnvconsulPrefixList: the list of prefixes envconsul's
// PrefixConfigs.Finalize (config_prefix.go) leaves, blank paths removed
// from a copy while iterating, the original length kept; one pass, and the
// three envconsul makes (cli.go loadConfigs and Run, runner.go init).
func TestEnvconsulPrefixList(t *testing.T) {
	for in, want := range map[string]string{
		"_":     "_",
		"_ a":   "a a",
		"a _":   "a _",
		"_ a b": "a b b",
		"a _ b": "a b b",
		"_ _ a": "_ a a",
		"_ a _": "_ _ _",
		"a b":   "a b",
	} {
		var list []*prefixSpec
		for _, f := range strings.Fields(in) {
			list = append(list, &prefixSpec{written: f, blank: f == "_"})
		}
		var got []string
		for _, p := range envconsulPrefixList(list) {
			got = append(got, p.written)
		}
		if g := strings.Join(got, " "); g != want {
			t.Errorf("%q: got %q, want %q", in, g, want)
		}
	}
	for in, want := range map[string]string{
		"_ _ a":     "a a a",
		"_ a _":     "_ _ _",
		"_ _ _ a":   "a a a a",
		"a _ _ b":   "a b b b",
		"_ _ _ _ a": "a a a a a",
	} {
		var list []string
		for _, f := range strings.Fields(in) {
			if f == "_" {
				f = ""
			}
			list = append(list, "-prefix", f)
		}
		o, err := parse(append(list, "true"), io.Discard, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range o.prefixes {
			w := p.written
			if p.blank {
				w = "_"
			}
			got = append(got, w)
		}
		if g := strings.Join(got, " "); g != want {
			t.Errorf("three passes of %q: got %q, want %q", in, g, want)
		}
	}
}

func TestParsePrefixAndService(t *testing.T) {
	p, err := parsePrefix("/app/config/@dc2")
	if err != nil || p.path != "app/config" || p.dc != "dc2" {
		t.Errorf("parsePrefix: %+v %v", p, err)
	}
	s, err := parseService("blue.web@dc3")
	if err != nil || s.name != "web" || s.tag != "blue" || s.dc != "dc3" {
		t.Errorf("parseService: %+v %v", s, err)
	}
	// envconsul renders prefix paths as templates with env (runner.go,
	// applyPathTemplate).
	t.Setenv("ENVEXEC_TEST_STAGE", "prod")
	if p, err := parsePrefix(`app/{{ env "ENVEXEC_TEST_STAGE" }}/config`); err != nil || p.path != "app/prod/config" {
		t.Errorf("path template: %+v %v", p, err)
	}
	// Paths Consul's agent cleans (a//b, a/./b): the cleaned path is
	// listed, names are made relative to the path as given.
	if p, err := parsePrefix("a//b/./c/"); err != nil || p.path != "a/b/c" || p.written != "a//b/./c/" {
		t.Errorf("unclean path: %+v %v", p, err)
	}
	// An empty path, or one the agent cleans to nothing, is the whole KV
	// store (consul-template v0.41.1 dependency/kv_list.go NewKVListQuery
	// lets "" through; "/" and "a/.." match its form and list the root).
	for _, whole := range []string{"", "/", "a/..", "/@dc2"} {
		if p, err := parsePrefix(whole); err != nil || p.path != "" || p.base() != "" {
			t.Errorf("parsePrefix(%q) = %+v, %v; want the whole KV store", whole, p, err)
		}
	}
	for _, bad := range []string{"@dc", "a@", "a@b@c", "a@dç", "a?ns=tëam", "a@dc?ns=x", "a?", "a?ns=x?y", "?ns=x", "../x", "a/../../x", "a\nb", `a/{{ env "ENVEXEC_TEST_UNSET" }}`, "a/{{"} {
		if _, err := parsePrefix(bad); err == nil {
			t.Errorf("parsePrefix(%q) accepted", bad)
		}
	}
}
