package main

import (
	"strings"
	"testing"
)

// err_on_failed_lookup = true: consul-template fails the run (exit 14) when
// a key read with `key` answers without data after its first blocking query
// (watch/view.go fetch: errLookup), whatever template_error_fatal says; it
// does not touch missing map keys (error_on_missing_key does). Each case
// runs both with -once and compares exit code and bytes.
func TestConformErrOnFailedLookup(t *testing.T) {
	seedConform(t)
	cfg := "err_on_failed_lookup = true\nblock_query_wait = \"1s\"\nlog_level = \"err\"\n"
	files := map[string]string{
		"on.hcl":       cfg,
		"nofatal.hcl":  cfg + "template_error_fatal = false\n",
		"off.hcl":      "err_on_failed_lookup = false\nlog_level = \"err\"\n",
		"missing.tmpl": `a {{ key "ct/never/there" }}`,
		"present.tmpl": `{{ key "ct/name" }}`,
		"mapkey.tmpl":  `[{{ (parseJSON "{}").nokey }}] [{{ (splitToMap "," "=" "a=1").zz }}]`,
		"default.tmpl": `{{ keyOrDefault "ct/never/there" "d" }} {{ keyExists "ct/never/there" }}`,
		"mixed.tmpl":   `{{ key "ct/name" }} {{ key "ct/never/there" }}`,
	}
	cases := [][]string{
		{"-config", "on.hcl", "-template", "missing.tmpl:out"},
		{"-config", "nofatal.hcl", "-template", "missing.tmpl:out"},
		{"-config", "on.hcl", "-template", "present.tmpl:out"},
		{"-config", "on.hcl", "-template", "mapkey.tmpl:out"},
		{"-config", "on.hcl", "-template", "default.tmpl:out"},
		{"-config", "on.hcl", "-template", "mixed.tmpl:out"},
		{"-config", "off.hcl", "-template", "mapkey.tmpl:out"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			t.Parallel()
			res, _ := bothIn(t, files, "out", append([]string{"-once", "-consul-addr", agent.HTTPAddr()}, c...)...)
			if res[0].Code == -1 {
				t.Fatalf("consul-template still running after 30s: the case shows nothing")
			}
			sameOutcome(t, strings.Join(c, " "), res[0], res[1])
		})
	}
}
