package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
)

// ACL token (flag, file, environment) and TLS to a real agent that has
// default-deny ACLs and serves HTTPS with its own CA.
func TestACLTokenAndTLS(t *testing.T) {
	a := consultest.StartSecure(t, "envexec-secure")
	token, tokenFile := a.Token, a.TokenFile
	put(t, a.Client(), "secure/app/DB_HOST", "db1.internal")
	https := "https://" + a.HTTPSAddr()
	for _, c := range a.Credentials() {
		t.Run(c.Name, func(t *testing.T) {
			args := append(append([]string{}, c.Args...), "-log-level", "debug", "-prefix", "secure/app", "-export", "json")
			p := runEnvexec(t, https, c.Env, args...)
			if p.code != 0 || !strings.Contains(p.stdout.String(), "db1.internal") {
				t.Fatalf("exit %d, stdout %q\nstderr:\n%s", p.code, p.stdout, p.stderr)
			}
			a.RequireNoToken(t, "envexec's output", p.stderr.String()+p.stdout.String())
		})
	}
	// envconsul's TLS flags (cli.go, ParseFlags) with consul-template's rule
	// that any SSL setting turns SSL on (config/ssl.go, SSLConfig.Finalize):
	// the address has no scheme here, so only they make envexec speak HTTPS.
	for _, args := range [][]string{
		{"-consul-ssl", "-consul-ssl-ca-cert", a.TLS.CAFile, "-consul-ssl-server-name", a.TLS.ServerName},
		{"-consul-ssl-ca-cert", a.TLS.CAFile},
		{"-consul-ssl", "-consul-ssl-verify=false"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			args := append(append([]string{}, args...), "-consul-token", token, "-prefix", "secure/app", "-export", "json", "-wait-timeout", "20s")
			p := runEnvexec(t, a.HTTPSAddr(), nil, args...)
			if p.code != 0 || !strings.Contains(p.stdout.String(), "db1.internal") {
				t.Fatalf("exit %d, stdout %q\nstderr:\n%s", p.code, p.stdout, p.stderr)
			}
		})
	}
	// The same from a configuration file: consul { ssl { ca_cert } } turns
	// SSL on (SSLConfig.Finalize), consul { address, token }.
	cfg := filepath.Join(t.TempDir(), "envconsul.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("consul {\n  address = %q\n  token = %q\n  ssl {\n    ca_cert = %q\n  }\n}\nprefix {\n  path = \"secure/app\"\n}\n",
		a.HTTPSAddr(), token, a.TLS.CAFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startEnvexecArgs(t, []string{"CONSUL_HTTP_ADDR=127.0.0.1:1"}, []string{"-config", cfg, "-export", "json", "-wait-timeout", "20s"})
	if code := p.wait(60 * time.Second); code != 0 || !strings.Contains(p.stdout.String(), "db1.internal") {
		t.Fatalf("config file: exit %d, stdout %q\nstderr:\n%s", code, p.stdout, p.stderr)
	}

	// Verification stays on by default: without the CA, no answer.
	p = runEnvexec(t, a.HTTPSAddr(), nil, "-consul-ssl", "-consul-token", token, "-prefix", "secure/app", "-export", "json", "-wait-timeout", "3s")
	if p.code == 0 || !strings.Contains(p.stderr.String(), "certificate signed by unknown authority") {
		t.Fatalf("-consul-ssl without the CA: exit %d, stderr %q", p.code, p.stderr)
	}

	// Without a token the agent shows nothing of the prefix.
	p = runEnvexec(t, https, nil, append(a.NoToken().Args, "-prefix", "secure/app", "-export", "json", "-wait-timeout", "3s")...)
	if strings.Contains(p.stdout.String(), "db1.internal") {
		t.Fatalf("read the prefix without a token: %q", p.stdout)
	}
	wrongFile := filepath.Join(t.TempDir(), "wrong-token")
	if err := os.WriteFile(wrongFile, []byte("not-the-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// envconsul's own token variables (consul-template config/consul.go,
	// ConsulConfig.Finalize): CONSUL_TOKEN, also over CONSUL_HTTP_TOKEN,
	// and CONSUL_TOKEN_FILE; a -token flag wins over them.
	for i, env := range [][]string{
		{"CONSUL_TOKEN=" + token},
		{"CONSUL_TOKEN=" + token, "CONSUL_HTTP_TOKEN=not-the-token"},
		{"CONSUL_TOKEN_FILE=" + tokenFile},
		{"CONSUL_TOKEN_FILE=" + tokenFile, "CONSUL_HTTP_TOKEN_FILE=" + wrongFile},
	} {
		p := runEnvexec(t, https, env, append(a.NoToken().Args, "-prefix", "secure/app", "-export", "json", "-wait-timeout", "20s")...)
		if p.code != 0 || !strings.Contains(p.stdout.String(), "db1.internal") {
			t.Errorf("%d: exit %d, stdout %q\nstderr:\n%s", i, p.code, p.stdout, p.stderr)
		}
		a.RequireNoToken(t, "envexec's output", p.stderr.String()+p.stdout.String())
	}
	p = runEnvexec(t, https, []string{"CONSUL_TOKEN=not-the-token"}, append(a.NoToken().Args, "-token", token, "-prefix", "secure/app", "-export", "json", "-wait-timeout", "20s")...)
	if p.code != 0 || !strings.Contains(p.stdout.String(), "db1.internal") {
		t.Errorf("-token under CONSUL_TOKEN: exit %d, stdout %q\nstderr:\n%s", p.code, p.stdout, p.stderr)
	}
	// A CA file that is not PEM: refused at start, naming the file.
	p = runEnvexec(t, https, nil, "-ca-file", tokenFile, "-token", token, "-prefix", "secure/app", "-export", "json", "-wait-timeout", "3s")
	if p.code == 0 || !strings.Contains(p.stderr.String(), "CA File") || !strings.Contains(p.stderr.String(), tokenFile) {
		t.Fatalf("non-PEM CA: exit %d, stderr %q", p.code, p.stderr)
	}
	// A certificate that did not sign the agent's: the wait times out and
	// says why.
	other, err := consultest.MakeTLS(t.TempDir(), "dc1")
	if err != nil {
		t.Fatal(err)
	}
	p = runEnvexec(t, https, nil, "-ca-file", other.CAFile, "-tls-server-name", a.TLS.ServerName, "-token", token, "-prefix", "secure/app", "-export", "json", "-wait-timeout", "3s")
	if p.code == 0 || !strings.Contains(p.stderr.String(), "certificate signed by unknown authority") {
		t.Fatalf("wrong CA: exit %d, stderr %q", p.code, p.stderr)
	}
}

// TestEmptyTokenFile: an empty token file (-token-file,
// CONSUL_HTTP_TOKEN_FILE, CONSUL_TOKEN_FILE, a file's consul { token_file })
// is no token: envexec goes on without one, as the
// Consul API client envconsul builds on does (consul/api api.go NewClient
// takes a TokenFile's trimmed content only when not empty;
// consul-template v0.41.1 dependency/client_set.go passes token_file to
// it), instead of refusing to start.
func TestEmptyTokenFile(t *testing.T) {
	a, _, n := nsWith(t, "K", "v")
	empty := filepath.Join(t.TempDir(), "empty-token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "c.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("consul {\n  token_file = %q\n}\n", empty)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"-token-file", nil, []string{"-token-file", empty}},
		{"CONSUL_HTTP_TOKEN_FILE", []string{"CONSUL_HTTP_TOKEN_FILE=" + empty}, nil},
		{"CONSUL_TOKEN_FILE", []string{"CONSUL_TOKEN_FILE=" + empty}, nil},
		{"token_file", nil, []string{"-config", cfg}},
	} {
		dir := childDir(t)
		p := runEnvexec(t, a.HTTPAddr(), tc.env, append(append(tc.args, "-once", "-prefix", n), childArgs(dir, "exit", 0)...)...)
		if p.code != 0 {
			t.Errorf("%s: exit %d, want 0 (no token)\n%s", tc.name, p.code, p.stderr)
			continue
		}
		if env := lastEnv(t, dir); env["K"] != "v" {
			t.Errorf("%s: K=%q, want v", tc.name, env["K"])
		}
	}
}

// TestEmptyTokenFlagAsEnvconsul: an empty -consul-token "" (an unset
// variable in a script) is no token of its own, and the Consul API
// client's variables still give one, as envconsul: its cli.go sets
// Consul.Token to "", so consul-template's ConsulConfig.Finalize no longer
// reads CONSUL_TOKEN or CONSUL_HTTP_TOKEN (only a nil token is filled);
// its runner.go newClientSet hands "" to consul-template v0.41.1
// dependency/client_set.go CreateConsulClient, which keeps
// api.DefaultConfig's token for "" (CONSUL_HTTP_TOKEN), and consul/api
// api.go NewClient (v1.32.1, envconsul's) then reads CONSUL_HTTP_TOKEN_FILE
// over it when set. So CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE work,
// CONSUL_TOKEN does not. Against a real agent with default-deny ACLs,
// where a read without the token sees no key.
func TestEmptyTokenFlagAsEnvconsul(t *testing.T) {
	a := consultest.StartSecure(t, "envexec-empty-token")
	put(t, a.Client(), "secure/app/DB_HOST", "db1.internal")
	https := "https://" + a.HTTPSAddr()
	wrongFile := filepath.Join(t.TempDir(), "wrong-token")
	if err := os.WriteFile(wrongFile, []byte("not-the-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		read bool
	}{
		{"CONSUL_HTTP_TOKEN", []string{"CONSUL_HTTP_TOKEN=" + a.Token}, true},
		{"CONSUL_HTTP_TOKEN_FILE", []string{"CONSUL_HTTP_TOKEN_FILE=" + a.TokenFile}, true},
		{"CONSUL_HTTP_TOKEN_FILE over CONSUL_HTTP_TOKEN", []string{"CONSUL_HTTP_TOKEN=not-the-token", "CONSUL_HTTP_TOKEN_FILE=" + a.TokenFile}, true},
		{"CONSUL_TOKEN is not read", []string{"CONSUL_TOKEN=" + a.Token}, false},
		{"CONSUL_TOKEN_FILE is not read", []string{"CONSUL_TOKEN_FILE=" + a.TokenFile}, false},
		{"no variable", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, flag := range []string{"-consul-token", "-token"} {
				dir := childDir(t)
				args := append(append([]string{}, a.NoToken().Args...), flag, "", "-once", "-prefix", "secure/app", "-wait-timeout", "20s")
				p := runEnvexec(t, https, tc.env, append(args, childArgs(dir, "exit", 0)...)...)
				if p.code != 0 {
					t.Fatalf("%s \"\": exit %d\n%s", flag, p.code, p.stderr)
				}
				if got := lastEnv(t, dir)["DB_HOST"] == "db1.internal"; got != tc.read {
					t.Errorf("%s \"\": read the prefix %v, want %v\n%s", flag, got, tc.read, p.stderr)
				}
				a.RequireNoToken(t, "envexec's output", p.stderr.String()+p.stdout.String())
			}
		})
	}
	// A token given by any name of the flag wins over CONSUL_TOKEN (only a
	// nil token is filled from it).
	for _, flag := range []string{"-consul-token", "-token"} {
		dir := childDir(t)
		args := append(append([]string{}, a.NoToken().Args...), flag, a.Token, "-once", "-prefix", "secure/app", "-wait-timeout", "20s")
		p := runEnvexec(t, https, []string{"CONSUL_TOKEN=not-the-token"}, append(args, childArgs(dir, "exit", 0)...)...)
		if p.code != 0 || lastEnv(t, dir)["DB_HOST"] != "db1.internal" {
			t.Errorf("%s TOKEN under CONSUL_TOKEN: exit %d, DB_HOST %q\n%s", flag, p.code, lastEnv(t, dir)["DB_HOST"], p.stderr)
		}
	}
}
