package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

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
	o       *options
	client  *api.Client
	log     *slog.Logger
	stdin   *os.File
	stdout  *os.File
	stderr  *os.File
	metrics *metrics
	reaper  *supervisor.Reaper

	mu      sync.Mutex
	lastErr []error     // per source, the last fetch error (nil once it answered)
	errFrom []time.Time // per source, the first error of the current outage
	ready   []bool      // per source, whether it has answered once
	state   string      // for /health: "waiting", "running", "stopped"

	warned map[string]bool // skip warnings already given (key + reason)
}

func newRunner(o *options, client *api.Client, log *slog.Logger, stdin, stdout, stderr *os.File) *runner {
	return &runner{
		o: o, client: client, log: log, stdin: stdin, stdout: stdout, stderr: stderr,
		metrics: newMetrics(), lastErr: make([]error, len(o.order)), errFrom: make([]time.Time, len(o.order)), ready: make([]bool, len(o.order)), state: "waiting",
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
			if err != nil {
				return telemetry.Degraded("running with the last environment; %s unanswered since %s (%s): %v",
					r.o.order[i], r.errFrom[i].UTC().Format(time.RFC3339), time.Since(r.errFrom[i]).Round(time.Second), err)
			}
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

// fail prints a one-line error for the user and returns code.
func (r *runner) fail(code int, format string, args ...any) int {
	fmt.Fprintf(r.stderr, "envexec: "+format+"\n", args...)
	return code
}

func (r *runner) run() int {
	o := r.o
	// Catch every signal from the start: one arriving while we wait for
	// Consul must not kill us without a word, and later ones go to the child.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	defer signal.Stop(sigs)

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
			errc <- telemetry.Serve(ctx, o.metricsAddr, r.metrics.registry(), r.health, r.log, func(a net.Addr) { ready <- a })
		}()
		select {
		case err := <-errc:
			if err != nil {
				return r.fail(exitMetrics, "%v", err)
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
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopWatches()
	r.metrics.sources.Set(float64(len(o.order)))
	for i, s := range o.order {
		i, s := i, s
		wg.Add(1)
		go func() {
			defer wg.Done()
			fetch := func(ctx context.Context, idx uint64) (any, uint64, error) {
				v, next, err := s.fetch(ctx, r.client, idx, o.maxStale)
				if err != nil || idx == 0 || next == idx {
					return v, next, err
				}
				// A blocking answer can arrive long after the server sent
				// it (a host cut off: TCP delivers it on the heal), when
				// newer data exists. Read once more without blocking so
				// the command is not restarted for an outdated value and
				// again at once for the current one; a reader that is
				// behind (a stale answer with a lower index) is ignored.
				if v2, next2, err2 := s.fetch(ctx, r.client, 0, o.maxStale); err2 == nil && next2 >= next {
					return v2, next2, nil
				}
				return v, next, nil
			}
			deliver := func(data any, _ uint64) {
				r.mu.Lock()
				r.lastErr[i] = nil
				r.errFrom[i] = time.Time{}
				r.mu.Unlock()
				select {
				case updates <- update{i, data}:
				case <-wctx.Done():
				}
			}
			_ = watch.Loop(wctx, fetch, deliver, watch.Options{
				Name: s.String(), Log: r.log, MinGap: 50 * time.Millisecond,
				OnError: func(err error, _ time.Duration) {
					r.metrics.consulErrors.WithLabelValues(s.String()).Inc()
					r.mu.Lock()
					r.lastErr[i] = err
					if r.errFrom[i].IsZero() {
						r.errFrom[i] = time.Now()
					}
					r.mu.Unlock()
				},
			})
		}()
	}

	// Wait until every source has answered once.
	data := make([]any, len(o.order))
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
			if !have[u.i] {
				have[u.i] = true
				missing--
				r.metrics.sourcesReady.Inc()
				r.mu.Lock()
				r.ready[u.i] = true
				r.mu.Unlock()
			}
			data[u.i] = u.data
		case <-timeout:
			return r.fail(exitWaitTimeout, "-wait-timeout %s expired; no answer yet for %s; the command was not started", o.waitTimeout, r.waitingFor(have))
		case <-progress.C:
			r.log.Info("waiting for Consul before starting the command", "waiting_for", r.waitingFor(have),
				"since", waitFrom.UTC().Format(time.RFC3339), "for", time.Since(waitFrom).Round(time.Second))
			progress.Reset(5 * time.Second)
		case sig := <-sigs:
			s, _ := sig.(syscall.Signal)
			switch s {
			case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
				return r.fail(exitInterrupted, "interrupted by %s while waiting for %s; the command was not started", supervisor.SignalName(s), r.waitingFor(have))
			}
		}
	}
	r.drain(updates, data)
	env := r.build(data)

	if o.export != "" {
		stopWatches()
		return r.export(env)
	}
	if o.once {
		stopWatches()
	}
	return r.supervise(ctx, env, data, updates, sigs)
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

func (r *runner) childConfig(env map[string]string) supervisor.Config {
	return supervisor.Config{
		Argv:        r.o.argv,
		Env:         childEnv(os.Environ(), env, r.o.pristine, r.o.envAllow),
		Stdin:       r.stdin,
		Stdout:      r.stdout,
		Stderr:      r.stderr,
		KillSignal:  r.o.killSignal,
		KillTimeout: r.o.killTimeout,
		Reaper:      r.reaper,
		Log:         r.log,
	}
}

func (r *runner) start(env map[string]string) (*supervisor.Child, error) {
	child, err := supervisor.Start(r.childConfig(env))
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

// settled is called once a change has passed the -wait quiescence: it starts
// the -splay, or applies the change at once. It returns an exit code, or -1.
func (r *runner) settled(pending *map[string]string, splayT **time.Timer, splayC *<-chan time.Time, apply func(map[string]string) int) int {
	if *pending == nil {
		return -1
	}
	if r.o.splay > 0 {
		if *splayC == nil {
			d := time.Duration(rand.Int64N(int64(r.o.splay)))
			r.log.Info("environment changed; waiting for the splay", "splay", d.Round(time.Millisecond))
			*splayT = time.NewTimer(d)
			*splayC = (*splayT).C
		}
		return -1
	}
	next := *pending
	*pending = nil
	return apply(next)
}

// supervise runs the child and reacts to changes, signals and its exit.
func (r *runner) supervise(ctx context.Context, env map[string]string, data []any, updates chan update, sigs chan os.Signal) int {
	o := r.o
	child, err := r.start(env)
	if err != nil {
		return r.fail(exitChildStart, "%v", err)
	}
	r.log.Debug("command started", "pid", child.Pid(), "variables", len(env))
	var (
		pending      map[string]string // a changed environment not applied yet
		quietT, maxT *time.Timer       // -wait quiescence
		quietC, maxC <-chan time.Time
		splayT       *time.Timer
		splayC       <-chan time.Time
		killC        <-chan time.Time // grace after a forwarded SIGINT/SIGTERM
	)
	stopTimers := func() {
		for _, t := range []*time.Timer{quietT, maxT, splayT} {
			if t != nil {
				t.Stop()
			}
		}
		quietC, maxC, splayC = nil, nil, nil
	}
	defer stopTimers()
	apply := func(next map[string]string) int {
		changed := diffNames(env, next)
		env = next
		r.metrics.changes.Inc()
		r.metrics.lastChange.SetToCurrentTime()
		switch o.onChange {
		case changeNone:
			r.log.Info("environment changed; -on-change none: the command keeps running", "changed", changed)
		case changeSignal:
			r.log.Info("environment changed; signalling the command", "changed", changed, "signal", supervisor.SignalName(o.changeSignal))
			r.metrics.changeSignals.Inc()
			if err := child.Signal(o.changeSignal); err != nil {
				r.log.Warn("could not signal the command", "err", err)
			}
		default:
			r.log.Info("environment changed; restarting the command", "changed", changed)
			ex := child.Stop()
			r.log.Debug("command stopped for restart", "status", ex.String())
			r.metrics.restarts.Inc()
			c, err := r.start(env)
			if err != nil {
				return r.fail(exitChildStart, "restart: %v", err)
			}
			child = c
			killC = nil
		}
		return -1
	}
	for {
		select {
		case <-child.Done():
			// Clear out whatever the command left in its process group.
			ex := child.Stop()
			r.metrics.childRunning.Set(0)
			r.setState("stopped")
			r.log.Debug("command exited", "status", ex.String())
			return ex.ExitCode()
		case u := <-updates:
			data[u.i] = u.data
			r.drain(updates, data)
			next := r.build(data)
			base := env
			if pending != nil {
				base = pending
			}
			if equalEnv(base, next) {
				r.log.Debug("Consul changed but the environment did not")
				continue
			}
			if equalEnv(env, next) {
				r.log.Debug("environment changed back before it was applied")
				pending = nil
				stopTimers()
				continue
			}
			pending = next
			if o.waitMin > 0 {
				// Quiescence: wait until no change came for -wait min, but
				// no longer than its max since the first change.
				if quietT == nil {
					quietT = time.NewTimer(o.waitMin)
				} else {
					quietT.Reset(o.waitMin)
				}
				quietC = quietT.C
				if maxC == nil {
					maxT = time.NewTimer(o.waitMax)
					maxC = maxT.C
				}
				continue
			}
			if code := r.settled(&pending, &splayT, &splayC, apply); code >= 0 {
				return code
			}
		case <-quietC:
			quietC, maxC = nil, nil
			maxT.Stop()
			if code := r.settled(&pending, &splayT, &splayC, apply); code >= 0 {
				return code
			}
		case <-maxC:
			quietC, maxC = nil, nil
			quietT.Stop()
			if code := r.settled(&pending, &splayT, &splayC, apply); code >= 0 {
				return code
			}
		case <-splayC:
			splayC = nil
			if pending != nil {
				next := pending
				pending = nil
				if code := apply(next); code >= 0 {
					return code
				}
			}
		case sig := <-sigs:
			s, ok := sig.(syscall.Signal)
			if !ok || !supervisor.Forwardable(s) {
				continue
			}
			r.log.Debug("forwarding signal", "signal", supervisor.SignalName(s))
			_ = child.Signal(s)
			if (s == syscall.SIGINT || s == syscall.SIGTERM) && killC == nil {
				// The command gets the grace period to act on it; then its
				// process group is stopped.
				t := time.NewTimer(o.killTimeout)
				defer t.Stop()
				killC = t.C
			}
		case <-killC:
			killC = nil
			r.log.Warn("command still running after the forwarded signal and -kill-timeout; stopping it", "grace", o.killTimeout)
			go child.Stop()
		case <-ctx.Done():
			child.Stop()
			return exitInterrupted
		}
	}
}
