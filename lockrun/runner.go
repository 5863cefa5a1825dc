package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/berth/berth/pkg/cliapp"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// handOffGrace is how long after releasing the lock lockrun waits before its
// own clean-up writes, so that they do not slow the next holder's acquisition.
const handOffGrace = 5 * time.Millisecond

// runner is one run of lockrun: it waits for the lock, runs the child while
// holding it and cleans up; its own error lines go to the Stderr of o.cli.
type runner struct {
	o       *options
	client  *api.Client
	log     *slog.Logger
	stdin   *os.File
	sigs    chan os.Signal
	metrics *metrics
	reaper  *supervisor.Reaper
	// out is our standard error (the log and the error lines).
	out *supervisor.OutputGate
	// interrupted is the stop signal that came while the lock was being
	// acquired, when the acquisition completed anyway (wait): hold does not
	// start the child then.
	interrupted syscall.Signal
	// lost is set once the lock was lost; read by the health endpoint.
	lost atomic.Bool
	// agentWarning is checkAgent's finding, for the messages of a lease
	// that runs short.
	agentWarning atomic.Pointer[string]
	// beforeChildStart, when set (only by the tests), runs in hold between
	// acquiring the lock and checking for a stop signal before the child is
	// started, with the signal channel: a test holds lockrun there to send
	// a signal in that window.
	beforeChildStart func(sigs chan os.Signal)
}

// agentHint is checkAgent's warning about the agent's settings, or "".
func (r *runner) agentHint() string {
	if w := r.agentWarning.Load(); w != nil {
		return *w
	}
	return ""
}

// isStop reports whether s stops lockrun before its child runs (wait).
func isStop(s syscall.Signal) bool {
	return s == syscall.SIGINT || s == syscall.SIGTERM || s == syscall.SIGHUP || s == syscall.SIGQUIT
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
	// consul lock's default, so that tools looking for its sessions find ours.
	g := r.o.given
	return fmt.Sprintf("Consul lock for '%s' at '%s'", strings.Join(g[1:], " "), g[0])
}

// run serves /metrics and /health on metricsLn (nil: off) and, as PID 1,
// reaps orphans, both until it returns; it waits for the lock, runs the
// child while holding it, and returns lockrun's exit code.
func (r *runner) run(metricsLn *cliapp.Metrics) int {
	o := r.o
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	metricsLn.Serve(ctx, r.metrics.reg, r.health, r.log)
	if supervisor.NeedReaper() {
		r.reaper = supervisor.NewReaper(r.log)
		go r.reaper.Run(ctx)
	}
	// The runtime's one-time process-start probe, off the hand-off path.
	go supervisor.Prepare()
	behavior := api.SessionBehaviorRelease
	if o.limit > 1 {
		behavior = api.SessionBehaviorDelete
	}
	keeper := &sessionKeeper{client: r.client, log: r.log, datacenter: o.cli.Consul.Datacenter(), entry: api.SessionEntry{
		Name: r.sessionName(), TTL: sessionTTL.String(), Behavior: behavior, LockDelay: o.lockDelay,
	}}
	defer keeper.destroy()

	var lk locker
	if o.limit == 1 {
		lk = &plainLock{kv: r.client.KV(), txn: r.client.Txn(), key: o.lockKey(), sessions: keeper, delayRetry: o.delayRetry, log: r.log}
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

// checkAgent looks for agent settings that break an assumption of the lease
// (agentTimeoutWarning). It logs its finding at debug level only (-verbose):
// run from cron, a warning on every run would be mailed every time; the
// finding is added to the messages of a lease that runs short instead
// (leaseKeeper.hint), where it explains them. An agent that does not answer
// says nothing here, the lock's own requests report it.
func (r *runner) checkAgent() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var self map[string]map[string]any
	if _, err := r.client.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return
	}
	if w := agentTimeoutWarning(self, r.o.lease); w != "" {
		r.agentWarning.Store(&w)
		r.log.Debug(w)
	}
}

// wait creates our session and waits for the lock, watching for interrupts
// and -timeout. It returns the lock, or nil and the exit code.
func (r *runner) wait(keeper *sessionKeeper, lk locker) (*held, int) {
	o := r.o
	actx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	first := newAttempt()
	if o.timeout > 0 {
		// As consul lock, -timeout bounds the wait, not the first attempt
		// (the API's LockTryOnce looks at the time from the second attempt
		// on): the deadline cancels nothing until the first attempt is over
		// (first.over), so a free lock is taken whatever the -timeout.
		timer := time.AfterFunc(o.timeout, func() {
			select {
			case <-first.done:
			case <-actx.Done():
			}
			cancel(context.DeadlineExceeded)
		})
		defer timer.Stop()
	}
	timedOut := func(err error) bool {
		return errors.Is(err, context.DeadlineExceeded) || errors.Is(context.Cause(actx), context.DeadlineExceeded)
	}
	type acq struct {
		h   *held
		err error
	}
	acqc := make(chan acq, 1)
	start := time.Now()
	go func() {
		if _, err := keeper.create(actx, first); err != nil {
			acqc <- acq{nil, err}
			return
		}
		h, err := lk.acquire(actx, first)
		acqc <- acq{h, err}
	}()
	var interrupted syscall.Signal
	for {
		select {
		case sig := <-r.sigs:
			s, _ := sig.(syscall.Signal)
			if isStop(s) && interrupted == 0 {
				r.log.Info("interrupted while waiting for the lock; cleaning up", "signal", supervisor.SignalName(s))
				interrupted = s
				cancel(nil)
			}
		case a := <-acqc:
			switch {
			case a.err == nil:
				// Acquired, perhaps just after an interrupt: hold then
				// releases it without starting the child.
				r.metrics.waitSeconds.Observe(time.Since(start).Seconds())
				r.interrupted = interrupted
				return a.h, exitOK
			case interrupted != 0:
				return nil, exitInterrupted
			case errors.Is(a.err, errPermanent):
				fmt.Fprintf(r.o.cli.Stderr, "lockrun: %v\n", a.err) // a.err says "refused by Consul"
				return nil, exitConsul
			case timedOut(a.err) && keeper.createdCount() == 0:
				fmt.Fprintf(r.o.cli.Stderr, "lockrun: Consul unreachable for the whole -%s %s: %v\n", o.timeoutFlag.flagName(), o.timeout, a.err)
				return nil, exitConsul
			case timedOut(a.err):
				fmt.Fprintf(r.o.cli.Stderr, "lockrun: lock %s not acquired within -%s %s\n", o.shownPrefix(), o.timeoutFlag.flagName(), o.timeout)
				return nil, exitTimeout
			case errors.Is(a.err, errConflict):
				fmt.Fprintf(r.o.cli.Stderr, "lockrun: %v\n", a.err)
				return nil, exitUsage
			default:
				fmt.Fprintf(r.o.cli.Stderr, "lockrun: %v\n", a.err)
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
	if r.beforeChildStart != nil {
		r.beforeChildStart(r.sigs)
	}
	stop, early := r.stopBeforeStart()
	if stop != 0 {
		// As consul lock, which checks for a shutdown between acquiring and
		// starting its child: the command is not started, the lock is
		// released (by run), and SIGINT or SIGTERM exits 0, as a run they
		// stop while the child runs; SIGHUP and SIGQUIT, which consul lock
		// dies of, exit as an interrupt while waiting.
		log.Info("interrupted after acquiring the lock; releasing it without starting the command", "signal", supervisor.SignalName(stop))
		if stop == syscall.SIGINT || stop == syscall.SIGTERM {
			return exitOK
		}
		return exitInterrupted
	}
	env := append(os.Environ(),
		"CONSUL_LOCK_HELD=true",
		"LOCKRUN_SESSION="+h.session,
		"LOCKRUN_TOKEN="+strconv.FormatUint(h.token, 10),
	)
	cfg := supervisor.Config{
		Argv: o.argv, Env: env, KillSignal: syscall.SIGTERM, KillTimeout: o.killTimeout,
		Reaper: r.reaper, Log: log, ShellWrapper: o.shellWrapper,
	}
	if o.passStdin {
		cfg.Stdin = r.stdin
	}
	// On a terminal, the child gets it as a shell job does (consul lock's
	// child shares its process group, and so the terminal); else a child
	// reading it (-pass-stdin, a password prompt) would be stopped for good.
	cfg.Terminal = supervisor.ForegroundTerminal(r.stdin)
	if cfg.Terminal != nil {
		// From the moment the child's group has the terminal we are in its
		// background, where a write to it (with the terminal's tostop set)
		// or taking it back raises SIGTTOU, which would stop our process
		// group (the script that ran us too). SIGTTOU is ignored then; but
		// not before the child is started, or it would inherit the
		// ignoring (the child itself needs nothing: Go's fork keeps signals
		// blocked until it has made its group the foreground). What we
		// write meanwhile (the supervisor's log line, another goroutine's)
		// is held back until SIGTTOU is ignored.
		r.out.Hold()
	}
	child, err := supervisor.Start(cfg)
	if errors.Is(err, syscall.ENOEXEC) && !cfg.ShellWrapper && o.shell.Mode != supervisor.ShellNever {
		// An executable the kernel will not run (a script without "#!"):
		// consul lock's $SHELL -c runs it as a shell script, and so do we
		// (not with -shell=false, where consul lock execs it and fails).
		cfg.Argv = append([]string{commandShell(os.Getenv("SHELL"))}, o.argv...)
		cfg.ShellWrapper = true
		child, err = supervisor.Start(cfg)
	}
	if cfg.Terminal != nil {
		// Process-wide: our log lines come from any goroutine, so from any
		// thread; a signal cannot be blocked for the whole process in Go.
		// Until takeTerminal has us in the foreground again.
		signal.Ignore(syscall.SIGTTOU)
		r.out.Release()
		defer r.takeTerminal(cfg.Terminal, log)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lostc := make(chan string, 1)
	// The lease, from the acquiring request's send time; started again from
	// a confirmation's when it ran out while we were stopped (Ctrl-Z) and
	// Consul still says the lock is ours (renewLease).
	var (
		lease       *leaseKeeper
		leasec      chan string
		leaseCancel context.CancelFunc = func() {}
	)
	startLease := func(sent time.Time) {
		leaseCancel()
		var lctx context.Context
		lctx, leaseCancel = context.WithCancel(ctx)
		l := &leaseKeeper{validFor: o.lease, maxErrors: o.monitorRetry.orUnset(), log: log, metrics: r.metrics, hint: r.agentHint,
			confirm: func(ctx context.Context) (bool, error) { return lk.confirm(ctx, h) }}
		c := make(chan string, 1)
		lease, leasec = l, c
		go func() { c <- l.run(lctx, sent) }()
	}
	startLease(h.sent)
	defer func() { leaseCancel() }()
	renewLease := func() bool {
		sent := time.Now()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		held, err := lk.confirm(cctx, h)
		ccancel()
		if err != nil || !held {
			log.Warn("continued after the lease ran out, and Consul does not confirm we hold the lock", "held", held, "err", err)
			return false
		}
		startLease(sent)
		return true
	}
	go func() { lostc <- lk.watch(ctx, h) }()
	// The watch keeps one connection busy; one quick read leaves a second
	// one idle in the pool, so the release need not dial. It asks for the
	// leader's address, which any server answers, and not the lock key:
	// consul lock reads no key stale.
	go func() {
		_, _ = r.client.Raw().Query("/v1/status/leader", new(string), (&api.QueryOptions{}).WithContext(ctx))
	}()
	if err != nil {
		// As consul lock ("Error starting handler"), a command that cannot
		// be started is a failed child: exit 0, 2 with -child-exit-code;
		// -exact-exit-code gives the shell's code for it (127 not found,
		// 126 not runnable).
		fmt.Fprintf(r.o.cli.Stderr, "lockrun: error starting the command: %v\n", err)
		switch {
		case o.exactExit:
			return startFailureCode(err)
		case o.childExitCode:
			return exitChildFailed
		}
		return exitOK
	}
	for _, sig := range early {
		r.forward(sig, child)
	}
	_, sessionGone := keeper.current()
	stopping := false // SIGINT or SIGTERM came while the child ran
	// On a terminal, a stop of the child's group that the child cannot join
	// (stoppedBehindVfork) sends us no SIGCHLD: it is looked for instead.
	var vforkCheck <-chan time.Time
	if cfg.Terminal != nil {
		t := time.NewTicker(vforkCheckEvery)
		defer t.Stop()
		vforkCheck = t.C
	}
	for {
		var why string
		select {
		case <-child.Done():
			// Clear out anything the child left in its group: nothing may keep
			// running once the lock is released.
			ex := child.Stop()
			log.Debug("child exited", "status", ex.String())
			if !ex.Success() {
				// As consul lock ("Error running handler: ..."): a failure
				// leaves a line in the log of a cron job even when the exit
				// code says 0.
				fmt.Fprintf(r.o.cli.Stderr, "lockrun: error running the command: %s\n", ex)
			}
			switch {
			case ex.Success(), stopping && !o.exactExit:
				// Stopped on request: 0 whatever the child's status, as consul lock.
				return exitOK
			case o.exactExit:
				return ex.ExitCode()
			case o.childExitCode:
				return exitChildFailed
			}
			return exitOK
		case why = <-lostc:
		case why = <-leasec:
		case <-sessionGone:
			why = "our session was invalidated"
		case <-vforkCheck:
			if !stoppedBehindVfork(child.Pid()) {
				continue
			}
			log.Debug("the child waits in vfork for a child of its own that a stop caught before it could exec; following the stop")
			if !r.followJobStop(cfg.Terminal, child, syscall.SIGTSTP, lease.ranOut, renewLease, log) {
				continue
			}
			why = "the lease ran out while the job was stopped from the terminal (Ctrl-Z), and Consul no longer confirms the lock"
		case sig := <-r.sigs:
			if sig == syscall.SIGCHLD && cfg.Terminal != nil {
				if !r.followJobStop(cfg.Terminal, child, stopSignal(child.Pid()), lease.ranOut, renewLease, log) {
					continue
				}
				why = "the lease ran out while the job was stopped from the terminal (Ctrl-Z), and Consul no longer confirms the lock"
				break // to the loss, before a SIGCONT (fg) is forwarded to the child
			}
			if sig == syscall.SIGINT || sig == syscall.SIGTERM {
				stopping = true
			}
			r.forward(sig, child)
			continue
		}
		r.lost.Store(true)
		r.metrics.lost.Inc()
		log.Error("lock lost; stopping the child's process group", "prefix", o.prefix, "why", why, "grace", o.killTimeout)
		ex := child.Stop()
		fmt.Fprintf(r.o.cli.Stderr, "lockrun: lock %s lost (%s); child stopped (%s)\n", o.shownPrefix(), why, ex)
		return exitLockLost
	}
}

// followJobStop: on a terminal, when the child's group was stopped from it
// (sig, the signal that stopped the child, is SIGTSTP from Ctrl-Z, SIGTTIN
// or SIGTTOU; 0 when it is not stopped), we stop too, as consul lock, whose
// child shares its process group, is stopped with it: the terminal is taken
// back and our own group stopped, so that the shell that ran us sees its job
// stopped and gives its prompt back (else the shell would wait for us, and
// the terminal would answer nobody). Once continued (fg, bg), the child's
// group is continued too, and given the terminal again when we have it,
// unless the lease ran out while we were stopped (our session was not
// renewed meanwhile, and another holder may have the lock) and Consul's
// leader no longer confirms the lock is ours (renew, which starts the lease
// again from the confirmation when it does): then the child's group, still
// stopped, gets SIGKILL (a SIGTERM would need it continued, running without
// the lock) and true is returned: the lock is lost (exit 13).
//
// A child stopped by SIGSTOP was stopped from elsewhere (kill -STOP: the
// terminal sends no SIGSTOP), not as a job: consul lock is not stopped then
// (the signal went to its child alone, and it goes on waiting for it), and
// neither are we; a SIGCONT from there continues the child, still holding
// the terminal, and everything goes on.
func (r *runner) followJobStop(f *os.File, child *supervisor.Child, sig syscall.Signal, ranOut, renew func() bool, log *slog.Logger) (lost bool) {
	switch sig {
	case syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
	case 0:
		return false
	default:
		log.Debug("the child was stopped by a signal that is not the terminal's; waiting for it", "signal", supervisor.SignalName(sig))
		return false
	}
	log.Debug("the child was stopped from the terminal; stopping with it")
	if err := supervisor.TakeTerminal(f); err != nil {
		log.Warn("could not take the terminal back from the child's stopped process group", "err", err)
		return false
	}
	stopUntilContinued()
	if ranOut() && !renew() {
		_ = child.SignalGroup(syscall.SIGKILL)
		return true
	}
	if fg, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP); err == nil && fg == unix.Getpgrp() {
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.TIOCSPGRP, child.Pid()); err != nil {
			log.Warn("could not give the terminal back to the child", "err", err)
		}
	}
	_ = child.SignalGroup(syscall.SIGCONT)
	return false
}

// stopUntilContinued stops our process group (us and, in a pipeline, the
// rest of the shell's job) and returns once we are continued (fg, bg). A
// kill(2) of our own group does not stop us before it returns: the signal
// is taken by one of our threads, and the others, the caller's too, stop a
// little later; meanwhile the caller would give the terminal and a SIGCONT
// to the child's group, which then ran on behind the shell's prompt. So we
// wait for the SIGCONT that continues us.
//
// The stop is SIGTSTP, the terminal's, so that the shell reports the job as
// it does consul lock's, which the terminal's SIGTSTP stops with its child:
// status 148 (a SIGSTOP would give 147).
// The Go runtime keeps its own handler for SIGTSTP once it was asked for
// (we forward every signal) and then takes the signal's default as
// ignoring it, so SIGTSTP's disposition is set to the default (SIG_DFL, a
// stop) for the stop and given back after (stopWithDefaultTSTP). The
// kernel drops a SIGTSTP with the default action in an orphaned process
// group (no member's parent in another group of the session, so no shell
// to continue it); there, as when the disposition cannot be changed,
// SIGSTOP stops us as before.
func stopUntilContinued() {
	cont := make(chan os.Signal, 1)
	signal.Notify(cont, syscall.SIGCONT)
	defer signal.Stop(cont)
	if !parentDoesJobControl() || !stopWithDefaultTSTP(cont) {
		if syscall.Kill(0, syscall.SIGSTOP) == nil {
			<-cont
		}
	}
}

// kernelSigaction is the kernel's struct sigaction on linux/amd64 and
// linux/arm64 (handler, flags, restorer, mask: four words), handled here as
// opaque words but for the handler (SIG_DFL is 0) and the flags.
type kernelSigaction [4]uint64

// stopWithDefaultTSTP sets SIGTSTP's disposition to the default, sends it
// to our process group, waits on cont for the SIGCONT that continues us,
// and gives the disposition back. It returns false, having sent nothing,
// when the disposition cannot be read or set.
func stopWithDefaultTSTP(cont <-chan os.Signal) bool {
	var was, dfl kernelSigaction
	const setSize = 8 // bytes of the kernel's sigset_t
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(syscall.SIGTSTP), 0, uintptr(unsafe.Pointer(&was)), setSize, 0, 0); e != 0 {
		return false
	}
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(syscall.SIGTSTP), uintptr(unsafe.Pointer(&dfl)), 0, setSize, 0, 0); e != 0 {
		return false
	}
	defer unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(syscall.SIGTSTP), uintptr(unsafe.Pointer(&was)), 0, setSize, 0, 0)
	if syscall.Kill(0, syscall.SIGTSTP) == nil {
		<-cont
	}
	return true
}

// parentDoesJobControl reports whether our parent is in another process
// group of our session, so that our group is not orphaned (POSIX: a group
// is orphaned when no member's parent is in a different group of the same
// session) and a SIGTSTP with the default action stops it.
func parentDoesJobControl() bool {
	ppid := unix.Getppid()
	pg, err := unix.Getpgid(ppid)
	if err != nil || pg == unix.Getpgrp() {
		return false
	}
	ps, err1 := unix.Getsid(ppid)
	ms, err2 := unix.Getsid(0)
	return err1 == nil && err2 == nil && ps == ms
}

// stopSignal returns the signal that stopped our child pid (WSTOPSIG), when
// it is stopped and that stop was not reported yet, else 0. It asks waitid
// for stops alone (WSTOPPED without WEXITED: an exit is left for the
// supervisor's wait), without blocking, and takes the report, so that one
// stop is followed once however many SIGCHLD come while it lasts.
func stopSignal(pid int) syscall.Signal {
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WSTOPPED|unix.WNOHANG, nil); err != nil {
		return 0
	}
	// siginfo_t for SIGCHLD: si_pid, si_uid, si_status at the start of its
	// union, which follows si_signo, si_errno and si_code aligned as a
	// pointer (linux/amd64 and arm64: offset 16).
	const word = unsafe.Sizeof(uintptr(0))
	const union = (12 + word - 1) &^ (word - 1)
	b := (*[unsafe.Sizeof(info)]byte)(unsafe.Pointer(&info))
	got := int32(binary.NativeEndian.Uint32(b[union:]))
	status := int32(binary.NativeEndian.Uint32(b[union+8:]))
	if info.Code != cldStopped || int(got) != pid {
		return 0
	}
	return syscall.Signal(status)
}

// vforkCheckEvery is how often, while the child has the terminal, we look
// for a stop it cannot join (stoppedBehindVfork): the longest the shell's
// prompt may wait after Ctrl-Z in that case.
const vforkCheckEvery = 200 * time.Millisecond

// stoppedBehindVfork reports whether process pid cannot join a stop of its
// process group because it waits in vfork(2) for a child that the stop
// caught before that child could exec: pid is in uninterruptible sleep
// (state "D" in /proc/PID/stat), and a child of its own, in the same
// process group, is stopped ("T") and still runs pid's executable. dash
// (Debian's sh) starts commands with vfork; a Ctrl-Z in that moment stops
// the vforked child, the kernel keeps the parent in vfork until that child
// execs or exits, and so never reports the parent stopped: no SIGCHLD tells
// us of the job's stop, and the shell's prompt would not come back (nor
// would Ctrl-C help: the stopped child holds it). consul lock, which shares
// its child's process group, is stopped by the terminal itself. One read of
// /proc/PID/stat while pid is not in "D".
func stoppedBehindVfork(pid int) bool {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return false
	}
	st, err := p.Stat()
	if err != nil || st.State != "D" {
		return false
	}
	exe, err := p.Executable()
	if err != nil {
		return false
	}
	for _, kid := range supervisor.ChildPIDs(pid) {
		k, err := procfs.NewProc(kid)
		if err != nil {
			continue
		}
		ks, err := k.Stat()
		if err != nil || ks.State != "T" || ks.PGRP != st.PGRP {
			continue
		}
		if kexe, err := k.Executable(); err == nil && kexe == exe {
			return true
		}
	}
	return false
}

// cldStopped is si_code CLD_STOPPED: the child was stopped by a signal.
const cldStopped = 5

// startFailureCode is the exit code a shell gives a command it cannot
// start: 127 when it is not found, else 126.
func startFailureCode(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return 127
	}
	return 126
}

// stopBeforeStart returns the first stop signal (isStop) that came after
// the lock was acquired, or during its acquisition, and before the child
// starts, or 0; and the other signals that came meanwhile, for the child.
func (r *runner) stopBeforeStart() (stop syscall.Signal, others []os.Signal) {
	stop = r.interrupted
	for {
		select {
		case sig := <-r.sigs:
			if s, _ := sig.(syscall.Signal); isStop(s) {
				if stop == 0 {
					stop = s
				}
				continue
			}
			others = append(others, sig)
		default:
			return stop, others
		}
	}
}

// forward passes a signal to the child by the supervisor's one rule
// (pkg/supervisor Forward): a forwarded SIGINT or SIGTERM gives the child
// one -kill-timeout, then its process group gets SIGKILL, as consul lock's
// killChild does (command/lock/lock.go: SIGTERM, a grace period, SIGKILL).
// A SIGINT is followed by a SIGTERM, as consul lock stops its child on
// either: a child that ignores SIGINT still gets its graceful stop.
func (r *runner) forward(sig os.Signal, child *supervisor.Child) {
	if s, ok := sig.(syscall.Signal); ok {
		_ = child.Forward(s)
		if s == syscall.SIGINT {
			_ = child.Forward(syscall.SIGTERM)
		}
	}
}

// takeTerminal makes our process group the terminal's foreground group
// again once the child is gone (supervisor.TakeTerminal); SIGTTOU, ignored
// while the child had it, is then caught as before the child (run). When the
// terminal cannot be taken back we are still in the background and it stays
// ignored.
func (r *runner) takeTerminal(f *os.File, log *slog.Logger) {
	if err := supervisor.TakeTerminal(f); err != nil {
		log.Warn("could not take the terminal back from the child's process group", "err", err)
		return
	}
	signal.Notify(r.sigs, syscall.SIGTTOU)
}

// attempt is the first attempt to acquire: done is closed once it is over
// (a session could not be made, or the lock was read and tried); from then
// on -timeout may cut the wait.
type attempt struct {
	once sync.Once
	done chan struct{}
}

func newAttempt() *attempt { return &attempt{done: make(chan struct{})} }

// over says the first attempt is over; later calls do nothing.
func (a *attempt) over() { a.once.Do(func() { close(a.done) }) }
