package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

var agent *consultest.Agent

// TestMain doubles the test binary as envexec itself (argv[1] == "__envexec")
// and as the child that records what it was given (argv[1] == "__child"), so
// no other build is needed and every run goes through real processes.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "__envexec":
			os.Exit(run(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
		case "__child":
			os.Exit(childMain(os.Args[2:]))
		}
	}
	os.Exit(consultest.Main(m, &agent))
}

// childMain: __child OUTDIR MODE [ARG]. It writes its environment to
// OUTDIR/env.PID (NUL-separated), its argv to OUTDIR/args.PID and appends
// "start PID" to OUTDIR/events. Modes: "exit N" exits with N; "hold N" logs
// "ready PID" once it catches signals, then logs each signal as "<name> PID"
// and exits N on SIGTERM or SIGINT; "deaf" logs SIGTERM and SIGINT and goes
// on; "stubborn" ignores them.
func childMain(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: __child OUTDIR exit|hold N")
		return 2
	}
	dir, mode := args[0], args[1]
	code, _ := strconv.Atoi(args[2])
	pid := os.Getpid()
	writeAtomic(filepath.Join(dir, fmt.Sprintf("env.%d", pid)), strings.Join(os.Environ(), "\x00"))
	writeAtomic(filepath.Join(dir, fmt.Sprintf("args.%d", pid)), strings.Join(args[3:], "\x00"))
	event(dir, "start %d", pid)
	if mode == "exit" {
		return code
	}
	if mode == "deaf" {
		// Logs every SIGTERM/SIGINT and keeps running: only SIGKILL ends it.
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		event(dir, "ready %d", pid)
		for s := range sigs {
			if s == syscall.SIGTERM {
				event(dir, "term %d", pid)
			} else {
				event(dir, "int %d", pid)
			}
		}
	}
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
		for {
			time.Sleep(time.Hour)
		}
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)
	event(dir, "ready %d", pid)
	for s := range sigs {
		sig := s.(syscall.Signal)
		switch sig {
		case syscall.SIGTERM:
			event(dir, "term %d", pid)
			return code
		case syscall.SIGINT:
			event(dir, "int %d", pid)
			return code
		default:
			event(dir, "%s %d", strings.ToLower(strings.TrimPrefix(sigName(sig), "SIG")), pid)
		}
	}
	return code
}

func sigName(s syscall.Signal) string {
	switch s {
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	}
	return s.String()
}

func writeAtomic(path, content string) {
	tmp := path + ".tmp"
	_ = os.WriteFile(tmp, []byte(content), 0o644)
	_ = os.Rename(tmp, path)
}

func event(dir, format string, args ...any) {
	f, err := os.OpenFile(filepath.Join(dir, "events"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, format+"\n", args...)
	f.Close()
}

// proc is a running envexec: the test binary run as envexec (see TestMain).
type proc struct {
	t              *testing.T
	run            *proctest.Proc
	stdout, stderr *eventually.Buffer // run's output
	code           int                // the exit code, once wait has returned it
}

// startEnvexec runs envexec with args against addr, with extra environment.
func startEnvexec(t *testing.T, addr string, extraEnv []string, args ...string) *proc {
	t.Helper()
	return startEnvexecArgs(t, extraEnv, append([]string{"-http-addr", addr}, args...))
}

// startEnvexecArgs runs envexec with exactly args, with extra environment.
func startEnvexecArgs(t *testing.T, extraEnv []string, args []string) *proc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{"__envexec"}, args...)...)
	// CT_LOG and ENVCONSUL (envconsul's log level variables) empty: unset
	// for envexec as for envconsul, whatever the test's environment has.
	cmd.Env = append(append(os.Environ(), "CONSUL_HTTP_TOKEN=", "CONSUL_HTTP_TOKEN_FILE=", "CONSUL_TOKEN=", "CONSUL_TOKEN_FILE=", "CT_LOG=", "ENVCONSUL="), extraEnv...)
	run := proctest.Start(t, cmd, proctest.Options{})
	return &proc{t: t, run: run, stdout: run.Stdout, stderr: run.Stderr}
}

// wait waits for envexec to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	p.code = p.run.Wait(p.t, timeout)
	return p.code
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	p.run.Signal(p.t, sig)
}

// runEnvexec runs envexec to completion.
func runEnvexec(t *testing.T, addr string, extraEnv []string, args ...string) *proc {
	t.Helper()
	p := startEnvexec(t, addr, extraEnv, args...)
	p.wait(60 * time.Second)
	return p
}

// childArgs is the command line of the recording child.
func childArgs(dir, mode string, code int, extra ...string) []string {
	self, _ := os.Executable()
	return append([]string{"--", self, "__child", dir, mode, strconv.Itoa(code)}, extra...)
}

// childDir is a directory for a recording child's files. At the end of the
// test every child that recorded itself there and still runs is killed (a
// failed test can leave one behind: envexec killed with SIGKILL cannot stop
// its child's process group).
func childDir(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() {
		for _, pid := range starts(dir) {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), dir) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return dir
}

// events reads the child's event log.
func events(dir string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, "events"))
	return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
}

func starts(dir string) []int {
	var pids []int
	for _, e := range events(dir) {
		if pid, ok := strings.CutPrefix(e, "start_"); ok {
			n, _ := strconv.Atoi(pid)
			pids = append(pids, n)
		}
	}
	return pids
}

// childEnvOf reads the environment the child with pid was given.
func childEnvOf(t *testing.T, dir string, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("env.%d", pid)))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// lastEnv is the environment of the most recently started child.
func lastEnv(t *testing.T, dir string) map[string]string {
	t.Helper()
	s := starts(dir)
	if len(s) == 0 {
		t.Fatal("the child never started")
	}
	return childEnvOf(t, dir, s[len(s)-1])
}

func put(t *testing.T, c *api.Client, key, value string) {
	t.Helper()
	consultest.Put(t, c, key, value)
}

// trickyValues puts values that must reach the command, and survive an
// export, byte for byte (newlines, quotes, a backslash, "=", "$", "#",
// padding, non-ASCII, empty) under the namespace n, and returns them by
// name.
func trickyValues(t *testing.T, c *api.Client, n string) map[string]string {
	t.Helper()
	values := map[string]string{
		"PLAIN":    "simple-value",
		"NEWLINES": "line 1\nline 2\n",
		"QUOTES":   `it's "quoted" \ back` + "`tick`",
		"LEADQ":    `"starts with a quote`,
		"DOLLAR":   "$HOME ${PATH} $(id)",
		"SPACES":   "  padded  ",
		"EQUALS":   "a=b==c",
		"UNICODE":  "ünïcødé ✓ 日本",
		"EMPTY":    "",
		"HASH":     "#not a comment",
	}
	for k, v := range values {
		put(t, c, n+"/"+k, v)
	}
	return values
}

func del(t *testing.T, c *api.Client, key string) {
	t.Helper()
	if _, err := c.KV().Delete(key, nil); err != nil {
		t.Fatal(err)
	}
}

// nsWith is how most tests start: the package's agent (the test skips
// without one), a client for it, and the test's own KV namespace (ns)
// holding kv, pairs of a key relative to the namespace and its value.
func nsWith(t *testing.T, kv ...string) (*consultest.Agent, *api.Client, string) {
	t.Helper()
	if len(kv)%2 != 0 {
		t.Fatalf("nsWith: key %q has no value", kv[len(kv)-1])
	}
	a := consultest.Require(t, agent)
	c := a.Client()
	n := ns(t)
	for i := 0; i < len(kv); i += 2 {
		put(t, c, n+"/"+kv[i], kv[i+1])
	}
	return a, c, n
}

// ns is a KV namespace of the test's own.
func ns(t *testing.T) string {
	return "envexec-test/" + regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(t.Name(), "-")
}

// onlyConsul keeps the variables of env that are not in the test process's
// own environment (those envexec added).
func onlyConsul(env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if _, inherited := os.LookupEnv(k); inherited && k != "PORT" {
			continue
		}
		switch k {
		case "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_HTTP_ADDR", "CONSUL_TOKEN", "CONSUL_TOKEN_FILE", "CT_LOG", "ENVCONSUL":
			continue
		}
		out[k] = v
	}
	return out
}

func fmtEnv(env map[string]string) string {
	var lines []string
	for k, v := range env {
		lines = append(lines, fmt.Sprintf("%s=%q", k, v))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestEnvironmentNames follows envconsul's naming pipeline (runner.go,
// appendPrefixes): the key relative to the prefix, passed on unchanged (a
// nested key keeps its "/", "db-host" and "log.level" stay: only a blank key
// is dropped, before the prefix path, the format or -sanitize could make a
// name of it: "app/  " never becomes "__", "APP_  " or "..._app_  "); with no_prefix=false the sanitized prefix path and "_" in
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
		"app/  ", "blank-key",
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
		// The prefix path goes in front as written, sanitized: a trailing
		// "/" and the "@dc" become "_" too (runner.go appendPrefixes:
		// InvalidRegexp over PrefixConfig.Path, which -prefix holds less
		// one leading "/", config_prefix.go ParsePrefixConfig).
		{"no-prefix=false trailing slash", []string{"-prefix", "/" + n + "/app/", "-no-prefix=false", "-sanitize"},
			map[string]string{nsVar + "_app__PORT": "80", nsVar + "_app__db_host": "db1", nsVar + "_app__bad_name": "SECRET-VALUE-1", nsVar + "_app__log_level": "debug", nsVar + "_app__x_y": "SECRET-VALUE-2"}, ""},
		{"no-prefix=false datacenter", []string{"-prefix", n + "/global@dc1", "-no-prefix=false"},
			map[string]string{nsVar + "_global_dc1_PORT": "8080", nsVar + "_global_dc1_REGION": "eu"}, ""},
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

// TestUncleanPrefixPath: a prefix path Consul's agent cleans (a//b, a/./b)
// is read as envconsul reads it (consul-template v0.41.1
// dependency/kv_list.go NewKVListQuery and Fetch): the agent answers for the
// cleaned path a/b, and as no key starts with the path as given, each name
// is the whole key. berth's own rules stay: whole segments (no a/bc), no
// folder keys.
func TestUncleanPrefixPath(t *testing.T) {
	a, _, n := nsWith(t,
		"a/b/x", "1",
		"a/b/y/z", "2",
		"a/b/folder/", "",
		"a/bc/w", "sibling",
	)
	whole := map[string]string{n + "/a/b/x": "1", n + "/a/b/y/z": "2"}
	relative := map[string]string{"x": "1", "y/z": "2"}
	for _, tc := range []struct {
		prefix string
		want   map[string]string
	}{
		{n + "/a//b", whole},
		{n + "/a/./b/", whole},
		{n + "/a/../a/b", whole},
		// Two leading slashes of a -prefix are dropped (envconsul
		// config_prefix.go ParsePrefixConfig, then prefixRe): names stay
		// relative.
		{"//" + n + "/a/b", relative},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			dir := childDir(t)
			p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-once", "-prefix", tc.prefix}, childArgs(dir, "exit", 0)...)...)
			if p.code != 0 {
				t.Fatalf("exit %d\n%s", p.code, p.stderr)
			}
			if got := onlyConsul(lastEnv(t, dir)); fmtEnv(got) != fmtEnv(tc.want) {
				t.Errorf("environment:\n%s\nwant:\n%s", fmtEnv(got), fmtEnv(tc.want))
			}
		})
	}
}

func TestPristineAndByteExact(t *testing.T) {
	a, c, n := nsWith(t)
	values := trickyValues(t, c, n)
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

func TestChangeRestartDeleteAndUnrelated(t *testing.T) {
	a, c, n := nsWith(t, "app/PORT", "80", "app/DEBUG", "1")
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n + "/app", "-kill-timeout", "5s", "-log-level", "debug"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "first start", func() bool { return len(starts(dir)) == 1 })
	first := starts(dir)[0]
	if env := lastEnv(t, dir); env["PORT"] != "80" || env["DEBUG"] != "1" {
		t.Fatalf("first environment: PORT=%q DEBUG=%q", env["PORT"], env["DEBUG"])
	}

	// A change: the child is stopped and started with the new value.
	put(t, c, n+"/app/PORT", "81")
	eventually.True(t, 20*time.Second, "restart after a change", func() bool { return len(starts(dir)) == 2 })
	if env := lastEnv(t, dir); env["PORT"] != "81" {
		t.Fatalf("after the change PORT=%q, want 81", env["PORT"])
	}
	if !contains(events(dir), fmt.Sprintf("int_%d", first)) {
		t.Errorf("the first child was not stopped with SIGINT (the default exec kill signal): %v", events(dir))
	}

	// Changes outside the prefix (a sibling that shares its first letters,
	// another tree) do not even wake the watch; a folder key and a key that
	// cannot be a variable name wake it but change nothing: no restart.
	put(t, c, n+"/app2/PORT", "99")
	put(t, c, n+"/other", "x")
	put(t, c, n+"/app/folder/", "")
	eventually.True(t, 20*time.Second, "envexec to see the folder key", func() bool {
		return strings.Count(p.stderr.String(), "Consul changed but the environment did not") >= 1
	})
	put(t, c, n+"/app/not=a-name", "x")
	eventually.True(t, 20*time.Second, "envexec to see the invalid key", func() bool {
		return strings.Count(p.stderr.String(), "Consul changed but the environment did not") >= 2
	})
	if s := starts(dir); len(s) != 2 {
		t.Fatalf("a change that left the environment alone restarted the child: %v\n%s", events(dir), p.stderr)
	}
	// A deleted key disappears on the restart.
	del(t, c, n+"/app/DEBUG")
	eventually.True(t, 20*time.Second, "restart after a delete", func() bool { return len(starts(dir)) >= 3 })
	if s := starts(dir); len(s) != 3 {
		t.Fatalf("want exactly 3 starts, got %d: %v\n%s", len(s), events(dir), p.stderr)
	}
	env := lastEnv(t, dir)
	if _, ok := env["DEBUG"]; ok {
		t.Errorf("deleted key DEBUG still in the environment")
	}
	if env["PORT"] != "81" {
		t.Errorf("PORT=%q, want 81", env["PORT"])
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit %d, want 0\n%s", code, p.stderr)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestOnChangeSignal(t *testing.T) {
	a, c, n := nsWith(t, "V", "1")
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-on-change", "signal", "-change-signal", "USR1"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "first start", func() bool { return len(starts(dir)) == 1 })
	pid := starts(dir)[0]
	put(t, c, n+"/V", "2")
	eventually.True(t, 20*time.Second, "SIGUSR1 to the child", func() bool { return contains(events(dir), fmt.Sprintf("usr1_%d", pid)) })
	put(t, c, n+"/V", "3")
	eventually.True(t, 20*time.Second, "a second SIGUSR1", func() bool {
		k := 0
		for _, e := range events(dir) {
			if e == fmt.Sprintf("usr1_%d", pid) {
				k++
			}
		}
		return k == 2
	})
	if s := starts(dir); len(s) != 1 {
		t.Errorf("the child was restarted with -on-change signal: %v", events(dir))
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)
}

func TestSignalsAndExitCode(t *testing.T) {
	a, _, n := nsWith(t, "V", "1")
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n}, childArgs(dir, "hold", 7)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	pid := starts(dir)[0]
	for _, s := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2} {
		p.signal(s)
		want := fmt.Sprintf("%s_%d", strings.ToLower(strings.TrimPrefix(sigName(s), "SIG")), pid)
		eventually.True(t, 10*time.Second, "forwarded "+sigName(s), func() bool { return contains(events(dir), want) })
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 7 {
		t.Errorf("exit %d, want the child's 7\n%s", code, p.stderr)
	}
	if !contains(events(dir), fmt.Sprintf("term_%d", pid)) {
		t.Errorf("SIGTERM not forwarded: %v", events(dir))
	}

	// The child's own exit code, with and without -once.
	for _, once := range []bool{false, true} {
		dir := childDir(t)
		args := []string{"-prefix", n}
		if once {
			args = append(args, "-once")
		}
		p := runEnvexec(t, a.HTTPAddr(), nil, append(args, childArgs(dir, "exit", 3)...)...)
		if p.code != 3 {
			t.Errorf("once=%v: exit %d, want 3\n%s", once, p.code, p.stderr)
		}
	}
	// A child killed by a signal: 255, as envconsul (cli.go Run hands the
	// child's ExitStatus(), -1, to os.Exit); 128+N with -shell-exit-code.
	p = runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "--", "/bin/sh", "-c", "kill -USR1 $$")
	if p.code != 255 {
		t.Errorf("exit %d, want 255", p.code)
	}
	p = runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-shell-exit-code", "--", "/bin/sh", "-c", "kill -USR1 $$")
	if p.code != 128+int(syscall.SIGUSR1) {
		t.Errorf("-shell-exit-code: exit %d, want %d", p.code, 128+int(syscall.SIGUSR1))
	}
}

// TestUnexpectedExitLogged: a command that exits with a code other than 0,
// or is killed by a signal, is logged as an error even at -log-level error,
// one line with the code, as envconsul's cli.go Run logs "unexpected exit
// from subprocess (N)" through logError (hclog at ERROR) before it exits
// with the code; exit 0 is not logged there.
func TestUnexpectedExitLogged(t *testing.T) {
	a, _, n := nsWith(t, "V", "1")
	for _, tc := range []struct {
		name, script string
		code         int
	}{
		{"exit 3", "exit 3", 3},
		{"killed", "kill -USR1 $$", 255},
		{"exit 0", "exit 0", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := runEnvexec(t, a.HTTPAddr(), nil, "-log-level", "error", "-prefix", n, "--", "/bin/sh", "-c", tc.script)
			if p.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", p.code, tc.code, p.stderr)
			}
			out := strings.TrimSpace(p.stderr.String())
			if tc.code == 0 {
				if out != "" {
					t.Errorf("stderr %q, want nothing at -log-level error", out)
				}
				return
			}
			lines := strings.Split(out, "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[0], "unexpected exit from subprocess") ||
				!strings.Contains(lines[0], fmt.Sprintf("exit_code=%d", tc.code)) {
				t.Errorf("stderr:\n%s\nwant one ERROR line: unexpected exit from subprocess, exit_code=%d", out, tc.code)
			}
		})
	}
}

// TestDefaultLogLevelWarn: by default envexec logs at warn, as envconsul
// (config.go DefaultLogLevel "WARN", cli.go setupLogger), so its info lines
// (here those of a reload) are not written, while what envconsul writes at
// warn is: "Reloading configuration..." (cli.go Run prints it whatever the
// level), the retries while Consul does not answer (consul-template v0.41.1
// watch/view.go poll logs "[WARN] (view) ... (retry attempt N ...)", which
// setupLogger's InferLevels logs at WARN; envexec's "waiting for Consul;
// retrying") and "unexpected exit from subprocess" (cli.go Run, logError at
// ERROR). CT_LOG=info brings the info lines back.
func TestDefaultLogLevelWarn(t *testing.T) {
	a, _, n := nsWith(t, "V", "1")
	for _, tc := range []struct {
		name     string
		env      []string
		wantInfo bool
	}{{"default", nil, false}, {"CT_LOG=info", []string{"CT_LOG=info"}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := childDir(t)
			p := startEnvexec(t, a.HTTPAddr(), tc.env, append([]string{"-prefix", n}, childArgs(dir, "hold", 0)...)...)
			eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
			waitReady(t, dir, starts(dir)[0])
			p.signal(syscall.SIGHUP)
			eventually.True(t, 20*time.Second, "the start after the reload", func() bool { return len(starts(dir)) == 2 })
			waitReady(t, dir, starts(dir)[1])
			p.signal(syscall.SIGTERM)
			p.wait(30 * time.Second)
			out := p.stderr.String()
			if !contains(lines(out), "Reloading configuration...") {
				t.Errorf("no \"Reloading configuration...\" line:\n%s", out)
			}
			if got := strings.Contains(out, "level=INFO msg=\"configuration reloaded\""); got != tc.wantInfo {
				t.Errorf("INFO \"configuration reloaded\" written: %v, want %v:\n%s", got, tc.wantInfo, out)
			}
		})
	}
	t.Run("warn and error lines", func(t *testing.T) {
		p := runEnvexec(t, "127.0.0.1:1", nil, "-prefix", n, "-wait-timeout", "1500ms", "true")
		if out := p.stderr.String(); p.code != exitWaitTimeout || !strings.Contains(out, "level=WARN msg=\"waiting for Consul; retrying\"") || strings.Contains(out, "level=INFO") {
			t.Errorf("exit %d, want %d, with WARN retries and no INFO line:\n%s", p.code, exitWaitTimeout, out)
		}
		p = runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "--", "/bin/sh", "-c", "exit 3")
		if out := p.stderr.String(); p.code != 3 || !strings.Contains(out, "level=ERROR msg=\"unexpected exit from subprocess\"") {
			t.Errorf("exit %d, want 3, with the ERROR line:\n%s", p.code, out)
		}
	})
}

// TestPidFile: -pid-file holds envexec's PID alone, without a newline,
// while it runs, and is removed at exit; one that cannot be written is a
// runner error, exit 13. envconsul cannot run here: the rule is its
// runner.go storePid and deletePid, and cli.go's ExitCodeRunnerError for
// Start's error.
func TestPidFile(t *testing.T) {
	a, _, n := nsWith(t, "V", "1")
	dir := childDir(t)
	pidFile := filepath.Join(t.TempDir(), "envexec.pid")
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-pid-file", pidFile}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	if b, err := os.ReadFile(pidFile); err != nil || string(b) != strconv.Itoa(p.run.Cmd.Process.Pid) {
		t.Errorf("pid file holds %q (%v), want %q", b, err, strconv.Itoa(p.run.Cmd.Process.Pid))
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left behind after exit: %v", err)
	}
	p = runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-pid-file", filepath.Join(t.TempDir(), "no", "such", "dir", "pid")}, childArgs(dir, "exit", 0)...)...)
	if p.code != exitRunner || !strings.Contains(p.stderr.String(), "-pid-file") {
		t.Errorf("unwritable pid file: exit %d, want 14 (envconsul ExitCodeRunnerError: 10 + iota at iota 4) with a line naming -pid-file\n%s", p.code, p.stderr)
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

	// One word is exec'd as written, shell characters and all, as envconsul
	// (consul-template v0.41.1 child/command-prep.go CommandPrep: sh -c only
	// for one string of more than one word): the program "run;me" runs, as
	// an argument, with -exec and as exec.command. Under sh -c, "run" would
	// not be found.
	prog := filepath.Join(dir, "run;me")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nprintf '%s' \"$GREETING\" > \"$0.out\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "exec.hcl")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("exec { command = %q }\n", prog)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, how := range [][]string{{prog}, {"-exec", prog}, {"-config", conf}} {
		_ = os.Remove(prog + ".out")
		p = runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-once", "-prefix", n}, how...)...)
		if p.code != 0 {
			t.Errorf("%q: exit %d\n%s", how, p.code, p.stderr)
		}
		if b, _ := os.ReadFile(prog + ".out"); string(b) != "hello world" {
			t.Errorf("%q: the one-word command was not exec'd as written: output %q", how, b)
		}
	}
}

func TestExportRoundTrip(t *testing.T) {
	a, c, n := nsWith(t)
	values := trickyValues(t, c, n)
	for _, format := range []string{"shell", "dotenv", "json"} {
		t.Run(format, func(t *testing.T) {
			p := runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-export", format)
			if p.code != 0 {
				t.Fatalf("exit %d\n%s", p.code, p.stderr)
			}
			var got map[string]string
			switch format {
			case "shell":
				got = readShell(t, p.stdout.String())
			case "dotenv":
				var err error
				if got, err = parseSystemdEnv(p.stdout.String()); err != nil {
					t.Fatalf("systemd rules: %v\n%s", err, p.stdout)
				}
				// Every line written bare must read the same under docker's
				// --env-file rules (the rest of the line, literally).
				docker := parseDockerEnvFile(p.stdout.String())
				for name, v := range values {
					if dotenvBare(v) && docker[name] != v {
						t.Errorf("docker --env-file reads %s as %q, want %q", name, docker[name], v)
					}
				}
				if !strings.Contains(p.stderr.String(), "name=NEWLINES") {
					t.Errorf("no warning that NEWLINES cannot go through docker --env-file:\n%s", p.stderr)
				}
			case "json":
				got = readJSON(t, p.stdout.String())
			}
			if fmtEnv(got) != fmtEnv(values) {
				t.Errorf("round trip through %s:\n%s\nwant:\n%s\noutput:\n%s", format, fmtEnv(got), fmtEnv(values), p.stdout)
			}
		})
	}

	// Bytes that are not UTF-8: shell carries them exactly, dotenv and json
	// refuse with the key named and print nothing.
	put(t, c, n+"/BINARY", "\xff\xfe ok")
	for _, format := range []string{"dotenv", "json"} {
		p := runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-export", format)
		if p.code != exitExport || p.stdout.String() != "" || !strings.Contains(p.stderr.String(), "BINARY") {
			t.Errorf("%s with non-UTF-8: exit %d, stdout %q, stderr %q", format, p.code, p.stdout, p.stderr)
		}
	}
	p := runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-export", "shell")
	if got := readShell(t, p.stdout.String()); got["BINARY"] != "\xff\xfe ok" {
		t.Errorf("shell BINARY=%q", got["BINARY"])
	}
	// A name that is not a shell identifier (passed to a command as
	// envconsul does) cannot go into shell or env files: refused, the name
	// given; JSON carries it.
	m := n + "-names"
	put(t, c, m+"/log.level", "debug")
	for _, format := range []string{"shell", "dotenv"} {
		p := runEnvexec(t, a.HTTPAddr(), nil, "-prefix", m, "-export", format)
		if p.code != exitExport || p.stdout.String() != "" || !strings.Contains(p.stderr.String(), `"log.level"`) {
			t.Errorf("%s with log.level: exit %d, stdout %q, stderr %q", format, p.code, p.stdout, p.stderr)
		}
	}
	p = runEnvexec(t, a.HTTPAddr(), nil, "-prefix", m, "-export", "json")
	if got := readJSON(t, p.stdout.String()); p.code != 0 || got["log.level"] != "debug" {
		t.Errorf("json: exit %d %v %s", p.code, got, p.stderr)
	}
}

// readShell sources the export with `set -a; . file` in a clean sh and reads
// the environment back.
func readShell(t *testing.T, script string) map[string]string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "env.sh")
	if err := os.WriteFile(f, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/env", "-i", "/bin/sh", "-c", `set -a; . "$1"; exec /usr/bin/env -0`, "sh", f).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(out), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "PWD" && k != "SHLVL" && k != "_" && k != "OLDPWD" {
			env[k] = v
		}
	}
	return env
}

func readJSON(t *testing.T, s string) map[string]string {
	t.Helper()
	var m map[string]string
	if err := jsonUnmarshal([]byte(s), &m); err != nil {
		t.Fatalf("json: %v\n%s", err, s)
	}
	return m
}

func TestBadInput(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := childDir(t)
	child := childArgs(dir, "exit", 0)
	cases := []struct {
		name string
		args []string
		want string
		code int // envconsul cli.go: 13 flags, 14 runner (a bad prefix or query, runner.go init), 15 configuration (no command)
	}{
		{"no command", []string{"-prefix", "app"}, "no command given", exitConfig},
		{"no source", child, "give at least one -prefix", exitConfig},
		{"empty dc", append([]string{"-prefix", "app@"}, child...), `"app@": empty datacenter`, exitRunner},
		{"empty path", append([]string{"-prefix", "@dc1"}, child...), `"@dc1": empty key path`, exitRunner},
		{"two @", append([]string{"-prefix", "app@a@b"}, child...), "more than one", exitRunner},
		{"out of the KV store", append([]string{"-prefix", "app/../../x"}, child...), `"app/../../x": ".." leads out of the KV store`, exitRunner},
		{"unknown kill signal", append([]string{"-prefix", "app", "-kill-signal", "SIGBOGUS"}, child...), `unknown signal "SIGBOGUS"`, exitFlags},
		{"unknown change signal", append([]string{"-prefix", "app", "-change-signal", "NOPE"}, child...), `unknown signal "NOPE"`, exitFlags},
		{"bad on-change", append([]string{"-prefix", "app", "-on-change", "reload"}, child...), "want restart, signal or none", exitFlags},
		{"format before prefix", append([]string{"-format", "X_{{ key }}", "-prefix", "app"}, child...), "after the -prefix", exitFlags},
		{"bad format", append([]string{"-prefix", "app", "-format", "X_{{ key "}, child...), "format", exitFlags},
		{"bad export", []string{"-prefix", "app", "-export", "yaml"}, `-export "yaml"`, exitFlags},
		{"export with command", append([]string{"-prefix", "app", "-export", "json"}, child...), "drop the command", exitFlags},
		{"bad service", append([]string{"-service", "tag.@dc"}, child...), `"tag.@dc": not a service query`, exitRunner},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := runEnvexec(t, a.HTTPAddr(), nil, tc.args...)
			if p.code != tc.code {
				t.Errorf("exit %d, want %d", p.code, tc.code)
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

	// Consul unreachable: it says what it waits for (at info; the default
	// level is warn, as envconsul's), gives up at -wait-timeout with a
	// clear message, and never starts the command.
	dead := proctest.FreeAddr(t) // nothing listens there
	p := runEnvexec(t, dead, nil, append([]string{"-prefix", "app/config", "-wait-timeout", "2500ms", "-log-level", "info"}, child...)...)
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

func TestConsulOutage(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{NodeName: "envexec-outage"})
	c := a.Client()
	put(t, c, "app/PORT", "80")
	dir := childDir(t)
	maddr := proctest.FreeAddr(t)
	// -log-level info: "Consul answering again" is an info line.
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", "app", "-kill-timeout", "5s", "-metrics-addr", maddr, "-log-level", "info"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	pid := starts(dir)[0]

	a.Stop()
	// envexec notices (its blocking query fails) and retries; the child runs
	// on; the log line says since when; /health says degraded, not failed.
	eventually.True(t, 20*time.Second, "envexec to notice Consul is gone", func() bool {
		return strings.Contains(p.stderr.String(), "waiting for Consul; retrying")
	})
	if !strings.Contains(p.stderr.String(), " since=") {
		t.Errorf("the waiting line does not say since when:\n%s", p.stderr)
	}
	if code, b, err := proctest.Fetch(maddr, "/health"); err != nil {
		t.Error(err)
	} else if code != 200 || !strings.HasPrefix(b, "degraded: running with the last environment; ") {
		t.Errorf("/health while Consul is down: %d %q, want 200 degraded", code, b)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the child died while Consul was down: %v", err)
	}
	if !p.run.Alive() {
		t.Fatalf("envexec exited while Consul was down: %d\n%s", p.run.Code(), p.stderr)
	}
	if len(starts(dir)) != 1 {
		t.Fatalf("the child was restarted while Consul was down: %v", events(dir))
	}

	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	// A dev agent comes back empty; write the new configuration.
	put(t, a.Client(), "app/PORT", "90")
	eventually.True(t, 60*time.Second, "the change after Consul came back", func() bool {
		s := starts(dir)
		return len(s) > 1 && childEnvOf(t, dir, s[len(s)-1])["PORT"] == "90"
	})
	if !strings.Contains(p.stderr.String(), "Consul answering again") {
		t.Errorf("no log line about Consul being back:\n%s", p.stderr)
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)
}

func TestServiceAndMetrics(t *testing.T) {
	a, c, n := nsWith(t)
	svc := "envexecweb"
	consultest.Register(t, c, &api.AgentServiceRegistration{ID: svc + "-1", Name: svc, Address: "10.1.2.3", Port: 8080, Tags: []string{"v2", "blue"}})
	put(t, c, n+"/V", "1")
	maddr := proctest.FreeAddr(t)
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-service", svc,
		"-service-format-port", "{{ service }}_HTTP_PORT", "-upcase", "-metrics-addr", maddr}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	env := onlyConsul(lastEnv(t, dir))
	// envconsul names service fields "<service>/<field>" and keeps the "/"
	// unless -sanitize; -upcase comes before -sanitize for services
	// (runner.go, appendServices). The tags are sorted before they are
	// joined (consul-template dependency/catalog_service.go, Fetch:
	// deepCopyAndSortTags), whatever order they were registered in.
	want := map[string]string{"V": "1", "ENVEXECWEB/ID": svc + "-1", "ENVEXECWEB/NAME": svc,
		"ENVEXECWEB/ADDRESS": "10.1.2.3", "ENVEXECWEB/TAG": "blue,v2", "ENVEXECWEB_HTTP_PORT": "8080"}
	if fmtEnv(env) != fmtEnv(want) {
		t.Errorf("environment:\n%s\nwant:\n%s", fmtEnv(env), fmtEnv(want))
	}

	if code, body := proctest.Get(t, maddr, "/health"); code != 200 {
		t.Errorf("/health %d %s", code, body)
	}
	// A new instance port is a change: restart, counted.
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: svc + "-1", Name: svc, Address: "10.1.2.3", Port: 9090, Tags: []string{"v2", "blue"}}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 20*time.Second, "restart for the new port", func() bool {
		return len(starts(dir)) == 2 && lastEnv(t, dir)["ENVEXECWEB_HTTP_PORT"] == "9090"
	})
	proctest.WantMetrics(t, maddr,
		proctest.Sample{Name: "berth_envexec_child_starts_total", Value: 2},
		proctest.Sample{Name: "berth_envexec_restarts_total", Value: 1},
		proctest.Sample{Name: "berth_envexec_sources_ready", Value: 2},
		proctest.Sample{Name: "berth_envexec_child_running", Value: 1})
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)
}

func TestConsulPausedAndSplay(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{NodeName: "envexec-pause"})
	c := a.Client()
	put(t, c, "app/PORT", "80")
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", "app", "-splay", "300ms", "-log-level", "debug"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	pid := starts(dir)[0]

	// A hung Consul (SIGSTOP): the blocking query just waits; the child runs on.
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := syscall.Kill(pid, 0); err != nil || len(starts(dir)) != 1 {
		t.Fatalf("child gone or restarted while Consul was paused: %v %v", err, events(dir))
	}
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	// After it resumes, a change is picked up, after the splay.
	put(t, c, "app/PORT", "85")
	eventually.True(t, 20*time.Second, "restart after resume", func() bool {
		s := starts(dir)
		return len(s) == 2 && childEnvOf(t, dir, s[1])["PORT"] == "85"
	})
	if !strings.Contains(p.stderr.String(), "waiting for the splay") {
		t.Errorf("no splay in the log:\n%s", p.stderr)
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)
}

func TestInterruptedWhileWaiting(t *testing.T) {
	consultest.Require(t, agent)
	dead, maddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	dir := childDir(t)
	p := startEnvexec(t, dead, nil, append([]string{"-prefix", "app", "-metrics-addr", maddr}, childArgs(dir, "exit", 0)...)...)
	// /health says what it waits for.
	eventually.True(t, 20*time.Second, "/health to answer 503 naming the prefix", func() bool {
		code, b, err := proctest.Fetch(maddr, "/health")
		return err == nil && code == 503 && strings.Contains(b, "waiting for prefix app")
	})
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != exitInterrupted {
		t.Errorf("exit %d, want %d\n%s", code, exitInterrupted, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "interrupted by SIGTERM while waiting for prefix app") {
		t.Errorf("stderr: %s", p.stderr)
	}
	if len(starts(dir)) != 0 {
		t.Errorf("the command started")
	}
}

// TestReapsAsPID1 runs envexec as PID 1 of a new PID namespace (unshare, as
// root) with a command that leaves an orphan behind; the orphan must not
// stay a zombie.
func TestReapsAsPID1(t *testing.T) {
	a := consultest.Require(t, agent)
	unshare := proctest.Tool(t, "unshare", "")
	if out, err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		proctest.Need(t, "a PID namespace (run as root)", fmt.Errorf("%v %s", err, out))
	}
	n := ns(t)
	put(t, c(a), n+"/V", "1")
	self, _ := os.Executable()
	// The command starts a subshell that backgrounds a short sleep and exits
	// at once: the sleep is reparented to PID 1 (envexec) and exits later.
	// Then it counts zombies in the namespace.
	script := `( sleep 0.2 & ) ; sleep 1; z=0; for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null || continue; case "${l##*) }" in Z*) z=$((z+1));; esac; done; echo "pid1=$(cat /proc/1/comm) zombies=$z"`
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", self, "__envexec", "-http-addr", a.HTTPAddr(), "-prefix", n, "-once", "--", "/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_TOKEN=", "CONSUL_HTTP_TOKEN_FILE=")
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "zombies=0") {
		t.Errorf("orphan left as a zombie under envexec as PID 1:\n%s", out)
	}
}

func c(a *consultest.Agent) *api.Client { return a.Client() }

func TestWaitQuiescenceAndExecFlag(t *testing.T) {
	a, c, n := nsWith(t, "V", "0")
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-wait", "1500ms:20s"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	// A burst of writes well inside the quiet period makes one restart with
	// the last value.
	for i := 1; i <= 3; i++ {
		put(t, c, n+"/V", strconv.Itoa(i))
	}
	eventually.True(t, 30*time.Second, "one restart after the burst", func() bool { return len(starts(dir)) >= 2 })
	if s := starts(dir); len(s) != 2 || childEnvOf(t, dir, s[1])["V"] != "3" {
		t.Errorf("want one restart with V=3, got %v (V=%q)", events(dir), lastEnv(t, dir)["V"])
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)

	// -exec gives the command as one string (run with sh -c).
	out := filepath.Join(dir, "exec-out")
	p = runEnvexec(t, a.HTTPAddr(), nil, "-once", "-prefix", n, "-exec", `printf '%s' "$V" > `+out)
	if b, _ := os.ReadFile(out); p.code != 0 || string(b) != "3" {
		t.Errorf("-exec: exit %d, output %q\n%s", p.code, b, p.stderr)
	}
	p = runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-exec", "true", "--", "true")
	if p.code != exitFlags || !strings.Contains(p.stderr.String(), "not both") {
		t.Errorf("-exec with arguments: exit %d %s", p.code, p.stderr)
	}
	p = runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-wait", "5s:1s", "--", "true")
	if p.code != exitFlags || !strings.Contains(p.stderr.String(), "-wait") {
		t.Errorf("bad -wait: exit %d %s", p.code, p.stderr)
	}
}

func TestKillSignalAndTimeout(t *testing.T) {
	a, c, n := nsWith(t, "V", "1")

	// -exec-kill-signal chooses the signal that stops the command.
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-exec-kill-signal", "SIGINT"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	first := starts(dir)[0]
	put(t, c, n+"/V", "2")
	eventually.True(t, 20*time.Second, "restart", func() bool { return len(starts(dir)) == 2 })
	if !contains(events(dir), fmt.Sprintf("int_%d", first)) {
		t.Errorf("the child was not stopped with SIGINT: %v", events(dir))
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)

	// Without -exec-kill-signal it is SIGINT too, as envconsul: consul-template
	// v0.41.1 config/exec.go DefaultExecKillSignal, which ExecConfig.Finalize
	// sets (envconsul's README shows SIGTERM, its code sends SIGINT).
	dir = childDir(t)
	p = startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	first = starts(dir)[0]
	waitReady(t, dir, first)
	put(t, c, n+"/V", "2b")
	eventually.True(t, 20*time.Second, "restart", func() bool { return len(starts(dir)) == 2 })
	if ev := events(dir); !contains(ev, fmt.Sprintf("int_%d", first)) || contains(ev, fmt.Sprintf("term_%d", first)) {
		t.Errorf("the child was not stopped with SIGINT by default: %v", ev)
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)

	// A child that ignores the kill signal is killed after -kill-timeout.
	dir = childDir(t)
	p = startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-kill-timeout", "500ms"}, childArgs(dir, "stubborn", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	first = starts(dir)[0]
	put(t, c, n+"/V", "3")
	eventually.True(t, 20*time.Second, "restart of the stubborn child", func() bool { return len(starts(dir)) == 2 })
	if err := syscall.Kill(first, 0); err == nil {
		t.Errorf("the stubborn child %d still exists after the restart", first)
	}
	if !strings.Contains(p.stderr.String(), "SIGKILL") {
		t.Errorf("no SIGKILL in the log:\n%s", p.stderr)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 255 {
		t.Errorf("exit %d, want 255 (the stubborn child killed)", code)
	}

	// The exec kill signal, sent to envexec, is forwarded and stops the
	// command as a restart does: a child that only logs it is killed after
	// -kill-timeout (consul-template child/child.go Signal, which envconsul
	// forwards every signal to: the kill signal is kill(true)).
	dir = childDir(t)
	p = startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-exec-kill-signal", "SIGUSR1", "-kill-timeout", "500ms"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	first = starts(dir)[0]
	waitReady(t, dir, first)
	p.signal(syscall.SIGUSR1)
	if code := p.wait(30 * time.Second); code != 255 {
		t.Errorf("exit %d, want 255 (the child killed after the forwarded exec kill signal)\n%s", code, p.stderr)
	}
	if !contains(events(dir), fmt.Sprintf("usr1_%d", first)) {
		t.Errorf("SIGUSR1 not forwarded: %v", events(dir))
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

// TestQueryParameters follows consul-template's dependency queries, which
// envconsul's -prefix and -service-query are (dependency/dependency.go:
// queryRe and GetConsulQueryOpts; kv_list.go and catalog_service.go ask in
// the ?ns= namespace and ?partition= admin partition): the parameters
// reach Consul instead of becoming part of the key path or service name.
// The dev agent is Consul CE, which refuses a namespace: the source never
// answers and -wait-timeout says why. Parameters neither query uses are
// refused. A service's ~NODE sorts its instances from NODE.
func TestQueryParameters(t *testing.T) {
	a, _, n := nsWith(t, "V", "1")
	for _, src := range [][]string{{"-prefix", n + "?ns=team"}, {"-prefix", n + "?ns=team@" + a.Datacenter}, {"-service", "web?ns=team"}} {
		dir := childDir(t)
		p := runEnvexec(t, a.HTTPAddr(), nil, append(append(src, "-wait-timeout", "1s"), childArgs(dir, "exit", 0)...)...)
		if p.code != exitWaitTimeout || !strings.Contains(p.stderr.String(), "?ns=team") || !strings.Contains(p.stderr.String(), "Namespaces are a Consul Enterprise feature") {
			t.Errorf("%v: exit %d\n%s", src, p.code, p.stderr)
		}
		if len(starts(dir)) != 0 {
			t.Errorf("%v: the command started", src)
		}
	}
	// -service NAME~NODE (catalog_service.go nearRe): the instances sorted
	// from NODE, not a service named "NAME~NODE".
	svc := "envexecnear"
	consultest.Register(t, c(a), &api.AgentServiceRegistration{ID: svc + "-1", Name: svc, Address: "10.9.9.9", Port: 7000})
	for _, q := range []string{svc + "~_agent", svc + "@" + a.Datacenter + "~_agent"} {
		dir := childDir(t)
		p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-once", "-service", q, "-upcase", "-sanitize"}, childArgs(dir, "exit", 0)...)...)
		if env := onlyConsul(lastEnv(t, dir)); p.code != 0 || env["ENVEXECNEAR_ADDRESS"] != "10.9.9.9" || env["ENVEXECNEAR_PORT"] != "7000" {
			t.Errorf("-service %s: exit %d, env %v\n%s", q, p.code, env, p.stderr)
		}
	}
	for _, src := range [][]string{{"-prefix", n + "?peer=other"}, {"-service", "web?sameness-group=g"}, {"-prefix", n + "?bogus=1"}} {
		dir := childDir(t)
		p := runEnvexec(t, a.HTTPAddr(), nil, append(src, childArgs(dir, "exit", 0)...)...)
		if p.code != exitRunner || !strings.Contains(p.stderr.String(), "not supported (ns and partition are)") {
			t.Errorf("%v: exit %d\n%s", src, p.code, p.stderr)
		}
	}
}
