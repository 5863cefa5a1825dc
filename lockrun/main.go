// Command lockrun runs a command while holding a Consul lock or semaphore: a
// drop-in for `consul lock` that kills the whole process group on lock loss,
// reports it in the exit code, and hands the child a fencing token.
package main

import (
	"context"
	"errors"
	"flag"
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

	"github.com/berth/berth/pkg/consulclient"
	"github.com/berth/berth/pkg/logging"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/berth/berth/pkg/version"
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
	os.Exit(run(os.Args[1:], os.Stdin, os.Stderr))
}

type options struct {
	limit         int
	name          string
	timeout       time.Duration
	monitorRetry  int
	childExitCode bool
	shell         supervisor.ShellFlag
	passStdin     bool
	killTimeout   time.Duration
	lockDelay     time.Duration
	delayRetry    time.Duration
	verbose       bool
	metricsAddr   string
	showVersion   bool
	consul        consulclient.Flags
	logs          logging.Flags
	prefix        string
	argv          []string
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("lockrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: lockrun [flags] PREFIX COMMAND [ARGS...]\n\nRuns COMMAND while holding the Consul lock at PREFIX (a semaphore with -n above 1).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&o.limit, "n", 1, "number of holders allowed; above 1 makes a semaphore")
	fs.StringVar(&o.name, "name", "", "session name (default \"lockrun PREFIX on HOST\")")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up acquiring after this long (0: wait forever)")
	fs.DurationVar(&o.timeout, "try", 0, "alias of -timeout (consul lock's older name)")
	fs.IntVar(&o.monitorRetry, "monitor-retry", 3, "Consul errors tolerated in a row while holding before the lock counts as lost")
	fs.BoolVar(&o.childExitCode, "child-exit-code", false, "exit with the child's exit code when it fails (default: 0, as consul lock)")
	fs.Var(&o.shell, "shell", "true: run the command with sh -c; false: exec it as given (default: a single argument with spaces or shell syntax runs with sh -c, several are exec'd)")
	fs.BoolVar(&o.passStdin, "pass-stdin", false, "give the child our standard input")
	fs.DurationVar(&o.killTimeout, "kill-timeout", 5*time.Second, "grace period after SIGTERM before SIGKILL to the child's process group")
	fs.DurationVar(&o.lockDelay, "lock-delay", 15*time.Second, "lock-delay of our session: how long Consul refuses the lock after our session is invalidated")
	fs.DurationVar(&o.delayRetry, "lock-delay-retry", time.Second, "how often to retry while another session's lock-delay is in force")
	fs.BoolVar(&o.verbose, "verbose", false, "log debug messages (same as -log-level debug)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /health on this address (off when empty)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	o.consul.Register(fs)
	o.logs.Register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.showVersion {
		return o, nil
	}
	rest := fs.Args()
	switch {
	case len(rest) == 0:
		return nil, errors.New("missing PREFIX and COMMAND (usage: lockrun [flags] PREFIX COMMAND [ARGS...])")
	case len(rest) == 1:
		return nil, fmt.Errorf("missing COMMAND to run under lock %q", rest[0])
	}
	o.prefix = strings.TrimPrefix(rest[0], "/")
	if o.prefix == "" || strings.HasSuffix(o.prefix, "/") && strings.Trim(o.prefix, "/") == "" {
		return nil, fmt.Errorf("PREFIX %q: empty key path", rest[0])
	}
	o.prefix = strings.TrimSuffix(o.prefix, "/")
	if o.limit <= 0 {
		return nil, fmt.Errorf("-n %d: the number of holders must be at least 1", o.limit)
	}
	if o.timeout < 0 {
		return nil, fmt.Errorf("-timeout %s: must not be negative", o.timeout)
	}
	if o.monitorRetry < 0 {
		return nil, fmt.Errorf("-monitor-retry %d: must not be negative", o.monitorRetry)
	}
	if o.killTimeout <= 0 {
		return nil, fmt.Errorf("-kill-timeout %s: must be positive", o.killTimeout)
	}
	if o.lockDelay < 0 || o.lockDelay > 60*time.Second {
		return nil, fmt.Errorf("-lock-delay %s: Consul accepts 0 to 60s", o.lockDelay)
	}
	if o.delayRetry <= 0 {
		return nil, fmt.Errorf("-lock-delay-retry %s: must be positive", o.delayRetry)
	}
	argv, err := supervisor.Argv(rest[1:], o.shell.Mode)
	if err != nil {
		return nil, err
	}
	o.argv = argv
	if o.verbose {
		o.logs.Level = "debug"
	}
	return o, nil
}

func run(args []string, stdin *os.File, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "lockrun: %v\n", err)
		return exitUsage
	}
	if o.showVersion {
		fmt.Fprintln(os.Stdout, version.String("lockrun"))
		return exitOK
	}
	log, err := o.logs.New(stderr, "lockrun")
	if err != nil {
		fmt.Fprintf(stderr, "lockrun: %v\n", err)
		return exitUsage
	}
	client, err := o.consul.Client()
	if err != nil {
		fmt.Fprintf(stderr, "lockrun: %v\n", err)
		return exitUsage
	}
	// Catch every signal from the start, so that one arriving while we wait
	// for the lock cleans up the session instead of killing us.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	defer signal.Stop(sigs)

	r := &runner{o: o, client: client, log: log, stdin: stdin, sigs: sigs, metrics: newMetrics()}
	if o.metricsAddr != "" {
		ln, err := telemetry.Listen(o.metricsAddr)
		if err != nil {
			fmt.Fprintf(stderr, "lockrun: %v\n", err)
			return exitUsage
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			if err := telemetry.ServeOn(ctx, ln, r.metrics.reg, r.health, log); err != nil {
				log.Error("metrics server stopped", "err", err)
			}
		}()
	}
	if supervisor.NeedReaper() {
		r.reaper = supervisor.NewReaper(log)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
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
}

func newMetrics() *metrics {
	reg := telemetry.NewRegistry()
	m := &metrics{
		reg:          reg,
		held:         prometheus.NewGauge(prometheus.GaugeOpts{Namespace: telemetry.Namespace, Subsystem: "lockrun", Name: "held", Help: "1 while the lock is held"}),
		acquisitions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: telemetry.Namespace, Subsystem: "lockrun", Name: "acquisitions_total", Help: "locks acquired"}),
		lost:         prometheus.NewCounter(prometheus.CounterOpts{Namespace: telemetry.Namespace, Subsystem: "lockrun", Name: "lock_lost_total", Help: "locks lost while the child ran"}),
		waitSeconds:  prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: telemetry.Namespace, Subsystem: "lockrun", Name: "wait_seconds", Help: "time spent waiting for the lock", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
	}
	reg.MustRegister(m.held, m.acquisitions, m.lost, m.waitSeconds)
	return m
}

type runner struct {
	o       *options
	client  *api.Client
	log     *slog.Logger
	stdin   *os.File
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
	bg := context.Background()
	sessionID, _, err := r.client.Session().Create(&api.SessionEntry{
		Name:      r.sessionName(),
		TTL:       "15s",
		Behavior:  behavior,
		LockDelay: o.lockDelay,
	}, (&api.WriteOptions{}).WithContext(bg))
	if err != nil {
		r.log.Error("cannot create a Consul session", "err", err)
		fmt.Fprintf(os.Stderr, "lockrun: Consul unreachable or refusing: create session: %v\n", err)
		return exitConsul
	}
	log := r.log.With("session", sessionID)
	renewDone := make(chan struct{})
	renewErr := make(chan error, 1)
	go func() { renewErr <- r.client.Session().RenewPeriodic("15s", sessionID, nil, renewDone) }()
	destroy := func() {
		select {
		case <-renewDone:
		default:
			close(renewDone)
		}
		ctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		if _, err := r.client.Session().Destroy(sessionID, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			log.Warn("could not destroy session; Consul will expire it within its TTL", "err", err)
		}
	}

	var lk locker
	if o.limit == 1 {
		lk = &plainLock{kv: r.client.KV(), txn: r.client.Txn(), key: o.prefix + "/.lock", session: sessionID, monitorRetry: o.monitorRetry, delayRetry: o.delayRetry, log: log}
	} else {
		sem, err := r.client.SemaphoreOpts(&api.SemaphoreOptions{
			Prefix: o.prefix, Limit: o.limit, Session: sessionID,
			MonitorRetries: o.monitorRetry, MonitorRetryTime: time.Second,
			SemaphoreWaitTime: 15 * time.Second,
		})
		if err != nil {
			destroy()
			fmt.Fprintf(os.Stderr, "lockrun: %v\n", err)
			return exitUsage
		}
		lk = &semaphore{client: r.client, sem: sem, prefix: o.prefix, key: o.prefix + "/.lock", sess: sessionID, log: log}
	}

	// Wait for the lock, watching for interrupts.
	actx, cancel := context.WithCancel(bg)
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
	go func() { h, err := lk.acquire(actx); acqc <- acq{h, err} }()
	var h *held
	interrupted := false
	for h == nil {
		select {
		case sig := <-r.sigs:
			s, _ := sig.(syscall.Signal)
			if s == syscall.SIGINT || s == syscall.SIGTERM || s == syscall.SIGHUP || s == syscall.SIGQUIT {
				log.Info("interrupted while waiting for the lock; cleaning up", "signal", supervisor.SignalName(s))
				interrupted = true
				cancel()
			}
		case a := <-acqc:
			switch {
			case a.err == nil:
				h = a.h
			case interrupted:
				destroy()
				return exitInterrupted
			case errors.Is(a.err, context.DeadlineExceeded):
				destroy()
				fmt.Fprintf(os.Stderr, "lockrun: lock %s not acquired within -timeout %s\n", o.prefix, o.timeout)
				return exitTimeout
			case errors.Is(a.err, errConflict):
				destroy()
				fmt.Fprintf(os.Stderr, "lockrun: %v\n", a.err)
				return exitUsage
			default:
				destroy()
				fmt.Fprintf(os.Stderr, "lockrun: %v\n", a.err)
				return exitConsul
			}
		}
	}
	cancel()
	wait := time.Since(start)
	r.metrics.waitSeconds.Observe(wait.Seconds())
	r.metrics.acquisitions.Inc()
	r.metrics.held.Set(1)
	log.Debug("lock acquired", "prefix", o.prefix, "token", h.token, "waited", wait)

	code := r.hold(h, sessionID, log)

	r.metrics.held.Set(0)
	rctx, rcancel := context.WithTimeout(bg, 5*time.Second)
	if err := lk.release(rctx); err != nil && code != exitLockLost {
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
		cctx, ccancel := context.WithTimeout(bg, 5*time.Second)
		lk.cleanup(cctx)
		ccancel()
		close(done)
	}()
	destroy()
	<-done
	return code
}

// hold runs the child while the lock is held and returns our exit code.
func (r *runner) hold(h *held, sessionID string, log *slog.Logger) int {
	o := r.o
	env := append(os.Environ(),
		"CONSUL_LOCK_HELD=true",
		"LOCKRUN_SESSION="+sessionID,
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
	if h.watch != nil {
		h.watch()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lockrun: %v\n", err)
		return exitChildStart
	}
	for {
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
		case <-h.lost:
			r.lost.Store(true)
			r.metrics.lost.Inc()
			log.Error("lock lost; stopping the child's process group", "prefix", o.prefix, "grace", o.killTimeout)
			ex := child.Stop()
			fmt.Fprintf(os.Stderr, "lockrun: lock %s lost; child stopped (%s)\n", o.prefix, ex)
			return exitLockLost
		case sig := <-r.sigs:
			s, ok := sig.(syscall.Signal)
			if !ok || !supervisor.Forwardable(s) {
				continue
			}
			log.Debug("forwarding signal", "signal", supervisor.SignalName(s))
			_ = child.Signal(s)
			if s == syscall.SIGINT || s == syscall.SIGTERM {
				go func() {
					// Give the child the grace period to act on it, then stop the group.
					select {
					case <-child.Done():
					case <-time.After(o.killTimeout):
						child.Stop()
					}
				}()
			}
		}
	}
}
