package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/hashicorp/consul/api"
)

var agent *consultest.Agent

func TestMain(m *testing.M) {
	code := consultest.Main(m, &agent)
	templaterBin.Remove()
	os.Exit(code)
}

// seed puts the shared test data into the package's agent once.
func seed(t *testing.T) *api.Client {
	t.Helper()
	a := consultest.Require(t, agent)
	c := a.Client()
	seedOnce.Do(func() {
		kv := map[string]string{
			"app/name": "hello", "app/empty": "", "app/sub/x": "1", "app/sub/y": "2", "app/json": `{"a":1,"b":[1,2]}`,
			"apple/x": "sibling", "cfg/db/host": "db1", "cfg/db/port": "5432", "cfg/web/port": "80",
		}
		for k, v := range kv {
			if _, err := c.KV().Put(&api.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
				seedErr = err
				return
			}
		}
		if _, err := c.KV().Put(&api.KVPair{Key: "app/folder/"}, nil); err != nil {
			seedErr = err
			return
		}
		regs := []*api.AgentServiceRegistration{
			{ID: "web1", Name: "web", Port: 8001, Tags: []string{"prod", "v1"}, Meta: map[string]string{"zone": "a"}},
			{ID: "web2", Name: "web", Port: 8002, Tags: []string{"v2"}, Meta: map[string]string{"zone": "b"}, Address: "127.0.0.2"},
			{ID: "web3", Name: "web", Port: 8003, Tags: []string{"prod"}, Check: &api.AgentServiceCheck{TTL: "10m", Status: "critical"}},
			{ID: "web4", Name: "web", Port: 8004, Check: &api.AgentServiceCheck{TTL: "10m", Status: "warning"}},
			{ID: "dot1", Name: "my.dotted", Port: 9000},
			{ID: "native1", Name: "native", Port: 9100, Connect: &api.AgentServiceConnect{Native: true}},
		}
		for _, r := range regs {
			if err := c.Agent().ServiceRegister(r); err != nil {
				seedErr = err
				return
			}
		}
		// wait until the catalog shows them with their check states
		for i := 0; i < 100; i++ {
			es, _, err := c.Health().Service("web", "", false, nil)
			if err == nil && len(es) == 4 {
				n := 0
				for _, e := range es {
					if len(e.Checks) > 0 {
						n++
					}
				}
				if n == 4 {
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		seedErr = fmt.Errorf("services did not show up")
	})
	if seedErr != nil {
		t.Fatalf("seed: %v", seedErr)
	}
	return c
}

// renderOnce runs `templater -once` in process on one template text.
func renderOnce(t *testing.T, text string, extra ...string) (string, int, string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "in.tmpl")
	dst := filepath.Join(dir, "out")
	if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-once", "-once-timeout", "3s", "-http-addr", agent.HTTPAddr(), "-log-level", "warn", "-template", src + ":" + dst}, extra...)
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	b, _ := os.ReadFile(dst)
	return string(b), code, stderr.String()
}

// The template functions are checked against consul-template itself in
// conform_funcs_test.go (TestConformFunctions, TestConformDifferences).

// Missing data: the template is not written, and -once names what it waits for.
func TestMissingData(t *testing.T) {
	seed(t)
	cases := []struct{ name, tmpl, want string }{
		{"missing key", `{{ key "app/nope" }}`, `kv.get(app/nope)`},
		{"safeLs empty", `{{ range safeLs "nothing/here" }}{{ end }}`, `kv.list(nothing/here)`},
		{"safeTree empty", `{{ range safeTree "nothing/here" }}{{ end }}`, `kv.list(nothing/here)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, code, stderr := renderOnce(t, tc.tmpl, "-once-timeout", "1500ms")
			if code != exitMissing {
				t.Fatalf("exit %d, want %d; stderr %s", code, exitMissing, stderr)
			}
			if got != "" {
				t.Fatalf("destination written: %q", got)
			}
			if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "in.tmpl") {
				t.Fatalf("stderr does not name the template and %s: %s", tc.want, stderr)
			}
		})
	}
}

// -once with -template-error-fatal=false and a template that always fails:
// -once ends without waiting for -once-timeout, exit 14, naming the
// template and its error (consul-template waits forever here, or crashes:
// TestConformOnceErrorNotFatal).
func TestOnceFailingTemplateNotFatal(t *testing.T) {
	seed(t)
	_, code, stderr := renderOnce(t, `{{ index (split "," "a") 5 }}`, "-template-error-fatal=false")
	if code != exitRunner || !strings.Contains(stderr, "in.tmpl: template:") || !strings.Contains(stderr, "index out of range") {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
}

// Bad input: a clear one-line error, a non-zero exit at start, nothing written.
func TestBadInput(t *testing.T) {
	seed(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.tmpl", `{{ key "app/name" }}`)
	dst := filepath.Join(dir, "out", "dest.conf")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown function", []string{"-template", write("unk.tmpl", "line one\n  {{ nope \"x\" }}\n") + ":" + dst}, []string{"unk.tmpl:2:6:", `function "nope" not defined`}},
		{"syntax error", []string{"-template", write("syn.tmpl", "a\nb {{ if }}\n") + ":" + dst}, []string{"syn.tmpl:2:", "missing value for if"}},
		{"unclosed action", []string{"-template", write("unc.tmpl", "{{ range service \"web\" }}x\n") + ":" + dst}, []string{"unc.tmpl:", "unexpected EOF"}},
		{"bad health filter", []string{"-template", write("hf.tmpl", "x\n{{ range service \"web|bogus\" }}{{ end }}") + ":" + dst}, []string{"hf.tmpl:2:", `bad health filter "bogus"`}},
		{"bad service query", []string{"-template", write("sq.tmpl", `{{ service "we b@" }}`) + ":" + dst}, []string{"sq.tmpl:1:", "bad service query"}},
		{"bad service query names it whole", []string{"-template", write("sq2.tmpl", `{{ service "web|any~_agent" }}`) + ":" + dst}, []string{"sq2.tmpl:1:", `bad service query "web|any~_agent"`}},
		{"unreadable source", []string{"-template", filepath.Join(dir, "does-not-exist.tmpl") + ":" + dst}, []string{"does-not-exist.tmpl", "no such file"}},
		{"source is a folder", []string{"-template", dir + ":" + dst}, []string{"is a directory"}},
		{"destination is a folder", []string{"-template", good + ":" + dir}, []string{"good.tmpl: destination: read " + dir + ": is a directory"}},
		{"template flag form", []string{"-template", "onlysource"}, []string{`-template "onlysource"`, "SOURCE:DESTINATION"}},
		{"bad wait", []string{"-wait", "soon", "-template", good + ":" + dst}, []string{"wait", "soon"}},
		{"bad max-stale", []string{"-max-stale", "x", "-template", good + ":" + dst}, []string{"max-stale"}},
		{"unknown flag", []string{"-bogus", "-template", good + ":" + dst}, []string{"bogus"}},
		{"bad exec signal", []string{"-exec-reload-signal", "SIGNOPE", "-template", good + ":" + dst}, []string{"exec-reload-signal"}},
		{"no templates", []string{}, []string{"no templates"}},
		{"check for unknown destination", []string{"-template", good + ":" + dst, "-check", "/elsewhere=true"}, []string{"no template writes /elsewhere"}},
		{"missing destination folder, create_dest_dirs false", []string{"-config", write("nodirs.hcl", fmt.Sprintf("template {\n source = %q\n destination = %q\n create_dest_dirs = false\n}\n", good, dst))}, []string{"does not exist", "create_dest_dirs"}},
		{"HCL syntax error", []string{"-config", write("syntax.hcl", "template {\n  source = \n}\n")}, []string{"syntax.hcl", "At 4:1"}},
		{"HCL unknown setting", []string{"-config", write("unknown.hcl", "template {\n source = \"a\"\n destination = \"b\"\n colour = \"red\"\n}\n")}, []string{"unknown.hcl", "template.colour", "not supported"}},
		{"HCL bad perms", []string{"-config", write("perms.hcl", "template {\n source = \"a\"\n destination = \"b\"\n perms = \"rw\"\n}\n")}, []string{"perms", "octal"}},
		{"HCL template without destination", []string{"-config", write("nodest.hcl", "template {\n source = \"a\"\n}\n")}, []string{"needs destination"}},
		{"missing config file", []string{"-config", filepath.Join(dir, "nope.hcl")}, []string{"nope.hcl", "no such file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-once", "-http-addr", agent.HTTPAddr()}, tc.args...)
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			if code == 0 {
				t.Fatalf("exit 0; stderr %s", stderr.String())
			}
			msg := stderr.String()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Fatalf("error does not contain %q:\n%s", w, msg)
				}
			}
			if _, err := os.Stat(dst); err == nil {
				t.Fatalf("destination was written")
			}
			if _, err := os.Stat(filepath.Dir(dst)); err == nil {
				t.Fatalf("destination folder was created")
			}
		})
	}
}

// A config in consul-template's documented HCL form works unchanged.
func TestConsulTemplateHCL(t *testing.T) {
	seed(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "in.ctmpl")
	if err := os.WriteFile(src, []byte(`name=[[ key "app/name" ]] {{ literal }}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "sub", "out.conf")
	marker := filepath.Join(dir, "ran")
	cfg := fmt.Sprintf(`
consul {
  address = %q
  retry {
    enabled  = true
    attempts = 12
    backoff  = "250ms"
  }
}
reload_signal = "SIGHUP"
kill_signal   = "SIGINT"
max_stale     = "10m"
log_level     = "warn"
wait {
  min = "0s"
  max = "0s"
}
deduplicate {
  enabled = false
  prefix  = "consul-template/dedup/"
}
template {
  source          = %q
  destination     = %q
  create_dest_dirs = true
  command         = "touch %s"
  command_timeout = "60s"
  error_on_missing_key = false
  perms           = 0600
  backup          = true
  left_delimiter  = "[["
  right_delimiter = "]]"
  wait {
    min = "10ms"
    max = "40ms"
  }
}
template {
  contents    = "inline {{ keyOrDefault \"app/nope\" \"d\" }}"
  destination = %q
  perms       = "0640"
}
`, agent.HTTPAddr(), src, dst, marker, filepath.Join(dir, "inline.out"))
	cfgPath := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-once", "-once-timeout", "5s", "-config", cfgPath}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(dst)
	if err != nil || string(b) != "name=hello {{ literal }}" {
		t.Fatalf("rendered %q, %v", b, err)
	}
	st, _ := os.Stat(dst)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("perms %o, want 600", st.Mode().Perm())
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("command did not run: %v", err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "inline.out"))
	if string(b) != "inline d" {
		t.Fatalf("inline contents rendered %q", b)
	}
	st, _ = os.Stat(filepath.Join(dir, "inline.out"))
	if st.Mode().Perm() != 0o640 {
		t.Fatalf("inline perms %o, want 640", st.Mode().Perm())
	}
}

// -diff prints a unified diff and the command, and writes nothing.
func TestDiff(t *testing.T) {
	seed(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "in.tmpl")
	dst := filepath.Join(dir, "out")
	os.WriteFile(src, []byte("line1\nname={{ key \"app/name\" }}\n"), 0o644)
	os.WriteFile(dst, []byte("line1\nname=old\n"), 0o644)
	var stdout, stderr bytes.Buffer
	code := run([]string{"-once", "-diff", "-http-addr", agent.HTTPAddr(), "-template", src + ":" + dst + ":echo reload"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, w := range []string{"--- " + dst, "+++ " + dst, "@@ -1,2 +1,2 @@", "-name=old", "+name=hello", "would run: echo reload"} {
		if !strings.Contains(out, w) {
			t.Fatalf("dry output lacks %q:\n%s", w, out)
		}
	}
	b, _ := os.ReadFile(dst)
	if string(b) != "line1\nname=old\n" {
		t.Fatalf("-diff wrote the destination: %q", b)
	}
}

var (
	seedOnce sync.Once
	seedErr  error
)

// -once with a failing check: exit 3, the old file stays, no command runs;
// -pid-file is written while running and removed at exit.
func TestOnceCheckFailure(t *testing.T) {
	seed(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "in.tmpl")
	dst := filepath.Join(dir, "out")
	marker := filepath.Join(dir, "ran")
	pid := filepath.Join(dir, "pid")
	os.WriteFile(src, []byte(`{{ key "app/name" }}`), 0o644)
	os.WriteFile(dst, []byte("old"), 0o644)
	var stdout, stderr bytes.Buffer
	code := run([]string{"-once", "-http-addr", agent.HTTPAddr(), "-pid-file", pid, "-template", src + ":" + dst + ":touch " + marker,
		"-check", dst + "=echo rejected by test; false"}, &stdout, &stderr)
	if code != exitRender {
		t.Fatalf("exit %d, want %d: %s", code, exitRender, stderr.String())
	}
	if readFile(dst) != "old" {
		t.Fatalf("old file replaced: %q", readFile(dst))
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("command ran after a failed check")
	}
	if !strings.Contains(stderr.String(), "rejected by test") {
		t.Fatalf("check output not reported: %s", stderr.String())
	}
	if _, err := os.Stat(pid); err == nil {
		t.Fatal("pid file left behind")
	}
}

// Under -once a fatal error is told once, on one line (README: every error
// is one line on stderr), whatever the log level; a -check naming no
// template's destination is a bad flag (exit 13).
func TestOnceErrorIsOneLine(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.tmpl", "static\n")
	dst := filepath.Join(dir, "out")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"check fails silently", []string{"-template", good + ":" + dst, "-check", dst + "=false"}, exitRender, `check "false" failed (exit status 1)`},
		{"check fails with lines", []string{"-template", good + ":" + dst, "-check", dst + "=echo one; echo two; exit 3"}, exitRender, "one ; two"},
		{"execution error", []string{"-template", write("exec.tmpl", `{{ (index .nope 1) }}`) + ":" + dst}, exitRunner, "exec.tmpl"},
		{"command fails", []string{"-template", good + ":" + dst + ":false"}, exitRunner, `command "false" failed`},
		{"check for no template", []string{"-template", good + ":" + dst, "-check", "/elsewhere=true"}, exitFlags, "no template writes /elsewhere"},
		{"check without command", []string{"-template", good + ":" + dst, "-check", dst + "="}, exitFlags, "want DESTINATION=COMMAND"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(dst)
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"-once", "-log-level", "debug", "-http-addr", agent.HTTPAddr()}, tc.args...), &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			var told []string
			for _, l := range strings.Split(stderr.String(), "\n") {
				if strings.Contains(l, "level=ERROR") || strings.HasPrefix(l, "templater: ") {
					told = append(told, l)
				}
			}
			if len(told) != 1 || !strings.Contains(told[0], tc.want) || strings.HasSuffix(told[0], ": ") {
				t.Errorf("want the error once, on one line with %q; got %q", tc.want, told)
			}
		})
	}
}
