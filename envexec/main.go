// Command envexec runs a program with its configuration from Consul KV (and
// service instances) as environment variables, and keeps it current: on a
// real change of the resulting environment it restarts the program, signals
// it, or leaves it alone. A drop-in for envconsul's common flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/consulclient"
	"github.com/berth/berth/pkg/logging"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/berth/berth/pkg/version"
)

// Exit codes of envexec itself (10 and up, as envconsul). Otherwise envexec
// exits with the child's exit code, or 128+N when a signal N killed it.
const (
	exitOK          = 0
	exitUsage       = 10 // bad flags or arguments
	exitWaitTimeout = 11 // -wait-timeout expired before every source answered
	exitInterrupted = 12 // SIGINT/SIGTERM/SIGHUP/SIGQUIT before the child started
	exitChildStart  = 13 // the command could not be started
	exitExport      = 14 // -export: a value the chosen format cannot carry
	exitMetrics     = 15 // -metrics-addr cannot be served
)

func main() {
	if code, ok := telemetry.Healthcheck(os.Args[1:], os.Stderr); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type onChange int

const (
	changeRestart onChange = iota
	changeSignal
	changeNone
)

type options struct {
	prefixes     []*prefixSpec
	services     []*serviceSpec
	order        []source
	naming       naming
	pristine     bool
	envAllow     []string
	shell        supervisor.ShellFlag
	onChange     onChange
	changeSignal syscall.Signal
	killSignal   syscall.Signal
	killTimeout  time.Duration
	splay        time.Duration
	waitMin      time.Duration
	waitMax      time.Duration
	execCmd      string
	once         bool
	waitTimeout  time.Duration
	export       string
	maxStale     time.Duration
	metricsAddr  string
	pidFile      string
	showVersion  bool
	consul       consulclient.Flags
	logs         logging.Flags
	argv         []string
}

// funcFlag is a flag.Value calling a function for each use.
type funcFlag func(string) error

func (f funcFlag) String() string     { return "" }
func (f funcFlag) Set(s string) error { return f(s) }

// signalFlag holds a signal given by name or number.
type signalFlag struct{ sig *syscall.Signal }

func (f signalFlag) String() string {
	if f.sig == nil || *f.sig == 0 {
		return ""
	}
	return supervisor.SignalName(*f.sig)
}

func (f signalFlag) Set(s string) error {
	sig, err := supervisor.ParseSignal(s)
	if err != nil {
		return err
	}
	*f.sig = sig
	return nil
}

func usage(stderr io.Writer, fs *flag.FlagSet) func() {
	return func() {
		fmt.Fprintf(stderr, `Usage: envexec [flags] COMMAND [ARGS...]
       envexec [flags] -- COMMAND [ARGS...]
       envexec [flags] -export dotenv|shell|json

Runs COMMAND with the keys below each -prefix (and the instances of each
-service) as environment variables; restarts it (or signals it) when the
resulting environment changes. Exits with the child's exit code.

Flags:
`)
		fs.PrintDefaults()
	}
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{
		naming:       naming{noPrefix: true},
		changeSignal: syscall.SIGHUP,
		killSignal:   syscall.SIGTERM,
	}
	fs := flag.NewFlagSet("envexec", flag.ContinueOnError)
	// The flag package's own messages are replaced by one line from run;
	// -help prints the usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	addPrefix := funcFlag(func(s string) error {
		p, err := parsePrefix(s)
		if err != nil {
			return err
		}
		o.prefixes = append(o.prefixes, p)
		o.order = append(o.order, p)
		return nil
	})
	fs.Var(addPrefix, "prefix", "watch the keys below `PATH[@DC]` (repeatable; later prefixes win)")
	prefixFormat := funcFlag(func(s string) error {
		if len(o.prefixes) == 0 {
			return errors.New("give -format after the -prefix it names")
		}
		t, err := parseFormat(s, false)
		if err != nil {
			return err
		}
		p := o.prefixes[len(o.prefixes)-1]
		p.format, p.fmtSrc = t, s
		return nil
	})
	fs.Var(prefixFormat, "format", "name `TEMPLATE` for the -prefix just before it, e.g. 'APP_{{ key }}'")
	fs.Var(prefixFormat, "prefix-format", "alias of -format")
	addService := funcFlag(func(s string) error {
		sv, err := parseService(s)
		if err != nil {
			return err
		}
		o.services = append(o.services, sv)
		o.order = append(o.order, sv)
		return nil
	})
	fs.Var(addService, "service", "instances of service `[TAG.]NAME[@DC]` as variables <service>_id, _name, _address, _tag, _port (repeatable)")
	fs.Var(addService, "service-query", "alias of -service (envconsul's name)")
	for _, field := range serviceFields() {
		field := field
		fs.Var(funcFlag(func(s string) error {
			if len(o.services) == 0 {
				return fmt.Errorf("give -service-format-%s after the -service it names", field)
			}
			t, err := parseFormat(s, true)
			if err != nil {
				return err
			}
			o.services[len(o.services)-1].formats[field] = t
			return nil
		}), "service-format-"+field, "name `TEMPLATE` of the "+field+" variable of the -service just before it, e.g. '{{ service }}_"+strings.ToUpper(field)+"'")
	}
	fs.BoolVar(&o.naming.sanitize, "sanitize", false, "replace every character outside [A-Za-z0-9_] in names with _")
	fs.BoolVar(&o.naming.upcase, "upcase", false, "upper-case variable names")
	fs.BoolVar(&o.naming.noPrefix, "no-prefix", true, "do not put the prefix path in front of names; -no-prefix=false names app/config/db as app_config_db")
	fs.BoolVar(&o.pristine, "pristine", false, "give the child only the Consul variables (and those named by -env-allow), not envexec's environment")
	fs.Var(funcFlag(func(s string) error {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				o.envAllow = append(o.envAllow, p)
			}
		}
		return nil
	}), "env-allow", "with -pristine, `NAMES` of envexec's variables to pass on anyway (comma-separated, globs like LC_*, repeatable; implies -pristine)")
	fs.Var(&o.shell, "shell", "true: run the command with sh -c; false: exec it as given (default: a single argument with spaces or shell syntax runs with sh -c, several are exec'd)")
	fs.Var(funcFlag(func(s string) error {
		switch strings.ToLower(s) {
		case "restart":
			o.onChange = changeRestart
		case "signal":
			o.onChange = changeSignal
		case "none":
			o.onChange = changeNone
		default:
			return fmt.Errorf("want restart, signal or none")
		}
		return nil
	}), "on-change", "what a change of the environment does: `restart` (default), signal (send -change-signal) or none")
	fs.Var(signalFlag{&o.changeSignal}, "change-signal", "signal for -on-change signal")
	fs.Var(signalFlag{&o.killSignal}, "kill-signal", "signal that stops the child for a restart or shutdown")
	fs.Var(signalFlag{&o.killSignal}, "exec-kill-signal", "alias of -kill-signal (envconsul's name)")
	fs.DurationVar(&o.killTimeout, "kill-timeout", 30*time.Second, "grace period after the kill signal before SIGKILL to the child's process group")
	fs.DurationVar(&o.killTimeout, "exec-kill-timeout", 30*time.Second, "alias of -kill-timeout")
	fs.DurationVar(&o.splay, "splay", 0, "wait a random time up to this before restarting or signalling on a change")
	fs.DurationVar(&o.splay, "exec-splay", 0, "alias of -splay")
	fs.Var(funcFlag(func(s string) error {
		min, max, err := parseWait(s)
		if err != nil {
			return err
		}
		o.waitMin, o.waitMax = min, max
		return nil
	}), "wait", "quiescence `MIN[:MAX]` for changes: act once no change came for MIN, at the latest MAX (default 4*MIN) after the first")
	fs.StringVar(&o.execCmd, "exec", "", "the `COMMAND` as one string (envconsul's -exec); instead of arguments")
	fs.BoolVar(&o.once, "once", false, "fetch once, run the command, exit with its exit code (no watching)")
	fs.DurationVar(&o.waitTimeout, "wait-timeout", 0, "give up if not every source has answered within this time (0: wait forever, saying what it waits for)")
	fs.StringVar(&o.export, "export", "", "print the environment as `dotenv`, shell or json and exit (no command)")
	fs.DurationVar(&o.maxStale, "max-stale", 2*time.Second, "let any Consul server answer if its data is at most this stale (0: always ask the leader)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /health on this address (off when empty)")
	fs.StringVar(&o.pidFile, "pid-file", "", "write envexec's PID to this file")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.showVersion, "v", false, "alias of -version")
	o.consul.Register(fs)
	_ = o.consul.Alias(fs, "consul-addr", "http-addr")
	_ = o.consul.Alias(fs, "consul-token", "token")
	_ = o.consul.Alias(fs, "consul-ssl-ca-cert", "ca-file")
	_ = o.consul.Alias(fs, "consul-ssl-ca-path", "ca-path")
	_ = o.consul.Alias(fs, "consul-ssl-cert", "client-cert")
	_ = o.consul.Alias(fs, "consul-ssl-key", "client-key")
	_ = o.consul.Alias(fs, "consul-ssl-server-name", "tls-server-name")
	o.logs.Register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			usage(stderr, fs)()
		}
		return nil, err
	}
	if o.showVersion {
		return o, nil
	}
	if len(o.envAllow) > 0 {
		o.pristine = true
	}
	if len(o.order) == 0 {
		return nil, errors.New("nothing to watch: give at least one -prefix PATH or -service NAME")
	}
	if o.killTimeout <= 0 {
		return nil, fmt.Errorf("-kill-timeout %s: must be positive", o.killTimeout)
	}
	if o.splay < 0 {
		return nil, fmt.Errorf("-splay %s: must not be negative", o.splay)
	}
	if o.waitTimeout < 0 {
		return nil, fmt.Errorf("-wait-timeout %s: must not be negative", o.waitTimeout)
	}
	if o.maxStale < 0 {
		return nil, fmt.Errorf("-max-stale %s: must not be negative", o.maxStale)
	}
	rest := fs.Args()
	if o.execCmd != "" {
		if len(rest) > 0 {
			return nil, fmt.Errorf("give the command either with -exec or as arguments, not both (-exec %q and %q)", o.execCmd, strings.Join(rest, " "))
		}
		rest = []string{o.execCmd}
	}
	if o.export != "" {
		switch o.export {
		case "dotenv", "shell", "json":
		default:
			return nil, fmt.Errorf("-export %q: want dotenv, shell or json", o.export)
		}
		if len(rest) > 0 {
			return nil, fmt.Errorf("-export prints the environment and exits: drop the command %q", strings.Join(rest, " "))
		}
		return o, nil
	}
	if len(rest) == 0 {
		return nil, errors.New("no command given (usage: envexec [flags] COMMAND [ARGS...])")
	}
	argv, err := supervisor.Argv(rest, o.shell.Mode)
	if err != nil {
		return nil, err
	}
	o.argv = argv
	return o, nil
}

// parseWait parses -wait MIN[:MAX] as consul-template and envconsul do: MAX
// defaults to 4*MIN and must not be below MIN.
func parseWait(s string) (time.Duration, time.Duration, error) {
	a, b, hasMax := strings.Cut(s, ":")
	min, err := time.ParseDuration(strings.TrimSpace(a))
	if err != nil || min <= 0 {
		return 0, 0, fmt.Errorf("want MIN[:MAX] with positive durations such as 2s:10s")
	}
	max := 4 * min
	if hasMax {
		if max, err = time.ParseDuration(strings.TrimSpace(b)); err != nil || max < min {
			return 0, 0, fmt.Errorf("want MIN[:MAX] with MAX a duration not below MIN")
		}
	}
	return min, max, nil
}

func run(args []string, stdin, stdout, stderr *os.File) int {
	o, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "envexec: %v (see envexec -help)\n", err)
		return exitUsage
	}
	if o.showVersion {
		fmt.Fprintln(stdout, version.String("envexec"))
		return exitOK
	}
	log, err := o.logs.New(stderr, "envexec")
	if err != nil {
		fmt.Fprintf(stderr, "envexec: %v\n", err)
		return exitUsage
	}
	client, err := o.consul.Client()
	if err != nil {
		fmt.Fprintf(stderr, "envexec: %v\n", err)
		return exitUsage
	}
	if o.pidFile != "" {
		if err := os.WriteFile(o.pidFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
			fmt.Fprintf(stderr, "envexec: -pid-file: %v\n", err)
			return exitUsage
		}
		defer os.Remove(o.pidFile)
	}
	r := newRunner(o, client, log, stdin, stdout, stderr)
	return r.run()
}
