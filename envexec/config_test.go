package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
)

// hclList writes a Go string list as an HCL/JSON list.
func hclList(list []string) string {
	b, _ := json.Marshal(list)
	return string(b)
}

// TestConfigFiles follows envconsul's configuration files (config.go: Parse
// with hcl v1 and strict mapstructure decoding, FromPath walking a folder in
// lexical order; cli.go loadConfigs: files in order, then the command line
// on top; config_prefix.go and config_service.go for the blocks; runner.go
// applyConfigEnv for exec.env). CONSUL_HTTP_ADDR points nowhere: only the
// file's consul.address reaches the agent.
func TestConfigFiles(t *testing.T) {
	a, c, n := nsWith(t, "global/REGION", "eu", "global/PORT", "8080", "app/PORT", "80", "app/db.host", "db1")
	self, _ := os.Executable()
	nowhere := []string{"CONSUL_HTTP_ADDR=127.0.0.1:1"}
	run := func(t *testing.T, args ...string) *proc {
		t.Helper()
		p := startRaw(t, nowhere, args...)
		p.wait(60 * time.Second)
		return p
	}

	t.Run("HCL file", func(t *testing.T) {
		dir := childDir(t)
		cfg := filepath.Join(t.TempDir(), "envconsul.hcl")
		proctest.WriteFile(t, cfg, fmt.Sprintf(`
consul {
  address = %q
  retry { attempts = 5 backoff = "50ms" }
}
prefix { path = "%s/global" }
prefix {
  path      = "%s/app"
  format    = "APP_{{ key }}"
}
sanitize = true
upcase   = true
max_stale = "10m"
wait { min = "1s" max = "4s" }
log_level = "debug"
exec {
  command      = %s
  kill_timeout = "2s"
  env { custom = ["EXTRA=from-config"] }
}
`, a.HTTPAddr(), n, n, hclList([]string{self, "__child", dir, "exit", "0"})))
		p := run(t, "-config", cfg, "-once")
		if p.code != 0 {
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
		want := map[string]string{"REGION": "eu", "PORT": "8080", "APP_PORT": "80", "APP_DB_HOST": "db1", "EXTRA": "from-config"}
		if got := onlyConsul(lastEnv(t, dir)); fmtEnv(got) != fmtEnv(want) {
			t.Errorf("environment:\n%s\nwant:\n%s", fmtEnv(got), fmtEnv(want))
		}
	})

	t.Run("folder in lexical order, JSON, flags win", func(t *testing.T) {
		dir := childDir(t)
		cfgDir := t.TempDir()
		proctest.WriteFile(t, filepath.Join(cfgDir, "10-base.hcl"), fmt.Sprintf(`
consul { address = %q }
prefix { path = "%s/app" }
upcase = false
`, a.HTTPAddr(), n))
		proctest.WriteFile(t, filepath.Join(cfgDir, "20-more.json"), fmt.Sprintf(`{"prefix": [{"path": "%s/global", "no_prefix": false}], "upcase": true, "sanitize": false}`, n))
		nsVar := strings.ToUpper(strings.NewReplacer("/", "_", "-", "_").Replace(n))
		// -sanitize on the command line wins over the file's sanitize=false;
		// the -prefix flag comes after the files' prefixes and wins.
		m := n + "-flag"
		put(t, c, m+"/PORT", "9")
		p := run(t, append([]string{"-config", cfgDir, "-sanitize", "-once", "-prefix", m}, childArgs(dir, "exit", 0)...)...)
		if p.code != 0 {
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
		want := map[string]string{"PORT": "9", "DB_HOST": "db1", nsVar + "_GLOBAL_REGION": "eu", nsVar + "_GLOBAL_PORT": "8080"}
		if got := onlyConsul(lastEnv(t, dir)); fmtEnv(got) != fmtEnv(want) {
			t.Errorf("environment:\n%s\nwant:\n%s", fmtEnv(got), fmtEnv(want))
		}
	})

	t.Run("the same path twice: the last block's settings name both", func(t *testing.T) {
		// envconsul runner.go init keys each prefix's settings by its query
		// (configPrefixMap[d.String()], kv.list(PATH@DC)): the last prefix
		// with a path overwrites the settings of the earlier ones, and
		// appendPrefixes names every copy's keys with them. Likewise
		// services (configServiceMap). So the first format is lost.
		dir := childDir(t)
		cfg := filepath.Join(t.TempDir(), "envconsul.hcl")
		proctest.WriteFile(t, cfg, fmt.Sprintf(`
consul { address = %q }
prefix {
  path   = "%s/app"
  format = "A_{{ key }}"
}
prefix { path = "%s/global" }
prefix {
  path   = "%s/app"
  format = "B_{{ key }}"
}
`, a.HTTPAddr(), n, n, n))
		p := run(t, append([]string{"-config", cfg, "-once", "-sanitize"}, childArgs(dir, "exit", 0)...)...)
		if p.code != 0 {
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
		want := map[string]string{"B_PORT": "80", "B_db_host": "db1", "REGION": "eu", "PORT": "8080"}
		if got := onlyConsul(lastEnv(t, dir)); fmtEnv(got) != fmtEnv(want) {
			t.Errorf("environment:\n%s\nwant:\n%s", fmtEnv(got), fmtEnv(want))
		}
		// The same with flags, and a file's block then a flag.
		dir = childDir(t)
		p = run(t, append([]string{"-consul-addr", a.HTTPAddr(), "-once", "-prefix", n + "/app", "-format", "A_{{ key }}", "-prefix", n + "/app"}, childArgs(dir, "exit", 0)...)...)
		want = map[string]string{"PORT": "80", "db.host": "db1"}
		if got := onlyConsul(lastEnv(t, dir)); p.code != 0 || fmtEnv(got) != fmtEnv(want) {
			t.Errorf("exit %d, environment:\n%s\nwant:\n%s\n%s", p.code, fmtEnv(got), fmtEnv(want), p.stderr)
		}
	})

	t.Run("exec.reload_signal is accepted and ignored: a change restarts", func(t *testing.T) {
		// envconsul hands exec.reload_signal to consul-template's child
		// (runner.go Run: child.NewInput ReloadSignal) but never calls its
		// Reload: a change always restarts the command with the new
		// environment. Signalling instead would leave it the old one.
		dir := childDir(t)
		cfg := filepath.Join(t.TempDir(), "envconsul.hcl")
		m := n + "-reload"
		put(t, c, m+"/V", "1")
		proctest.WriteFile(t, cfg, fmt.Sprintf(`
consul { address = %q }
prefix { path = "%s" }
exec { reload_signal = "SIGUSR1" }
`, a.HTTPAddr(), m))
		p := startRaw(t, nowhere, append([]string{"-config", cfg}, childArgs(dir, "hold", 0)...)...)
		eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
		first := starts(dir)[0]
		waitReady(t, dir, first)
		put(t, c, m+"/V", "2")
		eventually.True(t, 20*time.Second, "a restart for the change", func() bool { return len(starts(dir)) == 2 })
		if contains(events(dir), fmt.Sprintf("usr1_%d", first)) || lastEnv(t, dir)["V"] != "2" {
			t.Errorf("want a restart with V=2 and no SIGUSR1: %v, V=%q", events(dir), lastEnv(t, dir)["V"])
		}
		if !strings.Contains(p.stderr.String(), "exec.reload_signal has no effect") {
			t.Errorf("no warning about exec.reload_signal:\n%s", p.stderr)
		}
		p.signal(syscall.SIGTERM)
		p.wait(20 * time.Second)
	})

	t.Run("exec.command as a string is split at commas", func(t *testing.T) {
		// envconsul config.go, Parse: mapstructure's StringToSliceHookFunc(",")
		// turns a string into a list for every list key, exec.command too;
		// a list of several is exec'd as given (consul-template
		// child/command-prep.go, CommandPrep).
		dir := childDir(t)
		cfg := filepath.Join(t.TempDir(), "envconsul.hcl")
		proctest.WriteFile(t, cfg, fmt.Sprintf(`
consul { address = %q }
prefix { path = "%s/app" }
exec { command = %q }
`, a.HTTPAddr(), n, strings.Join([]string{self, "__child", dir, "exit", "0"}, ",")))
		p := run(t, "-config", cfg, "-once")
		if p.code != 0 || lastEnv(t, dir)["PORT"] != "80" {
			t.Fatalf("exit %d, PORT=%q\n%s", p.code, lastEnv(t, dir)["PORT"], p.stderr)
		}
	})

	t.Run("deprecated top-level ssl replaces consul.ssl of the same file", func(t *testing.T) {
		// envconsul config.go, Parse: a top-level ssl (likewise auth, retry,
		// token, splay, timeout) is moved into its block, over the block's
		// own value. Here it turns the block's HTTPS off: the agent speaks
		// HTTP.
		dir := childDir(t)
		cfg := filepath.Join(t.TempDir(), "envconsul.hcl")
		proctest.WriteFile(t, cfg, fmt.Sprintf(`
consul {
  address = %q
  ssl { enabled = true }
}
ssl { enabled = false }
prefix { path = "%s/app" }
`, a.HTTPAddr(), n))
		p := run(t, append([]string{"-config", cfg, "-once", "-wait-timeout", "5s"}, childArgs(dir, "exit", 0)...)...)
		if p.code != 0 || lastEnv(t, dir)["PORT"] != "80" {
			t.Fatalf("exit %d, PORT=%q\n%s", p.code, lastEnv(t, dir)["PORT"], p.stderr)
		}
		// envconsul warns about each deprecated key it moves.
		if !strings.Contains(p.stderr.String(), "top-level ssl is deprecated") {
			t.Errorf("no warning about the top-level ssl:\n%s", p.stderr)
		}
	})

	t.Run("unsupported keys refused in one line", func(t *testing.T) {
		for _, tc := range []struct{ body, want string }{
			{`foo = 1`, "foo: not supported"},
			{`consul { bogus = true }`, "consul.bogus: not supported"},
			{`vault { address = "http://127.0.0.1:8200" }`, "vault: not supported: envexec reads Consul only"},
			{`secret { path = "secret/app" }`, "secret: not supported"},
			{`custom_env = ["A=1"]`, "custom_env: not supported"},
			{`prefix { path = "x" key { bogus = "a" } }`, "prefix.key.bogus: not supported"},
			{`max_stale = "soon"`, "max_stale"},
			{`consul {`, "config"},
		} {
			cfg := filepath.Join(t.TempDir(), "bad.hcl")
			proctest.WriteFile(t, cfg, tc.body)
			p := run(t, "-config", cfg, "-prefix", n+"/app", "--", "true")
			out := strings.TrimSpace(p.stderr.String())
			if p.code != exitConfig || !strings.Contains(out, tc.want) || !strings.Contains(out, cfg) || strings.Contains(out, "\n") {
				t.Errorf("%s: exit %d, stderr %q (want one line with %q and the file)", tc.body, p.code, out, tc.want)
			}
		}
		p := run(t, "-config", filepath.Join(t.TempDir(), "missing.hcl"), "-prefix", n+"/app", "--", "true")
		if p.code != exitConfig || !strings.Contains(p.stderr.String(), "missing.hcl") {
			t.Errorf("missing file: exit %d %s", p.code, p.stderr)
		}
	})

	t.Run("reload signal reads the file again", func(t *testing.T) {
		dir := childDir(t)
		cfg := filepath.Join(t.TempDir(), "envconsul.hcl")
		body := func(format string) string {
			return fmt.Sprintf("consul { address = %q }\nprefix {\n  path = \"%s/app\"\n  format = %q\n}\nsanitize = true\n", a.HTTPAddr(), n, format)
		}
		proctest.WriteFile(t, cfg, body("A_{{ key }}"))
		p := startRaw(t, nowhere, append([]string{"-config", cfg}, childArgs(dir, "hold", 0)...)...)
		eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
		waitReady(t, dir, starts(dir)[0])
		if lastEnv(t, dir)["A_PORT"] != "80" {
			t.Fatalf("first env %v", onlyConsul(lastEnv(t, dir)))
		}
		proctest.WriteFile(t, cfg, body("B_{{ key }}"))
		p.signal(syscall.SIGHUP)
		eventually.True(t, 20*time.Second, "the command started again", func() bool { return len(starts(dir)) == 2 })
		if env := onlyConsul(lastEnv(t, dir)); env["B_PORT"] != "80" || env["A_PORT"] != "" {
			t.Errorf("after the reload: %v", env)
		}
		p.signal(syscall.SIGTERM)
		p.wait(30 * time.Second)
	})
}

// startRaw runs envexec with args only (no -http-addr) and extra environment.
func startRaw(t *testing.T, extraEnv []string, args ...string) *proc {
	t.Helper()
	return startEnvexecArgs(t, extraEnv, args)
}

// TestWaitAsEnvconsul follows consul-template v0.41.1 config/wait.go, which
// envconsul uses for -wait and wait: ParseWaitConfig takes "MIN[:MAX]"
// with MIN 0 (Finalize then leaves the wait disabled: Enabled defaults to
// TimeDurationPresent(Min)) and refuses negative values and MAX below MIN;
// the block's keys are min, max and "bool" (WaitConfig's mapstructure tag
// for Enabled; "enabled" is an unknown key), and a block's MAX below MIN is
// taken: envconsul's runner (runner.go Start) then acts MAX after the first
// change, whatever comes later.
func TestWaitAsEnvconsul(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		flag     string // -wait, or "" for none
		file     string // the configuration file, or "" for none
		min, max time.Duration
		err      string
	}{
		{name: "flag 0s disables", flag: "0s"},
		{name: "flag 0:0 disables", flag: "0:0"},
		{name: "flag min", flag: "2s", min: 2 * time.Second, max: 8 * time.Second},
		{name: "flag negative", flag: "-1s", err: "-wait"},
		{name: "flag max below min", flag: "5s:1s", err: "-wait"},
		{name: "flag three parts", flag: "1s:2s:3s", err: "-wait"},
		{name: "string", file: `wait = "2s:3s"`, min: 2 * time.Second, max: 3 * time.Second},
		{name: "block min", file: `wait { min = "2s" }`, min: 2 * time.Second, max: 8 * time.Second},
		{name: "block bool false", file: `wait { bool = false  min = "5s" }`},
		{name: "block bool true", file: `wait { bool = true  min = "5s"  max = "6s" }`, min: 5 * time.Second, max: 6 * time.Second},
		{name: "block bool true without min", file: `wait { bool = true }`},
		{name: "block max only", file: `wait { max = "10s" }`},
		{name: "block max below min", file: `wait { min = "5s"  max = "1s" }`, min: time.Second, max: time.Second},
		{name: "block enabled refused", file: `wait { enabled = true }`, err: "wait.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-prefix", "app"}
			if tc.flag != "" {
				args = append(args, "-wait", tc.flag)
			}
			if tc.file != "" {
				cfg := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".hcl")
				proctest.WriteFile(t, cfg, tc.file+"\n")
				args = append(args, "-config", cfg)
			}
			o, err := parse(append(args, "true"), io.Discard, io.Discard)
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %v, want one naming %s", err, tc.err)
				}
			case err != nil:
				t.Errorf("error %v", err)
			case o.waitMin != tc.min || (tc.min > 0 && o.waitMax != tc.max):
				t.Errorf("wait %s:%s, want %s:%s", o.waitMin, o.waitMax, tc.min, tc.max)
			}
		})
	}
}

// TestConfigFormsAsEnvconsul follows envconsul's decoding of two forms:
// consul = "ADDR", consul-template's old form of consul { address }, which
// envconsul's decoder takes with a warning (consul-template v0.41.1
// config/mapstructure.go ConsulStringToStructFunc, in envconsul config.go
// Parse), and lost beside a deprecated top-level token (Parse moves it into
// a fresh consul block); and a service block without a query, an empty one
// (config_service.go ServiceConfig.Finalize) that envconsul's runner refuses
// (runner.go init: NewCatalogServiceQuery), exit 14.
func TestConfigFormsAsEnvconsul(t *testing.T) {
	a, c, n := nsWith(t, "app/PORT", "80")
	nowhere := []string{"CONSUL_HTTP_ADDR=127.0.0.1:1"}
	write := func(t *testing.T, body string) string {
		cfg := filepath.Join(t.TempDir(), "envconsul.hcl")
		proctest.WriteFile(t, cfg, body)
		return cfg
	}

	t.Run("consul as a string is its address", func(t *testing.T) {
		dir := childDir(t)
		cfg := write(t, fmt.Sprintf("consul = %q\nprefix { path = \"%s/app\" }\n", a.HTTPAddr(), n))
		p := startRaw(t, nowhere, append([]string{"-config", cfg, "-once", "-wait-timeout", "10s"}, childArgs(dir, "exit", 0)...)...)
		p.wait(30 * time.Second)
		if p.code != 0 || lastEnv(t, dir)["PORT"] != "80" {
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
		if !strings.Contains(p.stderr.String(), "consul = \\\"...\\\" is deprecated") {
			t.Errorf("no deprecation warning:\n%s", p.stderr)
		}
		// Beside a top-level token the string is lost: CONSUL_HTTP_ADDR
		// (nowhere) is used.
		cfg = write(t, fmt.Sprintf("consul = %q\ntoken = \"\"\nprefix { path = \"%s/app\" }\n", a.HTTPAddr(), n))
		p = startRaw(t, nowhere, "-config", cfg, "-once", "-wait-timeout", "1s", "--", "true")
		p.wait(30 * time.Second)
		if p.code != exitWaitTimeout {
			t.Errorf("beside token: exit %d, want %d (the address not read)\n%s", p.code, exitWaitTimeout, p.stderr)
		}
	})

	t.Run("an empty consul.address is CONSUL_HTTP_ADDR, an empty token_file or auth none", func(t *testing.T) {
		// consul-template v0.41.1 dependency/client_set.go
		// CreateConsulClient keeps the API client's default address
		// (CONSUL_HTTP_ADDR) when the address is "", also over an earlier
		// file's address (envconsul's Config.Merge takes the later "").
		dir := childDir(t)
		first := write(t, "consul { address = \"127.0.0.1:1\" }\n")
		cfg := write(t, fmt.Sprintf("consul {\n  address = \"\"\n  token_file = \"\"\n  auth { username = \"\" }\n}\nprefix { path = \"%s/app\" }\n", n))
		p := startRaw(t, []string{"CONSUL_HTTP_ADDR=" + a.HTTPAddr()}, append([]string{"-config", first, "-config", cfg, "-once", "-wait-timeout", "10s"}, childArgs(dir, "exit", 0)...)...)
		p.wait(30 * time.Second)
		if p.code != 0 || lastEnv(t, dir)["PORT"] != "80" {
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
		// Likewise -consul-addr "" (envconsul cli.go: the flag sets
		// Consul.Address to "", over the files).
		dir = childDir(t)
		p = startRaw(t, []string{"CONSUL_HTTP_ADDR=" + a.HTTPAddr()}, append([]string{"-config", first, "-consul-addr", "", "-prefix", n + "/app", "-once", "-wait-timeout", "10s"}, childArgs(dir, "exit", 0)...)...)
		p.wait(30 * time.Second)
		if p.code != 0 || lastEnv(t, dir)["PORT"] != "80" {
			t.Fatalf("-consul-addr \"\": exit %d\n%s", p.code, p.stderr)
		}
	})

	t.Run("empty ssl strings do not turn SSL on", func(t *testing.T) {
		// consul-template v0.41.1 config/ssl.go SSLConfig.Finalize enables
		// SSL for a present (non-empty) cert, key, ca_cert, ca_path or
		// server_name; "" leaves plain HTTP, which the agent speaks.
		dir := childDir(t)
		cfg := write(t, fmt.Sprintf("consul {\n  address = %q\n  ssl {\n    ca_cert = \"\"\n    server_name = \"\"\n  }\n}\nprefix { path = \"%s/app\" }\n", a.HTTPAddr(), n))
		p := startRaw(t, nowhere, append([]string{"-config", cfg, "-once", "-wait-timeout", "5s"}, childArgs(dir, "exit", 0)...)...)
		p.wait(30 * time.Second)
		if p.code != 0 || lastEnv(t, dir)["PORT"] != "80" {
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
		// Likewise the flags (an unset variable in a script).
		dir = childDir(t)
		p = startRaw(t, nowhere, append([]string{"-consul-addr", a.HTTPAddr(), "-consul-ssl-ca-cert", "", "-consul-ssl-server-name", "", "-prefix", n + "/app", "-once", "-wait-timeout", "5s"}, childArgs(dir, "exit", 0)...)...)
		p.wait(30 * time.Second)
		if p.code != 0 || lastEnv(t, dir)["PORT"] != "80" {
			t.Fatalf("flags: exit %d\n%s", p.code, p.stderr)
		}
	})

	t.Run("kill_timeout 0 kills at once", func(t *testing.T) {
		// consul-template v0.41.1 child/child.go kill: the exec kill signal,
		// then time.After(kill_timeout), which fires at once for 0: SIGKILL.
		// ExecConfig.Finalize keeps a 0 (only a missing one is 30s).
		dir := childDir(t)
		m := n + "-kt0"
		put(t, c, m+"/V", "1")
		cfg := write(t, fmt.Sprintf("consul { address = %q }\nprefix { path = %q }\nexec { kill_timeout = \"0s\" }\n", a.HTTPAddr(), m))
		p := startRaw(t, nowhere, append([]string{"-config", cfg}, childArgs(dir, "stubborn", 0)...)...)
		eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 || !p.run.Alive() })
		if !p.run.Alive() {
			p.wait(time.Second)
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
		put(t, c, m+"/V", "2")
		start := time.Now()
		eventually.True(t, 20*time.Second, "restart", func() bool { return len(starts(dir)) == 2 })
		if d := time.Since(start); d > 3*time.Second || lastEnv(t, dir)["V"] != "2" {
			t.Errorf("restart after %s with V=%q; want a SIGKILL at once (the child ignores SIGINT) and V=2", d, lastEnv(t, dir)["V"])
		}
		p.signal(syscall.SIGTERM)
		p.wait(20 * time.Second)
	})

	t.Run("negative retry attempts never give up", func(t *testing.T) {
		// consul-template v0.41.1 config/retry.go RetryFunc gives up only
		// for attempts above 0: -1 retries for ever, so -wait-timeout
		// (exit 11) ends it, not the attempts (-once: exit 14).
		cfg := write(t, fmt.Sprintf("consul {\n  address = \"127.0.0.1:1\"\n  retry {\n    attempts = -1\n    backoff = \"10ms\"\n    max_backoff = \"20ms\"\n  }\n}\nprefix { path = %q }\n", n))
		p := startRaw(t, nowhere, "-config", cfg, "-once", "-wait-timeout", "1s", "--", "true")
		p.wait(30 * time.Second)
		if p.code != exitWaitTimeout {
			t.Errorf("exit %d, want %d (retried until -wait-timeout)\n%s", p.code, exitWaitTimeout, p.stderr)
		}
	})

	t.Run("consul.namespace and transport.max_conns_per_host are read and not used", func(t *testing.T) {
		// envconsul decodes both (consul-template v0.41.1 ConsulConfig,
		// TransportConfig) but its runner.go newClientSet hands neither to
		// CreateConsulClient (hashicorp/envconsul#184 asks for namespaces):
		// its client asks without a namespace, which this Consul (without
		// namespaces: "Namespaces are a Consul Enterprise feature", 400)
		// requires, and its transport has no connection limit.
		dir := childDir(t)
		cfg := write(t, fmt.Sprintf("consul {\n  address = %q\n  namespace = \"team\"\n  transport {\n    max_conns_per_host = 1\n  }\n}\nprefix { path = \"%s/app\" }\n", a.HTTPAddr(), n))
		p := startRaw(t, nowhere, append([]string{"-config", cfg, "-once", "-wait-timeout", "10s"}, childArgs(dir, "exit", 0)...)...)
		p.wait(30 * time.Second)
		if p.code != 0 || lastEnv(t, dir)["PORT"] != "80" {
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
		for _, w := range []string{"consul.namespace has no effect", "max_conns_per_host has no effect"} {
			if !strings.Contains(p.stderr.String(), w) {
				t.Errorf("no warning %q:\n%s", w, p.stderr)
			}
		}
		o, err := parse([]string{"-config", cfg, "-prefix", "app", "true"}, io.Discard, io.Discard)
		if err != nil || o.peer.transport.MaxConnsPerHost != nil {
			t.Errorf("parse: %v, max conns per host %v; want none", err, o.peer.transport.MaxConnsPerHost)
		}
	})

	t.Run("a prefix's key blocks are read and not used", func(t *testing.T) {
		// envconsul decodes prefix { key { name format } } (config_prefix.go
		// KeyFormat) and applies the per-key formats to Vault secrets only
		// (runner.go appendSecrets); appendPrefixes names a Consul
		// prefix's keys without them: PORT stays PORT, and OTHER is kept.
		dir := childDir(t)
		put(t, c, n+"/app/OTHER", "x")
		cfg := write(t, fmt.Sprintf("consul { address = %q }\nprefix {\n  path = \"%s/app\"\n  key {\n    name = \"PORT\"\n    format = \"RENAMED\"\n  }\n}\n", a.HTTPAddr(), n))
		p := startRaw(t, nowhere, append([]string{"-config", cfg, "-once", "-wait-timeout", "10s"}, childArgs(dir, "exit", 0)...)...)
		p.wait(30 * time.Second)
		if env := lastEnv(t, dir); p.code != 0 || env["PORT"] != "80" || env["OTHER"] != "x" || env["RENAMED"] != "" {
			t.Fatalf("exit %d, PORT %q OTHER %q RENAMED %q\n%s", p.code, env["PORT"], env["OTHER"], env["RENAMED"], p.stderr)
		}
		if !strings.Contains(p.stderr.String(), "prefix.key has no effect") {
			t.Errorf("no warning:\n%s", p.stderr)
		}
	})

	t.Run("service without query is a runner error", func(t *testing.T) {
		cfg := write(t, "service { format_id = \"ID\" }\n")
		p := startRaw(t, nowhere, "-config", cfg, "-once", "--", "true")
		p.wait(30 * time.Second)
		if out := strings.TrimSpace(p.stderr.String()); p.code != exitRunner || !strings.Contains(out, "service: query") || strings.Contains(out, "\n") {
			t.Errorf("exit %d, stderr %q; want %d and one line naming service: query", p.code, out, exitRunner)
		}
	})
}

// TestFileNumbersAsEnvconsul: envconsul decodes its files with mapstructure
// v1.5.0 without weak typing (config.go Parse): a duration is a string for
// time.ParseDuration (StringToTimeDurationHookFunc: a bare "5" has no unit
// and is refused) or a number, whole numbers as nanoseconds and numbers
// with a fraction cut to whole nanoseconds, and an integer setting given
// with a fraction is cut too (decodeInt: int64(f)).
func TestFileNumbersAsEnvconsul(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct {
		file  string
		check func(o *options) bool
		err   string
	}{
		{file: `exec { kill_timeout = 2.5 }`, check: func(o *options) bool { return o.killTimeout == 2 }},
		{file: `exec { kill_timeout = 2000000000 }`, check: func(o *options) bool { return o.killTimeout == 2*time.Second }},
		{file: `max_stale = 1500000000.9`, check: func(o *options) bool { return o.maxStale == 1500*time.Millisecond }},
		{file: `consul { retry { attempts = 2.9  backoff = 1.5  max_backoff = 60000000000 } }`,
			check: func(o *options) bool {
				return o.retry.attempts == 2 && o.retry.backoff == 1 && o.retry.maxBackoff == time.Minute
			}},
		{file: `wait { min = 2000000000.7 }`, check: func(o *options) bool { return o.waitMin == 2*time.Second && o.waitMax == 8*time.Second }},
		{file: `{"exec": {"splay": 1.5}}`, check: func(o *options) bool { return o.splay == 1 }},
		{file: `exec { kill_timeout = "5" }`, err: "exec.kill_timeout"},
	} {
		cfg := filepath.Join(dir, fmt.Sprintf("%d.hcl", i))
		proctest.WriteFile(t, cfg, tc.file+"\n")
		o, err := parse([]string{"-config", cfg, "-prefix", "app", "true"}, io.Discard, io.Discard)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) || exitCode(err, 0) != exitConfig {
				t.Errorf("%s: error %v (exit %d), want one naming %s, exit %d", tc.file, err, exitCode(err, 0), tc.err, exitConfig)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.file, err)
		case !tc.check(o):
			t.Errorf("%s: kill timeout %s, max stale %s, retry %+v, wait %s:%s, splay %s", tc.file, o.killTimeout, o.maxStale, o.retry, o.waitMin, o.waitMax, o.splay)
		}
	}
}

// TestWaitMergesAsEnvconsul: envconsul merges the files' wait, then -wait,
// field by field (cli.go loadConfigs with Config.Merge; consul-template
// v0.41.1 config/wait.go WaitConfig.Merge: min, max and bool each win when
// given; ParseWaitConfig, for -wait and wait = "MIN:MAX", gives min and max,
// never bool), then WaitConfig.Finalize fills what is missing (bool: min
// given and not 0; max: 4*min).
func TestWaitMergesAsEnvconsul(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		proctest.WriteFile(t, p, body+"\n")
		return p
	}
	minMax := file("min-max.hcl", `wait { min = "2s"  max = "10s" }`)
	maxOnly := file("max-only.hcl", `wait { max = "20s" }`)
	minOnly := file("min-only.hcl", `wait { min = "3s" }`)
	off := file("off.hcl", `wait { bool = false }`)
	on := file("on.hcl", `wait { bool = true }`)
	str := file("string.hcl", `wait = "1s:5s"`)
	for _, tc := range []struct {
		name     string
		args     []string
		min, max time.Duration
	}{
		{"a later max keeps the min", []string{"-config", minMax, "-config", maxOnly}, 2 * time.Second, 20 * time.Second},
		{"a later min keeps the max", []string{"-config", minMax, "-config", minOnly}, 3 * time.Second, 10 * time.Second},
		{"bool = false turns an earlier wait off", []string{"-config", minMax, "-config", off}, 0, 0},
		{"-wait keeps a file's bool = false", []string{"-config", off, "-wait", "5s"}, 0, 0},
		{"bool = true enables a later min", []string{"-config", on, "-config", minOnly}, 3 * time.Second, 12 * time.Second},
		{"a string gives min and max", []string{"-config", maxOnly, "-config", str}, time.Second, 5 * time.Second},
		{"-wait over a file's max", []string{"-config", maxOnly, "-wait", "1s"}, time.Second, 4 * time.Second},
		{"a later max below the min is every delay", []string{"-config", minMax, "-config", maxOnly, "-config", file("low.hcl", `wait { max = "1s" }`)}, time.Second, time.Second},
	} {
		o, err := parse(append(tc.args, "-prefix", "app", "true"), io.Discard, io.Discard)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if o.waitMin != tc.min || o.waitMax != tc.max {
			t.Errorf("%s: wait %s:%s, want %s:%s", tc.name, o.waitMin, o.waitMax, tc.min, tc.max)
		}
	}
}

// TestNegativeMaxStaleAsEnvconsul: envconsul takes a negative -max-stale
// (cli.go funcDurationVar; max_stale in a file likewise), and
// consul-template v0.41.1 watch/view.go fetch, which allows stale reads for
// any max_stale but 0, then finds every answer's X-Consul-LastContact (0 or
// more) above it and asks the leader again: the data is the leader's, as
// with 0. envexec takes it as 0.
func TestNegativeMaxStaleAsEnvconsul(t *testing.T) {
	a, _, n := nsWith(t, "V", "1")
	cfg := filepath.Join(t.TempDir(), "stale.hcl")
	proctest.WriteFile(t, cfg, "max_stale = \"-1s\"\n")
	for _, args := range [][]string{{"-max-stale=-1s"}, {"-config", cfg}} {
		o, err := parse(append(append([]string{}, args...), "-prefix", "app", "true"), io.Discard, io.Discard)
		if err != nil || o.maxStale != 0 {
			t.Errorf("%v: %v, max stale %s; want 0 (the leader)", args, err, o.maxStale)
			continue
		}
		dir := childDir(t)
		p := runEnvexec(t, a.HTTPAddr(), nil, append(append(args, "-once", "-prefix", n, "-wait-timeout", "20s"), childArgs(dir, "exit", 0)...)...)
		if p.code != 0 || lastEnv(t, dir)["V"] != "1" {
			t.Errorf("%v: exit %d, V=%q\n%s", args, p.code, lastEnv(t, dir)["V"], p.stderr)
		}
	}
}
