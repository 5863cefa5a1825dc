// Command templater renders files from live Consul data with consul-template's
// language and configuration, re-executing only the templates whose own data
// changed, checking each candidate file before it replaces the live one, and
// running reload commands after a pass.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/consulclient"
	"github.com/berth/berth/pkg/logging"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/berth/berth/pkg/version"
	"github.com/hashicorp/consul/api"
)

// Exit codes.
const (
	exitOK      = 0
	exitUsage   = 1 // bad flag, config or template (nothing was written)
	exitMissing = 2 // -once: data still missing after -once-timeout
	exitRender  = 3 // -once: a destination could not be written or its check failed
	exitCommand = 4 // a command failed with -fail-fast (or in -once)
	exitChild   = 5 // the -exec command could not be started
	exitConsul  = 6 // Consul client could not be built
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

type options struct {
	templates    listFlag
	configs      listFlag
	checks       listFlag
	once         bool
	onceTimeout  time.Duration
	dry          bool
	wait         string
	maxStale     time.Duration
	missingWarn  time.Duration
	failFast     bool
	exec         string
	execReload   string
	execKill     string
	execKillTO   time.Duration
	execSplay    time.Duration
	pidFile      string
	killSignal   string
	reloadSignal string
	metricsAddr  string
	consulSSL    bool
	leftDelim    string
	rightDelim   string
	showVersion  bool
	consul       consulclient.Flags
	logs         logging.Flags
	set          map[string]bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("templater", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: templater [flags]\n\nRenders consul-template templates from Consul and runs their commands.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.Var(&o.templates, "template", "`SOURCE:DESTINATION[:COMMAND]` to render (repeatable)")
	fs.Var(&o.configs, "config", "consul-template HCL config `FILE|DIR` (repeatable; later ones win)")
	fs.Var(&o.checks, "check", "`DESTINATION=COMMAND`: check the candidate file ({{path}}) before it replaces DESTINATION (repeatable)")
	fs.BoolVar(&o.once, "once", false, "render every template once, run the commands and exit")
	fs.DurationVar(&o.onceTimeout, "once-timeout", time.Minute, "with -once, give up (exit 2) when data is still missing after this long (0: wait forever)")
	fs.BoolVar(&o.dry, "dry", false, "print a unified diff per destination and the commands that would run; write nothing")
	fs.StringVar(&o.wait, "wait", "", "`MIN[:MAX]` quiet time before rendering after a change (MAX defaults to 4×MIN)")
	fs.DurationVar(&o.maxStale, "max-stale", 2*time.Second, "read from any server when its data is at most this old (0: always ask the leader)")
	fs.DurationVar(&o.missingWarn, "missing-warn", 30*time.Second, "warn when a template has waited this long for data, naming what it waits for")
	fs.BoolVar(&o.failFast, "fail-fast", false, "exit (code 4) when a command fails instead of logging it and going on")
	fs.StringVar(&o.exec, "exec", "", "run this command as a child once every template is rendered; signal or restart it on change")
	fs.StringVar(&o.execReload, "exec-reload-signal", "", "signal sent to the -exec child when its templates change (empty: restart it)")
	fs.StringVar(&o.execKill, "exec-kill-signal", "SIGTERM", "signal that stops the -exec child")
	fs.DurationVar(&o.execKillTO, "exec-kill-timeout", 30*time.Second, "grace time before SIGKILL when stopping the -exec child")
	fs.DurationVar(&o.execSplay, "exec-splay", 0, "random delay up to this long before reloading the -exec child")
	fs.StringVar(&o.pidFile, "pid-file", "", "write templater's PID to this file")
	fs.StringVar(&o.killSignal, "kill-signal", "SIGINT", "signal that stops templater (SIGINT and SIGTERM always do)")
	fs.StringVar(&o.reloadSignal, "reload-signal", "SIGHUP", "signal that reloads configuration and templates")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /health on this address (off when empty)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	o.consul.Register(fs)
	// consul-template's names for the same settings.
	for alias, name := range map[string]string{"consul-addr": "http-addr", "consul-token": "token", "consul-ssl-ca-cert": "ca-file",
		"consul-ssl-ca-path": "ca-path", "consul-ssl-cert": "client-cert", "consul-ssl-key": "client-key", "consul-ssl-server-name": "tls-server-name"} {
		_ = o.consul.Alias(fs, alias, name)
	}
	fs.BoolVar(&o.consulSSL, "consul-ssl", false, "talk HTTPS to Consul (consul-template's flag; same as an https:// address)")
	fs.StringVar(&o.leftDelim, "default-left-delimiter", "", "left delimiter for templates that set none (default {{)")
	fs.StringVar(&o.rightDelim, "default-right-delimiter", "", "right delimiter for templates that set none (default }})")
	// Accepted for compatibility and ignored: templater retries Consul forever
	// with backoff, and runs each distinct query once without dedup mode.
	var ignoredB bool
	var ignoredI int
	var ignoredD time.Duration
	fs.BoolVar(&ignoredB, "consul-retry", true, "ignored (consul-template compatibility): templater always retries with backoff")
	fs.IntVar(&ignoredI, "consul-retry-attempts", 0, "ignored (consul-template compatibility): templater retries forever")
	fs.DurationVar(&ignoredD, "consul-retry-backoff", 0, "ignored (consul-template compatibility)")
	fs.DurationVar(&ignoredD, "consul-retry-max-backoff", 0, "ignored (consul-template compatibility)")
	fs.BoolVar(&ignoredB, "consul-ssl-verify", true, "ignored (consul-template compatibility): certificates are always verified")
	fs.BoolVar(&ignoredB, "dedup", false, "ignored (consul-template compatibility): each distinct query already runs once")
	fs.BoolVar(&ignoredB, "syslog", false, "ignored (consul-template compatibility): logs go to stderr")
	o.logs.Register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (templates go in -template or -config)", fs.Arg(0))
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	for _, s := range []struct{ name, v string }{{"exec-reload-signal", o.execReload}, {"exec-kill-signal", o.execKill}, {"kill-signal", o.killSignal}, {"reload-signal", o.reloadSignal}} {
		if s.v == "" {
			continue
		}
		if _, err := supervisor.ParseSignal(s.v); err != nil {
			return nil, fmt.Errorf("-%s: %w", s.name, err)
		}
	}
	if o.maxStale < 0 || o.onceTimeout < 0 || o.missingWarn <= 0 {
		return nil, errors.New("-max-stale and -once-timeout must not be negative; -missing-warn must be positive")
	}
	return o, nil
}

// buildConfig reads config files and flags into a runConfig; it is called at
// start and again on SIGHUP.
func buildConfig(o *options) (*runConfig, *fileConfig, error) {
	fc, err := loadConfigPaths(o.configs)
	if err != nil {
		return nil, nil, err
	}
	rc := &runConfig{Once: o.once, OnceTimeout: o.onceTimeout, Dry: o.dry, MissingWarn: o.missingWarn, FailFast: o.failFast}
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
	for _, t := range rc.Templates {
		if t.LeftDelim == "" && t.RightDelim == "" {
			t.LeftDelim, t.RightDelim = o.leftDelim, o.rightDelim
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
	rc.Exec = fc.Exec
	if o.exec != "" {
		rc.Exec = &execConfig{Command: o.exec, ReloadSignal: o.execReload, KillSignal: o.execKill, KillTimeout: o.execKillTO, Splay: o.execSplay}
	}
	if rc.Exec != nil {
		for _, s := range []string{rc.Exec.ReloadSignal, rc.Exec.KillSignal} {
			if s == "" {
				continue
			}
			if _, err := supervisor.ParseSignal(s); err != nil {
				return nil, nil, fmt.Errorf("exec: %w", err)
			}
		}
	}
	return rc, fc, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "templater: %v\n", err)
		return exitUsage
	}
	if o.showVersion {
		fmt.Fprintln(stdout, version.String("templater"))
		return exitOK
	}
	rc, fc, err := buildConfig(o)
	if err != nil {
		fmt.Fprintf(stderr, "templater: %v\n", err)
		return exitUsage
	}
	if fc.LogLevel != nil && !o.set["log-level"] {
		o.logs.Level = *fc.LogLevel
	}
	log, err := o.logs.New(stderr, "templater")
	if err != nil {
		fmt.Fprintf(stderr, "templater: %v\n", err)
		return exitUsage
	}
	if fc.MaxStale != nil && !o.set["max-stale"] {
		o.maxStale = *fc.MaxStale
	}
	if fc.PidFile != nil && !o.set["pid-file"] {
		o.pidFile = *fc.PidFile
	}
	tmpls, err := loadTemplates(rc)
	if err != nil {
		fmt.Fprintf(stderr, "templater: %v\n", err)
		return exitUsage
	}
	if fc.ConsulAddr != nil && !o.set["http-addr"] && !o.set["consul-addr"] {
		o.consul.SetAddress(*fc.ConsulAddr)
	}
	ccfg, err := o.consul.Config()
	if err != nil {
		fmt.Fprintf(stderr, "templater: %v\n", err)
		return exitUsage
	}
	applyFileTLS(ccfg, fc.ConsulTLS, o.set)
	if o.consulSSL {
		ccfg.Scheme = "https"
	}
	if fc.ConsulToken != nil && !o.set["token"] && !o.set["consul-token"] && !o.set["token-file"] {
		ccfg.Token = *fc.ConsulToken
	}
	client, err := consulclient.NewClient(ccfg)
	if err != nil {
		fmt.Fprintf(stderr, "templater: %v\n", err)
		return exitConsul
	}
	if o.pidFile != "" {
		if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintf(stderr, "templater: -pid-file: %v\n", err)
			return exitUsage
		}
		defer os.Remove(o.pidFile)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := telemetry.NewRegistry()
	e := &env{client: client, maxStale: o.maxStale, log: log, pollTick: 15 * time.Second}
	r := &runner{cfg: rc, log: log, store: newStore(e), m: newMetrics(reg), stdout: stdout, tmpls: tmpls,
		reload: make(chan *runConfig, 1), dryLast: map[string][]byte{}}
	sigFwd := make(chan syscall.Signal, 8)
	r.sigs = sigFwd
	if supervisor.NeedReaper() {
		// As PID 1 (in a container) orphans of commands and the exec child
		// are ours to collect.
		r.reaper = supervisor.NewReaper(log)
		go r.reaper.Run(ctx)
	}

	if o.metricsAddr != "" {
		health := func() error {
			f, since := r.store.failing()
			if len(f) == 0 {
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
				// Every destination holds its last good render: degraded,
				// not failed.
				return telemetry.Degraded("%s; serving the last good files", msg)
			}
			return errors.New(msg)
		}
		ready := make(chan error, 1)
		go func() {
			err := telemetry.Serve(ctx, o.metricsAddr, reg, health, log, func(net.Addr) { ready <- nil })
			if err != nil {
				ready <- err
			}
		}()
		if err := <-ready; err != nil {
			fmt.Fprintf(stderr, "templater: %v\n", err)
			return exitUsage
		}
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	defer signal.Stop(sigs)
	killSig, _ := supervisor.ParseSignal(o.killSignal)
	reloadSig, _ := supervisor.ParseSignal(o.reloadSignal)
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
				case sig == syscall.SIGINT || sig == syscall.SIGTERM || sig == killSig:
					log.Info("stopping", "signal", supervisor.SignalName(sig))
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
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		log.Error("exiting", "err", ee.err)
		fmt.Fprintf(stderr, "templater: %v\n", ee.err)
		return ee.code
	default:
		fmt.Fprintf(stderr, "templater: %v\n", err)
		return exitUsage
	}
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
