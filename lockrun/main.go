// Command lockrun runs a command while holding a Consul lock or semaphore: a
// drop-in for `consul lock` that kills the whole process group on lock loss,
// reports it in the exit code, and hands the child a fencing token.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/berth/berth/pkg/cliapp"
	"github.com/berth/berth/pkg/consulclient"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/hashicorp/consul/api"
)

// Exit codes. With -child-exit-code a failed child gives 2, as consul lock;
// with -exact-exit-code its own code (128+N when killed by signal N).
const (
	exitOK          = 0
	exitChildFailed = 2  // -child-exit-code: the child failed
	exitUsage       = 1  // bad flags or arguments, or a prefix used by the other kind of lock
	exitConsul      = 10 // Consul unreachable or refusing (session could not be created)
	exitTimeout     = 11 // not acquired within -timeout
	exitInterrupted = 12 // SIGINT/SIGTERM/SIGHUP/SIGQUIT while waiting for the lock (SIGHUP/SIGQUIT until the child starts)
	exitLockLost    = 13 // lock lost while the child ran; the child's process group was stopped
)

func main() {
	cliapp.Main(func(args []string) int { return run(args, os.Stdin, os.Stdout, os.Stderr) })
}

type options struct {
	limit         int
	name          string
	timeout       time.Duration // timeoutFlag's, once parsed
	timeoutFlag   durationName
	monitorRetry  optInt
	childExitCode bool
	exactExit     bool
	shell         supervisor.ShellFlag
	passStdin     bool
	killTimeout   time.Duration
	lockDelay     time.Duration
	lease         time.Duration // from leaseFor
	delayRetry    time.Duration
	verbose       bool
	cli           *cliapp.Program
	log           *slog.Logger
	client        *api.Client
	prefix        string
	argv          []string
	// given are PREFIX (without its leading "/") and COMMAND [ARGS...] as
	// written, for the default session name.
	given []string
	// shellWrapper: argv is a shell running the command string.
	shellWrapper bool
}

// parse reads the command line (cliapp: every flag also from LOCKRUN_*,
// the Consul flags from CONSUL_*), checks it and builds the logger and the
// Consul client from it (no request is made). The options are returned with
// the error too: their cli prints it.
func parse(args []string, stdout, stderr io.Writer) (*options, error) {
	p := cliapp.New("lockrun", stdout, stderr)
	p.Usage = []string{"lockrun [flags] PREFIX COMMAND [ARGS...]", "lockrun [flags] PREFIX -- COMMAND [ARGS...]"}
	p.About = "Runs COMMAND while holding the Consul lock at PREFIX (a semaphore with -n above 1)."
	p.HelpToStdout = true          // as consul lock -h
	p.Consul.TokenFileFirst = true // the consul CLI's token order
	o := &options{cli: p}
	p.Int(&o.limit, "n", 1, "number of holders allowed; above 1 makes a semaphore")
	p.String(&o.name, "name", "", "session name (default: consul lock's, \"Consul lock for 'COMMAND ARGS' at 'PREFIX'\")")
	o.timeoutFlag = durationName{d: &o.timeout, given: new(string), name: "timeout"}
	p.Var(o.timeoutFlag, "timeout", "give up acquiring after this `DURATION` (0: wait forever)")
	p.Alias("try", "timeout") // consul lock's older name: both may be given, the last one wins
	p.Var(&o.monitorRetry, "monitor-retry", "when given: `N` failed confirmations tolerated in a row while holding before the lock counts as lost (default: as many as the lease allows)")
	p.Bool(&o.childExitCode, "child-exit-code", false, "exit 2 when the child fails, as consul lock (default: 0, as consul lock)")
	p.Bool(&o.exactExit, "exact-exit-code", false, "exit with a failed child's own exit code (128+N when killed by signal N) instead of -child-exit-code's 2; implies -child-exit-code")
	p.Var(&o.shell, "shell", "true: run the command with $SHELL -c (else /bin/sh), as consul lock; false: exec it as given (auto: a single argument with spaces or shell syntax runs with $SHELL -c, several are exec'd)")
	p.Bool(&o.passStdin, "pass-stdin", false, "give the child our standard input")
	p.Duration(&o.killTimeout, "kill-timeout", 5*time.Second, "grace period after SIGTERM before SIGKILL to the child's process group (at most -lock-delay minus 3s)")
	p.Duration(&o.lockDelay, "lock-delay", 15*time.Second, "lock-delay of our session: how long Consul refuses the lock after our session is invalidated; the child is stopped within it after Consul last confirmed the lock")
	p.Duration(&o.delayRetry, "lock-delay-retry", time.Second, "how often to retry while another session's lock-delay is in force")
	p.Bool(&o.verbose, "verbose", false, "log debug messages (same as -log-level debug)")
	p.FlagUsage("stale", "accepted and ignored, as by consul lock: the lock is always read from the leader")
	res, err := p.Parse(args)
	if err == nil {
		err = o.check(res.Args)
	}
	if err == nil {
		o.log, o.client, err = setup(p)
	}
	if err == nil {
		var cfg *api.Config
		if cfg, err = p.Consul.Config(); err == nil {
			err = checkHost(cfg.Address)
		}
	}
	return o, err
}

// setup builds the logger and the Consul client as cliapp's Setup does, but
// without -stale: consul lock accepts -stale and ignores it (command/lock
// run never asks HTTPFlags.Stale, and command/flags HTTPFlags.MergeOntoConfig
// does not carry it to the client), so its waits read the lock from the
// leader. A stale wait would see a released lock late, or a taken one free.
func setup(p *cliapp.Program) (*slog.Logger, *api.Client, error) {
	log, err := p.Log.New(p.Stderr, p.Name)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := p.Consul.Config()
	if err != nil {
		return nil, nil, err
	}
	client, err := consulclient.NewClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	return log, client, nil
}

// checkHost refuses an agent address whose host no resolver can find: not
// an IP address and with a character a host name cannot have (" 127.0.0.1",
// a space from a quoted variable, "bad host"). Go's resolver answers "no
// such host" for it without asking DNS, so consul lock exits 1 at once
// (command/lock run: Agent().NodeName(), "Error querying Consul agent");
// waiting for it, as for a host name that does not resolve yet, would wait
// for ever. Without a port the address is the host; a unix:// socket passes.
func checkHost(addr string) error {
	if addr == "" || strings.HasPrefix(addr, "unix://") {
		return nil
	}
	// The Consul API strips a scheme itself (api.NewClient).
	host := strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("-http-addr (CONSUL_HTTP_ADDR) %q: host %q has %q, which no host name has (consul lock: \"no such host\")", addr, host, c)
		}
	}
	return nil
}

// check validates the flags and splits PREFIX COMMAND [ARGS...].
func (o *options) check(rest []string) error {
	switch {
	case len(rest) == 0:
		return errors.New("missing PREFIX and COMMAND (usage: lockrun [flags] PREFIX COMMAND [ARGS...])")
	case len(rest) == 1:
		return fmt.Errorf("missing COMMAND to run under lock %q", rest[0])
	}
	if rest[1] == "--" {
		// lockrun PREFIX -- COMMAND ARGS: the separator is not the command.
		rest = append(rest[:1], rest[2:]...)
		if len(rest) == 1 {
			return fmt.Errorf("missing COMMAND after -- to run under lock %q", rest[0])
		}
	}
	// The keys are named as consul lock names them (path.Join of the prefix
	// without its leading "/" and ".lock" or the session): "a//b/", "a/./b"
	// and "a/b" are one lock for both, so they exclude each other.
	o.given = append([]string{strings.TrimPrefix(rest[0], "/")}, rest[1:]...)
	if strings.HasPrefix(o.given[0], "/") {
		// consul lock trims one "/" only: its keys then begin with "/",
		// which Consul refuses, and it exits 1 without running the command.
		return fmt.Errorf("PREFIX %q: Consul refuses keys beginning with \"/\" (one leading \"/\" is dropped, as consul lock does)", rest[0])
	}
	o.prefix = path.Clean(o.given[0])
	if o.prefix == ".." || strings.HasPrefix(o.prefix, "../") {
		// consul lock's keys keep a leading ".." (path.Join), and a URL
		// path with ".." is not Consul's KV endpoint (404): it exits 1
		// without running the command. Our transaction would take the key
		// and every read of it fail.
		return fmt.Errorf("PREFIX %q: its keys would begin with \"..\", which Consul's KV endpoint does not serve (as consul lock's)", rest[0])
	}
	if o.prefix == "." {
		// A PREFIX naming the KV root ("", "/", ".", "./"): consul lock's
		// keys are path.Join'ed to it, so its lock is the key ".lock" at
		// the root, and so is ours (its semaphore's keys too, but it
		// refuses an empty PREFIX: api SemaphoreOpts, "missing prefix").
		o.prefix = ""
	}
	if o.limit <= 0 {
		return fmt.Errorf("-n %d: the number of holders must be at least 1", o.limit)
	}
	if !utf8.ValidString(rest[0]) && o.limit > 1 {
		// A lock on such a prefix is taken as consul lock takes it
		// (plainLock.tryLockByURL). A semaphore is not: its holder list is
		// updated by transaction, whose JSON cannot carry the bytes, and
		// consul lock's own semaphore never finds its holder list there
		// (api Semaphore.findLock compares the keys of a listing, whose
		// JSON has U+FFFD for each bad byte): the first contender loses
		// its slot at once (its child killed, exit 0), and every later
		// one waits for ever.
		return fmt.Errorf("PREFIX %q: not valid UTF-8; a semaphore (-n %d) cannot be kept under it (consul lock's is lost at once there); write it in UTF-8", rest[0], o.limit)
	}
	if o.given[0] == "" && o.limit > 1 {
		return fmt.Errorf("PREFIX %q: empty; a semaphore (-n %d) needs a prefix, as consul lock's", rest[0], o.limit)
	}
	if o.timeout < 0 {
		return fmt.Errorf("-%s %s: must not be negative", o.timeoutFlag.flagName(), o.timeout)
	}
	if o.monitorRetry.set && o.monitorRetry.v < 0 {
		return fmt.Errorf("-monitor-retry %d: must not be negative", o.monitorRetry.v)
	}
	if o.killTimeout <= 0 {
		return fmt.Errorf("-kill-timeout %s: must be positive", o.killTimeout)
	}
	if o.lockDelay < 0 || o.lockDelay > 60*time.Second {
		return fmt.Errorf("-lock-delay %s: Consul accepts 0 to 60s", o.lockDelay)
	}
	lease, err := leaseFor(o.lockDelay, o.killTimeout)
	if err != nil {
		return err
	}
	o.lease = lease
	if o.delayRetry <= 0 {
		return fmt.Errorf("-lock-delay-retry %s: must be positive", o.delayRetry)
	}
	// consul lock runs every command with $SHELL -c, its arguments joined
	// with spaces (command/lock startChild): a command whose first word only
	// a shell can run (a builtin such as exit or cd, an assignment, an
	// exported bash function) goes there too, whatever follows it; and so
	// does a blank first word ("" runs nothing and exits 0, as there).
	// With -shell=false a blank command fails to start, as consul lock's.
	blank := strings.TrimSpace(rest[1]) == ""
	auto := o.shell.Mode == supervisor.ShellAuto
	viaShell := auto && (len(rest) == 2 && supervisor.NeedsShell(rest[1]) || supervisor.OnlyShellRuns(rest[1], os.Environ())) ||
		blank && o.shell.Mode != supervisor.ShellNever
	argv := rest[1:]
	if !blank {
		var err error
		if argv, err = supervisor.Argv(rest[1:], o.shell.Mode); err != nil {
			return err
		}
	}
	if viaShell {
		argv = []string{"/bin/sh", "-c", strings.Join(rest[1:], " ")}
	}
	if o.shell.Mode == supervisor.ShellAlways || viaShell {
		// Our own sh -c wrapper: run it with consul lock's shell.
		argv[0], o.shellWrapper = commandShell(os.Getenv("SHELL")), true
	}
	o.argv = argv
	if o.verbose {
		o.cli.Log.Level = "debug"
	}
	return nil
}

// run is main without the exit: it returns lockrun's exit code.
func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	return runHooked(args, stdin, stdout, stderr, nil)
}

// runHooked is run with a hook for the tests: beforeChildStart, when not
// nil, is called as runner.beforeChildStart.
func runHooked(args []string, stdin *os.File, stdout, stderr io.Writer, beforeChildStart func(chan os.Signal)) int {
	out := supervisor.NewOutputGate(stderr)
	o, err := parse(args, stdout, out)
	if err != nil {
		return o.cli.Fail(err, exitUsage)
	}
	log, client := o.log, o.client
	metricsLn, err := o.cli.ListenMetrics()
	if err != nil {
		return o.cli.Fail(err, exitUsage)
	}
	// Catch every signal from the start, so that one arriving while we wait
	// for the lock cleans up the session instead of killing us.
	sigs := make(chan os.Signal, 16)
	// Under nohup (SIGHUP ignored when we start) SIGHUP stays ignored, by
	// us and so by the child, which inherits it: consul lock never asks for
	// SIGHUP, so the Go runtime leaves it ignored there, and a nohup'd job
	// survives the hang-up. Asking for it would undo nohup for both.
	hupIgnored := signal.Ignored(syscall.SIGHUP)
	supervisor.NotifyAll(sigs)
	if hupIgnored {
		signal.Ignore(syscall.SIGHUP)
	}
	defer signal.Stop(sigs)

	r := &runner{o: o, client: client, log: log, stdin: stdin, sigs: sigs, metrics: newMetrics(), out: out,
		beforeChildStart: beforeChildStart}
	return r.run(metricsLn)
}

// lockKey is the key of the lock, or of the semaphore's holder list.
func (o *options) lockKey() string { return path.Join(o.prefix, ".lock") }

// shownPrefix is the prefix as messages show it.
func (o *options) shownPrefix() string {
	if o.prefix == "" {
		return "at the KV root"
	}
	return o.prefix
}

// commandShell is the shell a command string runs with: $SHELL, as consul
// lock (agent/exec Script), else /bin/sh. A $SHELL that runs no command
// (nologin, false: what a service's system user often has) gives /bin/sh,
// where consul lock's child would fail without running.
func commandShell(shell string) string {
	switch filepath.Base(shell) {
	case ".", "/", "nologin", "false":
		return "/bin/sh"
	}
	return shell
}

// durationName is -timeout, and -try under its older name (ForAlias): one
// duration, set by whichever of the two comes last, as consul lock's two
// flag.DurationVar on one variable. given keeps the name it was last set
// under, so that an error about the value names the flag the user wrote.
type durationName struct {
	d     *time.Duration
	given *string
	name  string
}

func (n durationName) String() string {
	if n.d == nil || *n.d == 0 {
		return ""
	}
	return n.d.String()
}

func (n durationName) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%v (want a duration such as 500ms, 30s or 5m)", err)
	}
	*n.d, *n.given = d, n.name
	return nil
}

func (n durationName) ForAlias(alias string) flag.Value {
	return durationName{d: n.d, given: n.given, name: alias}
}

// flagName is the name the value was last set under (the flag's own name
// when it was not set).
func (n durationName) flagName() string {
	if *n.given == "" {
		return n.name
	}
	return *n.given
}

// optInt is an int flag that remembers whether it was given.
type optInt struct {
	v   int
	set bool
}

func (o *optInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.Itoa(o.v)
}

func (o *optInt) Set(s string) error {
	// Go's integer literals (0x10, 0o7, 1_000), as flag.IntVar reads them.
	v, err := strconv.ParseInt(s, 0, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("not a whole number: %q", s)
	}
	o.v, o.set = int(v), true
	return nil
}

// orUnset returns the value, or -1 when the flag was not given.
func (o *optInt) orUnset() int {
	if !o.set {
		return -1
	}
	return o.v
}
