// Command templater renders files from live Consul data with consul-template's
// language and configuration, re-executing only the templates whose own data
// changed, checking each candidate file before it replaces the live one, and
// running reload commands after a pass.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/cliapp"
	"github.com/berth/berth/pkg/consulclient"
	"github.com/berth/berth/pkg/query"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
)

// Exit codes. Where consul-template has a code for the same situation, it is
// consul-template's (cli.go: the iota block makes ExitCodeError 11,
// ExitCodeInterrupt 12, ExitCodeParseFlagsError 13, ExitCodeRunnerError 14,
// ExitCodeConfigError 15); the others are templater's own.
const (
	exitOK      = 0
	exitMissing = 2  // -once: data still missing after -once-timeout
	exitRender  = 3  // -once: a destination could not be written or its check failed
	exitCommand = 4  // a command failed with -fail-fast
	exitChild   = 5  // the -exec command could not be started
	exitConsul  = 6  // Consul client could not be built
	exitSignal  = 12 // stopped by the kill signal (consul-template's ExitCodeInterrupt)
	exitFlags   = 13 // bad flag (ExitCodeParseFlagsError)
	exitRunner  = 14 // a template that does not parse or fails (ExitCodeRunnerError)
	exitConfig  = 15 // bad configuration (ExitCodeConfigError)
)

func main() {
	cliapp.Main(func(args []string) int { return run(args, os.Stdout, os.Stderr) })
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// refusedFlag is a consul-template flag templater does not support: giving
// it is an error naming it (never accepted and ignored).
type refusedFlag struct {
	name, why string
	isBool    bool
}

func (r *refusedFlag) String() string   { return "" }
func (r *refusedFlag) IsBoolFlag() bool { return r.isBool }
func (r *refusedFlag) Set(v string) error {
	if r.isBool && v == "false" {
		return nil // -dedup=false asks for nothing
	}
	return fmt.Errorf("-%s is not supported: %s", r.name, r.why)
}

// vaultFlags are consul-template's -vault-* flags (v0.41.1 -h), with whether
// each is a bool flag.
var vaultFlags = map[string]bool{"vault-addr": false, "vault-renew-token": true, "vault-retry": true, "vault-retry-attempts": false,
	"vault-retry-backoff": false, "vault-retry-max-backoff": false, "vault-ssl": true, "vault-ssl-ca-cert": false, "vault-ssl-ca-path": false,
	"vault-ssl-cert": false, "vault-ssl-key": false, "vault-ssl-server-name": false, "vault-ssl-verify": true, "vault-token": false,
	"vault-agent-token-file": false, "vault-transport-dial-keep-alive": false, "vault-transport-dial-timeout": false,
	"vault-transport-disable-keep-alives": true, "vault-transport-max-idle-conns-per-host": false, "vault-transport-max-conns-per-host": false,
	"vault-transport-tls-handshake-timeout": false, "vault-unwrap-token": true, "vault-default-lease-duration": false}

type options struct {
	templates          listFlag
	configs            listFlag
	checks             listFlag
	once               bool
	onceTimeout        time.Duration
	dry                bool
	diff               bool
	parseOnly          bool
	wait               string
	maxStale           time.Duration
	missingWarn        time.Duration
	failFast           bool
	exec               string
	execReload         string
	execKill           string
	execKillTO         time.Duration
	execSplay          time.Duration
	execEnv            execEnv
	pidFile            string
	killSignal         string
	reloadSignal       string
	consulSSL          bool
	consulSSLVerify    bool
	consulAuth         string
	transport          transportFlags
	retryMin, retryMax time.Duration
	templateErrorFatal bool
	syslog             bool
	syslogFacility     string
	syslogName         string
	syslogSocket       string
	leftDelim          string
	rightDelim         string
	cli                *cliapp.Program
	set                map[string]bool // flags given on the command line or by their variables
}

// transportFlags are consul-template's -consul-transport-* flags.
type transportFlags struct {
	dialKeepAlive, dialTimeout, tlsHandshakeTimeout time.Duration
	disableKeepAlives                               bool
	maxIdleConnsPerHost                             int
}

// parseFlags reads the command line (cliapp: every flag also from
// TEMPLATER_*, the Consul flags from CONSUL_*) and checks it. The options
// are returned with the error too: their cli prints it.
func parseFlags(args []string, stdout, stderr io.Writer) (*options, error) {
	fs := cliapp.New("templater", stdout, stderr)
	fs.Usage = []string{"templater [flags]"}
	fs.About = "Renders consul-template templates from Consul and runs their commands."
	fs.Footer = "consul-template's -dedup and -vault-* flags are refused: templater runs each distinct query once and does not read Vault."
	o := &options{cli: fs}
	fs.Var(&o.templates, "template", "`SOURCE:DESTINATION[:COMMAND]` to render (repeatable)")
	fs.Var(&o.configs, "config", "consul-template HCL/JSON config `FILE|DIR` (repeatable; a folder is every file in it; later ones win)")
	fs.Var(&o.checks, "check", "`DESTINATION=COMMAND`: check the candidate file ({{path}}) before it replaces DESTINATION (repeatable)")
	fs.Bool(&o.once, "once", false, "render every template once, run the commands (and -exec) and exit")
	fs.Duration(&o.onceTimeout, "once-timeout", time.Minute, "with -once, give up (exit 2) when data is still missing after this long (0: wait forever)")
	fs.Bool(&o.dry, "dry", false, "print each rendered template to stdout (\"> DEST\" then the contents) instead of writing it")
	fs.Bool(&o.diff, "diff", false, "print a unified diff per destination and the commands that would run; write nothing")
	fs.Bool(&o.parseOnly, "parse-only", false, "parse the templates and exit without reading Consul")
	fs.String(&o.wait, "wait", "", "`MIN[:MAX]` quiet time before rendering after a change (MAX defaults to 4×MIN)")
	fs.Duration(&o.maxStale, "max-stale", 2*time.Second, "read from any server when its data is at most this old (0: always ask the leader)")
	fs.Duration(&o.missingWarn, "missing-warn", 30*time.Second, "warn when a template has waited this long for data, naming what it waits for")
	fs.Bool(&o.failFast, "fail-fast", false, "exit (code 4) when a command fails instead of logging it and going on")
	fs.String(&o.exec, "exec", "", "run this command as a child once every template is rendered; signal or restart it on change")
	fs.String(&o.execReload, "exec-reload-signal", "", "signal sent to the -exec child's process group when its templates change (empty: restart it)")
	fs.String(&o.execKill, "exec-kill-signal", "SIGTERM", "signal that stops the -exec child")
	fs.Duration(&o.execKillTO, "exec-kill-timeout", 30*time.Second, "grace time before SIGKILL when stopping the -exec child")
	fs.Duration(&o.execSplay, "exec-splay", 0, "random delay up to this long before reloading the -exec child")
	fs.Bool(&o.execEnv.Pristine, "exec-env-pristine", false, "the -exec child does not inherit templater's environment")
	fs.Var((*listFlag)(&o.execEnv.Custom), "exec-env-custom", "`NAME=VALUE` given to the -exec child (repeatable)")
	fs.Var((*listFlag)(&o.execEnv.Allow), "exec-env-allowlist", "glob of variables the -exec child gets (repeatable; default all)")
	fs.Var((*listFlag)(&o.execEnv.Deny), "exec-env-denylist", "glob of variables the -exec child does not get (repeatable; wins over the allowlist)")
	fs.String(&o.pidFile, "pid-file", "", "write templater's PID to this file")
	fs.String(&o.killSignal, "kill-signal", "SIGINT", "signal that stops templater (exit 11, as consul-template); SIGTERM always stops it (exit 0)")
	fs.String(&o.reloadSignal, "reload-signal", "SIGHUP", "signal that reloads configuration and templates")
	fs.Alias("v", "version")
	fs.Bool(&o.templateErrorFatal, "template-error-fatal", true, "exit when a template fails to execute (false: log it, keep the file and go on)")
	fs.Bool(&o.syslog, "syslog", false, "send the log to the local syslog instead of stderr")
	fs.String(&o.syslogFacility, "syslog-facility", "LOCAL0", "syslog facility (with -syslog)")
	fs.String(&o.syslogName, "syslog-name", "consul-template", "program name in syslog (with -syslog)")
	fs.String(&o.syslogSocket, "syslog-socket", "", "unix datagram socket of the syslog daemon (with -syslog; default: the local one, /dev/log)")
	// consul-template's names for the same settings.
	for alias, name := range map[string]string{"consul-addr": "http-addr", "consul-token": "token", "consul-token-file": "token-file",
		"consul-ssl-ca-cert": "ca-file", "consul-ssl-ca-path": "ca-path", "consul-ssl-cert": "client-cert", "consul-ssl-key": "client-key",
		"consul-ssl-server-name": "tls-server-name"} {
		fs.Alias(alias, name)
	}
	fs.Bool(&o.consulSSL, "consul-ssl", false, "talk HTTPS to Consul (consul-template's flag; same as an https:// address)")
	fs.Bool(&o.consulSSLVerify, "consul-ssl-verify", true, "verify Consul's certificate (false: do not)")
	fs.String(&o.consulAuth, "consul-auth", "", "HTTP basic authentication `USER[:PASSWORD]` for Consul")
	fs.Duration(&o.transport.dialKeepAlive, "consul-transport-dial-keep-alive", 0, "TCP keep-alive period to Consul (0: Go's default)")
	fs.Duration(&o.transport.dialTimeout, "consul-transport-dial-timeout", 0, "time to connect to Consul (0: Go's default)")
	fs.Bool(&o.transport.disableKeepAlives, "consul-transport-disable-keep-alives", false, "a new connection for every request")
	fs.Int(&o.transport.maxIdleConnsPerHost, "consul-transport-max-idle-conns-per-host", 0, "idle connections kept to Consul (0: 256)")
	fs.Duration(&o.transport.tlsHandshakeTimeout, "consul-transport-tls-handshake-timeout", 0, "TLS handshake timeout (0: Go's default)")
	fs.String(&o.leftDelim, "default-left-delimiter", "", "left delimiter for templates that set none (default {{)")
	fs.String(&o.rightDelim, "default-right-delimiter", "", "right delimiter for templates that set none (default }})")
	// Consul is retried forever with backoff (README, differences): the
	// retry flags set the backoff; -consul-retry and -consul-retry-attempts
	// are accepted for configs written for consul-template.
	var retryOn bool
	var retryAttempts int
	fs.Bool(&retryOn, "consul-retry", true, "accepted: templater always retries Consul (forever, with backoff)")
	fs.Int(&retryAttempts, "consul-retry-attempts", 0, "accepted: templater retries Consul forever")
	fs.Duration(&o.retryMin, "consul-retry-backoff", 0, "first wait after a failed Consul call (default 100ms), doubled up to -consul-retry-max-backoff")
	fs.Alias("retry", "consul-retry-backoff") // consul-template's older flag
	fs.Duration(&o.retryMax, "consul-retry-max-backoff", 0, "longest wait between retries (default 30s)")
	fs.Hidden(&refusedFlag{name: "dedup", why: "dedup mode (templater already runs each distinct query once)", isBool: true}, "dedup")
	for name, isBool := range vaultFlags {
		fs.Hidden(&refusedFlag{name: name, why: "templater does not read Vault", isBool: isBool}, name)
	}
	res, err := fs.Parse(args)
	if err != nil {
		return o, err
	}
	if len(res.Args) > 0 {
		return o, fmt.Errorf("unexpected argument %q (templates go in -template or -config)", res.Args[0])
	}
	o.set = fs.Explicit(res)
	for _, s := range []struct{ name, v string }{{"exec-reload-signal", o.execReload}, {"exec-kill-signal", o.execKill}, {"kill-signal", o.killSignal}, {"reload-signal", o.reloadSignal}} {
		if s.v == "" {
			continue
		}
		if _, err := supervisor.ParseSignal(s.v); err != nil {
			return o, fmt.Errorf("-%s: %w", s.name, err)
		}
	}
	if o.maxStale < 0 || o.onceTimeout < 0 || o.missingWarn <= 0 {
		return o, errors.New("-max-stale and -once-timeout must not be negative; -missing-warn must be positive")
	}
	if (o.set["syslog-facility"] || o.set["syslog-name"]) && !o.syslog {
		return o, errors.New("-syslog-facility and -syslog-name need -syslog")
	}
	return o, nil
}

// buildConfig reads config files and flags into a runConfig; it is called at
// start and again on the reload signal.
func buildConfig(o *options) (*runConfig, *fileConfig, error) {
	fc, err := loadConfigPaths(o.configs)
	if err != nil {
		return nil, nil, err
	}
	rc := &runConfig{Once: o.once, OnceTimeout: o.onceTimeout, Dry: o.dry, Diff: o.diff, MissingWarn: o.missingWarn, FailFast: o.failFast,
		TemplateErrorFatal: o.templateErrorFatal}
	if fc.TemplateErrorFatal != nil && !o.set["template-error-fatal"] {
		rc.TemplateErrorFatal = *fc.TemplateErrorFatal
	}
	rc.Templates = append(rc.Templates, fc.Templates...)
	for _, s := range o.templates {
		tc, err := parseTemplateFlag(s)
		if err != nil {
			return nil, nil, err
		}
		rc.Templates = append(rc.Templates, tc)
	}
	for _, s := range o.checks {
		dest, cmd, ok := strings.Cut(s, "=")
		if !ok || dest == "" || strings.TrimSpace(cmd) == "" {
			return nil, nil, fmt.Errorf("-check %q: want DESTINATION=COMMAND", s)
		}
		found := false
		for _, t := range rc.Templates {
			if t.Destination == dest {
				t.Check, found = cmd, true
			}
		}
		if !found {
			return nil, nil, fmt.Errorf("-check %q: no template writes %s", s, dest)
		}
	}
	left, right := fc.LeftDelim, fc.RightDelim
	flagWins(o.set, "default-left-delimiter", &left, o.leftDelim)
	flagWins(o.set, "default-right-delimiter", &right, o.rightDelim)
	for _, t := range rc.Templates {
		// consul-template applies the defaults to each side that is unset
		// (config/config.go Finalize).
		if t.LeftDelim == "" {
			t.LeftDelim = left
		}
		if t.RightDelim == "" {
			t.RightDelim = right
		}
		if fc.ErrOnFailedLookup != nil && *fc.ErrOnFailedLookup {
			t.ErrOnMissingKey = true
		}
	}
	if len(rc.Templates) == 0 {
		return nil, nil, errors.New("no templates: give -template SOURCE:DESTINATION[:COMMAND] or -config with template blocks")
	}
	rc.Wait = fc.Wait
	if o.wait != "" {
		if rc.Wait, err = parseWait(o.wait); err != nil {
			return nil, nil, fmt.Errorf("-%w", err)
		}
	}
	if rc.Exec, err = execFromFlags(o, fc.Exec); err != nil {
		return nil, nil, err
	}
	return rc, fc, nil
}

// execFromFlags merges the -exec* flags over the config's exec block.
func execFromFlags(o *options, e *execConfig) (*execConfig, error) {
	if o.exec != "" {
		if e == nil {
			e = &execConfig{KillTimeout: 30 * time.Second}
		} else {
			c := *e
			e = &c
		}
		e.Command, e.Argv, e.Enabled = o.exec, []string{o.exec}, true
	}
	if e == nil {
		return nil, nil
	}
	flagWins(o.set, "exec-reload-signal", &e.ReloadSignal, o.execReload)
	if o.set["exec-kill-signal"] || e.KillSignal == "" {
		e.KillSignal = o.execKill
	}
	flagWins(o.set, "exec-kill-timeout", &e.KillTimeout, o.execKillTO)
	flagWins(o.set, "exec-splay", &e.Splay, o.execSplay)
	flagWins(o.set, "exec-env-pristine", &e.Env.Pristine, o.execEnv.Pristine)
	e.Env.Custom = append(e.Env.Custom, o.execEnv.Custom...)
	e.Env.Allow = append(e.Env.Allow, o.execEnv.Allow...)
	e.Env.Deny = append(e.Env.Deny, o.execEnv.Deny...)
	if !e.Enabled || len(e.Argv) == 0 {
		return nil, nil
	}
	return e, nil
}

// parsedPtr is parse(s) as a pointer to the value, nil on an error.
func parsedPtr[T any](parse func(string) (T, error), s string) (*T, error) {
	v, err := parse(s)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// flagWins sets *dst to v, a flag's value, when the flag name was given
// on the command line (set): a flag given wins over a config file.
func flagWins[T any](set map[string]bool, name string, dst *T, v T) {
	if set[name] {
		*dst = v
	}
}

// consulConfig builds the Consul client configuration: flags, then the
// config file where no flag set the same thing, then the environment.
func consulConfig(o *options, fc *fileConfig) (*api.Config, error) {
	if fc.ConsulAddr != nil && !o.set["http-addr"] && !o.set["consul-addr"] {
		o.cli.Consul.SetAddress(*fc.ConsulAddr)
	}
	ccfg, err := o.cli.Consul.Config()
	if err != nil {
		return nil, err
	}
	applyFileTLS(ccfg, fc.ConsulTLS, o.set)
	if o.consulSSL {
		ccfg.Scheme = "https"
	}
	if !o.consulSSLVerify {
		ccfg.TLSConfig.InsecureSkipVerify = true
	}
	tokenFlag := o.set["token"] || o.set["consul-token"] || o.set["token-file"] || o.set["consul-token-file"]
	switch {
	case tokenFlag:
	case fc.ConsulToken != nil:
		ccfg.Token = *fc.ConsulToken
	case fc.ConsulTokenFile != nil:
		b, err := os.ReadFile(*fc.ConsulTokenFile)
		if err != nil {
			return nil, fmt.Errorf("consul.token_file: %w", err)
		}
		ccfg.Token = strings.TrimSpace(string(b))
	}
	if fc.ConsulNamespace != nil {
		ccfg.Namespace = *fc.ConsulNamespace
	}
	auth := o.consulAuth
	if auth == "" && fc.ConsulAuth != nil && fc.ConsulAuth["enabled"] != "false" && fc.ConsulAuth["username"] != "" {
		auth = fc.ConsulAuth["username"] + ":" + fc.ConsulAuth["password"]
	}
	if auth != "" {
		user, pass, _ := strings.Cut(auth, ":")
		ccfg.HttpAuth = &api.HttpBasicAuth{Username: user, Password: pass}
	}
	if p := ccfg.TLSConfig.CAPath; p != "" {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("CA path: %w", err)
		}
	}
	t, err := transport(o, fc.ConsulTransport)
	if err != nil {
		return nil, err
	}
	ccfg.Transport = t
	return ccfg, nil
}

// transport builds the HTTP transport to Consul from the -consul-transport-*
// flags and consul { transport { ... } }.
func transport(o *options, file map[string]string) (*http.Transport, error) {
	var s consulclient.Transport
	durations := map[string]**time.Duration{"dial_keep_alive": &s.DialKeepAlive, "dial_timeout": &s.DialTimeout,
		"idle_conn_timeout": &s.IdleConnTimeout, "tls_handshake_timeout": &s.TLSHandshakeTimeout}
	ints := map[string]**int{"max_idle_conns": &s.MaxIdleConns, "max_idle_conns_per_host": &s.MaxIdleConnsPerHost, "max_conns_per_host": &s.MaxConnsPerHost}
	for k, v := range file {
		var err error
		if p, ok := durations[k]; ok {
			*p, err = parsedPtr(time.ParseDuration, v)
		} else if p, ok := ints[k]; ok {
			*p, err = parsedPtr(strconv.Atoi, v)
		} else if k == "disable_keep_alives" {
			b := v == "true"
			s.DisableKeepAlives = &b
		}
		if err != nil {
			return nil, fmt.Errorf("consul.transport.%s: %w", k, err)
		}
	}
	f := o.transport
	flagWins(o.set, "consul-transport-dial-keep-alive", &s.DialKeepAlive, &f.dialKeepAlive)
	flagWins(o.set, "consul-transport-dial-timeout", &s.DialTimeout, &f.dialTimeout)
	flagWins(o.set, "consul-transport-disable-keep-alives", &s.DisableKeepAlives, &f.disableKeepAlives)
	flagWins(o.set, "consul-transport-max-idle-conns-per-host", &s.MaxIdleConnsPerHost, &f.maxIdleConnsPerHost)
	flagWins(o.set, "consul-transport-tls-handshake-timeout", &s.TLSHandshakeTimeout, &f.tlsHandshakeTimeout)
	return s.HTTP(), nil
}

// newLogger writes to stderr, or to the local syslog with -syslog (or
// syslog { enabled = true }).
func newLogger(o *options, fc *fileConfig, stderr io.Writer) (*slog.Logger, error) {
	if fc.LogLevel != nil && !o.set["log-level"] {
		o.cli.Log.Level = *fc.LogLevel
	}
	on, facility, name := o.syslog, o.syslogFacility, o.syslogName
	if fc.Syslog != nil && !o.set["syslog"] {
		on = *fc.Syslog
	}
	if fc.SyslogFacility != "" && !o.set["syslog-facility"] {
		facility = fc.SyslogFacility
	}
	if fc.SyslogName != "" && !o.set["syslog-name"] {
		name = fc.SyslogName
	}
	w := stderr
	if on {
		sw, err := openSyslog(facility, name, o.syslogSocket)
		if err != nil {
			return nil, err
		}
		w = sw
	}
	return o.cli.Log.New(w, "templater")
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stdout, stderr)
	if err != nil {
		return o.cli.Fail(err, exitFlags)
	}
	rc, fc, err := buildConfig(o)
	if err != nil {
		return o.cli.Fail(err, exitConfig)
	}
	log, err := newLogger(o, fc, stderr)
	if err != nil {
		return o.cli.Fail(err, exitConfig)
	}
	if fc.MaxStale != nil && !o.set["max-stale"] {
		o.maxStale = *fc.MaxStale
	}
	if fc.PidFile != nil && !o.set["pid-file"] {
		o.pidFile = *fc.PidFile
	}
	if fc.KillSignal != nil && !o.set["kill-signal"] {
		o.killSignal = *fc.KillSignal
	}
	if fc.ReloadSignal != nil && !o.set["reload-signal"] {
		o.reloadSignal = *fc.ReloadSignal
	}
	tmpls, err := loadTemplates(rc)
	if err != nil {
		return o.cli.Fail(err, exitRunner)
	}
	ccfg, err := consulConfig(o, fc)
	if err != nil {
		return o.cli.Fail(err, exitRunner) // consul-template: the runner cannot build its clients
	}
	if o.parseOnly {
		log.Info("templates parsed (-parse-only)", "templates", len(tmpls))
		return exitOK
	}
	client, err := o.cli.Consul.NewClientFor(ccfg) // -stale applies to every read
	if err != nil {
		return o.cli.Fail(err, exitConsul)
	}
	if o.pidFile != "" {
		if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return o.cli.Fail(fmt.Errorf("-pid-file: %w", err), exitConfig)
		}
		defer os.Remove(o.pidFile)
	}
	return serve(o, fc, rc, tmpls, client, ccfg, log, stdout, stderr)
}

// serve runs the runner until it ends or a stop signal comes, and returns
// the exit code.
func serve(o *options, fc *fileConfig, rc *runConfig, tmpls []*tmpl, client *api.Client, ccfg *api.Config, log *slog.Logger, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := telemetry.NewRegistry()
	qcfg := query.Config{Client: client, MaxStale: o.maxStale, Log: log, RetryMin: o.retryMin, RetryMax: o.retryMax}
	if fc.BlockQueryWait != nil {
		qcfg.Wait = *fc.BlockQueryWait
	}
	qc := query.New(qcfg)
	go func() { _ = qc.Run(ctx) }() // ends with ctx
	reg.MustRegister(qc.Collector("templater"))
	e := &env{q: qc, log: log, pollTick: 15 * time.Second}
	r := &runner{cfg: rc, log: log, store: newStore(e), m: newMetrics(reg), stdout: stdout, stderr: stderr, tmpls: tmpls,
		reload: make(chan *runConfig, 1), dryLast: map[string][]byte{}}
	r.childEnv = childEnv(o, fc, ccfg)
	sigFwd := make(chan syscall.Signal, 8)
	r.sigs = sigFwd
	if supervisor.NeedReaper() {
		// As PID 1 (in a container) orphans of commands and the exec child
		// are ours to collect.
		r.reaper = supervisor.NewReaper(log)
		go r.reaper.Run(ctx)
	}
	metricsLn, err := o.cli.ListenMetrics()
	if err != nil {
		return o.cli.Fail(err, exitConfig)
	}
	serveMetrics(ctx, metricsLn, reg, r, log)
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	defer signal.Stop(sigs)
	killSig, _ := supervisor.ParseSignal(o.killSignal)
	reloadSig, _ := supervisor.ParseSignal(o.reloadSignal)
	var stopCode atomic.Int32
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				sig, ok := s.(syscall.Signal)
				if !ok {
					continue
				}
				switch {
				case sig == killSig || sig == syscall.SIGTERM || (sig == syscall.SIGINT && killSig != syscall.SIGINT && reloadSig != syscall.SIGINT):
					log.Info("stopping", "signal", supervisor.SignalName(sig))
					if sig == killSig {
						stopCode.Store(exitSignal)
					}
					cancel()
					return
				case sig == reloadSig:
					nc, _, err := buildConfig(o)
					if err != nil {
						log.Error("reload: new configuration rejected; keeping the running one", "err", err)
						continue
					}
					select {
					case r.reload <- nc:
					default:
					}
				case supervisor.Forwardable(sig):
					select {
					case sigFwd <- sig:
					default:
					}
				}
			}
		}
	}()

	log.Info("starting", "templates", len(tmpls), "consul", ccfg.Address, "max_stale", o.maxStale, "once", o.once, "dry", o.dry)
	err = r.run(ctx)
	var ee *errExit
	switch {
	case err == nil && ctx.Err() != nil:
		return int(stopCode.Load())
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		log.Error("exiting", "err", ee.err)
		return o.cli.Fail(ee.err, ee.code)
	default:
		return o.cli.Fail(err, exitRunner)
	}
}

// childEnv is what consul-template puts in the environment of the -exec
// child and of commands (manager/runner.go childEnv): the Consul address and
// token it was given, and whether it uses TLS and verifies it.
func childEnv(o *options, fc *fileConfig, c *api.Config) []string {
	var out []string
	if o.set["http-addr"] || o.set["consul-addr"] || fc.ConsulAddr != nil {
		out = append(out, "CONSUL_HTTP_ADDR="+c.Address)
	}
	if c.HttpAuth != nil {
		out = append(out, "CONSUL_HTTP_AUTH="+c.HttpAuth.Username+":"+c.HttpAuth.Password)
	}
	if o.set["token"] || o.set["consul-token"] || fc.ConsulToken != nil {
		out = append(out, "CONSUL_HTTP_TOKEN="+c.Token)
	}
	return append(out, "CONSUL_HTTP_SSL="+strconv.FormatBool(c.Scheme == "https"), "CONSUL_HTTP_SSL_VERIFY="+strconv.FormatBool(!c.TLSConfig.InsecureSkipVerify))
}

// serveMetrics serves /metrics and /health on ln (nil: -metrics-addr is
// off) until ctx is done; the query layer's probe tells a cut-off agent.
func serveMetrics(ctx context.Context, ln *cliapp.Metrics, reg *prometheus.Registry, r *runner, log *slog.Logger) {
	if ln == nil {
		return
	}
	health := func() error {
		f, since := r.store.failing()
		if len(f) == 0 {
			// A cut-off host: the watches hang without an error.
			if down, since, err := r.store.env.q.Down(); down && r.allRendered.Load() {
				return telemetry.Degraded("the Consul agent has reached no server since %s (%s): %v; serving the last good files",
					since.UTC().Format(time.RFC3339), time.Since(since).Round(time.Second), err)
			}
			return nil
		}
		keys := make([]string, 0, len(f))
		for k := range f {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		msg := fmt.Sprintf("waiting for Consul since %s (%s): %d watches failing (%s: %s)", since.UTC().Format(time.RFC3339),
			time.Since(since).Round(time.Second), len(f), keys[0], f[keys[0]])
		if r.allRendered.Load() {
			// Every destination holds its last good render: degraded, not
			// failed.
			return telemetry.Degraded("%s; serving the last good files", msg)
		}
		return errors.New(msg)
	}
	ln.Serve(ctx, reg, health, log)
}

// applyFileTLS applies a config file's consul { ssl { ... } } where no flag
// set the same thing.
func applyFileTLS(c *api.Config, ssl map[string]string, set map[string]bool) {
	if len(ssl) == 0 {
		return
	}
	if ssl["enabled"] == "true" {
		c.Scheme = "https"
	}
	for key, flags := range map[string][]string{"ca_cert": {"ca-file", "consul-ssl-ca-cert"}, "ca_path": {"ca-path", "consul-ssl-ca-path"},
		"cert": {"client-cert", "consul-ssl-cert"}, "key": {"client-key", "consul-ssl-key"}, "server_name": {"tls-server-name", "consul-ssl-server-name"}} {
		v, ok := ssl[key]
		if !ok || v == "" || set[flags[0]] || set[flags[1]] {
			continue
		}
		switch key {
		case "ca_cert":
			c.TLSConfig.CAFile = v
		case "ca_path":
			c.TLSConfig.CAPath = v
		case "cert":
			c.TLSConfig.CertFile = v
		case "key":
			c.TLSConfig.KeyFile = v
		case "server_name":
			c.TLSConfig.Address = v
		}
	}
	if ssl["verify"] == "false" {
		c.TLSConfig.InsecureSkipVerify = true
	}
}
