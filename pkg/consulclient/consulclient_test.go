package consulclient

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/berth/berth/pkg/consultest"
	"github.com/hashicorp/consul/api"
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

// writeFile writes content to the file name in dir (mode 0600) and
// returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
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
	envFile := writeFile(t, dir, "env-token", "from-env-file\n")
	flagFile := writeFile(t, dir, "flag-token", "from-flag-file\n")

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

// TestEmptyTokenFile: an empty (or blank) token file is no token and no
// error, as the Consul API client reads one (api.go NewClient), and so the
// consul CLI, envconsul and consul-template; a token from a variable stays.
func TestEmptyTokenFile(t *testing.T) {
	clearEnv(t)
	empty := writeFile(t, t.TempDir(), "empty", " \n")
	check := func(what, wantToken string, args ...string) {
		t.Helper()
		f, _ := parse(t, args...)
		cfg, err := f.Config()
		if err != nil {
			t.Errorf("%s: %v; want no error", what, err)
			return
		}
		if cfg.Token != wantToken || cfg.TokenFile != "" {
			t.Errorf("%s: token %q, file %q; want token %q", what, cfg.Token, cfg.TokenFile, wantToken)
		}
	}
	check("-token-file (empty)", "", "-token-file", empty)
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", empty)
	check("CONSUL_HTTP_TOKEN_FILE (empty)", "")
	t.Setenv("CONSUL_HTTP_TOKEN", "from-env")
	check("-token-file (empty) with CONSUL_HTTP_TOKEN", "from-env", "-token-file", empty)
}

func TestBadInputNamesCulprit(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	cert := writeFile(t, dir, "cert.pem", "x")
	cases := map[string][]string{
		"-token-file": {"-token-file", filepath.Join(dir, "missing")},
		"CA file":     {"-ca-file", filepath.Join(dir, "nope.pem")},
		"client key":  {"-client-cert", cert},
		"-http-addr":  {"-http-addr", "127.0.0.1:abc"},
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

// TestStale runs reads and writes through a recording proxy in front of a
// real agent: with -stale (the consul CLI's flag: "no effect on non-read
// operations", command/flags/http.go) reads carry ?stale, writes and reads
// that ask for ?consistent do not; without it nothing changes.
func TestStale(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{})
	target, _ := url.Parse("http://" + a.HTTPAddr())
	var mu sync.Mutex
	var seen []string
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	clearEnv(t)
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		return out
	}
	hasStale := func(req string) bool {
		u, _ := url.Parse(req[strings.IndexByte(req, ' ')+1:])
		return u.Query().Has("stale")
	}
	for _, stale := range []bool{true, false} {
		args := []string{"-http-addr", proxy.URL}
		if stale {
			args = append(args, "-stale")
		}
		f, _ := parse(t, args...)
		if f.Stale() != stale {
			t.Fatalf("Stale() = %v", f.Stale())
		}
		c, err := f.Client()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.KV().Put(&api.KVPair{Key: "stale-test/k", Value: []byte("v")}, nil); err != nil {
			t.Fatal(err)
		}
		kv, _, err := c.KV().Get("stale-test/k", nil)
		if err != nil || kv == nil || string(kv.Value) != "v" {
			t.Fatalf("get: %v %v", kv, err)
		}
		if _, _, err := c.KV().Get("stale-test/k", &api.QueryOptions{RequireConsistent: true}); err != nil {
			t.Fatalf("consistent get: %v", err)
		}
		reqs := take()
		if len(reqs) != 3 {
			t.Fatalf("requests %v", reqs)
		}
		if hasStale(reqs[0]) || hasStale(reqs[2]) || hasStale(reqs[1]) != stale {
			t.Errorf("stale=%v: %q", stale, reqs)
		}
	}
}

// TestNewClientBadAddressNamesTheFlag: a bad address is an error that names
// where it came from.
func TestNewClientBadAddressNamesTheFlag(t *testing.T) {
	_, err := NewClient(&api.Config{Address: "ht!tp://x"})
	if err == nil || !strings.Contains(err.Error(), `-http-addr (CONSUL_HTTP_ADDR) "ht!tp://x"`) {
		t.Fatalf("error %v does not name -http-addr and the address", err)
	}
}

// TestNewClientBadTLSFileNamesTheFlag: a CA directory, a CA file or a
// client certificate the Consul API cannot load is an error naming that
// setting, not the agent's address (which is fine).
func TestNewClientBadTLSFileNamesTheFlag(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tls  api.TLSConfig
		want string
	}{
		{api.TLSConfig{CAPath: "/nonexistent-ca-dir"}, `-ca-path "/nonexistent-ca-dir"`},
		{api.TLSConfig{CAFile: empty}, "-ca-file " + strconv.Quote(empty)},
		{api.TLSConfig{CertFile: empty, KeyFile: empty}, "-client-cert " + strconv.Quote(empty)},
		{api.TLSConfig{Address: "a:b:c"}, `-tls-server-name (CONSUL_TLS_SERVER_NAME) "a:b:c"`},
	} {
		_, err := NewClient(&api.Config{Address: "127.0.0.1:8500", TLSConfig: c.tls})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "-http-addr") {
			t.Errorf("TLS %+v: error %v; want one naming %s", c.tls, err, c.want)
		}
	}
}

// TestEmptyHTTPAddrIsUnset: -http-addr "" keeps the Consul API's default
// address (CONSUL_HTTP_ADDR, else 127.0.0.1:8500), as consul lock,
// consul-template and envconsul do (lockrun's TestOddInputsAsConsulLock
// runs consul lock on it).
func TestEmptyHTTPAddrIsUnset(t *testing.T) {
	clearEnv(t)
	for _, env := range []string{"", "127.0.0.1:18599"} {
		t.Setenv("CONSUL_HTTP_ADDR", env)
		want := env
		if want == "" {
			want = "127.0.0.1:8500" // TestDefaultAddressIsLoopbackIP
		}
		f, _ := parse(t, "-http-addr", "")
		cfg, err := f.Config()
		if err != nil {
			t.Errorf("CONSUL_HTTP_ADDR %q, -http-addr \"\": %v; want address %q", env, err, want)
		} else if cfg.Address != want {
			t.Errorf("CONSUL_HTTP_ADDR %q, -http-addr \"\": address %q; want %q", env, cfg.Address, want)
		}
	}
}

// TestDefaultAddressIsLoopbackIP: without an address from a flag or
// CONSUL_HTTP_ADDR the agent asked is 127.0.0.1:8500, the default of the
// consul/api the peers are built with (v1.32.1 api.go defaultConfig:
// consul-template v0.41.1, envconsul, the consul v1.21.0 CLI), not the
// "localhost:8500" of the newer consul/api berth builds with.
func TestDefaultAddressIsLoopbackIP(t *testing.T) {
	clearEnv(t)
	for _, args := range [][]string{nil, {"-http-addr", ""}, {"-consul-addr", ""}} {
		f, _ := parse(t, args...)
		cfg, err := f.Config()
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if cfg.Address != "127.0.0.1:8500" || cfg.Scheme != "http" {
			t.Errorf("%q: address %s://%s; want http://127.0.0.1:8500", args, cfg.Scheme, cfg.Address)
		}
	}
	// CONSUL_HTTP_ADDR still wins, even when it names localhost.
	t.Setenv("CONSUL_HTTP_ADDR", "localhost:8500")
	f, _ := parse(t)
	if cfg, err := f.Config(); err != nil || cfg.Address != "localhost:8500" {
		t.Errorf("CONSUL_HTTP_ADDR=localhost:8500: %+v %v", cfg, err)
	}
}
