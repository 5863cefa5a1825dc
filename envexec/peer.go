package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/pkg/cliapp"
	"github.com/berth/berth/pkg/consulclient"
	"github.com/berth/berth/pkg/logging"
	"github.com/berth/berth/pkg/query"
	"github.com/hashicorp/consul/api"
)

// peerConsul holds envconsul's own Consul connection settings (cli.go,
// ParseFlags; config keys consul { auth, ssl, transport }) that the consul
// CLI's shared flags do not cover.
type peerConsul struct {
	fileAuth   authConfig // the files' auth blocks, merged
	flagAuth   authConfig // -consul-auth (-auth): the last one given
	ssl        *bool      // consul.ssl.enabled / -consul-ssl
	sslVerify  *bool      // consul.ssl.verify / -consul-ssl-verify
	sslImplied bool       // an ssl setting was given: consul-template's SSLConfig.Finalize enables SSL then

	transport consulclient.Transport // consul.transport / -consul-transport-*

	tokenGiven bool // -token or -token-file (any name, or a file's token, token_file)

	warn []string // deprecations to log once logging is set up
}

// authConfig is consul-template's AuthConfig (config/auth.go): each field
// nil until given.
type authConfig struct {
	enabled    *bool
	user, pass *string
}

// merge is AuthConfig.Merge: every field o gives wins, field by field, so a
// later file's password keeps an earlier file's username, and
// -consul-auth USER keeps a file's password.
func (a authConfig) merge(o authConfig) authConfig {
	a.enabled = mergeField(a.enabled, o.enabled)
	a.user = mergeField(a.user, o.user)
	a.pass = mergeField(a.pass, o.pass)
	return a
}

// basic is the HTTP basic auth envconsul's client sends, or nil:
// AuthConfig.Finalize enables auth unless told otherwise when the username
// or the password is not empty, and CreateConsulClient (consul-template
// v0.41.1 dependency/client_set.go) sends the username and password when
// enabled, empty ones too (enabled = true alone sends an empty pair).
func (a authConfig) basic() *api.HttpBasicAuth {
	var user, pass string
	if a.user != nil {
		user = *a.user
	}
	if a.pass != nil {
		pass = *a.pass
	}
	enabled := user != "" || pass != ""
	if a.enabled != nil {
		enabled = *a.enabled
	}
	if !enabled {
		return nil
	}
	return &api.HttpBasicAuth{Username: user, Password: pass}
}

// parseAuth parses USER[:PASSWORD] as consul-template's ParseAuthConfig:
// without a colon the password is not given (a file's stays).
func parseAuth(s string) (authConfig, error) {
	if s == "" {
		return authConfig{}, errors.New("empty; want USER[:PASSWORD]")
	}
	user, pass, hasPass := strings.Cut(s, ":")
	a := authConfig{user: &user}
	if hasPass {
		a.pass = &pass
	}
	return a, nil
}

// deprecatedFlags are envconsul's deprecated flags (cli.go, ParseFlags,
// "Deprecations"), which it still reads with a warning, and their names
// today.
var deprecatedFlags = map[string]string{
	"consul": "-consul-addr or -http-addr", "auth": "-consul-auth", "retry": "-consul-retry-backoff and -consul-retry-max-backoff",
	"ssl": "-consul-ssl", "ssl-verify": "-consul-ssl-verify", "ssl-ca-cert": "-consul-ssl-ca-cert", "ssl-cert": "-consul-ssl-cert",
}

// noteSet records which envconsul TLS flags were given: any of them turns
// TLS on unless -consul-ssl=false (consul-template config/ssl.go, Finalize);
// the consul CLI's names for the same settings (-ca-file, -client-cert, …)
// do not. given(name) tells whether that very name was used (not another
// name of the same flag).
// value(name) is the value of the shared flag name (ca-file, …): an empty
// one does not turn TLS on (SSLConfig.Finalize tests them with
// StringPresent); -consul-ssl-verify does, whatever its value (BoolPresent).
func (p *peerConsul) noteSet(given func(name string) bool, value func(name string) string) {
	for name, shared := range map[string]string{
		"consul-ssl-ca-cert": "ca-file", "consul-ssl-ca-path": "ca-path", "consul-ssl-cert": "client-cert", "consul-ssl-key": "client-key",
		"consul-ssl-server-name": "tls-server-name", "consul-ssl-verify": "", "ssl-ca-cert": "ca-file", "ssl-cert": "client-cert", "ssl-verify": "",
	} {
		if given(name) && (shared == "" || value(shared) != "") {
			p.sslImplied = true
		}
	}
	for _, name := range []string{"consul", "auth", "retry", "ssl", "ssl-verify", "ssl-ca-cert", "ssl-cert"} {
		if given(name) {
			p.warn = append(p.warn, fmt.Sprintf("-%s is deprecated (as in envconsul): use %s", name, deprecatedFlags[name]))
		}
	}
	if given("timeout") {
		p.warn = append(p.warn, "-timeout has no effect (as in envconsul, whose runner never limits the command's run time): use -kill-timeout for the grace before SIGKILL")
	}
}

func (p *peerConsul) warnings(log *slog.Logger) {
	for _, w := range p.warn {
		log.Warn(w)
	}
}

// apply sets the envconsul-only settings on a configuration built from the
// shared flags.
func (p *peerConsul) apply(cfg *api.Config) {
	// envconsul's cli.go loadConfigs merges the files, then the flags,
	// with ConsulConfig.Merge, which merges auth field by field.
	if auth := p.fileAuth.merge(p.flagAuth).basic(); auth != nil {
		cfg.HttpAuth = auth
	}
	if (p.ssl != nil && *p.ssl) || (p.ssl == nil && p.sslImplied) {
		cfg.Scheme = "https"
	}
	if p.sslVerify != nil && !*p.sslVerify {
		cfg.TLSConfig.InsecureSkipVerify = true
	}
	if p.transport != (consulclient.Transport{}) {
		cfg.Transport = p.transport.HTTP()
	}
}

// client builds the Consul client: the shared flags, envconsul's own
// settings, -stale.
func (o *options) client() (*api.Client, error) {
	cfg, err := o.cli.Consul.Config()
	if err != nil {
		return nil, err
	}
	o.peer.apply(cfg)
	if !o.peer.tokenGiven {
		if err := envconsulToken(cfg, os.Getenv); err != nil {
			return nil, err
		}
	}
	return o.cli.Consul.NewClientFor(cfg)
}

// envconsulToken applies the token variables envconsul reads besides the
// consul CLI's: CONSUL_TOKEN before CONSUL_HTTP_TOKEN and CONSUL_TOKEN_FILE
// before CONSUL_HTTP_TOKEN_FILE (consul-template config/consul.go,
// ConsulConfig.Finalize), in berth's order of a token before a token file.
// Only when no token flag or file setting was given.
func envconsulToken(cfg *api.Config, getenv func(string) string) error {
	if v := getenv("CONSUL_TOKEN"); v != "" {
		cfg.Token = v
		return nil
	}
	path := getenv("CONSUL_TOKEN_FILE")
	if path == "" || getenv("CONSUL_HTTP_TOKEN") != "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("CONSUL_TOKEN_FILE: %w", err)
	}
	if tok := strings.TrimSpace(string(b)); tok != "" {
		cfg.Token = tok
	}
	return nil
}

// retryOptions are envconsul's consul { retry { } } settings.
type retryOptions struct {
	enabled    bool
	attempts   int           // retries of a failing source before it is given up; 0 or less: unlimited
	backoff    time.Duration // first delay; 0 or less: see bounds
	maxBackoff time.Duration // largest delay; 0 or less: no limit (capped at an hour)
	jitter     bool          // -consul-retry-jitter: ±20% on each delay (envconsul: none)
}

// envconsulRetryAttempts is envconsul's default -consul-retry-attempts
// (consul-template v0.41.1 config/retry.go DefaultRetryAttempts).
const envconsulRetryAttempts = 12

func defaultRetry() retryOptions {
	// envconsul's retries (consul-template v0.41.1 config/retry.go Finalize:
	// DefaultRetryAttempts, DefaultRetryBackoff, DefaultRetryMaxBackoff).
	return retryOptions{enabled: true, attempts: envconsulRetryAttempts, backoff: 250 * time.Millisecond, maxBackoff: time.Minute}
}

// limit is the number of failed requests in a row after which a source that
// never answered makes envexec give up (0: never), by envconsul's rule
// (query.FailuresToGiveUp). A negative -consul-retry-attempts is taken, as
// 0 (never give up): consul-template v0.41.1 config/retry.go RetryFunc only
// counts attempts above 0.
func (r retryOptions) limit() int { return query.FailuresToGiveUp(r.enabled, r.attempts) }

// bounds are the backoff delays for query.Config: the first and the
// largest, doubling in between. Any backoff and max_backoff are taken, as
// envconsul takes any duration (cli.go funcDurationVar, config.go Parse),
// with the delays of consul-template v0.41.1 config/retry.go RetryFunc
// (query.RetryBounds: a max_backoff of 0 is no limit, capped at an hour).
func (r retryOptions) bounds() (time.Duration, time.Duration) {
	return query.RetryBounds(r.backoff, r.maxBackoff)
}

// syslogOptions are envconsul's syslog { } settings: logs go to syslog as
// well as to standard error (envconsul cli.go, setupLogger).
type syslogOptions struct {
	enabled  *bool
	facility string
	name     string
}

// on reports whether syslog is used: asked for, or implied by a facility or
// name (consul-template config/syslog.go, Finalize).
func (s syslogOptions) on() bool {
	if s.enabled != nil {
		return *s.enabled
	}
	return s.facility != "" || s.name != ""
}

// writer returns where logs go: stderr, and the local syslog when enabled.
// The function closes the syslog connection.
func (s syslogOptions) writer(stderr io.Writer) (io.Writer, func(), error) {
	if !s.on() {
		return stderr, func() {}, nil
	}
	fac := strings.ToUpper(s.facility)
	if fac == "" {
		fac = "LOCAL0"
	}
	p, ok := logging.SyslogFacility(fac)
	if !ok {
		return nil, nil, fmt.Errorf("-syslog-facility %q: not a syslog facility (LOCAL0..LOCAL7, DAEMON, USER, ...)", s.facility)
	}
	name := s.name
	if name == "" {
		name = "envexec"
	}
	w, err := syslog.New(p|syslog.LOG_NOTICE, name)
	if err != nil {
		return nil, nil, fmt.Errorf("-syslog: %w", err)
	}
	return io.MultiWriter(stderr, w), func() { _ = w.Close() }, nil
}

// optBool is a bool flag that records being given.
type optBool struct{ p **bool }

func (b optBool) String() string {
	if b.p == nil || *b.p == nil {
		return ""
	}
	return fmt.Sprint(**b.p)
}

func (b optBool) Set(s string) error {
	v, err := parseBool(s)
	if err != nil {
		return err
	}
	*b.p = &v
	return nil
}

func (b optBool) IsBoolFlag() bool { return true }

// parseBool reads a bool flag's value as envconsul does: its bool flags
// are flags.go funcBoolVar (Set: strconv.ParseBool) or the flag package's
// BoolVar (-once, -version), both strconv.ParseBool, which takes 1, t, T,
// TRUE, true, True, 0, f, F, FALSE, false and False only: "tRuE" or "yes"
// is a flag error (cli.go Run: ExitCodeParseFlagsError).
func parseBool(s string) (bool, error) {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("want true or false (1, t, T, TRUE, true, True, or their false forms), got %q", s)
	}
	return v, nil
}

// optDuration and optInt are flags that record being given.
type optDuration struct{ p **time.Duration }

func (d optDuration) String() string { return "" }
func (d optDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 5s")
	}
	*d.p = &v
	return nil
}

type optInt struct{ p **int }

func (i optInt) String() string { return "" }
func (i optInt) Set(s string) error {
	v, err := parseDecimal(s)
	if err != nil {
		return err
	}
	*i.p = &v
	return nil
}

// decimalInt is an int flag read as envconsul reads its int flags.
type decimalInt struct{ p *int }

func (i decimalInt) String() string {
	if i.p == nil || *i.p == 0 {
		return ""
	}
	return strconv.Itoa(*i.p)
}

func (i decimalInt) Set(s string) (err error) {
	*i.p, err = parseDecimal(s)
	return err
}

// parseDecimal reads a whole number as envconsul's int flags do (cli.go
// funcIntVar: strconv.ParseInt(s, 10, 32)): decimal, a sign allowed, 32
// bits: "010" is 10 and "0x10" is refused, where Go's flag package would
// read 8 and 16.
func parseDecimal(s string) (int, error) {
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("want a whole number, got %q", s)
	}
	return int(v), nil
}

// refusedFlag is an envconsul flag envexec does not support (Vault): using
// it is an error that says so.
type refusedFlag struct {
	name   string
	isBool bool
}

func (f refusedFlag) String() string { return "" }
func (f refusedFlag) Set(string) error {
	return fmt.Errorf("not supported: envexec reads Consul only, not Vault (envconsul's -secret and -vault-* flags, vault {} and secret {} blocks)")
}
func (f refusedFlag) IsBoolFlag() bool { return f.isBool }

// vaultFlags are envconsul's Vault flags (cli.go, ParseFlags), refused.
var vaultFlags = map[string]bool{ // name: is a bool flag
	"secret": false, "vault-addr": false, "vault-namespace": false, "vault-renew-token": true,
	"vault-retry": true, "vault-retry-attempts": false, "vault-retry-backoff": false, "vault-retry-max-backoff": false,
	"vault-ssl": true, "vault-ssl-ca-cert": false, "vault-ssl-ca-path": false, "vault-ssl-cert": false,
	"vault-ssl-key": false, "vault-ssl-server-name": false, "vault-ssl-verify": true,
	"vault-transport-dial-keep-alive": false, "vault-transport-dial-timeout": false,
	"vault-transport-disable-keep-alives": true, "vault-transport-max-idle-conns-per-host": false,
	"vault-transport-tls-handshake-timeout": false, "vault-token": false, "vault-agent-token-file": false,
	"vault-unwrap-token": true, "vault-k8s-auth-role-name": false, "vault-k8s-service-account-token": false,
	"vault-k8s-service-account-token-path": false, "vault-k8s-service-mount-path": false,
}

// registerPeerFlags adds envconsul's own names for the Consul connection,
// retries, syslog and its deprecated flags (cli.go, ParseFlags), each with
// envconsul's meaning.
func registerPeerFlags(cl *cliapp.Program, o *options) {
	for alias, name := range map[string]string{
		"consul-addr": "http-addr", "consul": "http-addr", "consul-token": "token",
		"consul-ssl-ca-cert": "ca-file", "consul-ssl-ca-path": "ca-path", "consul-ssl-cert": "client-cert",
		"consul-ssl-key": "client-key", "consul-ssl-server-name": "tls-server-name",
	} {
		cl.Alias(alias, name)
	}
	p := &o.peer
	cl.Var(funcFlag(func(s string) (err error) { p.flagAuth, err = parseAuth(s); return err }), "consul-auth", "HTTP basic auth `USER[:PASSWORD]` for Consul (envconsul's flag)")
	cl.Var(optBool{&p.ssl}, "consul-ssl", "talk HTTPS to Consul (envconsul's flag; any -consul-ssl-* flag implies it)")
	cl.Var(optBool{&p.sslVerify}, "consul-ssl-verify", "verify Consul's certificate (default true; =false skips verification)")
	cl.Var(optDuration{&p.transport.DialKeepAlive}, "consul-transport-dial-keep-alive", "TCP keep-alive period for connections to Consul")
	cl.Var(optDuration{&p.transport.DialTimeout}, "consul-transport-dial-timeout", "time allowed to connect to Consul")
	cl.Var(optBool{&p.transport.DisableKeepAlives}, "consul-transport-disable-keep-alives", "a new connection per request to Consul")
	cl.Var(optInt{&p.transport.MaxIdleConnsPerHost}, "consul-transport-max-idle-conns-per-host", "idle connections kept to Consul (default 256)")
	cl.Var(optDuration{&p.transport.TLSHandshakeTimeout}, "consul-transport-tls-handshake-timeout", "time allowed for the TLS handshake with Consul")
	cl.Bool(&o.retry.enabled, "consul-retry", true, "retry failed Consul requests with backoff (=false: a source is given up at its first failure, see -consul-retry-attempts)")
	cl.Var(decimalInt{&o.retry.attempts}, "consul-retry-attempts", "`N` retries: a source that failed N+1 times in a row is given up, as envconsul: before every source answered envexec exits 14; once the command runs, the source's values stay as they are (0: never give up)")
	cl.Duration(&o.retry.backoff, "consul-retry-backoff", o.retry.backoff, "first delay between retries; it doubles each time (0: -consul-retry-max-backoff every time, or no delay when that is 0 too)")
	cl.Duration(&o.retry.maxBackoff, "consul-retry-max-backoff", o.retry.maxBackoff, "largest delay between retries (0: no limit, capped at 1h; below -consul-retry-backoff: every delay)")
	cl.Bool(&o.retry.jitter, "consul-retry-jitter", false, "vary each retry delay by up to ±20% so many hosts retrying after the same outage spread out (envexec's; envconsul waits the exact delays)")
	cl.Duration(new(time.Duration), "timeout", 0, "accepted for envconsul compatibility; no effect (as in envconsul)")
	// envconsul's deprecated flags, read as envconsul reads them (their
	// Vault halves aside), with a warning (noteSet).
	cl.Alias("ssl-ca-cert", "ca-file")
	cl.Alias("ssl-cert", "client-cert")
	cl.Hidden(funcFlag(func(s string) (err error) { p.flagAuth, err = parseAuth(s); return err }), "auth")
	cl.Hidden(optBool{&p.ssl}, "ssl")
	cl.Hidden(optBool{&p.sslVerify}, "ssl-verify")
	cl.Hidden(funcFlag(func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("want a duration such as 5s")
		}
		o.retry.backoff, o.retry.maxBackoff = d, d
		return nil
	}), "retry")
	cl.Var(optBool{&o.syslog.enabled}, "syslog", "also send logs to the local syslog (envconsul's flag)")
	cl.String(&o.syslog.facility, "syslog-facility", "", "syslog `FACILITY` (default LOCAL0; implies -syslog)")
	for name, isBool := range vaultFlags {
		cl.Hidden(refusedFlag{name: name, isBool: isBool}, name)
	}
}
