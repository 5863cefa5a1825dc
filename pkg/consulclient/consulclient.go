// Package consulclient builds a Consul API client from the environment and the
// shared command-line flags every berth program accepts.
//
// The starting point is api.DefaultConfig(), which reads CONSUL_HTTP_ADDR,
// CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT, CONSUL_CAPATH,
// CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME,
// CONSUL_HTTP_SSL and friends. Only flags actually given on the command line
// override it, exactly as the consul CLI does.
package consulclient

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// defaultAddress is the agent asked when neither a flag nor CONSUL_HTTP_ADDR
// gives one, as the consul CLI, consul-template and envconsul ask it.
const defaultAddress = "127.0.0.1:8500"

// optString is a string flag that remembers whether it was set, and under
// which name: an error about the value names what the user gave.
type optString struct {
	v   string
	set bool
	// from names where v came from when not from the flag itself: an
	// alias ("-consul-addr") or a configuration file (SetAddressFrom).
	from string
}

func (o *optString) String() string {
	if o == nil {
		return ""
	}
	return o.v
}

func (o *optString) Set(s string) error { o.v, o.set, o.from = s, true, ""; return nil }

// ForAlias makes the flag's alias set the same value, remembering the
// alias's name (cliapp.AliasValue).
func (o *optString) ForAlias(alias string) flag.Value { return aliasString{o, "-" + alias} }

// aliasString is an optString set under another name.
type aliasString struct {
	o    *optString
	from string
}

func (a aliasString) String() string { return a.o.String() }

func (a aliasString) Set(s string) error { a.o.v, a.o.set, a.o.from = s, true, a.from; return nil }

// Flags holds the shared Consul connection flags.
type Flags struct {
	httpAddr      optString
	token         optString
	tokenFile     optString
	caFile        optString
	caPath        optString
	clientCert    optString
	clientKey     optString
	tlsServerName optString
	datacenter    optString
	stale         bool

	// TokenFileFirst gives -token-file precedence over -token when both
	// are given, as the consul CLI does (api.NewClient): for programs whose
	// peer is a consul CLI command (lockrun).
	TokenFileFirst bool
}

// Def is one shared Consul flag: its name as the consul CLI names it, its
// value, its usage text and the environment variable api.DefaultConfig
// reads for the same setting ("" when it reads none). The variable is
// shown in help only: Config applies a flag over it only when the flag was
// given, so it must not be bound to the flag.
type Def struct {
	Name, Usage, Env string
	Value            flag.Value
	// Placeholder names the value in help ("" for a bool flag).
	Placeholder string
}

// Defs lists the shared flags, in help order. Their values write into f.
func (f *Flags) Defs() []Def {
	return []Def{
		{"http-addr", "Consul HTTP API address", "CONSUL_HTTP_ADDR", &f.httpAddr, "[scheme://]host:port|unix:///path"},
		{"token", "ACL token; prefer -token-file", "CONSUL_HTTP_TOKEN", &f.token, "TOKEN"},
		{"token-file", "file holding the ACL token", "CONSUL_HTTP_TOKEN_FILE", &f.tokenFile, "FILE"},
		{"ca-file", "CA certificate file for TLS to Consul", "CONSUL_CACERT", &f.caFile, "FILE"},
		{"ca-path", "directory of CA certificates", "CONSUL_CAPATH", &f.caPath, "DIR"},
		{"client-cert", "client certificate for TLS to Consul", "CONSUL_CLIENT_CERT", &f.clientCert, "FILE"},
		{"client-key", "client key for TLS to Consul", "CONSUL_CLIENT_KEY", &f.clientKey, "FILE"},
		{"tls-server-name", "server name to verify in Consul's certificate", "CONSUL_TLS_SERVER_NAME", &f.tlsServerName, "NAME"},
		{"datacenter", "datacenter to query (default: the agent's)", "", &f.datacenter, "DC"},
		{"stale", "let any Consul server (not only the leader) answer reads, which may then be stale; no effect on writes (the consul CLI's -stale)", "", (*boolValue)(&f.stale), ""},
	}
}

// boolValue is a bool flag.Value.
type boolValue bool

func (b *boolValue) String() string {
	if b == nil {
		return "false"
	}
	return strconv.FormatBool(bool(*b))
}

func (b *boolValue) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	*b = boolValue(v)
	return nil
}

func (b *boolValue) IsBoolFlag() bool { return true }

// Register adds the shared flags (Defs) to a standard library flag set.
func (f *Flags) Register(fs *flag.FlagSet) {
	for _, d := range f.Defs() {
		usage := d.Usage
		if d.Env != "" {
			usage += " (env " + d.Env + ")"
		}
		fs.Var(d.Value, d.Name, usage)
	}
}

// Stale reports whether -stale was given: reads may be answered by any
// server. Client and NewClientFor already apply it to every read.
func (f *Flags) Stale() bool { return f.stale }

// Alias registers another name for one of the shared flags on a standard
// library flag set, for programs whose peers used different names
// (consul-template's -consul-addr, -consul-token).
func (f *Flags) Alias(fs *flag.FlagSet, alias, name string) error {
	for _, d := range f.Defs() {
		if d.Name == name && d.Placeholder != "" {
			v := d.Value
			if o, ok := v.(*optString); ok {
				v = o.ForAlias(alias)
			}
			fs.Var(v, alias, "alias of -"+name)
			return nil
		}
	}
	return fmt.Errorf("consulclient: no shared flag %q to alias", name)
}

// SetAddress overrides the address as if -http-addr had been given; used for
// addresses taken from elsewhere (registrator's consul://host:port argument).
func (f *Flags) SetAddress(addr string) { _ = f.httpAddr.Set(addr) }

// SetAddressFrom is SetAddress for an address read from elsewhere, from
// naming that place in errors about it ("config /etc/t.hcl: consul.address").
func (f *Flags) SetAddressFrom(addr, from string) {
	f.SetAddress(addr)
	f.httpAddr.from = from
}

// addrName names the address in errors: the alias or place it came from, as
// the user wrote it (consul-template's -consul-addr), else -http-addr and
// its variable.
func (f *Flags) addrName() string {
	if f.httpAddr.from != "" {
		return f.httpAddr.from
	}
	return "-http-addr (CONSUL_HTTP_ADDR)"
}

// CertHoldsKey makes a -client-cert given without -client-key its own key
// file: one PEM file holding both, as consul-template reads
// -consul-ssl-cert alone (dependency/client_set.go CreateConsulClient).
func (f *Flags) CertHoldsKey() {
	if f.clientCert.set && !f.clientKey.set {
		f.clientKey = f.clientCert
	}
}

// HTTPAddr returns the -http-addr flag as given (scheme included), or ""
// when not given.
func (f *Flags) HTTPAddr() string { return f.httpAddr.v }

// TokenFile returns the -token-file flag (or its variable), or "" when not given.
func (f *Flags) TokenFile() string { return f.tokenFile.v }

// Datacenter returns the -datacenter flag, or "" when not given.
func (f *Flags) Datacenter() string { return f.datacenter.v }

// Config returns api.DefaultConfig() with the given flags applied. It resolves
// the token itself so that precedence is explicit: -token, then -token-file,
// then CONSUL_HTTP_TOKEN, then CONSUL_HTTP_TOKEN_FILE.
func (f *Flags) Config() (*api.Config, error) {
	cfg := api.DefaultConfig()
	if os.Getenv(api.HTTPAddrEnvName) == "" {
		// No CONSUL_HTTP_ADDR: the peers' default agent, 127.0.0.1:8500
		// (consul/api api.go defaultConfig in v1.32.1, which envconsul and
		// consul-template v0.41.1 are built with, and in the consul
		// v1.21.0 CLI's own). consul/api v1.34 changed it to
		// "localhost:8500", which
		// reaches no agent bound to 127.0.0.1 (Consul's default
		// client_addr) where localhost resolves to ::1 alone.
		cfg.Address = defaultAddress
	}
	// An empty -http-addr (an unset variable in a script) is no address:
	// the Consul API's default stays (CONSUL_HTTP_ADDR, else
	// 127.0.0.1:8500), as for consul lock (command/flags/http.go hands ""
	// to api.NewClient, which fills an empty Address from DefaultConfig),
	// consul-template and envconsul (dependency.CreateConsulClient sets the
	// address only when it is not empty).
	if addr := f.httpAddr.v; f.httpAddr.set && addr != "" {
		switch {
		case strings.HasPrefix(addr, "https://"):
			cfg.Scheme, cfg.Address = "https", strings.TrimPrefix(addr, "https://")
		case strings.HasPrefix(addr, "http://"):
			cfg.Scheme, cfg.Address = "http", strings.TrimPrefix(addr, "http://")
		default:
			cfg.Address = addr
		}
		// What follows the host of an http:// or https:// address is
		// the path prefix of a reverse proxy in front of the agent
		// ("https://gw/consul" asks https://gw/consul/v1/...), as
		// consul/api api.go NewClient splits it for envconsul,
		// consul-template and the consul CLI, which hand it the address
		// with its scheme.
		if cfg.Address != addr {
			if host, rest, ok := strings.Cut(cfg.Address, "/"); ok {
				cfg.Address, cfg.PathPrefix = host, "/"+rest
				if rest == "" {
					return nil, bareSlash(f.addrName(), addr)
				}
			}
		}
	}
	if err := checkAddress(f.addrName(), cfg.Address); err != nil {
		return nil, err
	}
	switch {
	case f.token.set && !(f.TokenFileFirst && f.tokenFile.set):
		cfg.Token, cfg.TokenFile = f.token.v, ""
	case f.tokenFile.set:
		tok, err := readToken(f.tokenFile.v)
		if err != nil {
			return nil, fmt.Errorf("-token-file: %w", err)
		}
		if tok != "" {
			cfg.Token = tok
		}
		cfg.TokenFile = ""
	case cfg.Token == "" && cfg.TokenFile != "":
		tok, err := readToken(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("CONSUL_HTTP_TOKEN_FILE: %w", err)
		}
		cfg.Token, cfg.TokenFile = tok, ""
	default:
		cfg.TokenFile = ""
	}
	if f.caFile.set {
		cfg.TLSConfig.CAFile = f.caFile.v
	}
	if f.caPath.set {
		cfg.TLSConfig.CAPath = f.caPath.v
	}
	if f.clientCert.set {
		cfg.TLSConfig.CertFile = f.clientCert.v
	}
	if f.clientKey.set {
		cfg.TLSConfig.KeyFile = f.clientKey.v
	}
	if f.tlsServerName.set {
		cfg.TLSConfig.Address = f.tlsServerName.v
	}
	if f.datacenter.set {
		cfg.Datacenter = f.datacenter.v
	}
	for name, path := range map[string]string{"CA file": cfg.TLSConfig.CAFile, "client certificate": cfg.TLSConfig.CertFile, "client key": cfg.TLSConfig.KeyFile} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if (cfg.TLSConfig.CertFile == "") != (cfg.TLSConfig.KeyFile == "") {
		return nil, fmt.Errorf("TLS to Consul: a client certificate needs a client key and the reverse (-client-cert, -client-key)")
	}
	return cfg, nil
}

// checkAddress refuses an agent address whose port no connection could
// use ("127.0.0.1:abc", "host:99999"): bad input, reported at once, where a
// request would fail the same way on every retry. A missing port (port 80,
// as the consul CLI takes it: "host", "[::1]"), a unix:// socket and a host
// name that does not resolve yet (DNS may come later) pass.
func checkAddress(name, given string) error {
	// CONSUL_HTTP_ADDR reaches here with its scheme, which the Consul API
	// client strips itself (api.NewClient): "http://[::1]:8500" and
	// "http://host" are fine.
	addr := given
	for _, scheme := range []string{"http://", "https://"} {
		if rest, ok := strings.CutPrefix(addr, scheme); ok {
			// The path prefix after the host (see Config) is no part
			// of the address.
			var prefix string
			addr, prefix, ok = strings.Cut(rest, "/")
			if ok && prefix == "" {
				return bareSlash(name, given)
			}
		}
	}
	if addr == "" || strings.HasPrefix(addr, "unix://") || !strings.Contains(addr, ":") ||
		strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", name, given, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return fmt.Errorf("%s %q: bad port %q", name, given, port)
	}
	return nil
}

// bareSlash refuses an address whose path prefix is a lone "/"
// ("http://host:8500/"). consul/api would ask for "//v1/kv/...", which its
// request builder (api.go toHTTP: http.NewRequest of the request URI) reads
// as the host "v1" and the path "/kv/...": the agent answers every call 404,
// which its KV reads take as no keys (kv.go getInternal), so envconsul runs
// the command without its variables and never says why.
func bareSlash(name, given string) error {
	return fmt.Errorf("%s %q: a trailing \"/\" alone is a path prefix the Consul API cannot use (every read would find nothing); give the address without it", name, given)
}

// Client returns a Consul API client built from Config. The transport keeps
// enough idle connections for many concurrent blocking queries; with -stale
// every read asks for stale consistency (see NewClientFor).
func (f *Flags) Client() (*api.Client, error) {
	cfg, err := f.Config()
	if err != nil {
		return nil, err
	}
	return f.NewClientFor(cfg)
}

// NewClientFor is NewClient for a configuration derived from Config (a
// program may change it first), with -stale applied: every GET or HEAD
// request without a consistency mode of its own gets "?stale", as the consul
// CLI's -stale sets AllowStale on its queries (command/flags/http.go). Writes
// (PUT, POST, DELETE) and reads that ask for "?consistent" are left alone.
func (f *Flags) NewClientFor(cfg *api.Config) (*api.Client, error) {
	c, err := NewClient(cfg)
	if err != nil || !f.stale {
		return c, err
	}
	// api.NewClient has built cfg.HttpClient (also for unix:// addresses)
	// and the client shares that *http.Client.
	next := cfg.HttpClient.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cfg.HttpClient.Transport = staleReads{next: next}
	return c, nil
}

// staleReads adds "stale" to the query of reads that do not choose a
// consistency mode themselves.
type staleReads struct{ next http.RoundTripper }

func (t staleReads) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return t.next.RoundTrip(req)
	}
	q := req.URL.Query()
	if q.Has("stale") || q.Has("consistent") {
		return t.next.RoundTrip(req)
	}
	q.Set("stale", "")
	r := req.Clone(req.Context())
	r.URL.RawQuery = q.Encode()
	return t.next.RoundTrip(r)
}

// NewClient wraps api.NewClient with a transport sized for blocking queries.
func NewClient(cfg *api.Config) (*api.Client, error) {
	if cfg.Transport == nil && !strings.HasPrefix(cfg.Address, "unix://") {
		cfg.Transport = Transport{}.HTTP()
	}
	// api.NewClient fails on a TLS file it cannot use as well as on the
	// address: name the setting at fault, not the address.
	if err := tlsSettingError(cfg.TLSConfig); err != nil {
		return nil, err
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("-http-addr (CONSUL_HTTP_ADDR) %q: %w", cfg.Address, err)
	}
	return c, nil
}

// tlsSettingError sets up each part of t alone as api.NewClient sets them
// up together (api.SetupTLSConfig), and names the flag (and variable) of
// the first one that fails.
func tlsSettingError(t api.TLSConfig) error {
	parts := []struct {
		name string
		only api.TLSConfig
	}{
		{fmt.Sprintf("-tls-server-name (CONSUL_TLS_SERVER_NAME) %q", t.Address), api.TLSConfig{Address: t.Address}},
		{fmt.Sprintf("-client-cert %q, -client-key %q (CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY)", t.CertFile, t.KeyFile),
			api.TLSConfig{CertFile: t.CertFile, KeyFile: t.KeyFile, CertPEM: t.CertPEM, KeyPEM: t.KeyPEM}},
		{fmt.Sprintf("-ca-file %q, -ca-path %q (CONSUL_CACERT, CONSUL_CAPATH)", t.CAFile, t.CAPath),
			api.TLSConfig{CAFile: t.CAFile, CAPath: t.CAPath, CAPem: t.CAPem}},
	}
	for _, p := range parts {
		if _, err := api.SetupTLSConfig(&p.only); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

// readToken reads a token file, trimmed of white space. A file that is
// empty (or only white space) gives "", no token, and no error: as the
// Consul API client (consul/api api.go NewClient: a TokenFile's trimmed
// content is taken only when not empty), so as the consul CLI, envconsul
// and consul-template (dependency/client_set.go passes token_file to it),
// which all go on without a token then. The caller keeps the token it had
// (a variable's) in that case.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Reachability tells whether the local agent reaches the Consul servers,
// cheaply enough to ask every second on every host. Check combines two
// signals: the agent's own view (GET /v1/agent/self: a client's
// known_servers, which gossip lowers only once it marks a server failed;
// a server's leader_addr), asked on every call at no server cost; and, at
// most every RPCEvery (default 5s), a Status.Leader RPC through the agent
// (GET /v1/status/leader), which fails within the call's deadline on a
// cut-off host, long before gossip gives up on the servers. So a host costs
// the servers at most one trivial RPC per RPCEvery (0.2 a second by default).
type Reachability struct {
	Client   *api.Client
	RPCEvery time.Duration

	mu      sync.Mutex
	lastRPC time.Time
	rpcErr  error
}

// Check returns nil while the agent reaches its servers, else why not.
func (r *Reachability) Check(ctx context.Context) error {
	if err := agentSeesServers(ctx, r.Client); err != nil {
		return err
	}
	every := r.RPCEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	r.mu.Lock()
	due := time.Since(r.lastRPC) >= every
	if due {
		r.lastRPC = time.Now()
	}
	err := r.rpcErr
	r.mu.Unlock()
	if !due {
		return err
	}
	leader, err := r.Client.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	if err == nil && leader == "" {
		err = errors.New("no Raft leader")
	}
	if err != nil {
		err = fmt.Errorf("the agent reaches no Consul leader: %w", err)
	}
	r.mu.Lock()
	r.rpcErr = err
	r.mu.Unlock()
	return err
}

// agentSeesServers asks the local agent's own state, without any server RPC.
func agentSeesServers(ctx context.Context, c *api.Client) error {
	var self struct {
		Stats map[string]map[string]any
	}
	if _, err := c.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return err
	}
	stats := self.Stats["consul"]
	if stats == nil {
		return errors.New("agent self: no Stats.consul")
	}
	if s, _ := stats["server"].(string); s == "true" {
		if addr, _ := stats["leader_addr"].(string); addr == "" {
			return errors.New("the agent (a server) knows no Raft leader")
		}
		return nil
	}
	if n, _ := stats["known_servers"].(string); n == "0" || n == "" {
		return errors.New("the agent reaches no Consul server (known_servers 0)")
	}
	return nil
}
