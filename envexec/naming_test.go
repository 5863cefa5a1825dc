package main

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"A": true, "_x": true, "db_host": true, "A1": true,
		"": false, "1A": false, "db/host": false, "a-b": false, "a=b": false, "é": false, "a b": false,
	} {
		if got := validName(s); got != want {
			t.Errorf("validName(%q) = %v, want %v", s, got, want)
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
		prefix string
		format string
		rel    string
		want   string
	}{
		{naming{noPrefix: true}, "app/config", "", "db/host", "db_host"},
		{naming{noPrefix: true}, "app/config", "", "bad-name", "bad-name"},
		{naming{noPrefix: true, sanitize: true}, "app/config", "", "bad-name", "bad_name"},
		{naming{noPrefix: true, sanitize: true, upcase: true}, "app/config", "", "db/host.x", "DB_HOST_X"},
		{naming{noPrefix: false}, "app/config@dc2", "", "port", "app_config_port"},
		{naming{noPrefix: false}, "my-app/config", "", "port", "my_app_config_port"},
		{naming{noPrefix: true, upcase: true}, "app", "APP_{{ key }}", "db/host", "APP_DB_HOST"},
		{naming{noPrefix: true}, "app", "{{ key | upper }}_V", "x", "X_V"},
		{naming{noPrefix: false, sanitize: true}, "app", "p.{{ key }}", "x", "p_app_x"},
	}
	for _, tc := range cases {
		got, err := tc.n.kvName(mustPrefix(tc.prefix, tc.format), tc.rel)
		if err != nil || got != tc.want {
			t.Errorf("%+v %s %q %s: got %q, %v; want %q", tc.n, tc.prefix, tc.format, tc.rel, got, err, tc.want)
		}
	}
}

func TestMergeSkipsAndLaterWins(t *testing.T) {
	env, skips := merge([][]namedVar{
		{{key: "a/X", name: "X", value: "1"}, {key: "a/bad-name", name: "bad-name", value: "secret"}},
		{{key: "b/X", name: "X", value: "2"}, {key: "b/NUL", name: "NUL", value: "a\x00b"}},
	})
	if env["X"] != "2" || len(env) != 1 {
		t.Errorf("env %v", env)
	}
	if len(skips) != 2 || skips[0].key != "a/bad-name" || skips[1].key != "b/NUL" {
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
	got := strings.Join(childEnv(parent, vars, false, nil), "|")
	if got != "PATH=/bin|HOME=/root|LC_ALL=C|X=consul|Y=a\nb" {
		t.Errorf("inherited: %q", got)
	}
	got = strings.Join(childEnv(parent, vars, true, []string{"PATH", "LC_*"}), "|")
	if got != "PATH=/bin|LC_ALL=C|X=consul|Y=a\nb" {
		t.Errorf("pristine: %q", got)
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
	for _, bad := range []string{"", "/", "@dc", "a@", "a@b@c", "a//b", "a\nb"} {
		if _, err := parsePrefix(bad); err == nil {
			t.Errorf("parsePrefix(%q) accepted", bad)
		}
	}
}
