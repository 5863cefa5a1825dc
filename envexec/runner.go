package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/query"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/berth/berth/pkg/watch"
	"github.com/hashicorp/consul/api"
	"golang.org/x/sys/unix"
)

// update is one new answer from a source's watch loop.
type update struct {
	i    int
	data any
}

// runner owns the watch loops, the current environment and the child.
type runner struct {
	o      *options
	client *api.Client
	log    *slog.Logger
	stdin  *os.File
	stdout *os.File
	stderr *os.File
	// tty is stdin when it is a terminal whose foreground group is ours:
	// each child gets it (start); out, our log, is held meanwhile.
	tty     *os.File
	out     *supervisor.OutputGate
	sigs    chan os.Signal
	metrics *metrics
	reaper  *supervisor.Reaper

	mu      sync.Mutex
	lastErr []error     // per source, the last fetch error (nil once it answered)
	errFrom []time.Time // per source, the first error of the current outage
	ready   []bool      // per source, whether it has answered once
	gaveUp  []bool      // per source, whether its watch ran out of retries
	state   string      // for /health: "waiting", "running", "stopped"

	warned map[string]bool // skip warnings already given (key + reason)

	// quiet times the answers before the first start, for -wait.
	quiet supervisor.Quiescence

	// q runs the sources' queries (pkg/query); its probe also tells a
	// silent outage (a cut-off host: blocking queries hang without an
	// error) for /health.
	q *query.Client
}

// out is the writer under log, held while a child is given the terminal.
func newRunner(o *options, client *api.Client, log *slog.Logger, out *supervisor.OutputGate, stdin, stdout, stderr *os.File) *runner {
	retryMin, retryMax := o.retry.bounds()
	return &runner{
		q: query.New(query.Config{Client: client, MaxStale: o.maxStale, RetryMin: retryMin, RetryMax: retryMax,
			ExactRetry: !o.retry.jitter, Log: log}),
		o: o, client: client, log: log, stdin: stdin, stdout: stdout, stderr: stderr, tty: supervisor.ForegroundTerminal(stdin),
		out:     out,
		metrics: newMetrics(), lastErr: make([]error, len(o.order)), errFrom: make([]time.Time, len(o.order)), ready: make([]bool, len(o.order)), gaveUp: make([]bool, len(o.order)), state: "waiting",
		warned: map[string]bool{},
	}
}

func (r *runner) setState(s string) {
	r.mu.Lock()
	r.state = s
	r.mu.Unlock()
}

func (r *runner) health() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.state {
	case "running":
		// Degraded, not failed: the command runs with the last good
		// environment while Consul does not answer.
		for i, err := range r.lastErr {
			if err != nil && r.gaveUp[i] {
				return telemetry.Degraded("running with the last environment; %s is no longer watched (-consul-retry-attempts ran out; a reload watches it again): %v",
					r.o.order[i], err)
			}
		}
		for i, err := range r.lastErr {
			if err != nil {
				return telemetry.Degraded("running with the last environment; %s unanswered since %s (%s): %v",
					r.o.order[i], r.errFrom[i].UTC().Format(time.RFC3339), time.Since(r.errFrom[i]).Round(time.Second), err)
			}
		}
		if down, since, err := r.q.Down(); down {
			return telemetry.Degraded("running with the last environment; the Consul agent has reached no server since %s (%s): %v",
				since.UTC().Format(time.RFC3339), time.Since(since).Round(time.Second), err)
		}
		return nil
	case "waiting":
		return fmt.Errorf("waiting for %s", r.waitingForLocked(r.ready))
	}
	return errors.New("child not running")
}

// waitingForLocked describes the sources without an answer yet and why.
func (r *runner) waitingForLocked(have []bool) string {
	var parts []string
	for i, s := range r.o.order {
		if have != nil && have[i] {
			continue
		}
		p := s.String()
		if err := r.lastErr[i]; err != nil {
			p += " (last error: " + err.Error() + ")"
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

func (r *runner) waitingFor(have []bool) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waitingForLocked(have)
}

// envconsul's fixed lines on stderr for its kill and reload signals (cli.go
// Run: "Cleaning up..." before it stops its runner and returns
// ExitCodeInterrupt, "Reloading configuration..." before it stops it to
// read its configuration again), as templater prints consul-template's.
const (
	lineCleaningUp = "Cleaning up..."
	lineReloading  = "Reloading configuration..."
)

// announce prints one of envconsul's fixed lines on stderr, whatever the
// log level and even with -syslog, as envconsul writes them to its error
// stream and not to its logger.
func (r *runner) announce(line string) { fmt.Fprintln(r.stderr, line) }

// fail prints a one-line error for the user and returns code.
func (r *runner) fail(code int, format string, args ...any) int {
	fmt.Fprintf(r.stderr, "envexec: "+format+"\n", args...)
	return code
}

// run runs envexec with signals from sigs. It returns the exit code, or
// reload=true after the reload signal (the command then has been stopped).
func (r *runner) run(sigs chan os.Signal) (code int, reload bool) {
	o := r.o
	r.sigs = sigs
	// Background goroutines (metrics server, reaper) end when ctx is
	// cancelled, and run waits for them.
	var bg sync.WaitGroup
	defer bg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if o.metricsAddr != "" {
		errc := make(chan error, 1)
		ready := make(chan net.Addr, 1)
		bg.Add(1)
		go func() {
			defer bg.Done()
			errc <- telemetry.Serve(ctx, o.metricsAddr, r.metrics.registry(r.q), r.health, r.log, func(a net.Addr) { ready <- a })
		}()
		select {
		case err := <-errc:
			if err != nil {
				return r.fail(exitMetrics, "%v", err), false
			}
		case <-ready:
		}
	}
	if o.export == "" {
		// As PID 1 we inherit every orphan. Otherwise we make ourselves the
		// subreaper of our command's descendants, so processes it leaves
		// behind are ours to reap and a stop knows when they are gone.
		if !supervisor.NeedReaper() {
			if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
				r.log.Debug("cannot become a child subreaper", "err", err)
			}
		}
		r.reaper = supervisor.NewReaper(r.log)
		bg.Add(1)
		go func() { defer bg.Done(); r.reaper.Run(ctx) }()
	}

	// One watch loop per source; the first call of each answers at once.
	wctx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	updates := make(chan update, len(o.order))
	giveUp := make(chan int, len(o.order)) // a source that failed -consul-retry-attempts times before answering
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopWatches()
	r.startWatches(wctx, &wg, updates, giveUp)
	data, code, reload := r.awaitSources(updates, giveUp, sigs)
	if data == nil {
		return code, reload
	}
	if o.waitMin > 0 && o.export == "" {
		if code, reload, ok := r.settleFirst(updates, data, sigs); !ok {
			return code, reload
		}
	}
	r.drain(updates, data)
	env := r.build(data)

	if o.export != "" {
		stopWatches()
		return r.export(env), false
	}
	if o.once {
		stopWatches()
	}
	return r.supervise(ctx, env, data, updates, sigs)
}

// startWatches starts one watch loop per source, each delivering to
// updates, and the query client's probe; a source that fails
// -consul-retry-attempts times in a row before its first answer is sent to
// giveUp.
func (r *runner) startWatches(ctx context.Context, wg *sync.WaitGroup, updates chan update, giveUp chan int) {
	o := r.o
	r.metrics.sources.Set(float64(len(o.order)))
	wg.Add(1)
	go func() { defer wg.Done(); _ = r.q.Run(ctx) }()
	for i, s := range o.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := s.query()
			// A blocking answer can arrive long after the server sent it (a
			// host cut off: TCP delivers it on the heal), when newer data
			// exists: read once more without blocking so the command is
			// not restarted for an outdated value and again at once for
			// the current one.
			q.Recheck = true
			q.OnError = func(err error, _ time.Duration) {
				r.metrics.consulErrors.WithLabelValues(s.String()).Inc()
				r.mu.Lock()
				r.lastErr[i] = err
				if r.errFrom[i].IsZero() {
					r.errFrom[i] = time.Now()
				}
				r.mu.Unlock()
			}
			// envconsul's view gives up after the retries (consul-template
			// v0.41.1 watch/view.go poll, logging "exceeded maximum
			// retries" instead of a retry), before or after the command
			// started. The count is of failed calls in a row, started
			// again by any successful call, as poll's.
			q.GiveUp = func(failures int) bool {
				return o.retry.limit() > 0 && failures >= o.retry.limit()
			}
			fetch := func(opts *api.QueryOptions) (any, *api.QueryMeta, error) { return s.fetch(r.client, opts) }
			deliver := func(data any) {
				r.mu.Lock()
				r.lastErr[i] = nil
				r.errFrom[i] = time.Time{}
				r.mu.Unlock()
				select {
				case updates <- update{i, data}:
				case <-ctx.Done():
				}
			}
			var gave *watch.GaveUpError
			if err := query.Watch(ctx, r.q, q, fetch, deliver); errors.As(err, &gave) {
				// Before every source answered, envexec gives up (exit
				// 14). After, as envconsul (runner.go Start logs the
				// watcher's error and goes on unless in once mode), the
				// command keeps running and this source's values stay
				// as they were until a reload; /health says so.
				r.mu.Lock()
				r.gaveUp[i] = true
				ready := r.ready[i]
				r.mu.Unlock()
				if ready {
					r.log.Error("no longer watching the source; its values stay as they are until a reload", "source", s.String(), "err", gave)
				}
				giveUp <- i // room for every source
			}
		}()
	}
}

// awaitSources waits until every source has answered once and returns their
// data. Otherwise data is nil and code (with reload) says how to end: the
// -wait-timeout or the retry limit expired, a signal came.
func (r *runner) awaitSources(updates chan update, giveUp chan int, sigs chan os.Signal) (data []any, code int, reload bool) {
	o := r.o
	data = make([]any, len(o.order))
	have := make([]bool, len(o.order))
	missing := len(o.order)
	var timeout <-chan time.Time
	if o.waitTimeout > 0 {
		t := time.NewTimer(o.waitTimeout)
		defer t.Stop()
		timeout = t.C
	}
	// Say what we wait for after a short while, then every few seconds.
	progress := time.NewTimer(time.Second)
	defer progress.Stop()
	waitFrom := time.Now()
	for missing > 0 {
		select {
		case u := <-updates:
			if o.waitMin > 0 {
				r.quiet.Change(time.Now())
			}
			if !have[u.i] {
				have[u.i] = true
				missing--
				r.metrics.sourcesReady.Inc()
				r.mu.Lock()
				r.ready[u.i] = true
				r.mu.Unlock()
			}
			data[u.i] = u.data
		case i := <-giveUp:
			if !have[i] {
				// envconsul -once ends with its runner error (14) when a
				// watch runs out of retries (runner.go Start, cli.go Run);
				// without -once it hangs, the command never started
				// (envconsul issue #169): envexec ends with the same 14
				// (README, differences).
				return nil, r.fail(exitRunner, "%s failed %d times in a row (-consul-retry-attempts %d); giving up; the command was not started: %s", o.order[i], o.retry.limit(), o.retry.limit()-1, r.waitingFor(have)), false
			}
		case <-timeout:
			return nil, r.fail(exitWaitTimeout, "-wait-timeout %s expired; no answer yet for %s; the command was not started", o.waitTimeout, r.waitingFor(have)), false
		case <-progress.C:
			r.log.Info("waiting for Consul before starting the command", "waiting_for", r.waitingFor(have),
				"since", waitFrom.UTC().Format(time.RFC3339), "for", time.Since(waitFrom).Round(time.Second))
			progress.Reset(5 * time.Second)
		case sig := <-sigs:
			s, _ := sig.(syscall.Signal)
			switch {
			case s != 0 && s == o.reloadSignal:
				r.announce(lineReloading)
				r.log.Info("reloading the configuration", "signal", supervisor.SignalName(s))
				return nil, 0, true
			case s == syscall.SIGINT, s == syscall.SIGTERM, s == syscall.SIGHUP, s == syscall.SIGQUIT, s != 0 && s == o.killSignal:
				if s == o.killSignal {
					r.announce(lineCleaningUp)
				}
				return nil, r.fail(exitInterrupted, "interrupted by %s while waiting for %s; the command was not started", supervisor.SignalName(s), r.waitingFor(have)), false
			}
		}
	}
	return data, 0, false
}

// settleFirst holds the first start for -wait as envconsul does (runner.go
// Start: every arrival of data, from the first on, arms the quiescence
// timers and skips Run until one fires): until no answer came for MIN, and
// at most MAX after the first answer. Answers arriving meanwhile update
// data. ok is false when a signal ended the wait (code and reload then say
// how, as in awaitSources).
func (r *runner) settleFirst(updates chan update, data []any, sigs chan os.Signal) (code int, reload bool, ok bool) {
	o := r.o
	r.quiet.Min, r.quiet.Max = o.waitMin, o.waitMax
	if r.quiet.Max < r.quiet.Min {
		r.quiet.Max = r.quiet.Min
	}
	defer r.quiet.Reset()
	r.log.Debug("waiting for the data to settle before starting the command (-wait)", "min", o.waitMin, "max", o.waitMax)
	for !r.quiet.Ready(time.Now()) {
		t := time.NewTimer(time.Until(r.quiet.Due()))
		select {
		case u := <-updates:
			data[u.i] = u.data
			r.quiet.Change(time.Now())
		case <-t.C:
		case sig := <-sigs:
			s, _ := sig.(syscall.Signal)
			switch {
			case s != 0 && s == o.reloadSignal:
				t.Stop()
				r.announce(lineReloading)
				r.log.Info("reloading the configuration", "signal", supervisor.SignalName(s))
				return 0, true, false
			case s == syscall.SIGINT, s == syscall.SIGTERM, s == syscall.SIGHUP, s == syscall.SIGQUIT, s != 0 && s == o.killSignal:
				t.Stop()
				if s == o.killSignal {
					r.announce(lineCleaningUp)
				}
				return r.fail(exitInterrupted, "interrupted by %s while waiting for the data to settle (-wait); the command was not started", supervisor.SignalName(s)), false, false
			}
		}
		t.Stop()
	}
	return 0, false, true
}

// drain takes every update already queued, so a burst of changes makes one
// rebuild.
func (r *runner) drain(updates chan update, data []any) {
	for {
		select {
		case u := <-updates:
			data[u.i] = u.data
		default:
			return
		}
	}
}

// build computes the Consul variables from every source's latest data and
// warns (once per key and reason) about keys it skips. Values are never
// logged.
func (r *runner) build(data []any) map[string]string {
	lists := make([][]namedVar, len(r.o.order))
	for i, s := range r.o.order {
		lists[i] = s.vars(data[i], r.o.naming)
	}
	env, skips := merge(lists)
	for _, s := range skips {
		id := s.key + "\x00" + s.name + "\x00" + s.reason
		if r.warned[id] {
			continue
		}
		r.warned[id] = true
		if s.name != "" {
			r.log.Warn("skipping key", "key", s.key, "name", s.name, "reason", s.reason)
		} else {
			r.log.Warn("skipping key", "key", s.key, "reason", s.reason)
		}
	}
	r.metrics.skipped.Set(float64(len(skips)))
	r.metrics.variables.Set(float64(len(env)))
	return env
}

// graceOf is the supervisor's grace period for -kill-timeout D. A D of 0
// or less is taken, as envconsul takes it (consul-template v0.41.1
// child/child.go kill: time.After(killTimeout) fires at once): SIGKILL right
// after the kill signal. The supervisor reads 0 as its default, so it gets
// the shortest grace instead.
func graceOf(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Nanosecond
	}
	return d
}

func (r *runner) childConfig(env map[string]string) supervisor.Config {
	cfg := supervisor.Config{
		Argv:        r.o.argv,
		Env:         childEnv(os.Environ(), env, r.o.pristine, r.o.envAllow, r.o.env),
		Stdin:       r.stdin,
		Stdout:      r.stdout,
		Stderr:      r.stderr,
		KillSignal:  r.o.execKillSignal,
		KillTimeout: graceOf(r.o.killTimeout),
		Reaper:      r.reaper,
		Log:         r.log,
	}
	// No exec kill signal (SIGNULL): a stop sends nothing, waits
	// -kill-timeout, then SIGKILLs, as consul-template child/child.go kill.
	cfg.NoKillSignal = r.o.execKillSignal == 0
	// A stop signals the command (its group under sh -c) and waits for the
	// command process alone, as envconsul's child (consul-template v0.41.1
	// child/child.go kill: cmd.Process.Wait, then SIGKILL to the same
	// target): a script's leftover "&" job delays no restart. -stop-group:
	// the whole group, every process of it waited for.
	cfg.ChildOnly = !r.o.stopGroup
	return cfg
}

func (r *runner) start(env map[string]string) (*supervisor.Child, error) {
	cfg := r.childConfig(env)
	if r.tty != nil {
		// On a terminal, the child's group gets it, as a shell job does
		// (pkg/supervisor terminal.go): envconsul's plain command shares
		// its group and so its terminal, and a child reading it from a
		// background group would be stopped by SIGTTIN for good. Taken
		// back from the last child first, so that SIGTTOU is caught again
		// (not ignored) when the new child inherits our signals.
		r.takeTerminal()
		cfg.Terminal = r.tty
		r.out.Hold()
	}
	child, err := supervisor.Start(cfg)
	if r.tty != nil {
		if err == nil {
			signal.Ignore(syscall.SIGTTOU) // until takeTerminal
		}
		r.out.Release()
	}
	if err != nil {
		r.setState("stopped")
		r.metrics.childRunning.Set(0)
		return nil, err
	}
	r.metrics.childStarts.Inc()
	r.metrics.childRunning.Set(1)
	r.setState("running")
	return child, nil
}

// takeTerminal makes our group the terminal's foreground group again once
// the child that had it is gone (at a restart, a reload, the end), and then
// catches SIGTTOU again. When it cannot, SIGTTOU stays ignored: we are still
// in the terminal's background.
func (r *runner) takeTerminal() {
	if r.tty == nil {
		return
	}
	if err := supervisor.TakeTerminal(r.tty); err != nil {
		r.log.Warn("could not take the terminal back from the command's process group", "err", err)
		return
	}
	if r.sigs != nil {
		signal.Notify(r.sigs, syscall.SIGTTOU)
	}
}

// supervision is the state of supervise's loop: the command, its
// environment, a change waiting to be applied and the timers.
type supervision struct {
	r       *runner
	child   *supervisor.Child
	env     map[string]string // the command's Consul variables
	pending map[string]string // a changed environment not applied yet

	// quiet is the -wait quiescence of the pending change; quietT fires at
	// its due time.
	quiet          supervisor.Quiescence
	quietT, splayT *time.Timer
	quietC, splayC <-chan time.Time
}

func (sv *supervision) stopTimers() {
	for _, t := range []*time.Timer{sv.quietT, sv.splayT} {
		if t != nil {
			t.Stop()
		}
	}
	sv.quiet.Reset()
	sv.quietC, sv.splayC = nil, nil
}

// apply acts on a settled change as -on-change says. It returns an exit
// code, or -1 to go on.
func (sv *supervision) apply(next map[string]string) int {
	r, o := sv.r, sv.r.o
	changed := diffNames(sv.env, next)
	sv.env = next
	r.metrics.changes.Inc()
	r.metrics.lastChange.SetToCurrentTime()
	switch o.onChange {
	case changeNone:
		r.log.Info("environment changed; -on-change none: the command keeps running", "changed", changed)
	case changeSignal:
		r.log.Info("environment changed; signalling the command", "changed", changed, "signal", supervisor.SignalName(o.changeSignal))
		r.metrics.changeSignals.Inc()
		if err := sv.child.Reload(o.changeSignal); err != nil {
			r.log.Warn("could not signal the command", "err", err)
		}
	default:
		r.log.Info("environment changed; restarting the command", "changed", changed)
		ex := sv.child.Stop()
		r.log.Debug("command stopped for restart", "status", ex.String())
		r.metrics.restarts.Inc()
		c, err := r.start(sv.env)
		if err != nil {
			return r.fail(exitRunner, "restart: %v", err)
		}
		sv.child = c
	}
	return -1
}

// settled is called once a change has passed the -wait quiescence: it starts
// the -splay, or applies the change at once. It returns an exit code, or -1.
func (sv *supervision) settled() int {
	if sv.pending == nil {
		return -1
	}
	if sv.r.o.splay > 0 {
		if sv.splayC == nil {
			d := supervisor.SplayDelay(sv.r.o.splay)
			sv.r.log.Info("environment changed; waiting for the splay", "splay", d.Round(time.Millisecond))
			sv.splayT = time.NewTimer(d)
			sv.splayC = sv.splayT.C
		}
		return -1
	}
	next := sv.pending
	sv.pending = nil
	return sv.apply(next)
}

// changed takes a rebuilt environment: nothing if it is what is running or
// pending, else it becomes pending and waits for -wait, -splay, or is
// applied. It returns an exit code, or -1.
func (sv *supervision) changed(next map[string]string) int {
	r, o := sv.r, sv.r.o
	base := sv.env
	if sv.pending != nil {
		base = sv.pending
	}
	if equalEnv(base, next) {
		r.log.Debug("Consul changed but the environment did not")
		return -1
	}
	if equalEnv(sv.env, next) {
		r.log.Debug("environment changed back before it was applied")
		sv.pending = nil
		sv.stopTimers()
		return -1
	}
	sv.pending = next
	if o.waitMin > 0 {
		// Quiescence: wait until no change came for -wait min, but no
		// longer than its max since the first change.
		sv.quiet.Min, sv.quiet.Max = o.waitMin, o.waitMax
		sv.quiet.Change(time.Now())
		sv.armQuiet()
		return -1
	}
	return sv.settled()
}

// armQuiet sets the quiescence timer to the pending change's due time.
func (sv *supervision) armQuiet() {
	d := time.Until(sv.quiet.Due())
	if sv.quietT == nil {
		sv.quietT = time.NewTimer(d)
	} else {
		sv.quietT.Stop()
		sv.quietT.Reset(d)
	}
	sv.quietC = sv.quietT.C
}

// signal handles a signal envexec received, as envconsul's cli.go Run does:
// the reload signal stops the command and reloads; the kill signal stops
// the command and ends envexec (exit 12); every other signal goes to the
// command by the supervisor's rule (pkg/supervisor Forward: not SIGCHLD and
// the runtime's SIGURG; after a forwarded SIGINT or SIGTERM, or the
// forwarded -exec-kill-signal, the command has one -kill-timeout to exit,
// then its process group gets SIGKILL). end
// reports that supervise must return code and reload.
func (sv *supervision) signal(sig os.Signal) (code int, reload, end bool) {
	r, o := sv.r, sv.r.o
	s, ok := sig.(syscall.Signal)
	if !ok || s == 0 {
		return 0, false, false
	}
	switch {
	case s == o.reloadSignal:
		r.announce(lineReloading)
		r.log.Info("reloading the configuration; stopping the command", "signal", supervisor.SignalName(s))
		sv.splay("stopping the command")
		ex := sv.child.Stop()
		r.log.Debug("command stopped for the reload", "status", ex.String())
		r.metrics.childRunning.Set(0)
		return 0, true, true
	case s == o.killSignal:
		r.announce(lineCleaningUp)
		r.log.Info("stopping the command and exiting", "signal", supervisor.SignalName(s))
		sv.splay("stopping the command")
		ex := sv.child.Stop()
		r.log.Debug("command stopped", "status", ex.String())
		r.metrics.childRunning.Set(0)
		r.setState("stopped")
		return exitInterrupted, false, true
	}
	if s == o.execKillSignal {
		// The command's own stop signal, forwarded, stops it as a restart
		// would: one -kill-timeout, then SIGKILL (consul-template v0.41.1
		// child/child.go Signal: the kill signal is kill(true)).
		_ = sv.child.ForwardStop(s)
		return 0, false, false
	}
	if o.onChange == changeSignal && s == o.changeSignal {
		// The exec reload signal, forwarded, waits the splay too
		// (child/child.go Signal: reload()).
		sv.splay("forwarding " + supervisor.SignalName(s))
	}
	_ = sv.child.Forward(s)
	return 0, false, false
}

// splay waits a random -splay before what is logged as doing, unless the
// command exits first: envconsul's stop by its kill or reload signal
// (runner.go Stop: the child's Stop) and its forwarded exec reload signal
// wait so, as consul-template v0.41.1 child/child.go kill(false) and
// reload() do, to spread a fleet's restarts. No -splay: no wait.
func (sv *supervision) splay(doing string) {
	if sv.r.o.splay <= 0 {
		return
	}
	d := supervisor.SplayDelay(sv.r.o.splay)
	sv.r.log.Info("waiting for the splay before "+doing, "splay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-sv.child.Done():
	}
}

// supervise runs the child and reacts to changes, signals and its exit. It
// returns the exit code, or reload=true after the reload signal.
func (r *runner) supervise(ctx context.Context, env map[string]string, data []any, updates chan update, sigs chan os.Signal) (int, bool) {
	child, err := r.start(env)
	if err != nil {
		return r.fail(exitRunner, "%v", err), false
	}
	r.log.Debug("command started", "pid", child.Pid(), "variables", len(env))
	sv := &supervision{r: r, child: child, env: env}
	defer sv.stopTimers()
	defer r.takeTerminal() // after the child's Stop below
	for {
		code := -1
		select {
		case <-sv.child.Done():
			// With -stop-group, clear out whatever the command left in its
			// process group; else (envconsul's way) this returns at once.
			ex := sv.child.Stop()
			r.metrics.childRunning.Set(0)
			r.setState("stopped")
			code := r.exitCode(ex)
			if code != 0 {
				// envconsul logs this at ERROR, so at every log level
				// (cli.go Run: "unexpected exit from subprocess (N)"
				// through logError), and exits with the code.
				r.log.Error("unexpected exit from subprocess", "status", ex.String(), "exit_code", code)
				return code, false
			}
			r.log.Debug("command exited", "status", ex.String())
			return code, false
		case u := <-updates:
			data[u.i] = u.data
			r.drain(updates, data)
			code = sv.changed(r.build(data))
		case now := <-sv.quietC:
			sv.quietC = nil
			if !sv.quiet.Ready(now) {
				sv.armQuiet() // a change came since the timer was set
				break
			}
			sv.quiet.Reset()
			code = sv.settled()
		case <-sv.splayC:
			sv.splayC = nil
			if sv.pending != nil {
				next := sv.pending
				sv.pending = nil
				code = sv.apply(next)
			}
		case sig := <-sigs:
			if c, reload, end := sv.signal(sig); end {
				return c, reload
			}
		case <-ctx.Done():
			sv.child.Stop()
			return exitInterrupted, false
		}
		if code >= 0 {
			return code, false
		}
	}
}

// exitCode is envexec's exit code for the command's exit: its code, and for
// a command killed by a signal 255, as envconsul (its child's
// WaitStatus.ExitStatus() is -1 then, and cli.go Run returns it to
// os.Exit), or 128+N with -shell-exit-code, as shells report it.
func (r *runner) exitCode(ex supervisor.Exit) int {
	if ex.Signal != 0 && !r.o.shellExitCode {
		return 255
	}
	return ex.ExitCode()
}
