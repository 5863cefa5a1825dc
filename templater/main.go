// Command templater renders files from live Consul data with consul-template's
// language and configuration, re-executing only the templates whose own data
// changed, checking each candidate file before it replaces the live one, and
// running reload commands after a pass.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/cliapp"
	"github.com/hashicorp/consul/api"
)

// Exit codes. Where consul-template has a code for the same situation, it is
// consul-template's (cli.go: the iota block makes ExitCodeError 11,
// ExitCodeInterrupt 12, ExitCodeParseFlagsError 13, ExitCodeRunnerError 14,
// ExitCodeConfigError 15); the others are templater's own.
const (
	exitOK      = 0
	exitMissing = 2  // -once: data still missing after -once-timeout
	exitRender  = 3  // -once: a destination's check failed
	exitCommand = 4  // a command failed with -fail-fast
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
	if r.name == "log-file" && v == "" {
		return nil // no path: consul-template writes no log file (logging.Setup)
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
	"vault-transport-tls-handshake-timeout": false, "vault-unwrap-token": true, "vault-default-lease-duration": false, "vault-client-user-agent": false}

// logFileFlags are consul-template's log-file flags (cli.go; not in its -h):
// refused as the config's log_file block is.
var logFileFlags = []string{"log-file", "log-rotate-bytes", "log-rotate-duration", "log-rotate-max-files"}

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
	waitCfg            *waitConfig // -wait parsed (nil: not given)
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
	retryEnabled       bool
	retryAttempts      int
	retryJitter        bool
	templateErrorFatal bool
	reloadErrorFatal   bool
	logLevelFlag       string // -log-level as given or its default, before a file's log_level
	syslog             bool
	syslogFacility     string
	syslogName         string
	syslogSocket       string
	leftDelim          string
	rightDelim         string
	cli                *cliapp.Program
	set                map[string]bool // flags given on the command line or by their variables
}

// parseFlags reads the command line (cliapp: every flag also from
// TEMPLATER_*, the Consul flags from CONSUL_*) and checks it. The options
// are returned with the error too: their cli prints it.
func parseFlags(args []string, stdout, stderr io.Writer) (*options, error) {
	fs := cliapp.New("templater", stdout, stderr)
	fs.Usage = []string{"templater [flags]"}
	fs.About = "Renders consul-template templates from Consul and runs their commands."
	fs.Footer = "consul-template's -dedup and -vault-* flags are refused: templater runs each distinct query once and does not read Vault."
	fs.HelpToStdout = true // as consul-template: cli.go Run prints the usage on its out stream for flag.ErrHelp
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
	fs.String(&o.execKill, "exec-kill-signal", "SIGINT", "signal that stops the -exec child (SIGNULL: none, SIGKILL after -exec-kill-timeout)")
	fs.Duration(&o.execKillTO, "exec-kill-timeout", 30*time.Second, "grace time before SIGKILL when stopping the -exec child")
	fs.Duration(&o.execSplay, "exec-splay", 0, "random delay up to this long before reloading the -exec child")
	fs.Bool(&o.execEnv.Pristine, "exec-env-pristine", false, "the -exec child does not inherit templater's environment")
	fs.Var((*listFlag)(&o.execEnv.Custom), "exec-env-custom", "`NAME=VALUE` given to the -exec child (repeatable)")
	fs.Var((*listFlag)(&o.execEnv.Allow), "exec-env-allowlist", "glob of variables the -exec child gets (repeatable; default all)")
	fs.Var((*listFlag)(&o.execEnv.Deny), "exec-env-denylist", "glob of variables the -exec child does not get (repeatable; wins over the allowlist)")
	fs.String(&o.pidFile, "pid-file", "", "write templater's PID to this file")
	fs.String(&o.killSignal, "kill-signal", "SIGINT", "signal that stops templater (exit 12, as consul-template); SIGTERM always stops it (exit 0)")
	fs.String(&o.reloadSignal, "reload-signal", "SIGHUP", "signal that reloads configuration and templates")
	fs.Alias("v", "version")
	fs.Bool(&o.reloadErrorFatal, "reload-error-fatal", true, "exit when the configuration or a template read on the reload signal fails, as consul-template (false: log it and keep the running configuration)")
	fs.Bool(&o.templateErrorFatal, "template-error-fatal", true, "exit when a template fails to execute (false: log it, keep the file and go on)")
	fs.Bool(&o.syslog, "syslog", false, "send the log to the local syslog instead of stderr")
	fs.String(&o.syslogFacility, "syslog-facility", "LOCAL0", "syslog facility; giving it turns -syslog on, as in consul-template")
	fs.String(&o.syslogName, "syslog-name", "consul-template", "program name in syslog; giving it turns -syslog on, as in consul-template")
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
	// Consul is retried forever with backoff unless attempts are given
	// (README, differences: consul-template's default of 12 ends it).
	fs.Bool(&o.retryEnabled, "consul-retry", true, "retry failed Consul calls (false: the first failure stops templater, exit 14)")
	fs.Int(&o.retryAttempts, "consul-retry-attempts", 0, "retries of a failing Consul query before templater stops (exit 14), counted as consul-template does (0: retry forever)")
	fs.Duration(&o.retryMin, "consul-retry-backoff", defaultRetryBackoff, "first wait after a failed Consul call, doubled up to -consul-retry-max-backoff")
	fs.Alias("retry", "consul-retry-backoff") // consul-template's older flag
	fs.Duration(&o.retryMax, "consul-retry-max-backoff", defaultRetryMaxBackoff, "longest wait between retries")
	fs.Bool(&o.retryJitter, "consul-retry-jitter", false, "vary each retry wait by up to ±20% so many hosts retrying after the same outage spread out (templater's; consul-template waits the exact delays)")
	fs.Hidden(&refusedFlag{name: "dedup", why: "dedup mode (templater already runs each distinct query once)", isBool: true}, "dedup")
	for name, isBool := range vaultFlags {
		fs.Hidden(&refusedFlag{name: name, why: "templater does not read Vault", isBool: isBool}, name)
	}
	for _, name := range logFileFlags {
		fs.Hidden(&refusedFlag{name: name, why: configSpec.Refused["log_file"]}, name)
	}
	res, err := fs.Parse(args)
	if err != nil {
		return o, err
	}
	if len(res.Args) > 0 {
		return o, fmt.Errorf("unexpected argument %q (templates go in -template or -config)", res.Args[0])
	}
	o.set = fs.Explicit(res)
	o.logLevelFlag = o.cli.Log.Level
	for _, v := range o.templates {
		// consul-template refuses a blank -template as a bad flag value
		// (exit 13); other malformed ones fail later, as a configuration.
		if strings.TrimSpace(v) == "" {
			return o, fmt.Errorf("-template %q: cannot be empty (want SOURCE:DESTINATION[:COMMAND])", v)
		}
	}
	for _, s := range []struct{ name, v string }{{"exec-reload-signal", o.execReload}, {"exec-kill-signal", o.execKill}, {"kill-signal", o.killSignal}, {"reload-signal", o.reloadSignal}} {
		// An empty value given is refused, as consul-template refuses it;
		// -exec-reload-signal's default is empty (restart the child).
		if s.v == "" && !o.set[s.name] {
			continue
		}
		if _, err := parseSignal(s.v); err != nil {
			return o, fmt.Errorf("-%s: %w", s.name, err)
		}
	}
	switch {
	case o.maxStale < 0:
		return o, fmt.Errorf("-max-stale %s: must not be negative", o.maxStale)
	case o.onceTimeout < 0:
		return o, fmt.Errorf("-once-timeout %s: must not be negative", o.onceTimeout)
	case o.missingWarn <= 0:
		return o, fmt.Errorf("-missing-warn %s: must be positive", o.missingWarn)
	}
	if o.wait != "" {
		// A bad value is a bad flag (exit 13), as consul-template's
		// flag.Value for -wait makes it.
		w, err := parseWait(o.wait)
		if err != nil {
			return o, fmt.Errorf("-%w", err)
		}
		o.waitCfg = w
	}
	if o.set["consul-auth"] && o.consulAuth == "" {
		return o, errors.New("-consul-auth: cannot be empty")
	}
	return o, nil
}

// warnConfig logs what the configuration files say in a form that still
// works, at start and again on each reload, as consul-template re-parses
// its files on the reload signal and so warns again (cli.go Run:
// loadConfigs; config/mapstructure.go ConsulStringToStructFunc).
func warnConfig(log *slog.Logger, fc *fileConfig) {
	for _, w := range fc.Warnings {
		log.Warn(w)
	}
	for _, k := range fc.NoEffect {
		log.Warn("configuration key has no effect, as in consul-template, whose command line decides it; use the flag", "key", k, "flag", map[string]string{"once": "-once", "parseonly": "-parse-only"}[k])
	}
}

// buildConfig reads config files and flags into a runConfig; it is called at
// start and again on the reload signal.
func buildConfig(o *options) (*runConfig, *fileConfig, error) {
	fc, err := loadConfig(o.configs, os.Getenv("CT_LOCAL_CONFIG"))
	if err != nil {
		return nil, nil, err
	}
	rc := &runConfig{Once: o.once, OnceTimeout: o.onceTimeout, Dry: o.dry, Diff: o.diff, MissingWarn: o.missingWarn, FailFast: o.failFast,
		TemplateErrorFatal: o.templateErrorFatal, ReloadErrorFatal: o.reloadErrorFatal}
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
			return nil, nil, badFlag{fmt.Errorf("-check %q: want DESTINATION=COMMAND", s)}
		}
		found := false
		for _, t := range rc.Templates {
			if t.Destination == dest {
				t.Check, found = cmd, true
			}
		}
		if !found {
			return nil, nil, badFlag{fmt.Errorf("-check %q: no template writes %s", s, dest)}
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
			t.ErrOnLookup = true
		}
		if o.set["template-error-fatal"] {
			// The flag wins over each template's error_fatal (cli.go
			// loadConfigs sets every template's ErrFatal from it).
			v := o.templateErrorFatal
			t.ErrorFatal = &v
		}
	}
	if len(rc.Templates) == 0 {
		return nil, nil, errors.New("no templates: give -template SOURCE:DESTINATION[:COMMAND] or -config with template blocks")
	}
	// The files' wait, field by field, then -wait over it, as
	// consul-template merges them (waitParts).
	w := fc.Wait
	if o.waitCfg != nil {
		w = w.merge(waitParts{Min: &o.waitCfg.Min, Max: &o.waitCfg.Max})
	}
	rc.Wait = w.final()
	if rc.Exec, err = execFromFlags(o, fc.Exec); err != nil {
		return nil, nil, err
	}
	return rc, fc, nil
}

// execFromFlags merges the -exec* flags over the config's exec block.
func execFromFlags(o *options, e *execConfig) (*execConfig, error) {
	if o.set["exec"] {
		// Given, even empty: the flag wins over the file's command, as
		// consul-template merges its flags last (cli.go loadConfigs).
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
	if !e.Enabled || len(e.Argv) == 0 || e.Argv[0] == "" {
		// An empty command (exec { command = "" }, -exec "") is none:
		// consul-template's commandList.Empty, which starts no child.
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

// consul-template's retry delays (v0.41.1 config/retry.go
// DefaultRetryBackoff, DefaultRetryMaxBackoff); other values, 0 too, as
// consul-template takes them (query.RetryBounds).
const (
	defaultRetryBackoff    = 250 * time.Millisecond
	defaultRetryMaxBackoff = time.Minute
)

// mergeRetry takes consul { retry { } } from the files where no flag set
// the same. A max_backoff of 0 is consul-template's "no limit", capped at
// an hour (query.RetryBounds).
func mergeRetry(o *options, r retrySettings) {
	fileWins(o.set, "consul-retry", &o.retryEnabled, r.Enabled)
	fileWins(o.set, "consul-retry-attempts", &o.retryAttempts, r.Attempts)
	fileWins(o.set, "consul-retry-backoff", &o.retryMin, r.Backoff)
	fileWins(o.set, "consul-retry-max-backoff", &o.retryMax, r.MaxBackoff)
}

// fileWins sets *dst to *v, a config file's value, when the file set it and
// the flag name was not given on the command line.
func fileWins[T any](set map[string]bool, name string, dst *T, v *T) {
	if v != nil && !set[name] {
		*dst = *v
	}
}

// badFlag is a flag value found bad only once the configuration is merged
// (a -check naming no template's destination): exit 13, as any bad flag.
type badFlag struct{ error }

func (b badFlag) Unwrap() error { return b.error }

// configExit is the exit code for an error of buildConfig, at start and on
// a fatal reload: a template block that cannot make a template 14 (the
// runner's), a flag found bad once merged 13, any other configuration
// error 15 (consul-template's ExitCodeConfigError).
func configExit(err error) int {
	if errors.As(err, new(templateShapeError)) {
		return exitRunner
	}
	if errors.As(err, new(badFlag)) {
		return exitFlags
	}
	return exitConfig
}

// session is what one reading of the configuration files over the command
// line gives. It is built at start and again, whole, on the reload signal,
// as consul-template reads its files again and builds a new runner from
// them (cli.go Run, the ReloadSignal case: loadConfigs over the command
// line's config, cli.setup, manager.NewRunner).
type session struct {
	o     *options // the command line with the files' settings merged in
	fc    *fileConfig
	rc    *runConfig
	tmpls []*tmpl
	ccfg  *api.Config
	// client is nil under -parse-only.
	client *api.Client
	log    *slog.Logger
	// logOut is where log writes: stderr, or a syslog connection to close
	// when a reload replaces it.
	logOut             io.Writer
	killSig, reloadSig syscall.Signal
	childEnv           []string
}

// clone is a copy of o with its own copy of the command line's shared
// flags, which building a session changes (a file's Consul address).
func (o *options) clone() *options {
	c := *o
	p := *o.cli
	c.cli = &p
	return &c
}

// prepare reads the configuration files over the command line base (left
// as it is) and returns the session they make, or the error with its exit
// code: at start, and on the reload signal with the same codes
// (consul-template's: 15 for the configuration and its logging, 14 for
// what the runner cannot build).
func prepare(base *options, stderr io.Writer) (s *session, code int, err error) {
	o := base.clone()
	rc, fc, err := buildConfig(o)
	if err != nil {
		return nil, configExit(err), err
	}
	log, logOut, err := newLogger(o, fc, stderr)
	if err != nil {
		return nil, exitConfig, err
	}
	defer func() {
		if sw, ok := logOut.(*syslog.Writer); ok && err != nil {
			// A reload refused with -reload-error-fatal=false keeps the
			// running session's log; this connection is not used.
			_ = sw.Close()
		}
	}()
	warnConfig(log, fc)
	mergeRetry(o, fc.ConsulRetry)
	if o.retryAttempts < 0 {
		return nil, exitFlags, fmt.Errorf("-consul-retry-attempts %d: must not be negative", o.retryAttempts)
	}
	for name, d := range map[string]time.Duration{"-consul-retry-backoff": o.retryMin, "-consul-retry-max-backoff": o.retryMax} {
		if d < 0 {
			return nil, exitFlags, fmt.Errorf("%s %s: must not be negative", name, d)
		}
	}
	fileWins(o.set, "max-stale", &o.maxStale, fc.MaxStale)
	fileWins(o.set, "pid-file", &o.pidFile, fc.PidFile)
	fileWins(o.set, "kill-signal", &o.killSignal, fc.KillSignal)
	fileWins(o.set, "reload-signal", &o.reloadSignal, fc.ReloadSignal)
	s = &session{o: o, fc: fc, rc: rc, log: log, logOut: logOut}
	// Checked already: by parseFlags for a flag, by the config reader
	// for a file.
	s.killSig, _ = parseConfigSignal(o.killSignal)
	s.reloadSig, _ = parseConfigSignal(o.reloadSignal)
	if s.tmpls, err = loadTemplates(rc); err != nil {
		return nil, exitRunner, err
	}
	if s.ccfg, err = consulConfig(o, fc); err != nil {
		return nil, exitRunner, err // consul-template: the runner cannot build its clients
	}
	if o.parseOnly {
		return s, exitOK, nil
	}
	// -stale applies to every read.
	if s.client, err = o.cli.Consul.NewClientFor(s.ccfg); err != nil {
		// consul-template: the runner cannot build its clients (exit 14,
		// manager.NewRunner failing in cli.go Run).
		return nil, exitRunner, err
	}
	s.childEnv = childEnv(o, fc, s.ccfg)
	return s, exitOK, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stdout, stderr)
	if err != nil {
		return o.cli.Fail(err, exitFlags)
	}
	// The command line alone: each reload reads the files over it again,
	// as consul-template keeps its flags' config for reloads (cli.go Run:
	// cliConfig).
	base := o.clone()
	s, code, err := prepare(base, stderr)
	if err != nil {
		return o.cli.Fail(err, code)
	}
	if s.o.parseOnly {
		s.log.Info("templates parsed (-parse-only)", "templates", len(s.tmpls))
		return exitOK
	}
	return serve(base, s, stdout, stderr)
}
