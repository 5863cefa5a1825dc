package consulclient

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parse(t *testing.T, args ...string) (*Flags, error) {
	t.Helper()
	var f Flags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	f.Register(fs)
	if err := f.Alias(fs, "consul-addr", "http-addr"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &f, nil
}

func clearEnv(t *testing.T) {
	for _, k := range []string{"CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_TLS_SERVER_NAME", "CONSUL_HTTP_SSL"} {
		t.Setenv(k, "")
	}
}

func TestEnvUsedWhenNoFlags(t *testing.T) {
	clearEnv(t)
	t.Setenv("CONSUL_HTTP_ADDR", "10.0.0.1:8500")
	t.Setenv("CONSUL_HTTP_TOKEN", "env-token")
	t.Setenv("CONSUL_TLS_SERVER_NAME", "consul.example")
	f, _ := parse(t)
	cfg, err := f.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "10.0.0.1:8500" || cfg.Token != "env-token" || cfg.TLSConfig.Address != "consul.example" {
		t.Fatalf("env not used: %+v", cfg)
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	clearEnv(t)
	t.Setenv("CONSUL_HTTP_ADDR", "10.0.0.1:8500")
	t.Setenv("CONSUL_HTTP_TOKEN", "env-token")
	f, _ := parse(t, "-http-addr", "https://127.0.0.1:8501", "-token", "flag-token", "-datacenter", "dc9")
	cfg, err := f.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "127.0.0.1:8501" || cfg.Scheme != "https" || cfg.Token != "flag-token" || cfg.Datacenter != "dc9" {
		t.Fatalf("flags did not override: addr %s scheme %s dc %s", cfg.Address, cfg.Scheme, cfg.Datacenter)
	}
	f, _ = parse(t, "-consul-addr", "127.0.0.2:8500")
	if cfg, _ = f.Config(); cfg.Address != "127.0.0.2:8500" {
		t.Fatalf("alias -consul-addr ignored: %s", cfg.Address)
	}
}

func TestTokenFilePrecedence(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env-token")
	flagFile := filepath.Join(dir, "flag-token")
	os.WriteFile(envFile, []byte("from-env-file\n"), 0o600)
	os.WriteFile(flagFile, []byte("from-flag-file\n"), 0o600)

	t.Setenv("CONSUL_HTTP_TOKEN_FILE", envFile)
	f, _ := parse(t)
	if cfg, err := f.Config(); err != nil || cfg.Token != "from-env-file" {
		t.Fatalf("env token file: %v %q", err, cfg.Token)
	}
	t.Setenv("CONSUL_HTTP_TOKEN", "env-token")
	f, _ = parse(t, "-token-file", flagFile)
	if cfg, err := f.Config(); err != nil || cfg.Token != "from-flag-file" {
		t.Fatalf("-token-file must beat CONSUL_HTTP_TOKEN: %v %q", err, cfg.Token)
	}
	f, _ = parse(t, "-token-file", flagFile, "-token", "flag")
	if cfg, err := f.Config(); err != nil || cfg.Token != "flag" {
		t.Fatalf("-token must beat -token-file: %v %q", err, cfg.Token)
	}
}

func TestBadInputNamesCulprit(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	cert := filepath.Join(dir, "cert.pem")
	os.WriteFile(cert, []byte("x"), 0o600)
	cases := map[string][]string{
		"-token-file": {"-token-file", filepath.Join(dir, "missing")},
		"empty":       {"-token-file", empty},
		"CA file":     {"-ca-file", filepath.Join(dir, "nope.pem")},
		"client key":  {"-client-cert", cert},
		"-http-addr":  {"-http-addr", ""},
	}
	for want, args := range cases {
		f, _ := parse(t, args...)
		_, err := f.Config()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: error %v, want one mentioning %q", args, err, want)
		}
	}
}

func TestTokenNotInErrors(t *testing.T) {
	clearEnv(t)
	f, _ := parse(t, "-token", "s3cret-value", "-ca-file", "/nonexistent/ca.pem")
	_, err := f.Config()
	if err == nil || strings.Contains(err.Error(), "s3cret-value") {
		t.Fatalf("error %v must exist and not contain the token", err)
	}
}
