package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEnvironmentNames follows envconsul's naming pipeline (runner.go,
// appendPrefixes): the key relative to the prefix, passed on unchanged (a
// nested key keeps its "/", "db-host" and "log.level" stay: only a blank key
// is dropped); with no_prefix=false the sanitized prefix path and "_" in
// front; the format; -sanitize; -upcase. berth's own rules on top: whole
// path segments only (no sibling app2/), folder keys skipped, a name with
// "=" (which the kernel's NAME=value cannot carry) skipped with a warning.
func TestEnvironmentNames(t *testing.T) {
	a, _, n := nsWith(t,
		"app/PORT", "80",
		"app/db/host", "db1",
		"app/bad-name", "SECRET-VALUE-1",
		"app/log.level", "debug",
		"app/x=y", "SECRET-VALUE-2",
		"app/folder/", "",
		"app2/sibling", "must-not-appear",
		"global/PORT", "8080",
		"global/REGION", "eu",
	)
	nsVar := regexp.MustCompile(`[^A-Za-z0-9_]`).ReplaceAllString(n, "_")

	cases := []struct {
		name string
		args []string
		want map[string]string
		warn string // a key the log must name (never with its value)
	}{
		{"default", []string{"-prefix", n + "/app"},
			map[string]string{"PORT": "80", "db/host": "db1", "bad-name": "SECRET-VALUE-1", "log.level": "debug"}, n + "/app/x=y"},
		{"trailing slash and sibling", []string{"-prefix", n + "/app/"},
			map[string]string{"PORT": "80", "db/host": "db1", "bad-name": "SECRET-VALUE-1", "log.level": "debug"}, ""},
		{"sanitize", []string{"-prefix", n + "/app", "-sanitize"},
			map[string]string{"PORT": "80", "db_host": "db1", "bad_name": "SECRET-VALUE-1", "log_level": "debug", "x_y": "SECRET-VALUE-2"}, ""},
		{"sanitize upcase", []string{"-prefix", n + "/app", "-sanitize", "-upcase"},
			map[string]string{"PORT": "80", "DB_HOST": "db1", "BAD_NAME": "SECRET-VALUE-1", "LOG_LEVEL": "debug", "X_Y": "SECRET-VALUE-2"}, ""},
		{"upcase only", []string{"-prefix", n + "/app", "-upcase"},
			map[string]string{"PORT": "80", "DB/HOST": "db1", "BAD-NAME": "SECRET-VALUE-1", "LOG.LEVEL": "debug"}, n + "/app/x=y"},
		{"format", []string{"-prefix", n + "/app", "-format", "APP_{{ key }}", "-upcase"},
			map[string]string{"APP_PORT": "80", "APP_DB/HOST": "db1", "APP_BAD-NAME": "SECRET-VALUE-1", "APP_LOG.LEVEL": "debug"}, n + "/app/x=y"},
		{"format replaceKey", []string{"-prefix", n + "/app", "-format", "{{ key | replaceKey `log.level` `LOG_LEVEL` }}", "-sanitize"},
			map[string]string{"PORT": "80", "db_host": "db1", "bad_name": "SECRET-VALUE-1", "LOG_LEVEL": "debug", "x_y": "SECRET-VALUE-2"}, ""},
		{"no-prefix=false", []string{"-prefix", n + "/app", "-no-prefix=false", "-sanitize"},
			map[string]string{nsVar + "_app_PORT": "80", nsVar + "_app_db_host": "db1", nsVar + "_app_bad_name": "SECRET-VALUE-1", nsVar + "_app_log_level": "debug", nsVar + "_app_x_y": "SECRET-VALUE-2"}, ""},
		{"no-prefix=false unsanitized", []string{"-prefix", n + "/app", "-no-prefix=false"},
			map[string]string{nsVar + "_app_PORT": "80", nsVar + "_app_db/host": "db1", nsVar + "_app_bad-name": "SECRET-VALUE-1", nsVar + "_app_log.level": "debug"}, n + "/app/x=y"},
		{"later prefix wins", []string{"-prefix", n + "/global", "-prefix", n + "/app"},
			map[string]string{"PORT": "80", "REGION": "eu", "db/host": "db1", "bad-name": "SECRET-VALUE-1", "log.level": "debug"}, ""},
		{"later prefix wins reversed", []string{"-prefix", n + "/app", "-prefix", n + "/global"},
			map[string]string{"PORT": "8080", "REGION": "eu", "db/host": "db1", "bad-name": "SECRET-VALUE-1", "log.level": "debug"}, ""},
		{"per-prefix format", []string{"-prefix", n + "/global", "-format", "G_{{ key }}", "-prefix", n + "/app", "-sanitize"},
			map[string]string{"G_PORT": "8080", "G_REGION": "eu", "PORT": "80", "db_host": "db1", "bad_name": "SECRET-VALUE-1", "log_level": "debug", "x_y": "SECRET-VALUE-2"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := childDir(t)
			args := append(append([]string{"-once"}, tc.args...), childArgs(dir, "exit", 0)...)
			p := runEnvexec(t, a.HTTPAddr(), nil, args...)
			if p.code != 0 {
				t.Fatalf("exit %d\n%s", p.code, p.stderr)
			}
			got := onlyConsul(lastEnv(t, dir))
			if fmtEnv(got) != fmtEnv(tc.want) {
				t.Errorf("environment:\n%s\nwant:\n%s", fmtEnv(got), fmtEnv(tc.want))
			}
			if tc.warn != "" && !strings.Contains(p.stderr.String(), "key=\""+tc.warn+"\"") {
				t.Errorf("no warning naming %s:\n%s", tc.warn, p.stderr)
			}
			if strings.Contains(p.stderr.String(), "SECRET-VALUE") {
				t.Errorf("a value was logged:\n%s", p.stderr)
			}
		})
	}
}

func TestPristineAndByteExact(t *testing.T) {
	a, c, n := nsWith(t)
	values := map[string]string{
		"NEWLINES": "line 1\nline 2\n",
		"EQUALS":   "a=b==c",
		"QUOTES":   `it's "quoted" \ back` + "`tick`",
		"UNICODE":  "ünïcødé ✓ 日本",
		"EMPTY":    "",
		"SPACES":   "  padded  ",
		"DOLLAR":   "$HOME ${PATH}",
	}
	for k, v := range values {
		put(t, c, n+"/"+k, v)
	}
	dir := childDir(t)
	args := append([]string{"-once", "-prefix", n, "-pristine", "-env-allow", "KEEP_ME,KEEP_GLOB_*"}, childArgs(dir, "exit", 0)...)
	p := runEnvexec(t, a.HTTPAddr(), []string{"KEEP_ME=1", "KEEP_GLOB_X=2", "DROP_ME=3"}, args...)
	if p.code != 0 {
		t.Fatalf("exit %d\n%s", p.code, p.stderr)
	}
	got := lastEnv(t, dir)
	want := map[string]string{"KEEP_ME": "1", "KEEP_GLOB_X": "2"}
	for k, v := range values {
		want[k] = v
	}
	if fmtEnv(got) != fmtEnv(want) {
		t.Errorf("pristine environment:\n%s\nwant:\n%s", fmtEnv(got), fmtEnv(want))
	}

	// Without -pristine the parent's environment is inherited, Consul wins.
	dir = childDir(t)
	args = append([]string{"-once", "-prefix", n}, childArgs(dir, "exit", 0)...)
	p = runEnvexec(t, a.HTTPAddr(), []string{"DROP_ME=3", "EQUALS=from-parent"}, args...)
	if p.code != 0 {
		t.Fatalf("exit %d\n%s", p.code, p.stderr)
	}
	got = lastEnv(t, dir)
	if got["DROP_ME"] != "3" || got["EQUALS"] != values["EQUALS"] || got["NEWLINES"] != values["NEWLINES"] {
		t.Errorf("inherited environment wrong: DROP_ME=%q EQUALS=%q NEWLINES=%q", got["DROP_ME"], got["EQUALS"], got["NEWLINES"])
	}
}

func TestArgumentQuoting(t *testing.T) {
	a, _, n := nsWith(t, "GREETING", "hello world")
	dir := childDir(t)
	odd := []string{"two words", `"double"`, "'single'", "$GREETING", "", "*", "a\nb", "--flag"}
	p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-once", "-prefix", n}, childArgs(dir, "exit", 0, odd...)...)...)
	if p.code != 0 {
		t.Fatalf("exit %d\n%s", p.code, p.stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("args.%d", starts(dir)[0])))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(string(b), "\x00"); strings.Join(got, "|") != strings.Join(odd, "|") {
		t.Errorf("argv %q, want %q", got, odd)
	}

	// A single string with shell syntax runs through sh -c and sees the
	// variables.
	out := filepath.Join(dir, "shell-out")
	p = runEnvexec(t, a.HTTPAddr(), nil, "-once", "-prefix", n, `printf '%s' "$GREETING" > `+out)
	if p.code != 0 {
		t.Fatalf("exit %d\n%s", p.code, p.stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != "hello world" {
		t.Errorf("sh -c output %q", b)
	}
}

func TestDatacenterSuffix(t *testing.T) {
	a, _, n := nsWith(t, "V", "in-dc1")
	dir := childDir(t)
	p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-once", "-prefix", n + "@" + a.Datacenter}, childArgs(dir, "exit", 0)...)...)
	if p.code != 0 || lastEnv(t, dir)["V"] != "in-dc1" {
		t.Fatalf("exit %d, V=%q\n%s", p.code, lastEnv(t, dir)["V"], p.stderr)
	}
	// An unknown datacenter never answers: -wait-timeout says which prefix
	// and why.
	dir = childDir(t)
	p = runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n + "@nosuchdc", "-wait-timeout", "1s"}, childArgs(dir, "exit", 0)...)...)
	if p.code != exitWaitTimeout || !strings.Contains(p.stderr.String(), "prefix "+n+"@nosuchdc") || !strings.Contains(p.stderr.String(), "No path to datacenter") {
		t.Errorf("exit %d\n%s", p.code, p.stderr)
	}
	if len(starts(dir)) != 0 {
		t.Errorf("the command started")
	}
}
