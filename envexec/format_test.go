package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/consultest"
	"github.com/hashicorp/consul/api"
)

// TestEmptyFormatIsDefault: an empty format (-format "", a file's
// format = "", -service-format-port "") names variables as no format does,
// as envconsul tests formats with consul-template v0.41.1 config/convert.go
// StringPresent, false for "" (runner.go appendPrefixes, appendServices).
func TestEmptyFormatIsDefault(t *testing.T) {
	a, _, n := nsWith(t, "K", "v")
	svc := "envexecemptyformat"
	consultest.Register(t, c(a), &api.AgentServiceRegistration{ID: svc + "-1", Name: svc, Address: "10.9.9.8", Port: 7001})
	cfg := filepath.Join(t.TempDir(), "c.hcl")
	hcl := fmt.Sprintf("prefix {\n  path = %q\n  format = \"\"\n}\nservice {\n  query = %q\n  format_address = \"\"\n}\n", n, svc)
	if err := os.WriteFile(cfg, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-prefix", n, "-format", "", "-service", svc, "-service-format-address", ""},
		{"-config", cfg},
	} {
		dir := childDir(t)
		p := runEnvexec(t, a.HTTPAddr(), nil, append(append([]string{"-once"}, args...), childArgs(dir, "exit", 0)...)...)
		if p.code != 0 {
			t.Errorf("%q: exit %d\n%s", args, p.code, p.stderr)
			continue
		}
		env := lastEnv(t, dir)
		if env["K"] != "v" || env[svc+"/address"] != "10.9.9.8" {
			t.Errorf("%q: K=%q %s/address=%q, want the default names\n%s", args, env["K"], svc, env[svc+"/address"], fmtEnv(onlyConsul(env)))
		}
	}
}

// TestServiceAddressAsEnvconsul: an instance registered without an address
// of its own has an empty <service>/address, as envconsul sets the
// catalog's ServiceAddress as is (consul-template v0.41.1
// dependency/catalog_service.go Fetch, envconsul runner.go appendServices);
// -service-node-address (a file's service_node_address) gives it the node's
// address instead. An instance with an address keeps it either way.
func TestServiceAddressAsEnvconsul(t *testing.T) {
	a, _, n := nsWith(t, "K", "v")
	bare, own := "envexecbareaddr", "envexecownaddr"
	consultest.Register(t, c(a), &api.AgentServiceRegistration{ID: bare + "-1", Name: bare, Port: 7002})
	consultest.Register(t, c(a), &api.AgentServiceRegistration{ID: own + "-1", Name: own, Address: "10.9.9.7", Port: 7003})
	nodes, _, err := c(a).Catalog().Service(bare, "", nil)
	if err != nil || len(nodes) != 1 || nodes[0].ServiceAddress != "" || nodes[0].Address == "" {
		t.Fatalf("catalog %s: %v %+v, want one instance without a service address on a node with one", bare, err, nodes)
	}
	node := nodes[0].Address
	cfg := filepath.Join(t.TempDir(), "c.hcl")
	if err := os.WriteFile(cfg, []byte("service_node_address = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"-service-node-address"}, node},
		{[]string{"-config", cfg}, node},
		{[]string{"-config", cfg, "-service-node-address=false"}, ""},
	} {
		dir := childDir(t)
		args := append(append([]string{"-once", "-prefix", n, "-service", bare, "-service", own}, tc.args...), childArgs(dir, "exit", 0)...)
		p := runEnvexec(t, a.HTTPAddr(), nil, args...)
		if p.code != 0 {
			t.Errorf("%q: exit %d\n%s", tc.args, p.code, p.stderr)
			continue
		}
		env := lastEnv(t, dir)
		got, ok := env[bare+"/address"]
		if !ok || got != tc.want || env[own+"/address"] != "10.9.9.7" || env[bare+"/port"] != "7002" {
			t.Errorf("%q: %s/address=%q (set: %v), %s/address=%q; want %q and 10.9.9.7\n%s", tc.args, bare, got, ok, own, env[own+"/address"], tc.want, fmtEnv(onlyConsul(env)))
		}
	}
}

// TestFormatHTMLEscapedAsEnvconsul: envconsul renders -format,
// -service-format-* and prefix paths with html/template (runner.go imports
// it for applyFormatTemplate, applyServiceTemplate and applyPathTemplate),
// so what an action writes is escaped as HTML text: "&" "&amp;", "<"
// "&lt;", ">" "&gt;", "+" "&#43;", "'" "&#39;", "\"" "&#34;"; of the
// template's own text, html/template writes a "<" that opens no tag as
// "&lt;" and keeps the rest ("&", ">"). -sanitize comes after the format
// (appendPrefixes), so it turns the entities' "&", "#" and ";" into "_".
// A name without a format is not a template and keeps its characters. A
// path is rendered the same way (every path, as applyPathTemplate is called
// for each prefix): {{ env }} escaped, an HTML comment dropped, and a path
// that leaves an HTML context open refused (the runner's error, exit 14).
func TestFormatHTMLEscapedAsEnvconsul(t *testing.T) {
	keys := []string{"a&b", "c+d", "e<f>g", "h'i\"j"}
	kv := []string{}
	for _, k := range keys {
		kv = append(kv, "app/"+k, "v-"+k)
	}
	kv = append(kv, "s&amp;t/K", "escaped", "s&t/K", "raw", "ab/C", "comment")
	a, _, n := nsWith(t, kv...)
	svc := "envexechtmlformat"
	consultest.Register(t, c(a), &api.AgentServiceRegistration{ID: svc + "-1", Name: svc, Address: "10.9.9.6", Port: 7004})
	export := func(t *testing.T, env []string, args ...string) map[string]string {
		t.Helper()
		p := runEnvexec(t, a.HTTPAddr(), env, append(args, "-export", "json")...)
		if p.code != 0 {
			t.Fatalf("%q: exit %d\n%s", args, p.code, p.stderr)
		}
		return readJSON(t, p.stdout.String())
	}
	for _, tc := range []struct {
		name string
		args []string
		want map[string]string
	}{
		{"no format", []string{"-prefix", n + "/app"},
			map[string]string{"a&b": "v-a&b", "c+d": "v-c+d", "e<f>g": "v-e<f>g", "h'i\"j": "v-h'i\"j"}},
		{"format", []string{"-prefix", n + "/app", "-format", "&<{{ key }}>"},
			map[string]string{"&&lt;a&amp;b>": "v-a&b", "&&lt;c&#43;d>": "v-c+d", "&&lt;e&lt;f&gt;g>": "v-e<f>g", "&&lt;h&#39;i&#34;j>": "v-h'i\"j"}},
		{"format, -sanitize", []string{"-prefix", n + "/app", "-format", "APP_{{ key }}", "-sanitize"},
			map[string]string{"APP_a_amp_b": "v-a&b", "APP_c__43_d": "v-c+d", "APP_e_lt_f_gt_g": "v-e<f>g", "APP_h__39_i__34_j": "v-h'i\"j"}},
		{"replaceKey", []string{"-prefix", n + "/app", "-format", "{{ key | replaceKey `c+d` `x<y` }}"},
			map[string]string{"a&amp;b": "v-a&b", "x&lt;y": "v-c+d", "e&lt;f&gt;g": "v-e<f>g", "h&#39;i&#34;j": "v-h'i\"j"}},
		{"service format", []string{"-service", svc, "-service-format-port", "{{ printf `%s+%s` service key }}",
			"-service-format-id", "ID", "-service-format-name", "NAME", "-service-format-address", "A&B", "-service-format-tag", "TAG"},
			map[string]string{svc + "&#43;port": "7004", "ID": svc + "-1", "NAME": svc, "A&B": "10.9.9.6", "TAG": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := export(t, nil, tc.args...); fmtEnv(got) != fmtEnv(tc.want) {
				t.Errorf("%q:\n%s\nwant:\n%s", tc.args, fmtEnv(got), fmtEnv(tc.want))
			}
		})
	}
	t.Run("path", func(t *testing.T) {
		if got := export(t, []string{"STAGE=s&t"}, "-prefix", n+`/{{ env "STAGE" }}`); fmtEnv(got) != fmtEnv(map[string]string{"K": "escaped"}) {
			t.Errorf("templated path: %s, want K=escaped (the path %s/s&amp;t)", fmtEnv(got), n)
		}
		if got := export(t, nil, "-prefix", n+"/a<!-- c -->b"); fmtEnv(got) != fmtEnv(map[string]string{"C": "comment"}) {
			t.Errorf("path with an HTML comment: %s, want C=comment (the path %s/ab)", fmtEnv(got), n)
		}
		p := runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n+"/a<b", "-export", "json")
		if p.code != exitRunner || strings.Count(strings.TrimSpace(p.stderr.String()), "\n") != 0 {
			t.Errorf("a path with an open tag: exit %d, want %d, one line\n%s", p.code, exitRunner, p.stderr)
		}
	})
}
