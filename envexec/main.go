// Command envexec runs a program with its configuration from Consul KV (and
// service instances) as environment variables, and keeps it current: on a
// real change of the resulting environment it restarts the program, signals
// it, or leaves it alone. A drop-in for envconsul's common flags.
package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/cliapp"
	"github.com/berth/berth/pkg/supervisor"
)

// Exit codes of envexec itself: envconsul's (cli.go, the ExitCode
// constants: 10 + iota from ExitCodeError) where it has one for the case.
// Otherwise envexec exits with the child's exit code, or, when a signal N
// killed it, 255 (as envconsul) or 128+N (-shell-exit-code).
const (
	exitOK          = 0
	exitWaitTimeout = 11 // -wait-timeout expired before every source answered (envconsul's ExitCodeError)
	exitInterrupted = 12 // the kill signal, or SIGINT/SIGTERM/SIGHUP/SIGQUIT before the child started (ExitCodeInterrupt)
	exitFlags       = 13 // a bad flag or flag value (ExitCodeParseFlagsError)
	exitRunner      = 14 // -consul-retry-attempts ran out before every source answered, the command could not be started, the -pid-file not written, a bad -prefix or -service, the Consul client not built (ExitCodeRunnerError); -export: a value the format cannot carry
	exitConfig      = 15 // bad or refused configuration file, no command, nothing to watch, bad log level or syslog, -metrics-addr cannot be served (ExitCodeConfigError)

	exitExport  = exitRunner // -export: a value the chosen format cannot carry
	exitMetrics = exitConfig // -metrics-addr cannot be served (as templater)
)

// exitError is an error that ends envexec with its own exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode gives err the exit code code, unless it is nil or already has
// one.
func withCode(err error, code int) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return &exitError{code: code, err: err}
}

// exitCode is err's exit code, def when it has none.
func exitCode(err error, def int) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return def
}

func main() {
	cliapp.Main(func(args []string) int { return run(args, os.Stdin, os.Stdout, os.Stderr) })
}

type onChange int

const (
	changeRestart onChange = iota
	changeSignal
	changeNone
)

type options struct {
	prefixes       []*prefixSpec
	services       []*serviceSpec
	order          []source // the prefixes, then the services: the merge order
	naming         naming
	pristine       bool
	envAllow       []string
	shell          supervisor.ShellFlag
	onChange       onChange
	changeSignal   syscall.Signal
	execKillSignal syscall.Signal // stops the command (envconsul's exec.kill_signal); 0: none, SIGKILL after -kill-timeout
	killSignal     syscall.Signal // stops envexec (envconsul's kill_signal); 0: none
	reloadSignal   syscall.Signal // reloads envexec's configuration; 0: none
	killTimeout    time.Duration
	splay          time.Duration
	waitMin        time.Duration // the wait in force (see waitConfig.bounds); 0: none
	waitMax        time.Duration
	fileWait       waitConfig // the files' wait settings, merged
	flagWait       waitConfig // -wait
	execCmd        string
	execGiven      bool // -exec was given (even "")
	once           bool
	shellExitCode  bool // a command killed by signal N: exit 128+N instead of envconsul's 255
	stopGroup      bool // a stop signals and waits for the command's whole process group (envconsul: the command alone)
	waitTimeout    time.Duration
	export         string
	maxStale       time.Duration
	metricsAddr    string // the shared -metrics-addr
	pidFile        string
	noPrefix       bool
	cli            *cliapp.Program
	peer           peerConsul
	retry          retryOptions
	syslog         syslogOptions
	configPaths    []string
	fileCommand    []string  // exec.command from a -config file
	env            envPolicy // exec.env from -config files
	argv           []string
	version        bool   // -version: print it once the log set-up is checked, then exit
	logLevelFrom   string // where the log level came from, for its error: -log-level (also ENVEXEC_LOG_LEVEL, a file's log_level), CT_LOG or ENVCONSUL
}

// funcFlag is a flag.Value calling a function for each use.
type funcFlag func(string) error

func (f funcFlag) String() string     { return "" }
func (f funcFlag) Set(s string) error { return f(s) }

// signalFlag holds a signal given by name or number. With orNone, the empty
// string and SIGNULL mean "no signal" (envconsul: an empty kill_signal or
// reload_signal decodes to consul-template's SIGNULL, signals/mapstructure.go,
// and -kill-signal SIGNULL parses to it, signals/signals.go; no signal
// equals it, so none is listened for).
type signalFlag struct {
	sig    *syscall.Signal
	orNone bool
}

func (f signalFlag) String() string {
	if f.sig == nil || *f.sig == 0 {
		return ""
	}
	return supervisor.SignalName(*f.sig)
}

func (f signalFlag) Set(s string) error {
	if t := strings.TrimSpace(s); f.orNone && (t == "" || strings.EqualFold(t, "SIGNULL")) {
		*f.sig = 0
		return nil
	}
	sig, err := supervisor.ParseSignal(s)
	if err != nil {
		return err
	}
	*f.sig = sig
	return nil
}

// addSource is the flag -name of a repeatable source (-prefix, -service):
// each value, read by parse, is added to list, in the order given. A value
// that does not parse is added as what bad makes of it and refused only
// when the runner is built (sourceProblem), as envconsul takes any text
// for these flags: the flags after it are still read, and -version still
// prints.
func addSource[T source](name string, parse func(string) (T, error), bad func(string, error) T, list *[]T) funcFlag {
	return func(s string) error {
		v, err := parse(s)
		if err != nil {
			v = bad(s, fmt.Errorf("-%s: %w", name, err))
		}
		*list = append(*list, v)
		return nil
	}
}

// registerSourceFlags adds the flags that choose what to watch and how
// variables are named.
func registerSourceFlags(cl *cliapp.Program, o *options) {
	// A -prefix loses one leading "/" before the path is parsed (envconsul
	// config_prefix.go ParsePrefixConfig); a file's prefix.path does not.
	prefixFlag := func(s string) (*prefixSpec, error) { return parsePrefix(strings.TrimPrefix(s, "/")) }
	cl.Var(addSource("prefix", prefixFlag, badPrefix, &o.prefixes), "prefix", "watch the keys below `PATH[?ns=NS&partition=P][@DC]` (repeatable; later prefixes win)")
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
	cl.Var(prefixFormat, "format", "name `TEMPLATE` for the -prefix just before it, e.g. 'APP_{{ key }}'")
	cl.Alias("prefix-format", "format")
	cl.Var(addSource("service", parseService, badService, &o.services), "service", "instances of service `[TAG.]NAME[?ns=NS&partition=P][@DC][~NODE]` as variables <service>/id, /name, /address, /tag, /port (repeatable)")
	cl.Alias("service-query", "service") // envconsul's name
	for _, field := range serviceFields() {
		field := field
		cl.Var(funcFlag(func(s string) error {
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
	cl.Bool(&o.naming.sanitize, "sanitize", false, "replace every character outside [A-Za-z0-9_] in names with _")
	cl.Bool(&o.naming.upcase, "upcase", false, "upper-case variable names")
	cl.Bool(&o.naming.nodeAddress, "service-node-address", false, "an instance of a -service without an address of its own gets its node's address in <service>/address (default: empty, as envconsul)")
	cl.Bool(&o.noPrefix, "no-prefix", true, "do not put the prefix path in front of the names of the -prefix flags' keys; -no-prefix=false names app/config/db as app_config_db")
	cl.Bool(&o.pristine, "pristine", false, "give the child only the Consul variables (and those named by -env-allow), not envexec's environment")
	cl.Var(funcFlag(func(s string) error {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				o.envAllow = append(o.envAllow, p)
			}
		}
		return nil
	}), "env-allow", "with -pristine, `NAMES` of envexec's variables to pass on anyway (comma-separated, globs like LC_*, repeatable; implies -pristine)")
	cl.Duration(&o.maxStale, "max-stale", 2*time.Second, "let any Consul server answer if its data is at most this stale (0 or less: always ask the leader)")
}

// registerProcessFlags adds the flags about the command, signals and
// changes.
func registerProcessFlags(cl *cliapp.Program, o *options) {
	cl.Var(&o.shell, "shell", "true: run the command with sh -c; false: exec it as given (default, as envconsul: a single argument of more than one word runs with sh -c; one word, even with shell characters, and several arguments are exec'd)")
	cl.Var(funcFlag(func(s string) error {
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
	}), "on-change", "what a change of the environment does, `restart|signal|none`: restart the command (default), send it -change-signal, or nothing")
	cl.Var(signalFlag{sig: &o.changeSignal}, "change-signal", "`SIGNAL` for -on-change signal")
	cl.Var(funcFlag(func(s string) error {
		if err := (signalFlag{sig: &o.changeSignal}).Set(s); err != nil {
			return err
		}
		o.onChange = changeSignal
		return nil
	}), "exec-reload-signal", "on a change send this `SIGNAL` instead of restarting (consul-template's name): -on-change signal -change-signal SIGNAL")
	cl.Var(signalFlag{sig: &o.execKillSignal, orNone: true}, "exec-kill-signal", "signal that stops the command for a restart or shutdown (envconsul's exec.kill_signal); empty or SIGNULL: none, the command is killed after -kill-timeout")
	cl.Var(signalFlag{sig: &o.killSignal, orNone: true}, "kill-signal", "`SIGNAL` that stops envexec gracefully, as envconsul's -kill-signal: the command is stopped (-exec-kill-signal, -kill-timeout, SIGKILL) and envexec exits 12; empty or SIGNULL: none")
	cl.Var(signalFlag{sig: &o.reloadSignal, orNone: true}, "reload-signal", "`SIGNAL` that reloads envexec's configuration (flags and -config files), as envconsul's -reload-signal: the command is stopped and started again; empty or SIGNULL: none")
	cl.Duration(&o.killTimeout, "kill-timeout", 30*time.Second, "grace period after -exec-kill-signal (or a forwarded SIGINT/SIGTERM) for the command to exit before SIGKILL (to its process group with -stop-group)")
	cl.Alias("exec-kill-timeout", "kill-timeout") // envconsul's name
	cl.Duration(&o.splay, "splay", 0, "wait a random time up to this before restarting or signalling on a change")
	cl.Alias("exec-splay", "splay") // envconsul's name
	cl.Var(funcFlag(func(s string) error {
		min, max, err := parseWait(s)
		if err != nil {
			return err
		}
		o.flagWait = waitConfig{min: &min, max: &max}
		return nil
	}), "wait", "quiescence `MIN[:MAX]`: start the command, and act on a change, once no answer came for MIN, at the latest MAX (default 4*MIN) after the first (0: no wait)")
	cl.String(&o.execCmd, "exec", "", "the `COMMAND` as one string (envconsul's -exec); instead of arguments")
	cl.Bool(&o.once, "once", false, "fetch once, run the command, exit with its exit code (no watching)")
	cl.Bool(&o.stopGroup, "stop-group", false, "a stop (restart, reload, exit) sends -exec-kill-signal to the command's whole process group and waits -kill-timeout for every process of it, then SIGKILLs the group (default: the command alone, as envconsul; what it left behind, e.g. a script's & job, keeps running)")
	cl.Bool(&o.shellExitCode, "shell-exit-code", false, "when a signal N killed the command, exit 128+N as a shell reports it (default: 255, as envconsul)")
	cl.Duration(&o.waitTimeout, "wait-timeout", 0, "give up if not every source has answered within this time (0: wait forever, saying what it waits for)")
	cl.String(&o.export, "export", "", "print the environment in this format, `dotenv|shell|json`, and exit (no command)")
	cl.String(&o.pidFile, "pid-file", "", "write envexec's PID to this file")
	cl.Var(funcFlag(func(s string) error {
		o.configPaths = append(o.configPaths, s)
		return nil
	}), "config", "read settings from this HCL or JSON `FILE|DIR` (a folder: every file below it, in lexical order; repeatable; flags win over files), as envconsul")
	cl.Alias("v", "version")
}

// newOptions returns the defaults: envconsul's.
func newOptions() *options {
	return &options{
		changeSignal:   syscall.SIGHUP,
		execKillSignal: syscall.SIGINT, // consul-template v0.41.1 config/exec.go DefaultExecKillSignal
		killSignal:     syscall.SIGINT, // envconsul config.go DefaultKillSignal
		reloadSignal:   syscall.SIGHUP, // envconsul config.go DefaultReloadSignal
		retry:          defaultRetry(),
	}
}

// parse reads the flags (cliapp: every flag also from ENVEXEC_*, the
// Consul flags from CONSUL_*), then the -config files under them (flags
// win), and checks the result. The options are returned with the error too:
// their cli prints it.
func parse(args []string, stdout, stderr io.Writer) (*options, error) {
	o := newOptions()
	p := cliapp.New("envexec", stdout, stderr)
	p.Usage = []string{"envexec [flags] COMMAND [ARGS...]", "envexec [flags] -- COMMAND [ARGS...]", "envexec [flags] -export dotenv|shell|json"}
	p.About = `Runs COMMAND with the keys below each -prefix (and the instances of each
-service) as environment variables; restarts it (or signals it) when the
resulting environment changes. Exits with the child's exit code.`
	p.Footer = "envconsul's -secret and -vault-* flags are refused: envexec reads Consul only, not Vault."
	p.HelpToStdout = true // envconsul cli.go Run: flag.ErrHelp prints the usage on its out stream, exit 0
	// envconsul's ParseFlags defines neither -h nor -help, so Go's flag
	// package answers either with flag.ErrHelp whatever its value
	// (-help=tRuE, -h=false) and stops parsing there.
	p.HelpAnyValue = true
	p.DeferVersion = true // printed by runOnce after the files and the log set-up are checked, as envconsul
	o.cli = p
	// envconsul's default level, and its variables under the files
	// (config.go DefaultLogLevel, Finalize): see envconsulLogLevel.
	p.DefaultText("log-level", `"warn", or $CT_LOG, else $ENVCONSUL, as envconsul`)
	registerSourceFlags(p, o)
	registerProcessFlags(p, o)
	registerPeerFlags(p, o)
	res, err := p.Parse(args)
	if err != nil {
		return o, withCode(err, exitFlags)
	}
	o.metricsAddr = p.MetricsAddr
	set := p.Explicit(res)
	// -no-prefix applies to the -prefix flags (envconsul cli.go, ParseFlags:
	// "Post-processing of no-prefix option").
	for _, p := range o.prefixes {
		p.noPrefix = o.noPrefix
	}
	o.execGiven = set["exec"]
	o.peer.noteSet(res.IsSet, func(name string) string {
		for _, d := range o.cli.Consul.Defs() {
			if d.Name == name {
				return d.Value.String()
			}
		}
		return ""
	})
	if err := loadConfigFiles(o, res, set); err != nil {
		return o, withCode(err, exitConfig)
	}
	o.logLevelFrom = "-log-level"
	if !res.IsSet("log-level") {
		// Neither -log-level, ENVEXEC_LOG_LEVEL nor a file's log_level:
		// envconsul's default (config.go Finalize, stringFromEnv).
		o.cli.Log.Level, o.logLevelFrom = envconsulLogLevel()
	}
	o.waitMin, o.waitMax = o.fileWait.merge(o.flagWait).bounds()
	if p.VersionAsked() {
		// envconsul cli.go Run prints the version once the flags, the
		// files and the log set-up are good, before it looks for a
		// command or a source: what finish checks does not apply.
		o.version = true
		return o, nil
	}
	if set["http-addr"] && o.cli.Consul.HTTPAddr() == "" {
		// -consul-addr "" (an unset variable in a script) is no address,
		// as envconsul hands it to consul-template's CreateConsulClient,
		// which keeps the Consul API's default (CONSUL_HTTP_ADDR, else
		// 127.0.0.1:8500) for "".
		addr := os.Getenv("CONSUL_HTTP_ADDR")
		if addr == "" {
			addr = "127.0.0.1:8500"
		}
		o.cli.Consul.SetAddress(addr)
	}
	// envconsul finalizes its configuration three times before its runner
	// watches the prefixes (cli.go loadConfigs, cli.go Run, runner.go
	// init), each time over the list the last one left: two blank paths
	// before another ("", "", a) are gone only after the second.
	for i := 0; i < 3; i++ {
		o.prefixes = envconsulPrefixList(o.prefixes)
	}
	lastSettingsPerQuery(o)
	// Every prefix, then every service, as envconsul watches and merges
	// them (runner.go init, Run): a service's variable wins over a key.
	o.order = nil
	for _, p := range o.prefixes {
		o.order = append(o.order, p)
	}
	for _, s := range o.services {
		o.order = append(o.order, s)
	}
	// Any name of the token flags counts (-consul-token is an alias of
	// -token, which IsSet does not see), and a file's token.
	o.peer.tokenGiven = set["token"] || set["token-file"] || res.IsSet("token") || res.IsSet("token-file")
	if err := certWithoutKey(o, res); err != nil {
		return o, withCode(err, exitFlags)
	}
	return o, withCode(finish(o, res.Args), exitFlags)
}

// envconsulPrefixList is the list of prefixes envconsul watches for list,
// the file blocks' then the flags': its PrefixConfigs.Finalize (envconsul
// config_prefix.go) means to drop the entries whose path is empty, but it
// removes each one from a copy of the slice, shifting the later entries
// down while it iterates and leaving the list's length as it was. So a
// blank path that is last, or alone (-prefix /, -prefix "", a file's
// prefix without a path), stays and lists the whole KV store, while one
// followed by others is overwritten by the shifted entries, the last
// repeated at the end ("", a, b gives a, b, b; "", a, "" gives three blank
// ones). This does the same steps on our list, once (parse does it three
// times, as envconsul); the entries are the same objects, as envconsul's
// pointers are.
func envconsulPrefixList(list []*prefixSpec) []*prefixSpec {
	out := append([]*prefixSpec(nil), list...)
	live, kept := len(out), 0 // the shrinking copy's length; entries kept so far
	for i := range out {
		if !out[i].blank {
			kept++
			continue
		}
		copy(out[kept:live], out[kept+1:live])
		live--
	}
	return out
}

// lastSettingsPerQuery gives every prefix and service the naming settings
// of the last one with the same query, as envconsul does: its runner keys
// them by the query (runner.go init: configPrefixMap[d.String()] and
// configServiceMap[d.String()], where a later source overwrites an earlier
// one) and names the variables of every copy of that query with them
// (appendPrefixes, appendServices). Two prefix blocks with the same path
// and different formats thus give the second format's names only.
func lastSettingsPerQuery(o *options) {
	lastPrefix := map[string]*prefixSpec{}
	for _, p := range o.prefixes {
		lastPrefix[p.queryKey()] = p
	}
	for _, p := range o.prefixes {
		last := lastPrefix[p.queryKey()]
		p.format, p.fmtSrc, p.noPrefix, p.given = last.format, last.fmtSrc, last.noPrefix, last.given
	}
	lastService := map[string]*serviceSpec{}
	for _, s := range o.services {
		lastService[s.String()] = s
	}
	for _, s := range o.services {
		s.formats = lastService[s.String()].formats
	}
}

// certWithoutKey reads envconsul's client certificate given without a key
// (-consul-ssl-cert, -ssl-cert, consul { ssl { cert } }) as one PEM file
// holding both, as consul-template does (dependency/client_set.go:
// LoadX509KeyPair(cert, cert) when the key is empty). The consul CLI's
// -client-cert keeps needing -client-key.
func certWithoutKey(o *options, res *cliapp.Result) error {
	if !res.IsSet("consul-ssl-cert") && !res.IsSet("ssl-cert") {
		return nil
	}
	// Only a key flag or file key counts: envconsul then builds its TLS
	// settings from its own keys alone (client_set.go CreateConsulClient
	// sets its own tls.Config on the transport), so CONSUL_CLIENT_KEY is
	// not read.
	if res.IsSet("client-key") || res.IsSet("consul-ssl-key") {
		return nil
	}
	for _, d := range o.cli.Consul.Defs() {
		if d.Name == "client-cert" && d.Value.String() != "" {
			return res.Set("client-key", d.Value.String())
		}
	}
	return nil
}

// finish checks the options and computes the command line.
func finish(o *options, rest []string) error {
	if len(o.envAllow) > 0 {
		o.pristine = true
	}
	if len(o.order) == 0 {
		// envconsul starts no watch then and never runs the command (its
		// runner only runs it on data): refused as a configuration error.
		return withCode(errors.New("nothing to watch: give at least one -prefix PATH or -service NAME"), exitConfig)
	}
	if o.splay < 0 {
		return fmt.Errorf("-splay %s: must not be negative", o.splay)
	}
	if o.waitTimeout < 0 {
		return fmt.Errorf("-wait-timeout %s: must not be negative", o.waitTimeout)
	}
	if o.maxStale < 0 {
		// envconsul takes it (time.ParseDuration), and consul-template
		// v0.41.1 watch/view.go fetch then asks any server, finds every
		// answer's last contact above it and asks the leader again:
		// every answer comes from the leader, as with 0.
		o.maxStale = 0
	}
	if o.cli.Consul.Stale() {
		// -stale: any server may answer, however stale; never ask the
		// leader again.
		o.maxStale = time.Duration(math.MaxInt64)
	}
	if o.env.pristine {
		o.pristine = true
	}
	if len(o.fileCommand) > 0 && o.fileCommand[0] == "" {
		// consul-template v0.41.1 config/exec.go commandList.Empty: a
		// command whose first word is empty is none.
		o.fileCommand = nil
	}
	if len(rest) == 1 && rest[0] == "" {
		// envconsul cli.go ParseFlags joins the arguments with spaces and
		// takes no command from an empty result: a lone "" (envexec
		// -prefix x "") is no command (ErrMissingCommand, exit 15), and a
		// file's exec.command stays. Two or more ("" "") join to " ", a
		// command that cannot start (below).
		rest = nil
	}
	if !o.execGiven && len(rest) == 0 && len(o.fileCommand) > 0 {
		rest = o.fileCommand
	}
	switch {
	case o.execGiven && o.execCmd == "" && o.export == "":
		// envconsul cli.go ParseFlags: -exec sets the command, "" too,
		// and then the arguments are not read; it wins over a file's
		// exec.command (ExecConfig.Merge), and Run refuses the empty
		// command (commandList.Empty: ErrMissingCommand,
		// ExitCodeConfigError).
		return withCode(errors.New("no command given: -exec is empty"), exitConfig)
	case o.execCmd != "":
		if len(rest) > 0 {
			return fmt.Errorf("give the command either with -exec or as arguments, not both (-exec %q and %q)", o.execCmd, strings.Join(rest, " "))
		}
		rest = []string{o.execCmd}
	}
	if o.export != "" {
		switch o.export {
		case "dotenv", "shell", "json":
		default:
			return fmt.Errorf("-export %q: want dotenv, shell or json", o.export)
		}
		if len(rest) > 0 {
			return fmt.Errorf("-export prints the environment and exits: drop the command %q", strings.Join(rest, " "))
		}
		return nil
	}
	if len(rest) == 0 {
		// envconsul cli.go Run: ErrMissingCommand, ExitCodeConfigError.
		return withCode(errors.New("no command given (usage: envexec [flags] COMMAND [ARGS...])"), exitConfig)
	}
	mode := commandShellMode(rest, o.shell.Mode)
	if mode == supervisor.ShellNever && len(rest) == 1 && strings.TrimSpace(rest[0]) == "" {
		// A blank command (" ", -exec " ", exec.command = [" "]) is one
		// for envconsul (consul-template v0.41.1 config/exec.go
		// commandList.Empty looks for "" only), so it waits for the data
		// and then fails to start it (child/command-prep.go CommandPrep:
		// exec.ErrNotFound; runner.go Start sends it to ErrCh, cli.go Run:
		// ExitCodeRunnerError). envexec's start fails the same way.
		o.argv = rest
		return nil
	}
	argv, err := supervisor.Argv(rest, mode)
	if err != nil {
		return err
	}
	o.argv = argv
	return nil
}

// commandShellMode is -shell, or when not given envconsul's rule
// (consul-template v0.41.1 child/command-prep.go CommandPrep, which
// envconsul's runner.go Run calls): a single argument of more than one
// whitespace-separated word runs with sh -c; one word, even with shell
// characters ("app;x"), and several arguments are exec'd as given.
func commandShellMode(args []string, mode supervisor.ShellMode) supervisor.ShellMode {
	if mode != supervisor.ShellAuto {
		return mode
	}
	if len(args) == 1 && len(strings.Fields(args[0])) > 1 {
		return supervisor.ShellAlways
	}
	return supervisor.ShellNever
}

// parseWait parses -wait MIN[:MAX] as envconsul does (consul-template
// v0.41.1 config/wait.go ParseWaitConfig): MAX defaults to 4*MIN and must
// not be below MIN, neither may be negative, and a MIN of 0 leaves the wait
// disabled (WaitConfig.Finalize).
func parseWait(s string) (time.Duration, time.Duration, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) > 2 {
		return 0, 0, fmt.Errorf("want MIN[:MAX] such as 2s:10s")
	}
	min, err := time.ParseDuration(strings.TrimSpace(parts[0]))
	if err != nil {
		return 0, 0, fmt.Errorf("want MIN[:MAX] with durations such as 2s:10s")
	}
	max := 4 * min
	if len(parts) == 2 {
		if max, err = time.ParseDuration(strings.TrimSpace(parts[1])); err != nil {
			return 0, 0, fmt.Errorf("want MIN[:MAX] with durations such as 2s:10s")
		}
	}
	if min < 0 || max < 0 {
		return 0, 0, fmt.Errorf("want MIN[:MAX] not negative")
	}
	if max < min {
		return 0, 0, fmt.Errorf("want MIN[:MAX] with MAX not below MIN")
	}
	return min, max, nil
}

// envconsulLogLevel is the log level envconsul takes when neither its flag
// nor a file gives one (config.go Finalize: stringFromEnv over CT_LOG, then
// ENVCONSUL, the first set and not empty, with white space trimmed; else
// DefaultLogLevel, WARN), and the variable it came from.
func envconsulLogLevel() (level, from string) {
	for _, name := range []string{"CT_LOG", "ENVCONSUL"} {
		if v := os.Getenv(name); v != "" {
			return strings.TrimSpace(v), name
		}
	}
	return "warn", "-log-level"
}

// checkLogLevel refuses a log level envconsul refuses: its cli.go
// setupLogger upper-cases the level as given (flag, file's log_level, no
// trimming) and accepts TRACE, DEBUG, INFO, WARN, ERROR and ERR only, so
// an empty one (-log-level "", log_level = "") or "warning" ends it with
// ExitCodeConfigError.
func checkLogLevel(level string) error {
	switch strings.ToUpper(level) {
	case "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "ERR":
		return nil
	}
	return fmt.Errorf("%q: want trace, debug, info, warn or error (as envconsul)", level)
}

// run parses the arguments, runs envexec and returns its exit code. The
// reload signal makes it stop the command, read the flags and -config files
// again and start afresh (envconsul cli.go, Run: the ReloadSignal case).
func run(args []string, stdin, stdout, stderr *os.File) int {
	// Catch every signal from the start: one arriving while we wait for
	// Consul must not kill us without a word, and later ones go to the child.
	sigs := make(chan os.Signal, 32)
	supervisor.NotifyAll(sigs)
	defer signal.Stop(sigs)
	for reloads := 0; ; reloads++ {
		code, reload := runOnce(args, stdin, stdout, stderr, sigs, reloads > 0)
		if !reload {
			return code
		}
	}
}

// runOnce is one configuration's life: it returns the exit code, or
// reload=true when the reload signal came (the command is then stopped).
func runOnce(args []string, stdin, stdout, stderr *os.File, sigs chan os.Signal, reloaded bool) (int, bool) {
	o, err := parse(args, stdout, stderr)
	switch {
	case errors.Is(err, cliapp.ErrExit):
		return exitOK, false
	case err != nil && reloaded:
		return o.cli.Fail(fmt.Errorf("reload: %w", err), exitCode(err, exitConfig)), false
	case err != nil:
		return o.cli.Fail(fmt.Errorf("%w (see envexec -help)", err), exitCode(err, exitFlags)), false
	}
	// A bad log level or syslog set-up is a configuration error in
	// envconsul (cli.go setupLogger, ExitCodeConfigError).
	if err := checkLogLevel(o.cli.Log.Level); err != nil {
		return o.cli.Fail(fmt.Errorf("%s %w", o.logLevelFrom, err), exitConfig), false
	}
	logOut, closeLog, err := o.syslog.writer(stderr)
	if err != nil {
		return o.cli.Fail(err, exitConfig), false
	}
	defer closeLog()
	if o.version {
		// envconsul cli.go Run: ParseFlags (13), loadConfigs (15),
		// setupLogger (log level, syslog: 15), and only then -version
		// (exit 0), before the command is looked for.
		o.cli.PrintVersion()
		return exitOK, false
	}
	// Held while a child is being given the terminal (runner.start).
	out := supervisor.NewOutputGate(logOut)
	log, err := o.cli.Log.New(out, "envexec")
	if err != nil {
		return o.cli.Fail(err, exitConfig), false
	}
	o.peer.warnings(log)
	if reloaded {
		log.Info("configuration reloaded")
	}
	client, err := o.client()
	if err != nil {
		// envconsul: NewRunner's newClientSet, ExitCodeRunnerError.
		return o.cli.Fail(err, exitRunner), false
	}
	if err := sourceProblem(o); err != nil {
		// envconsul: NewRunner's init, after its client set.
		return o.cli.Fail(err, exitRunner), false
	}
	if o.pidFile != "" {
		// The bare PID, no newline, mode 0666 less the umask, and a
		// runner error when it cannot be written: as envconsul (runner.go
		// storePid, ExitCodeRunnerError).
		if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(os.Getpid())), 0o666); err != nil {
			return o.cli.Fail(fmt.Errorf("-pid-file: %w", err), exitRunner), false
		}
		defer os.Remove(o.pidFile)
	}
	r := newRunner(o, client, log, out, stdin, stdout, stderr)
	return r.run(sigs)
}
