// Command lockrun runs a command while holding a Consul lock or semaphore: a
// drop-in for `consul lock` that kills the whole process group on lock loss,
// reports it in the exit code, and hands the child a fencing token.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/cliapp"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
)

// Exit codes. With -child-exit-code a failed child's own code is returned
// instead of 0; a child killed by signal N gives 128+N.
const (
	exitOK          = 0
	exitUsage       = 1  // bad flags or arguments, or a prefix used by the other kind of lock
	exitConsul      = 10 // Consul unreachable or refusing (session could not be created)
	exitTimeout     = 11 // not acquired within -timeout
	exitInterrupted = 12 // SIGINT/SIGTERM/SIGHUP/SIGQUIT while waiting for the lock
	exitLockLost    = 13 // lock lost while the child ran; the child's process group was stopped
	exitChildStart  = 14 // the command could not be started
)

// handOffGrace is how long after releasing the lock lockrun waits before its
// own clean-up writes, so that they do not slow the next holder's acquisition.
const handOffGrace = 5 * time.Millisecond

func main() {
	cliapp.Main(func(args []string) int { return run(args, os.Stdin, os.Stdout, os.Stderr) })
}

type options struct {
	limit         int
	name          string
	timeout       time.Duration
	monitorRetry  optInt
	childExitCode bool
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
}

// parse reads the command line (cliapp: every flag also from LOCKRUN_*,
// the Consul flags from CONSUL_*), checks it and builds the logger and the
// Consul client from it (no request is made). The options are returned with
// the error too: their cli prints it.
func parse(args []string, stdout, stderr io.Writer) (*options, error) {
	p := cliapp.New("lockrun", stdout, stderr)
	p.Usage = []string{"lockrun [flags] PREFIX COMMAND [ARGS...]", "lockrun [flags] PREFIX -- COMMAND [ARGS...]"}
	p.About = "Runs COMMAND while holding the Consul lock at PREFIX (a semaphore with -n above 1)."
	o := &options{cli: p}
	p.Int(&o.limit, "n", 1, "number of holders allowed; above 1 makes a semaphore")
	p.String(&o.name, "name", "", "session name (default \"lockrun PREFIX on HOST\")")
	p.Duration(&o.timeout, "timeout", 0, "give up acquiring after this long (0: wait forever)")
	p.Alias("try", "timeout") // consul lock's older name
	p.Var(&o.monitorRetry, "monitor-retry", "when given: `N` failed confirmations tolerated in a row while holding before the lock counts as lost (default: as many as the lease allows)")
	p.Bool(&o.childExitCode, "child-exit-code", false, "exit with the child's exit code when it fails (default: 0, as consul lock)")
	p.Var(&o.shell, "shell", "true: run the command with sh -c; false: exec it as given (auto: a single argument with spaces or shell syntax runs with sh -c, several are exec'd)")
	p.Bool(&o.passStdin, "pass-stdin", false, "give the child our standard input")
	p.Duration(&o.killTimeout, "kill-timeout", 5*time.Second, "grace period after SIGTERM before SIGKILL to the child's process group (at most -lock-delay minus 3s)")
	p.Duration(&o.lockDelay, "lock-delay", 15*time.Second, "lock-delay of our session: how long Consul refuses the lock after our session is invalidated; the child is stopped within it after Consul last confirmed the lock")
	p.Duration(&o.delayRetry, "lock-delay-retry", time.Second, "how often to retry while another session's lock-delay is in force")
	p.Bool(&o.verbose, "verbose", false, "log debug messages (same as -log-level debug)")
	res, err := p.Parse(args)
	if err == nil {
		err = o.check(res.Args)
	}
	if err == nil {
		o.log, o.client, err = p.Setup(nil)
	}
	return o, err
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
	o.prefix = strings.TrimPrefix(rest[0], "/")
	if o.prefix == "" || strings.HasSuffix(o.prefix, "/") && strings.Trim(o.prefix, "/") == "" {
		return fmt.Errorf("PREFIX %q: empty key path", rest[0])
	}
	o.prefix = strings.TrimSuffix(o.prefix, "/")
	if o.limit <= 0 {
		return fmt.Errorf("-n %d: the number of holders must be at least 1", o.limit)
	}
	if o.timeout < 0 {
		return fmt.Errorf("-timeout %s: must not be negative", o.timeout)
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
	argv, err := supervisor.Argv(rest[1:], o.shell.Mode)
	if err != nil {
		return err
	}
	o.argv = argv
	if o.verbose {
		o.cli.Log.Level = "debug"
	}
	return nil
}

// run is main without the exit: it returns lockrun's exit code.
func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	o, err := parse(args, stdout, stderr)
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
	signal.Notify(sigs)
	defer signal.Stop(sigs)

	r := &runner{o: o, client: client, log: log, stdin: stdin, stderr: stderr, sigs: sigs, metrics: newMetrics()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	metricsLn.Serve(ctx, r.metrics.reg, r.health, log)
	if supervisor.NeedReaper() {
		r.reaper = supervisor.NewReaper(log)
		go r.reaper.Run(ctx)
	}
	return r.run()
}

type metrics struct {
	reg          *prometheus.Registry
	held         prometheus.Gauge
	acquisitions prometheus.Counter
	lost         prometheus.Counter
	waitSeconds  prometheus.Histogram
	// lease
	leaseRemaining prometheus.Gauge
	confirmations  prometheus.Counter
	confirmErrors  prometheus.Counter
}

func newMetrics() *metrics {
	reg := telemetry.NewRegistry()
	sub := telemetry.Subsystem("lockrun")
	m := &metrics{
		reg:          reg,
		held:         sub.Gauge("held", "1 while the lock is held"),
		acquisitions: sub.Counter("acquisitions_total", "locks acquired"),
		lost:         sub.Counter("lock_lost_total", "locks lost while the child ran"),
		waitSeconds:  sub.Histogram("wait_seconds", "time spent waiting for the lock", prometheus.ExponentialBuckets(0.001, 4, 10)),
	}
	m.leaseRemaining = sub.Gauge("lease_remaining_seconds", "while holding: time left before the child is stopped unless Consul's leader confirms the lock again")
	m.confirmations = sub.Counter("lease_confirmations_total", "consistent reads that confirmed the lock while holding")
	m.confirmErrors = sub.Counter("lease_confirmation_errors_total", "confirmations that got no answer")
	reg.MustRegister(m.held, m.acquisitions, m.lost, m.waitSeconds, m.leaseRemaining, m.confirmations, m.confirmErrors)
	return m
}

type runner struct {
	o       *options
	client  *api.Client
	log     *slog.Logger
	stdin   *os.File
	stderr  io.Writer // lockrun's own error lines
	sigs    chan os.Signal
	metrics *metrics
	reaper  *supervisor.Reaper
	// lost is set once the lock was lost; read by the health endpoint.
	lost atomic.Bool
}

func (r *runner) health() error {
	if r.lost.Load() {
		return errors.New("lock lost")
	}
	return nil
}

func (r *runner) sessionName() string {
	if r.o.name != "" {
		return r.o.name
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("lockrun %s on %s", r.o.prefix, host)
}

func (r *runner) run() int {
	o := r.o
	// The runtime's one-time process-start probe, off the hand-off path.
	go supervisor.Prepare()
	behavior := api.SessionBehaviorRelease
	if o.limit > 1 {
		behavior = api.SessionBehaviorDelete
	}
	keeper := &sessionKeeper{client: r.client, log: r.log, entry: api.SessionEntry{
		Name: r.sessionName(), TTL: sessionTTL.String(), Behavior: behavior, LockDelay: o.lockDelay,
	}}
	defer keeper.destroy()

	var lk locker
	if o.limit == 1 {
		lk = &plainLock{kv: r.client.KV(), txn: r.client.Txn(), key: o.prefix + "/.lock", sessions: keeper, delayRetry: o.delayRetry, log: r.log}
	} else {
		lk = &semaphore{kv: r.client.KV(), txn: r.client.Txn(), prefix: o.prefix, limit: o.limit, lockDelay: o.lockDelay, sessions: keeper, log: r.log}
	}
	go r.checkAgent()
	h, code := r.wait(keeper, lk)
	if h == nil {
		return code
	}
	log := r.log.With("session", h.session)
	r.metrics.acquisitions.Inc()
	r.metrics.held.Set(1)
	log.Debug("lock acquired", "prefix", o.prefix, "token", h.token)

	code = r.hold(h, lk, keeper, log)

	r.metrics.held.Set(0)
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := lk.release(rctx, h); err != nil && code != exitLockLost {
		log.Warn("release failed; the session's destruction releases it", "err", err)
	}
	rcancel()
	// Let a waiting contender take the lock first: our clean-up writes (the
	// session's destruction, the key's deletion when unused) would otherwise
	// queue in Raft beside its acquisition. A key taken meanwhile is in use
	// and is not deleted.
	time.Sleep(handOffGrace)
	done := make(chan struct{})
	go func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		lk.cleanup(cctx)
		ccancel()
		close(done)
	}()
	keeper.destroy()
	<-done
	return code
}

// checkAgent warns once when the agent's settings break an assumption of
// the lease (agentTimeoutWarning); an agent that does not answer says
// nothing here, the lock's own requests report it.
func (r *runner) checkAgent() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var self map[string]map[string]any
	if _, err := r.client.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return
	}
	if w := agentTimeoutWarning(self, r.o.lease); w != "" {
		r.log.Warn(w)
	}
}

// wait creates our session and waits for the lock, watching for interrupts
// and -timeout. It returns the lock, or nil and the exit code.
func (r *runner) wait(keeper *sessionKeeper, lk locker) (*held, int) {
	o := r.o
	actx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if o.timeout > 0 {
		var tcancel context.CancelFunc
		actx, tcancel = context.WithTimeout(actx, o.timeout)
		defer tcancel()
	}
	type acq struct {
		h   *held
		err error
	}
	acqc := make(chan acq, 1)
	start := time.Now()
	go func() {
		if _, err := keeper.create(actx); err != nil {
			acqc <- acq{nil, err}
			return
		}
		h, err := lk.acquire(actx)
		acqc <- acq{h, err}
	}()
	interrupted := false
	for {
		select {
		case sig := <-r.sigs:
			s, _ := sig.(syscall.Signal)
			if s == syscall.SIGINT || s == syscall.SIGTERM || s == syscall.SIGHUP || s == syscall.SIGQUIT {
				r.log.Info("interrupted while waiting for the lock; cleaning up", "signal", supervisor.SignalName(s))
				interrupted = true
				cancel()
			}
		case a := <-acqc:
			switch {
			case a.err == nil:
				r.metrics.waitSeconds.Observe(time.Since(start).Seconds())
				return a.h, exitOK
			case interrupted:
				return nil, exitInterrupted
			case errors.Is(a.err, errPermanent):
				fmt.Fprintf(r.stderr, "lockrun: Consul refusing: %v\n", a.err)
				return nil, exitConsul
			case errors.Is(a.err, context.DeadlineExceeded) && keeper.createdCount() == 0:
				fmt.Fprintf(r.stderr, "lockrun: Consul unreachable for the whole -timeout %s: %v\n", o.timeout, a.err)
				return nil, exitConsul
			case errors.Is(a.err, context.DeadlineExceeded):
				fmt.Fprintf(r.stderr, "lockrun: lock %s not acquired within -timeout %s\n", o.prefix, o.timeout)
				return nil, exitTimeout
			case errors.Is(a.err, errConflict):
				fmt.Fprintf(r.stderr, "lockrun: %v\n", a.err)
				return nil, exitUsage
			default:
				fmt.Fprintf(r.stderr, "lockrun: %v\n", a.err)
				return nil, exitConsul
			}
		}
	}
}

// hold runs the child while the lock is held and returns our exit code. The
// child's process group is stopped when Consul says the lock is no longer
// ours, when our session is invalidated, or when the lease runs out
// (lease.go), whichever comes first.
func (r *runner) hold(h *held, lk locker, keeper *sessionKeeper, log *slog.Logger) int {
	o := r.o
	env := append(os.Environ(),
		"CONSUL_LOCK_HELD=true",
		"LOCKRUN_SESSION="+h.session,
		"LOCKRUN_TOKEN="+strconv.FormatUint(h.token, 10),
	)
	cfg := supervisor.Config{
		Argv: o.argv, Env: env, KillSignal: syscall.SIGTERM, KillTimeout: o.killTimeout,
		Reaper: r.reaper, Log: log,
	}
	if o.passStdin {
		cfg.Stdin = r.stdin
	}
	child, err := supervisor.Start(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lostc := make(chan string, 2)
	lease := &leaseKeeper{validFor: o.lease, maxErrors: o.monitorRetry.orUnset(), log: log, metrics: r.metrics,
		confirm: func(ctx context.Context) (bool, error) { return lk.confirm(ctx, h) }}
	go func() { lostc <- lease.run(ctx, h.sent) }()
	go func() { lostc <- lk.watch(ctx, h) }()
	// The watch keeps one connection busy; one quick read leaves a second
	// one idle in the pool, so the release need not dial.
	go func() {
		_, _, _ = r.client.KV().Get(o.prefix+"/.lock", (&api.QueryOptions{AllowStale: true}).WithContext(ctx))
	}()
	if err != nil {
		fmt.Fprintf(r.stderr, "lockrun: %v\n", err)
		return exitChildStart
	}
	_, sessionGone := keeper.current()
	for {
		var why string
		select {
		case <-child.Done():
			// Clear out anything the child left in its group: nothing may keep
			// running once the lock is released.
			ex := child.Stop()
			log.Debug("child exited", "status", ex.String())
			if !ex.Success() && o.childExitCode {
				return ex.ExitCode()
			}
			return exitOK
		case why = <-lostc:
		case <-sessionGone:
			why = "our session was invalidated"
		case sig := <-r.sigs:
			r.forward(sig, child)
			continue
		}
		r.lost.Store(true)
		r.metrics.lost.Inc()
		log.Error("lock lost; stopping the child's process group", "prefix", o.prefix, "why", why, "grace", o.killTimeout)
		ex := child.Stop()
		fmt.Fprintf(r.stderr, "lockrun: lock %s lost (%s); child stopped (%s)\n", o.prefix, why, ex)
		return exitLockLost
	}
}

// forward passes a signal to the child by the supervisor's one rule
// (pkg/supervisor Forward): a forwarded SIGINT or SIGTERM gives the child
// one -kill-timeout, then its process group gets SIGKILL, as consul lock's
// killChild does (command/lock/lock.go: SIGTERM, a grace period, SIGKILL).
func (r *runner) forward(sig os.Signal, child *supervisor.Child) {
	if s, ok := sig.(syscall.Signal); ok {
		_ = child.Forward(s)
	}
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
	v, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("not a whole number: %q", s)
	}
	o.v, o.set = v, true
	return nil
}

// orUnset returns the value, or -1 when the flag was not given.
func (o *optInt) orUnset() int {
	if !o.set {
		return -1
	}
	return o.v
}
