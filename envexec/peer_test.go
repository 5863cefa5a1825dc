package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

// TestEnvconsulFlags: the flags of envconsul's cli.go (ParseFlags) are
// accepted with envconsul's meaning.
func TestEnvconsulFlags(t *testing.T) {
	a := consultest.Require(t, agent)
	n := ns(t)
	put(t, a.Client(), n+"/V", "1")
	const dead = "127.0.0.1:1" // nothing listens there

	t.Run("accepted together", func(t *testing.T) {
		dir := childDir(t)
		p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-once", "-prefix", n,
			"-consul-addr", a.HTTPAddr(), "-consul-retry", "-consul-retry-attempts", "3", "-consul-retry-backoff", "50ms",
			"-consul-retry-max-backoff", "1s", "-timeout", "5s", "-exec-kill-signal", "SIGTERM", "-exec-kill-timeout", "2s",
			"-exec-splay", "0s", "-reload-signal", "SIGHUP", "-kill-signal", "SIGINT", "-consul-ssl=false",
			"-consul-transport-dial-timeout", "5s", "-consul-transport-dial-keep-alive", "10s",
			"-consul-transport-disable-keep-alives", "-consul-transport-max-idle-conns-per-host", "4",
			"-consul-transport-tls-handshake-timeout", "5s", "-stale"}, childArgs(dir, "exit", 0)...)...)
		if p.code != 0 || lastEnv(t, dir)["V"] != "1" {
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
		if !strings.Contains(p.stderr.String(), "-timeout has no effect") {
			t.Errorf("no warning that -timeout does nothing:\n%s", p.stderr)
		}
	})
	t.Run("-consul is -consul-addr", func(t *testing.T) {
		dir := childDir(t)
		p := runEnvexec(t, dead, nil, append([]string{"-once", "-prefix", n, "-consul", a.HTTPAddr(), "-wait-timeout", "20s"}, childArgs(dir, "exit", 0)...)...)
		if p.code != 0 || lastEnv(t, dir)["V"] != "1" {
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
	})
	t.Run("-consul-retry-attempts gives up before the start", func(t *testing.T) {
		// N attempts are N retries after the first failure, as envconsul's
		// (consul-template config/retry.go RetryFunc: a retry while
		// retry <= attempts-1; watch/view.go poll calls it after each
		// failure): the KV read is asked N+1 times. A failing Consul is
		// an HTTP server answering 500 to every KV read. envexec then
		// exits 14, envconsul's code for it with -once; without -once
		// envconsul hangs (issue #169; README, differences).
		var kvReads atomic.Int32
		failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
				kvReads.Add(1)
			}
			http.Error(w, "unavailable", http.StatusInternalServerError)
		}))
		defer failing.Close()
		dir := childDir(t)
		p := runEnvexec(t, failing.Listener.Addr().String(), nil, append([]string{"-prefix", n, "-consul-retry-attempts", "2", "-consul-retry-backoff", "20ms"}, childArgs(dir, "exit", 0)...)...)
		if p.code != exitRunner || kvReads.Load() != 3 || len(starts(dir)) != 0 {
			t.Errorf("exit %d, %d KV reads (want 3), starts %v\n%s", p.code, kvReads.Load(), starts(dir), p.stderr)
		}
		// With -once, envconsul's runner error (runner.go Start sends the
		// watch's error up in once mode; cli.go Run: ExitCodeRunnerError).
		p = runEnvexec(t, failing.Listener.Addr().String(), nil, append([]string{"-once", "-prefix", n, "-consul-retry-attempts", "1", "-consul-retry-backoff", "20ms"}, childArgs(dir, "exit", 0)...)...)
		if p.code != exitRunner {
			t.Errorf("-once: exit %d, want %d\n%s", p.code, exitRunner, p.stderr)
		}
		p = runEnvexec(t, dead, nil, append([]string{"-prefix", n, "-consul-retry=false"}, childArgs(dir, "exit", 0)...)...)
		if p.code != exitRunner || !strings.Contains(p.stderr.String(), "failed 1 times") {
			t.Errorf("-consul-retry=false: exit %d\n%s", p.code, p.stderr)
		}
	})
	t.Run("-consul-auth", func(t *testing.T) {
		// A proxy that wants HTTP basic auth in front of the real agent (as
		// a reverse proxy in front of Consul would).
		var refused atomic.Int32
		proxy := agentProxy(t, a, func(w http.ResponseWriter, r *http.Request) bool {
			if u, pw, ok := r.BasicAuth(); !ok || u != "app" || pw != "pa:ss" {
				refused.Add(1)
				http.Error(w, "auth required", http.StatusUnauthorized)
				return false
			}
			return true
		})
		dir := childDir(t)
		p := runEnvexec(t, proxy.URL, nil, append([]string{"-once", "-prefix", n, "-consul-auth", "app:pa:ss", "-wait-timeout", "20s"}, childArgs(dir, "exit", 0)...)...)
		if p.code != 0 || lastEnv(t, dir)["V"] != "1" {
			t.Fatalf("exit %d\n%s", p.code, p.stderr)
		}
		if strings.Contains(p.stderr.String(), "pa:ss") {
			t.Errorf("the password was logged:\n%s", p.stderr)
		}
		p = runEnvexec(t, proxy.URL, nil, append([]string{"-once", "-prefix", n, "-wait-timeout", "2s"}, childArgs(dir, "exit", 0)...)...)
		if p.code != exitWaitTimeout || refused.Load() == 0 {
			t.Errorf("without -consul-auth: exit %d, refused %d\n%s", p.code, refused.Load(), p.stderr)
		}
	})
	t.Run("-exec-reload-signal signals instead of restarting", func(t *testing.T) {
		m := n + "-reload"
		put(t, a.Client(), m+"/V", "1")
		dir := childDir(t)
		p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", m, "-exec-reload-signal", "SIGUSR1"}, childArgs(dir, "hold", 0)...)...)
		eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
		pid := starts(dir)[0]
		waitReady(t, dir, pid)
		put(t, a.Client(), m+"/V", "2")
		eventually.True(t, 20*time.Second, "SIGUSR1 for the change", func() bool { return contains(events(dir), fmt.Sprintf("usr1_%d", pid)) })
		if len(starts(dir)) != 1 {
			t.Errorf("restarted: %v", events(dir))
		}
		p.signal(syscall.SIGTERM)
		p.wait(30 * time.Second)
	})
	t.Run("Vault flags refused", func(t *testing.T) {
		for _, args := range [][]string{{"-secret", "secret/app"}, {"-vault-addr", "http://127.0.0.1:8200"}, {"-vault-ssl"}} {
			p := runEnvexec(t, a.HTTPAddr(), nil, append(append([]string{"-prefix", n}, args...), "--", "true")...)
			if p.code != exitFlags || !strings.Contains(p.stderr.String(), "Vault") || strings.Count(strings.TrimSpace(p.stderr.String()), "\n") != 0 {
				t.Errorf("%v: exit %d\n%s", args, p.code, p.stderr)
			}
		}
	})
	t.Run("syslog", func(t *testing.T) {
		p := runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-syslog-facility", "LOCAL9", "--", "true")
		if p.code != exitConfig || !strings.Contains(p.stderr.String(), "LOCAL9") {
			t.Errorf("bad facility: exit %d\n%s", p.code, p.stderr)
		}
		if _, err := os.Stat("/dev/log"); err == nil {
			t.Skip("a syslog socket exists here; envexec would log into it")
		}
		// No local syslog: envexec says so instead of logging nowhere.
		p = runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-syslog", "--", "true")
		if p.code != exitConfig || !strings.Contains(p.stderr.String(), "-syslog") {
			t.Errorf("-syslog without a syslog: exit %d\n%s", p.code, p.stderr)
		}
	})
}

// TestPeerFlagNames: which names turn HTTPS on and which warn. envconsul's
// -consul-ssl-* flags imply -consul-ssl (consul-template config/ssl.go
// Finalize), the consul CLI's -ca-file and -client-cert do not (as the
// consul CLI); only -consul itself is the deprecated address flag; and
// envconsul's deprecated -auth, -retry, -ssl, -ssl-verify, -ssl-ca-cert and
// -ssl-cert (cli.go ParseFlags, "Deprecations") work with a warning.
func TestPeerFlagNames(t *testing.T) {
	for _, v := range []string{"CONSUL_HTTP_SSL", "CONSUL_HTTP_ADDR", "CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_HTTP_SSL_VERIFY"} {
		t.Setenv(v, "")
	}
	// Files that exist (Config checks the CA path); never read as PEM here.
	dir := t.TempDir()
	ca, crt, key := dir+"/ca.pem", dir+"/c.pem", dir+"/k.pem"
	for _, f := range []string{ca, crt, key} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args     []string
		https    bool
		warn     string // a warning that must be there ("" none)
		check    func(o *options, cfg *api.Config) bool
		checkMsg string
	}{
		{args: []string{"-consul-addr", "127.0.0.1:1"}},
		{args: []string{"-http-addr", "127.0.0.1:1"}},
		{args: []string{"-consul", "127.0.0.1:1"}, warn: "-consul is deprecated"},
		{args: []string{"-ca-file", ca}},
		{args: []string{"-client-cert", crt, "-client-key", key}},
		{args: []string{"-consul-ssl-ca-cert", ca}, https: true},
		{args: []string{"-ssl"}, https: true, warn: "-ssl is deprecated"},
		{args: []string{"-ssl-verify=false"}, https: true, warn: "-ssl-verify is deprecated",
			check: func(o *options, cfg *api.Config) bool { return cfg.TLSConfig.InsecureSkipVerify }, checkMsg: "verification off"},
		{args: []string{"-ssl-ca-cert", ca}, https: true, warn: "-ssl-ca-cert is deprecated",
			check: func(o *options, cfg *api.Config) bool { return cfg.TLSConfig.CAFile == ca }, checkMsg: "the CA file"},
		{args: []string{"-ssl-cert", crt, "-consul-ssl-key", key}, https: true, warn: "-ssl-cert is deprecated",
			check: func(o *options, cfg *api.Config) bool { return cfg.TLSConfig.CertFile == crt }, checkMsg: "the cert file"},
		{args: []string{"-auth", "u:p"}, warn: "-auth is deprecated",
			check: func(o *options, cfg *api.Config) bool {
				return cfg.HttpAuth != nil && cfg.HttpAuth.Username == "u" && cfg.HttpAuth.Password == "p"
			}, checkMsg: "basic auth u:p"},
		{args: []string{"-retry", "2s"}, warn: "-retry is deprecated",
			check: func(o *options, cfg *api.Config) bool {
				return o.retry.backoff == 2*time.Second && o.retry.maxBackoff == 2*time.Second
			}, checkMsg: "retry backoff and max backoff 2s"},
	} {
		o, err := parse(append(tc.args, "-prefix", "p", "true"), io.Discard, io.Discard)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		cfg, err := o.cli.Consul.Config()
		if err != nil {
			t.Fatal(err)
		}
		o.peer.apply(cfg)
		if got := cfg.Scheme == "https"; got != tc.https {
			t.Errorf("%v: scheme %s, want https %v", tc.args, cfg.Scheme, tc.https)
		}
		warns := strings.Join(o.peer.warn, "\n")
		if tc.warn == "" && warns != "" {
			t.Errorf("%v: unexpected warnings %q", tc.args, warns)
		}
		if tc.warn != "" && !strings.Contains(warns, tc.warn) {
			t.Errorf("%v: warnings %q, want one with %q", tc.args, warns, tc.warn)
		}
		if tc.check != nil && !tc.check(o, cfg) {
			t.Errorf("%v: want %s; got %+v", tc.args, tc.checkMsg, cfg)
		}
	}
}

// TestClientCertWithoutKey: envconsul's client certificate given without a
// key is read as one PEM file holding both (consul-template
// dependency/client_set.go: LoadX509KeyPair(cert, cert)), from the flag and
// from a configuration file; the consul CLI's -client-cert still needs
// -client-key, as the consul CLI.
func TestClientCertWithoutKey(t *testing.T) {
	for _, v := range []string{"CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_HTTP_SSL"} {
		t.Setenv(v, "")
	}
	dir := t.TempDir()
	pem := dir + "/both.pem"
	if err := os.WriteFile(pem, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	file := dir + "/c.hcl"
	if err := os.WriteFile(file, []byte("consul {\n  ssl {\n    cert = \""+pem+"\"\n  }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, envKey := range []string{"", dir + "/other-key.pem"} {
		// With SSL on, envconsul builds the TLS settings from its own keys
		// only (client_set.go CreateConsulClient: its own tls.Config on the
		// transport, so the API client's CONSUL_CLIENT_KEY is not read):
		// the key is the certificate's file whatever that variable says.
		t.Setenv("CONSUL_CLIENT_KEY", envKey)
		for _, args := range [][]string{{"-consul-ssl-cert", pem}, {"-ssl-cert", pem}, {"-config", file}} {
			o, err := parse(append(args, "-prefix", "p", "true"), io.Discard, io.Discard)
			if err != nil {
				t.Errorf("%v: %v", args, err)
				continue
			}
			cfg, err := o.cli.Consul.Config()
			if err != nil || cfg.TLSConfig.CertFile != pem || cfg.TLSConfig.KeyFile != pem {
				t.Errorf("CONSUL_CLIENT_KEY=%q %v: %v %+v; want cert and key from %s", envKey, args, err, cfg, pem)
			}
		}
	}
	t.Setenv("CONSUL_CLIENT_KEY", "")
	o, err := parse([]string{"-client-cert", pem, "-prefix", "p", "true"}, io.Discard, io.Discard)
	if err == nil {
		_, err = o.cli.Consul.Config()
	}
	if err == nil || !strings.Contains(err.Error(), "-client-key") {
		t.Errorf("-client-cert without -client-key: %v; want an error naming -client-key", err)
	}
}

// TestRetryBackoffAsEnvconsul: envconsul takes any -consul-retry-backoff
// and -consul-retry-max-backoff (cli.go funcDurationVar: time.ParseDuration;
// the file's retry block likewise) and waits before retry n what
// consul-template v0.41.1 config/retry.go RetryFunc says: backoff*2^n, but
// max_backoff once n is above int(log2(max_backoff/backoff)) when
// max_backoff is above 0. So backoff 0 and max_backoff 0 retry at once
// (every delay 0); a backoff of 0 with a max_backoff above 0 waits
// max_backoff every time (log2 of +Inf converts to the smallest int on
// amd64); a backoff above max_backoff waits max_backoff. The failing Consul
// is an HTTP server answering 500 to everything; -consul-retry-attempts N
// gives up after N+1 KV reads.
func TestRetryBackoffAsEnvconsul(t *testing.T) {
	addr, kvReads := failingConsul(t)
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		reads   int32
		retryIn string // the first logged retry delay, a regexp
	}{
		{"backoff 0 max 0: at once", []string{"-consul-retry-backoff", "0", "-consul-retry-max-backoff", "0", "-consul-retry-attempts", "3"}, exitRunner, 4, `retry_in=0s`},
		{"file backoff 0 max 0", []string{"-config", "retry0.hcl", "-consul-retry-attempts", "3"}, exitRunner, 4, `retry_in=0s`},
		{"deprecated -retry 0", []string{"-retry", "0", "-consul-retry-attempts", "3"}, exitRunner, 4, `retry_in=0s`},
		{"backoff 0 max 1h: 1h each time", []string{"-consul-retry-backoff", "0", "-consul-retry-max-backoff", "1h", "-consul-retry-attempts", "1", "-wait-timeout", "2s"}, exitWaitTimeout, 1, `retry_in=(4[89]|5\d)m|retry_in=1h`},
		{"negative backoff: max each time", []string{"-consul-retry-backoff=-1s", "-consul-retry-max-backoff", "1h", "-consul-retry-attempts", "1", "-wait-timeout", "2s"}, exitWaitTimeout, 1, `retry_in=(4[89]|5\d)m|retry_in=1h`},
		{"backoff above max: max each time", []string{"-consul-retry-backoff", "1h", "-consul-retry-max-backoff", "20ms", "-consul-retry-attempts", "2"}, exitRunner, 3, `retry_in=(1\d|2[0-4])ms`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := childDir(t)
			args := append([]string{}, tc.args...)
			for i, a := range args {
				if a == "retry0.hcl" {
					args[i] = filepath.Join(t.TempDir(), a)
					if err := os.WriteFile(args[i], []byte("consul {\n  retry {\n    backoff = \"0s\"\n    max_backoff = \"0s\"\n  }\n}\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			kvReads.Store(0)
			p := runEnvexec(t, addr, nil, append(append(args, "-prefix", ns(t)), childArgs(dir, "exit", 0)...)...)
			// Retries at once may read once more while envexec gives up;
			// after a long delay the count is exact.
			reads := kvReads.Load()
			if p.code != tc.code || reads < tc.reads || (tc.reads == 1 && reads != 1) || len(starts(dir)) != 0 {
				t.Errorf("exit %d (want %d), %d KV reads (want %d), starts %v\n%s", p.code, tc.code, reads, tc.reads, starts(dir), p.stderr)
			}
			if !regexp.MustCompile(tc.retryIn).MatchString(p.stderr.String()) {
				t.Errorf("no retry delay matching %s logged:\n%s", tc.retryIn, p.stderr)
			}
		})
	}
}

// TestOnceGivesUpAsEnvconsul: with no -consul-retry-attempts (flag,
// ENVEXEC_ variable or a file's retry { attempts }), envconsul's default of
// 12 retries applies (consul-template v0.41.1 config/retry.go Finalize,
// DefaultRetryAttempts; watch/view.go poll gives the error up after them,
// envconsul runner.go Start sends it to ErrCh in once mode and cli.go Run
// exits with ExitCodeRunnerError, 14): the KV read is asked 13 times and
// the command never starts. Without -once envconsul hangs there (issue
// #169); envexec exits 14 too. A given count, 0 (never) too, wins.
func TestOnceGivesUpAsEnvconsul(t *testing.T) {
	addr, kvReads := failingConsul(t)
	fast := []string{"-consul-retry-backoff", "20ms", "-consul-retry-max-backoff", "20ms"}
	file := filepath.Join(t.TempDir(), "retry.hcl")
	if err := os.WriteFile(file, []byte("consul {\n  retry {\n    attempts = 2\n  }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		env   []string
		code  int
		reads int32 // 0: not counted
	}{
		{"-once: envconsul's 12 retries", []string{"-once"}, nil, exitRunner, 13},
		{"-once, a file's attempts", []string{"-once", "-config", file}, nil, exitRunner, 3},
		{"-once, ENVEXEC_CONSUL_RETRY_ATTEMPTS", []string{"-once"}, []string{"ENVEXEC_CONSUL_RETRY_ATTEMPTS=1"}, exitRunner, 2},
		{"without -once too", []string{"-wait-timeout", "20s"}, nil, exitRunner, 13},
		{"-once, -consul-retry-attempts 0: never", []string{"-once", "-consul-retry-attempts", "0", "-wait-timeout", "1s"}, nil, exitWaitTimeout, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := childDir(t)
			kvReads.Store(0)
			args := append(append(append([]string{}, tc.args...), fast...), "-prefix", ns(t))
			p := runEnvexec(t, addr, tc.env, append(args, childArgs(dir, "exit", 0)...)...)
			reads := kvReads.Load()
			if p.code != tc.code || (tc.reads != 0 && reads != tc.reads) || len(starts(dir)) != 0 {
				t.Errorf("exit %d (want %d), %d KV reads (want %d), starts %v\n%s", p.code, tc.code, reads, tc.reads, starts(dir), p.stderr)
			}
		})
	}
}

// TestAuthAsEnvconsul: envconsul merges consul { auth } field by field, the
// files in order, then -consul-auth (cli.go loadConfigs; consul-template
// v0.41.1 config/auth.go AuthConfig.Merge; ParseAuthConfig gives a username,
// and a password only after a colon, never enabled); AuthConfig.Finalize
// enables auth, unless enabled is given, when the username or the password
// is not empty; and CreateConsulClient (dependency/client_set.go) then
// sends both, empty ones too. A proxy in front of the real agent records
// the basic auth of the KV reads.
func TestAuthAsEnvconsul(t *testing.T) {
	a := consultest.Require(t, agent)
	n := ns(t)
	put(t, a.Client(), n+"/V", "1")
	var seen atomic.Value // the last KV read's basic auth, "user|pass" or "none"
	proxy := agentProxy(t, a, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			if u, pw, ok := r.BasicAuth(); ok {
				seen.Store(u + "|" + pw)
			} else {
				seen.Store("none")
			}
		}
		return true
	})
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	userPass := file("user-pass.hcl", "consul {\n  auth {\n    username = \"app\"\n    password = \"old\"\n  }\n}\n")
	passOnly := file("pass-only.hcl", "consul {\n  auth {\n    password = \"pa:ss\"\n  }\n}\n")
	enabledOnly := file("enabled-only.hcl", "consul {\n  auth {\n    enabled = true\n  }\n}\n")
	disabled := file("disabled.hcl", "consul {\n  auth {\n    enabled = false\n    username = \"app\"\n  }\n}\n")
	topLevel := file("top-level.hcl", "auth {\n  password = \"top\"\n}\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a later file's password keeps the username", []string{"-config", userPass, "-config", passOnly}, "app|pa:ss"},
		{"a password alone enables auth", []string{"-config", passOnly}, "|pa:ss"},
		{"enabled alone sends an empty pair", []string{"-config", enabledOnly}, "|"},
		{"-consul-auth USER keeps the file's password", []string{"-config", userPass, "-consul-auth", "other"}, "other|old"},
		{"-consul-auth USER: empties it", []string{"-config", userPass, "-consul-auth", "other:"}, "other|"},
		{"the deprecated -auth likewise", []string{"-config", userPass, "-auth", "other"}, "other|old"},
		{"a deprecated top-level auth merges too", []string{"-config", userPass, "-config", topLevel}, "app|top"},
		{"enabled = false stays under -consul-auth", []string{"-config", disabled, "-consul-auth", "u:p"}, "none"},
		{"-consul-auth alone", []string{"-consul-auth", "u"}, "u|"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen.Store("")
			dir := childDir(t)
			p := runEnvexec(t, proxy.URL, nil, append(append(tc.args, "-once", "-prefix", n, "-wait-timeout", "20s"), childArgs(dir, "exit", 0)...)...)
			if p.code != 0 || lastEnv(t, dir)["V"] != "1" {
				t.Fatalf("exit %d\n%s", p.code, p.stderr)
			}
			if got := seen.Load().(string); got != tc.want {
				t.Errorf("basic auth %q, want %q (user|password)", got, tc.want)
			}
		})
	}
}

// TestIntFlagsAsEnvconsul: envconsul reads its int flags
// (-consul-retry-attempts, -consul-transport-max-idle-conns-per-host) with
// strconv.ParseInt(s, 10, 32) (cli.go funcIntVar): decimal with a sign,
// 32 bits; not Go's flag package's base prefixes (010 octal, 0x10).
func TestIntFlagsAsEnvconsul(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  int
		err   bool
	}{
		{value: "010", want: 10},
		{value: "+5", want: 5},
		{value: "-1", want: -1},
		{value: "0x10", err: true},
		{value: "3000000000", err: true},
		{value: " 5", err: true},
	} {
		for _, flag := range []string{"-consul-retry-attempts", "-consul-transport-max-idle-conns-per-host"} {
			o, err := parse([]string{flag + "=" + tc.value, "-prefix", "app", "true"}, io.Discard, io.Discard)
			switch {
			case tc.err:
				if err == nil || exitCode(err, 0) != exitFlags {
					t.Errorf("%s=%q: error %v (exit %d), want one, exit %d", flag, tc.value, err, exitCode(err, 0), exitFlags)
				}
			case err != nil:
				t.Errorf("%s=%q: %v", flag, tc.value, err)
			case flag == "-consul-retry-attempts" && o.retry.attempts != tc.want:
				t.Errorf("%s=%q: %d, want %d", flag, tc.value, o.retry.attempts, tc.want)
			case flag != "-consul-retry-attempts" && (o.peer.transport.MaxIdleConnsPerHost == nil || *o.peer.transport.MaxIdleConnsPerHost != tc.want):
				t.Errorf("%s=%q: %v, want %d", flag, tc.value, o.peer.transport.MaxIdleConnsPerHost, tc.want)
			}
		}
	}
}

// TestAddressPathPrefixAsEnvconsul: envconsul hands its Consul address, with
// its scheme, to consul-template's CreateConsulClient
// (dependency/client_set.go), and consul/api's NewClient (api.go) takes what
// follows the host of an http:// or https:// address as the path prefix of a
// reverse proxy in front of the agent: "http://gw/consul" reads
// http://gw/consul/v1/kv/... Flag, file and CONSUL_HTTP_ADDR alike. A
// trailing "/" alone (the prefix "/") is refused, exit 14 naming the
// address: consul/api reads its "//v1/kv/..." as the host "v1" (api.go
// toHTTP), every read is a 404, and envconsul's KV reads take that as no
// keys (kv.go getInternal): the command would run without its variables.
func TestAddressPathPrefixAsEnvconsul(t *testing.T) {
	a := consultest.Require(t, agent)
	n := ns(t)
	put(t, a.Client(), n+"/V", "1")
	var reads atomic.Int64 // KV reads that came through the prefix
	proxy := agentProxy(t, a, func(w http.ResponseWriter, r *http.Request) bool {
		rest, ok := strings.CutPrefix(r.URL.Path, "/consul/")
		if !ok {
			http.NotFound(w, r)
			return false
		}
		if strings.HasPrefix(rest, "v1/kv/") {
			reads.Add(1)
		}
		r.URL.Path, r.URL.RawPath = "/"+rest, ""
		return true
	})
	file := filepath.Join(t.TempDir(), "consul.hcl")
	if err := os.WriteFile(file, []byte(fmt.Sprintf("consul {\n  address = %q\n}\n", proxy.URL+"/consul")), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		env     []string
		args    []string
		through bool // read through the proxy's prefix
	}{
		{"-consul-addr with a path prefix", nil, []string{"-consul-addr", proxy.URL + "/consul"}, true},
		{"a file's address with a path prefix", nil, []string{"-config", file}, true},
		{"CONSUL_HTTP_ADDR with a path prefix", []string{"CONSUL_HTTP_ADDR=" + proxy.URL + "/consul"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reads.Load()
			dir := childDir(t)
			args := append(append(tc.args, "-once", "-prefix", n, "-wait-timeout", "20s"), childArgs(dir, "exit", 0)...)
			p := startEnvexecArgs(t, tc.env, args)
			if code := p.wait(60 * time.Second); code != 0 || lastEnv(t, dir)["V"] != "1" {
				t.Fatalf("exit %d\n%s", code, p.stderr)
			}
			if got := reads.Load() > before; got != tc.through {
				t.Errorf("read through the proxy's /consul prefix: %v, want %v", got, tc.through)
			}
		})
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"-consul-addr with a trailing slash", nil, []string{"-consul-addr", "http://" + a.HTTPAddr() + "/"}},
		{"CONSUL_HTTP_ADDR with a trailing slash", []string{"CONSUL_HTTP_ADDR=http://" + a.HTTPAddr() + "/"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := childDir(t)
			args := append(append(tc.args, "-once", "-prefix", n, "-wait-timeout", "20s"), childArgs(dir, "exit", 0)...)
			p := startEnvexecArgs(t, tc.env, args)
			code := p.wait(60 * time.Second)
			lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
			if code != 14 || len(lines) != 1 || !strings.Contains(lines[0], a.HTTPAddr()+"/") || len(starts(dir)) != 0 {
				t.Fatalf("exit %d, child starts %d, stderr:\n%s\nwant exit 14, no start, one line naming the address", code, len(starts(dir)), p.stderr)
			}
		})
	}
}

// agentProxy serves the test agent's HTTP API through a reverse proxy, as
// one in front of Consul would: front sees each request first and passes
// it on to the agent when it returns true (it may change it, or answer it
// itself and return false). The proxy is closed when the test ends.
func agentProxy(t *testing.T, a *consultest.Agent, front func(http.ResponseWriter, *http.Request) bool) *httptest.Server {
	t.Helper()
	target, err := url.Parse("http://" + a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if front(w, r) {
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(proxy.Close)
	return proxy
}

// failingConsul starts an HTTP server that answers every request with 500,
// as an agent does when Consul cannot serve it (no cluster leader, a
// server error), and counts the KV reads it was asked; it returns its
// address and that count. It stands in for a real failing agent only to
// count the reads each retry makes; it is closed when the test ends.
func failingConsul(t *testing.T) (addr string, kvReads *atomic.Int32) {
	t.Helper()
	kvReads = new(atomic.Int32)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			kvReads.Add(1)
		}
		http.Error(w, "unavailable", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	return failing.Listener.Addr().String(), kvReads
}

// TestRetryDelaysAndGiveUpAsEnvconsul: envconsul waits before retry n
// exactly backoff*2^n, max_backoff once that is above it, without jitter
// (consul-template v0.41.1 config/retry.go RetryFunc, used by envconsul
// runner.go newWatcher for every Consul view), and when the retries are
// used up it logs that it exceeded the maximum retries instead of another
// retry (watch/view.go poll) and, with -once, ends with its runner error
// (runner.go Start, cli.go Run: 14). envexec logs the same delays
// (retry_in), never a retry for the failure it gives up on, and waits at
// least each delay between the KV reads; -consul-retry-jitter varies the
// delays.
func TestRetryDelaysAndGiveUpAsEnvconsul(t *testing.T) {
	var mu sync.Mutex
	var reads []time.Time
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			mu.Lock()
			reads = append(reads, time.Now())
			mu.Unlock()
		}
		http.Error(w, "unavailable", http.StatusInternalServerError)
	}))
	defer failing.Close()
	retryIn := regexp.MustCompile(`retry_in=(\S+)`)
	args := []string{"-once", "-prefix", ns(t), "-consul-retry-attempts", "4", "-consul-retry-backoff", "40ms", "-consul-retry-max-backoff", "200ms"}
	want := []time.Duration{40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond, 200 * time.Millisecond}

	dir := childDir(t)
	p := runEnvexec(t, failing.Listener.Addr().String(), nil, append(args, childArgs(dir, "exit", 0)...)...)
	out := p.stderr.String()
	var got []string
	for _, m := range retryIn.FindAllStringSubmatch(out, -1) {
		got = append(got, m[1])
	}
	if fmt.Sprint(got) != "[40ms 80ms 160ms 200ms]" {
		t.Errorf("retry delays %v, want [40ms 80ms 160ms 200ms] (no retry logged for the last failure)\n%s", got, out)
	}
	if p.code != exitRunner || len(starts(dir)) != 0 {
		t.Errorf("exit %d, want %d, starts %v\n%s", p.code, exitRunner, starts(dir), out)
	}
	last := strings.LastIndex(out, "retry_in=")
	if i := strings.Index(out, `level=ERROR msg="Consul retries exhausted; giving up"`); i < last {
		t.Errorf("no give-up line after the last retry:\n%s", out)
	}
	mu.Lock()
	if len(reads) != len(want)+1 {
		t.Errorf("%d KV reads, want %d", len(reads), len(want)+1)
	} else {
		for i, d := range want {
			if gap := reads[i+1].Sub(reads[i]); gap < d {
				t.Errorf("read %d came %s after the one before, under the %s delay", i+2, gap, d)
			}
		}
	}
	reads = nil
	mu.Unlock()

	p = runEnvexec(t, failing.Listener.Addr().String(), nil, append(append(args, "-consul-retry-jitter"), childArgs(dir, "exit", 0)...)...)
	got = got[:0]
	for _, m := range retryIn.FindAllStringSubmatch(p.stderr.String(), -1) {
		got = append(got, m[1])
	}
	if len(got) != 4 || fmt.Sprint(got) == "[40ms 80ms 160ms 200ms]" {
		t.Errorf("-consul-retry-jitter: retry delays %v, want 4 not all exact\n%s", got, p.stderr)
	}
}

// TestGivenUpSourceAfterStart: a source that runs out of retries after the
// command started is given up as envconsul gives it up (consul-template
// v0.41.1 watch/view.go poll returns after "exceeded maximum retries";
// envconsul runner.go Start logs the watcher's error and goes on when not
// in once mode): the command keeps running, that source is not asked
// again (its later changes are not seen), and a change of another source
// restarts the command with the given-up source's last values. Here a proxy in front of the agent
// fails the reads of one prefix only.
func TestGivenUpSourceAfterStart(t *testing.T) {
	a := consultest.Require(t, agent)
	n := ns(t)
	put(t, a.Client(), n+"/gone/V", "1")
	put(t, a.Client(), n+"/kept/W", "1")
	var failGone atomic.Bool
	var goneReads atomic.Int32
	proxy := agentProxy(t, a, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/v1/kv/"+n+"/gone") {
			goneReads.Add(1)
			if failGone.Load() {
				http.Error(w, "unavailable", http.StatusInternalServerError)
				return false
			}
		}
		return true
	})
	dir := childDir(t)
	maddr := proctest.FreeAddr(t)
	p := startEnvexec(t, proxy.URL, nil, append([]string{"-metrics-addr", maddr, "-prefix", n + "/gone", "-prefix", n + "/kept",
		"-consul-retry-attempts", "2", "-consul-retry-backoff", "20ms", "-consul-retry-max-backoff", "40ms"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	waitReady(t, dir, starts(dir)[0])
	failGone.Store(true)
	// The blocking read of the gone prefix in flight still passes: a change
	// ends it (V=2, a restart), and the reads after it fail.
	put(t, a.Client(), n+"/gone/V", "2")
	eventually.True(t, 20*time.Second, "the give-up line", func() bool {
		return strings.Contains(p.stderr.String(), `msg="no longer watching the source`)
	})
	after := goneReads.Load()
	if code, b, err := proctest.Fetch(maddr, "/health"); err != nil || code != 200 || !strings.Contains(b, "/gone is no longer watched") {
		t.Errorf("/health after the give-up: %d %q %v, want 200 degraded naming the source", code, b, err)
	}
	failGone.Store(false)
	put(t, a.Client(), n+"/gone/V", "3")
	put(t, a.Client(), n+"/kept/W", "2")
	eventually.True(t, 20*time.Second, "the restart for W=2", func() bool { return lastEnv(t, dir)["W"] == "2" })
	if env := lastEnv(t, dir); env["V"] != "2" || len(starts(dir)) != 3 {
		t.Errorf("after the restart for W=2: V=%q, want 2 (the value when given up); starts %v", env["V"], starts(dir))
	}
	s := starts(dir)
	waitReady(t, dir, s[len(s)-1])
	if got := goneReads.Load(); got != after {
		t.Errorf("the given-up prefix was read %d more times", got-after)
	}
	p.signal(syscall.SIGTERM)
	p.wait(30 * time.Second)
}
