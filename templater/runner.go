package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/query"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/pmezard/go-difflib/difflib"
	"github.com/prometheus/client_golang/prometheus"
)

// runConfig is everything the runner needs, built from flags and files.
type runConfig struct {
	Templates   []*templateConfig
	Wait        *waitConfig
	Once        bool
	OnceTimeout time.Duration
	Dry         bool // consul-template's -dry: "> DEST" and the contents on stdout
	Diff        bool // -diff: a unified diff per destination
	MissingWarn time.Duration
	// TemplateErrorFatal: a template that fails on its first execution (or
	// under -once) stops templater; false: it is logged and skipped.
	TemplateErrorFatal bool
	// ReloadErrorFatal: a reload whose configuration or templates fail
	// stops templater, as consul-template (cli.go Run: exit 15 for the
	// configuration, 14 for a template); false: logged, the running
	// configuration kept.
	ReloadErrorFatal bool
	FailFast         bool
	Exec             *execConfig
}

type metrics struct {
	executions     *prometheus.CounterVec
	renders        *prometheus.CounterVec
	skips          *prometheus.CounterVec
	missing        *prometheus.CounterVec
	checkFailures  *prometheus.CounterVec
	renderErrors   *prometheus.CounterVec
	commandRuns    *prometheus.CounterVec
	commandFails   *prometheus.CounterVec
	lastRender     *prometheus.GaugeVec
	waitingSeconds *prometheus.GaugeVec
	deps           prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	sub := telemetry.Subsystem("templater")
	m := &metrics{
		executions:     sub.CounterVec("executions_total", "Template executions.", "template"),
		renders:        sub.CounterVec("renders_total", "Destinations written with new content.", "template"),
		skips:          sub.CounterVec("skips_total", "Executions whose output equalled the file on disk (nothing written).", "template"),
		missing:        sub.CounterVec("missing_data_total", "Executions that lacked data and wrote nothing.", "template"),
		checkFailures:  sub.CounterVec("check_failures_total", "Check commands that rejected a candidate file.", "template"),
		renderErrors:   sub.CounterVec("render_errors_total", "Execution or write errors.", "template"),
		commandRuns:    sub.CounterVec("commands_total", "Commands run.", "command"),
		commandFails:   sub.CounterVec("command_failures_total", "Commands that failed or timed out.", "command"),
		lastRender:     sub.GaugeVec("last_render_timestamp_seconds", "Unix time of the template's last write.", "template"),
		waitingSeconds: sub.GaugeVec("waiting_for_data_seconds", "How long the template has been waiting for data (0 when complete).", "template"),
		deps:           sub.Gauge("watched_dependencies", "Distinct dependencies watched."),
	}
	if reg != nil {
		reg.MustRegister(m.executions, m.renders, m.skips, m.missing, m.checkFailures, m.renderErrors, m.commandRuns, m.commandFails, m.lastRender, m.waitingSeconds, m.deps)
	}
	return m
}

// runner owns the templates, the store of watched data and the exec child.
type runner struct {
	cfg   *runConfig
	log   *slog.Logger
	store *store
	// liveStore is store, for /health, which asks from another goroutine
	// while a reload may replace it.
	liveStore atomic.Pointer[store]
	m         *metrics
	reg       prometheus.Registerer
	// stopQuery ends the query client of store, and queryMetrics are its
	// metrics: a reload replaces both (connect).
	stopQuery    context.CancelFunc
	queryMetrics prometheus.Collector
	// pidFile is the PID file written for the session running now ("":
	// none).
	pidFile string
	// logOut is where log writes (stderr or a syslog connection).
	logOut io.Writer
	// onSession, if set, is told each session the runner takes on a
	// reload (serve's signal loop then reads its kill and reload signals).
	onSession func(*session)
	// stdin is given to commands and the -exec child, as consul-template
	// gives them its own (nil: /dev/null).
	stdin  *os.File
	stdout io.Writer
	stderr io.Writer
	tmpls  []*tmpl
	reload chan reloadRequest
	// giveUp brings a Consul query's last error once it failed as often
	// in a row as the retry settings allow (env.giveUpAfter).
	giveUp <-chan error
	sigs   chan syscall.Signal
	// onPass, if set, is called after every pass (tests).
	onPass func()

	dryLast map[string][]byte
	// reaper collects orphans when templater runs as PID 1 (nil otherwise).
	reaper  *supervisor.Reaper
	child   *supervisor.Child
	childCh chan struct{}
	// childEnv is what consul-template adds to a child's environment
	// (CONSUL_HTTP_ADDR, ...; manager/runner.go childEnv).
	childEnv []string
	// allRendered: every template has been rendered once (for /health).
	allRendered atomic.Bool
	// readySent: systemd was told READY=1 on NOTIFY_SOCKET, once every
	// template was rendered (told again after a reload), as consul-template
	// tells it.
	readySent bool
}

// reloadRequest is what the reload signal read from disk: the new
// session, or why it could not be built and the exit code that is.
type reloadRequest struct {
	s    *session
	err  error
	code int
	// done is closed once the runner took the session or refused it.
	done chan struct{}
}

// connect starts the Consul query client and the store of watched data of
// session s, with its address, token, TLS, max_stale, retry and
// block_query_wait settings, and stops those of the session before it.
// Nothing is fetched until a template asks.
func (r *runner) connect(ctx context.Context, s *session) {
	if r.store != nil {
		r.store.stopAll()
	}
	if r.stopQuery != nil {
		r.stopQuery()
	}
	if r.queryMetrics != nil {
		r.reg.Unregister(r.queryMetrics)
	}
	o := s.o
	// The delays are consul-template's exactly, without jitter unless
	// -consul-retry-jitter, for any backoff and max_backoff
	// (config/retry.go RetryFunc; query.RetryBounds).
	retryMin, retryMax := query.RetryBounds(o.retryMin, o.retryMax)
	qcfg := query.Config{Client: s.client, MaxStale: o.maxStale, Log: s.log, RetryMin: retryMin, RetryMax: retryMax, ExactRetry: !o.retryJitter}
	if s.fc.BlockQueryWait != nil {
		qcfg.Wait = *s.fc.BlockQueryWait
	}
	qc := query.New(qcfg)
	qctx, stop := context.WithCancel(ctx)
	go func() { _ = qc.Run(qctx) }() // ends with qctx
	r.stopQuery = stop
	r.queryMetrics = qc.Collector("templater")
	r.reg.MustRegister(r.queryMetrics)
	e := &env{q: qc, log: s.log, pollTick: 15 * time.Second,
		giveUpAfter: query.FailuresToGiveUp(o.retryEnabled, o.retryAttempts), giveUp: make(chan error, 1)}
	r.store = newStore(e)
	r.liveStore.Store(r.store)
	r.giveUp = e.giveUp
	r.childEnv = s.childEnv
	r.log, r.logOut = s.log, s.logOut
}

// writePid writes templater's PID to path ("": none) as the bare number,
// no newline; a file that cannot be written is a runner error (exit 14),
// as consul-template's runner has it (manager/runner.go storePid).
func (r *runner) writePid(path string) error {
	if path == "" {
		return nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("-pid-file: %w", err)
	}
	r.pidFile = path
	return nil
}

// removePid removes the PID file written last, as consul-template's runner
// does when it stops (manager/runner.go deletePid).
func (r *runner) removePid() {
	if r.pidFile != "" {
		if err := os.Remove(r.pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("cannot remove the PID file", "path", r.pidFile, "err", err)
		}
		r.pidFile = ""
	}
}

func loadTemplates(cfg *runConfig) ([]*tmpl, error) {
	var out []*tmpl
	seen := map[string]*templateConfig{}
	for _, c := range cfg.Templates {
		if prev, dup := seen[c.Destination]; dup {
			if sameTemplate(prev, c) {
				continue // the same template given twice is one (consul-template merges them)
			}
			return nil, fmt.Errorf("destination %s is written by two templates (%s and %s)", c.Destination, prev.origin, c.origin)
		}
		seen[c.Destination] = c
		if !c.CreateDestDirs {
			dir := parentDir(c.Destination)
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return nil, fmt.Errorf("template %s: destination folder %s does not exist and create_dest_dirs is false", c.origin, dir)
			}
		}
		t, err := loadTemplate(c)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// sameTemplate reports whether two template configs render the same thing
// to the same place the same way.
func sameTemplate(a, b *templateConfig) bool {
	x, y := *a, *b
	x.origin, y.origin = "", ""
	return reflect.DeepEqual(x, y)
}

func parentDir(p string) string {
	i := strings.LastIndex(p, "/")
	switch {
	case i < 0:
		return "."
	case i == 0:
		return "/"
	}
	return p[:i]
}

// errExit carries an exit code out of run.
type errExit struct {
	code int
	err  error
}

func (e *errExit) Error() string { return e.err.Error() }

func (r *runner) run(ctx context.Context) error {
	defer func() { r.store.stopAll() }() // the store of the last session
	defer r.stopChild()
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var waitTimer *time.Timer
	var waitC <-chan time.Time
	force := true
	for {
		changed := r.store.drain()
		next, err := r.pass(ctx, changed, force, time.Now())
		force = false
		if err != nil {
			return err
		}
		rendered := true
		for _, t := range r.tmpls {
			rendered = rendered && t.complete
		}
		r.allRendered.Store(rendered)
		if rendered && !r.readySent {
			r.readySent = true
			// consul-template v0.41.1 tells systemd the same way once
			// every template is rendered (cli.go, manager/runner.go:
			// go-systemd's daemon.SdNotify), and leaves NOTIFY_SOCKET set
			// for its commands and child, as this does.
			if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
				r.log.Warn("failed to signal readiness to systemd (NOTIFY_SOCKET)", "err", err)
			}
		}
		if r.onPass != nil {
			r.onPass()
		}
		if r.cfg.Once && r.allComplete() {
			return r.onceExec(ctx)
		}
		if r.cfg.Once && r.allSettled() {
			// -once with error_fatal = false: every template rendered or
			// failed with all its data, and a failure under -once will not
			// mend itself. The others are written and their commands ran;
			// the -exec child is not started on an incomplete set; exit 14
			// naming the failures (README, differences: consul-template
			// never finishes here, or crashes).
			return &errExit{code: exitRunner, err: r.describeFailed()}
		}
		if waitTimer != nil {
			waitTimer.Stop()
			waitTimer, waitC = nil, nil
		}
		if !next.IsZero() {
			waitTimer = time.NewTimer(time.Until(next))
			waitC = waitTimer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.store.notify:
		case <-waitC:
		case sig := <-r.sigs:
			if r.child != nil {
				// The program, or the whole group of a command of
				// several words (startChild).
				_ = r.child.Forward(sig)
			}
			continue
		case <-r.childCh:
			ex := r.child.Exit()
			r.log.Info("exec child exited; stopping", "exit", ex.String())
			r.child = nil
			return &errExit{code: ex.ExitCode(), err: fmt.Errorf("exec child %s", ex)}
		case err := <-r.giveUp:
			return &errExit{code: exitRunner, err: err}
		case rq := <-r.reload:
			err := r.reloadSession(ctx, rq)
			close(rq.done)
			if err != nil {
				return err
			}
			force = true
		case now := <-tick.C:
			r.warnMissing(now)
			if r.cfg.Once && r.cfg.OnceTimeout > 0 && now.Sub(start) > r.cfg.OnceTimeout {
				return &errExit{code: exitMissing, err: errors.New("-once: gave up after " + r.cfg.OnceTimeout.String() + "; " + r.describeMissing())}
			}
		}
	}
}

// reloadSession takes the session a reload signal built, as consul-template
// builds a new runner from the files read again (cli.go Run): the Consul
// connection, max_stale, retries, signals, logging, pid_file and exec
// settings of the new files apply, and every template is rendered again
// from freshly fetched data (the files on disk stay until then). An -exec
// child whose settings and environment are unchanged keeps running (README,
// differences: consul-template #945); one whose settings changed is stopped
// as consul-template stops it (its kill signal after the splay, SIGKILL
// after the kill timeout) and the new one starts once every template is
// rendered again. A session that could not be built (or whose PID file
// cannot be written) stops templater with its exit code, or with
// -reload-error-fatal=false is logged and the running one kept.
func (r *runner) reloadSession(ctx context.Context, rq reloadRequest) error {
	err := rq.err
	if err == nil && rq.s.o.pidFile != "" {
		// Written before anything changes, so that a refused reload
		// leaves the running session whole.
		if err = os.WriteFile(rq.s.o.pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			err, rq.code = fmt.Errorf("-pid-file: %w", err), exitRunner
		}
	}
	if err != nil {
		if r.cfg.ReloadErrorFatal {
			return &errExit{code: rq.code, err: fmt.Errorf("reload: %w", err)}
		}
		r.log.Error("reload: new configuration rejected; keeping the running one (-reload-error-fatal=false)", "err", err)
		return nil
	}
	s := rq.s
	if r.pidFile != s.o.pidFile {
		r.removePid()
	}
	r.pidFile = s.o.pidFile
	oldOut, oldExec, oldEnv := r.logOut, r.cfg.Exec, r.childEnv
	r.connect(ctx, s)
	if r.onSession != nil {
		// Before the old log's syslog connection closes: what logs
		// through the session of the moment (liveHandler) moves first.
		r.onSession(s)
	}
	if sw, ok := oldOut.(*syslog.Writer); ok && oldOut != s.logOut {
		// The log goes to the new session's place now.
		_ = sw.Close()
	}
	if r.child != nil && (!reflect.DeepEqual(oldExec, s.rc.Exec) || !reflect.DeepEqual(oldEnv, s.childEnv)) {
		r.log.Info("stopping exec child: its settings changed on reload")
		if oldExec != nil {
			_ = supervisor.Splay(ctx, oldExec.Splay)
		}
		r.stopChild()
	}
	r.cfg = s.rc
	r.tmpls = s.tmpls
	r.dryLast = map[string][]byte{}
	r.readySent = false
	r.log.Info("reloaded configuration", "templates", len(s.tmpls), "consul", s.ccfg.Address, "max_stale", s.o.maxStale)
	return nil
}

func (r *runner) allComplete() bool {
	for _, t := range r.tmpls {
		if !t.complete || t.quiet.Pending() {
			return false
		}
	}
	return true
}

// allSettled reports whether every template has rendered or failed with all
// its data (error_fatal = false), none waiting for data or for its wait.
func (r *runner) allSettled() bool {
	for _, t := range r.tmpls {
		if !t.complete && t.failed == nil || t.quiet.Pending() {
			return false
		}
	}
	return true
}

// describeFailed is the -once error for the templates that failed with
// error_fatal = false.
func (r *runner) describeFailed() error {
	var parts []string
	for _, t := range r.tmpls {
		if !t.complete && t.failed != nil {
			parts = append(parts, fmt.Sprintf("template %s: %v", t.name, t.failed))
		}
	}
	return fmt.Errorf("-once: not every template rendered (error_fatal = false; the others were written): %s", strings.Join(parts, "; "))
}

func (r *runner) describeMissing() string {
	var parts []string
	for _, t := range r.tmpls {
		switch {
		case len(t.missing) > 0:
			parts = append(parts, fmt.Sprintf("template %s waits for %s", t.name, strings.Join(t.missing, ", ")))
		case !t.complete:
			// -template-error-fatal=false: it has all its data but fails.
			parts = append(parts, fmt.Sprintf("template %s has not rendered: its execution fails (logged above)", t.name))
		}
	}
	if len(parts) == 0 {
		return "no template waits for data"
	}
	return strings.Join(parts, "; ")
}

func (r *runner) warnMissing(now time.Time) {
	for _, t := range r.tmpls {
		if t.missingSince.IsZero() {
			r.m.waitingSeconds.WithLabelValues(t.name).Set(0)
			continue
		}
		waited := now.Sub(t.missingSince)
		r.m.waitingSeconds.WithLabelValues(t.name).Set(waited.Seconds())
		if !t.warned && waited >= r.cfg.MissingWarn {
			t.warned = true
			r.log.Warn("template waiting for data; not written", "template", t.name, "destination", t.cfg.Destination,
				"waiting_for", strings.Join(t.missing, ", "), "since", t.missingSince.UTC().Format(time.RFC3339), "for", waited.Round(time.Second))
		}
	}
}

// pass executes the templates that need it and installs their output. It
// returns when the next quiescence deadline falls (zero: none).
func (r *runner) pass(ctx context.Context, changed map[string]bool, force bool, now time.Time) (time.Time, error) {
	var next time.Time
	var cmds []*cmdRun
	cmdIdx := map[string]*cmdRun{}
	anyChanged := false
	for _, t := range r.tmpls {
		affected := force || !t.executed || touches(t.deps, changed)
		w := t.cfg.Wait
		if w == nil {
			w = r.cfg.Wait
		}
		if affected && w != nil && w.Min > 0 && t.complete {
			t.quiet.Change(now)
		}
		if t.quiet.Pending() {
			t.quiet.Min, t.quiet.Max = 0, 0
			if w != nil {
				t.quiet.Min, t.quiet.Max = w.Min, w.Max
			}
			if !t.quiet.Ready(now) {
				if due := t.quiet.Due(); next.IsZero() || due.Before(next) {
					next = due
				}
				continue
			}
			t.quiet.Reset()
			affected = true
		}
		if !affected {
			continue
		}
		// A template that has never rendered with all its data fails as
		// consul-template's does (exit 14 with template_error_fatal);
		// after that an error is logged and the old destination kept.
		wasRendered := t.complete
		t0 := time.Now()
		out, missing, err := t.execute(ctx, r.store, r.childEnv)
		execTime := time.Since(t0)
		r.m.executions.WithLabelValues(t.name).Inc()
		if err != nil {
			r.m.renderErrors.WithLabelValues(t.name).Inc()
			fatal := r.cfg.TemplateErrorFatal
			if t.cfg.ErrorFatal != nil {
				fatal = *t.cfg.ErrorFatal
			}
			// A file() that cannot be read is fatal whatever error_fatal
			// says: consul-template's watcher fails, not its template.
			// So is a key that never existed under err_on_failed_lookup.
			var fe *fileError
			var le *lookupError
			fatal = fatal || errors.As(err, &fe) || errors.As(err, &le)
			if fatal && (!wasRendered || r.cfg.Once) {
				return next, &errExit{code: exitRunner, err: fmt.Errorf("template %s: %w", t.name, err)}
			}
			t.failed = err
			r.log.Error("template failed; destination left as it was", "template", t.name, "err", err)
			continue
		}
		t.failed = nil
		if missing != nil {
			r.m.missing.WithLabelValues(t.name).Inc()
			if t.missingSince.IsZero() {
				t.missingSince = now
			}
			r.log.Debug("template waiting for data", "template", t.name, "waiting_for", strings.Join(missing, ", "))
			continue
		}
		if !t.missingSince.IsZero() && t.warned {
			r.log.Info("template has its data now", "template", t.name, "waited", now.Sub(t.missingSince).Round(time.Second))
		}
		t.missingSince, t.warned = time.Time{}, false
		r.m.waitingSeconds.WithLabelValues(t.name).Set(0)
		t.complete = true
		t1 := time.Now()
		wrote, err := r.output(ctx, t, out)
		if err != nil {
			return next, err
		}
		if !wrote {
			r.m.skips.WithLabelValues(t.name).Inc()
			continue
		}
		anyChanged = true
		r.m.renders.WithLabelValues(t.name).Inc()
		r.m.lastRender.WithLabelValues(t.name).SetToCurrentTime()
		if !r.cfg.Dry && !r.cfg.Diff {
			r.log.Info("rendered", "template", t.name, "destination", t.cfg.Destination, "execute", execTime.Round(time.Microsecond), "write", time.Since(t1).Round(time.Microsecond))
		}
		// The command as written, blank or with spaces around it included:
		// consul-template runs it so (child/command-prep.go), and a blank
		// one fails (runCommands).
		if c := t.cfg.Command; c != "" {
			if cr, ok := cmdIdx[c]; ok {
				cr.names = append(cr.names, t.name)
			} else {
				cr := &cmdRun{cmd: c, list: t.cfg.CommandArgv, timeout: t.cfg.CommandTimeout, names: []string{t.name}}
				cmdIdx[c] = cr
				cmds = append(cmds, cr)
			}
		}
	}
	// Stop watching what no template uses any more.
	used := map[string]bool{}
	for _, t := range r.tmpls {
		for d := range t.deps {
			used[d] = true
		}
	}
	r.store.keep(used)
	r.m.deps.Set(float64(r.store.count()))

	if err := r.runCommands(ctx, cmds); err != nil {
		return next, err
	}
	if err := r.manageChild(ctx, anyChanged); err != nil {
		return next, err
	}
	return next, nil
}

func touches(deps, changed map[string]bool) bool {
	if len(changed) == 0 || len(deps) == 0 {
		return false
	}
	if len(changed) < len(deps) {
		for d := range changed {
			if deps[d] {
				return true
			}
		}
		return false
	}
	for d := range deps {
		if changed[d] {
			return true
		}
	}
	return false
}

func (r *runner) dryRun(t *tmpl, out []byte) bool {
	prev, ok := r.dryLast[t.cfg.Destination]
	if ok && string(prev) == string(out) {
		return false
	}
	r.dryLast[t.cfg.Destination] = append([]byte(nil), out...)
	onDisk, err := os.ReadFile(t.cfg.Destination)
	if err != nil {
		onDisk = nil
	}
	if string(onDisk) == string(out) {
		fmt.Fprintf(r.stdout, "== %s: unchanged\n", t.cfg.Destination)
		return false
	}
	diff, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: diffLines(string(onDisk)), B: diffLines(string(out)),
		FromFile: t.cfg.Destination, ToFile: t.cfg.Destination + " (would be written)", Context: 3,
	})
	fmt.Fprintf(r.stdout, "== %s\n%s", t.cfg.Destination, diff)
	if !strings.HasSuffix(diff, "\n") {
		fmt.Fprintln(r.stdout)
	}
	return true
}

// cmdRun is one command to run after a pass, for the templates named.
type cmdRun struct {
	cmd     string
	list    []string // the argv of a command list, else nil
	timeout time.Duration
	names   []string
}

// argv is how the command runs: a list as its argv, a string by
// commandArgv.
func (c *cmdRun) argv() []string {
	if c.list != nil {
		return c.list
	}
	return commandArgv(c.cmd)
}

// runCommands runs the pass's commands in order, each once. Their output
// goes to templater's stdout and stderr, and their environment has
// consul-template's CONSUL_* additions. A failure is logged and counted;
// with -fail-fast it is exit 4 at once; under -once the pass's other
// commands still run and then it is exit 14, as consul-template runs every
// command of the pass before it reports their errors.
func (r *runner) runCommands(ctx context.Context, cmds []*cmdRun) error {
	var failed []error
	blank := false
	for _, c := range cmds {
		if r.cfg.Dry {
			continue // consul-template runs no command in dry mode
		}
		if r.cfg.Diff {
			fmt.Fprintf(r.stdout, "would run: %s   (for %s)\n", c.cmd, strings.Join(c.names, ", "))
			continue
		}
		if strings.TrimSpace(c.cmd) == "" {
			// Nothing to run, ever: consul-template fails on it after the
			// render and the pass's other commands ("failed parsing
			// command": exit 14), in -once and daemon mode alike, and so
			// does templater.
			failed = append(failed, fmt.Errorf("template %s: command %q is blank: nothing to run", strings.Join(c.names, ", "), c.cmd))
			blank = true
			continue
		}
		r.m.commandRuns.WithLabelValues(c.cmd).Inc()
		if c.timeout == 0 {
			// command_timeout (or exec { timeout }) = "0s": started and not
			// waited for, as consul-template's child.Start does without a
			// timeout; a failure is logged, never fatal, and -once may end
			// before the command does.
			// The logger and environment of now: a reload may replace
			// them while the command runs.
			go func(c *cmdRun, log *slog.Logger, env []string) {
				out, err := runArgv(context.Background(), r.reaper, c.argv(), noTimeout, env, r.stdin, r.stdout, r.stderr)
				if err != nil {
					r.m.commandFails.WithLabelValues(c.cmd).Inc()
					log.Error("command failed (run in the background: timeout 0)", "command", c.cmd, "templates", strings.Join(c.names, ","), "err", err, "output", strings.TrimSpace(out))
				}
			}(c, r.log, r.childEnv)
			continue
		}
		// The command's output goes to templater's stdout and stderr, as
		// consul-template's does (manager/runner.go: Stdout: r.outStream).
		out, err := runArgv(ctx, r.reaper, c.argv(), c.timeout, r.childEnv, r.stdin, r.stdout, r.stderr)
		if err != nil {
			r.m.commandFails.WithLabelValues(c.cmd).Inc()
			if r.cfg.FailFast {
				// Fatal: the exit's one line says it (its output went to
				// our stdout and stderr already).
				return &errExit{code: exitCommand, err: fmt.Errorf("command %q failed: %w", c.cmd, err)}
			}
			if r.cfg.Once || blank {
				failed = append(failed, fmt.Errorf("command %q failed: %w", c.cmd, err))
				continue
			}
			r.log.Error("command failed", "command", c.cmd, "templates", strings.Join(c.names, ","), "err", err, "output", strings.TrimSpace(out))
			continue
		}
		r.log.Debug("command ran", "command", c.cmd)
	}
	switch len(failed) {
	case 0:
		return nil
	case 1:
		return &errExit{code: exitRunner, err: failed[0]} // consul-template's -once: the runner error
	default:
		return &errExit{code: exitRunner, err: fmt.Errorf("%w (and %d more commands failed)", failed[0], len(failed)-1)}
	}
}

// noTimeout is the timeout of a command that is not waited for.
const noTimeout = time.Duration(1<<63 - 1)

// output writes (or, with -dry/-diff, prints) one template's output and
// reports whether the destination changed. A destination that cannot be
// written before it ever was is fatal, exit 14, as consul-template's write
// error (which is fatal always); a check that fails under -once exits 3.
// Otherwise a failed write or check is logged and counted and the old file
// stays (README, differences).
func (r *runner) output(ctx context.Context, t *tmpl, out []byte) (bool, error) {
	switch {
	case r.cfg.Dry:
		return r.dryPrint(t, out), nil
	case r.cfg.Diff:
		return r.dryRun(t, out), nil
	}
	wrote, err := install(ctx, t.cfg, out, r.reaper, r.log.Warn)
	if err == nil {
		t.installed = true
		return wrote, nil
	}
	isCheck := errors.As(err, new(*checkError))
	if r.cfg.Once || !isCheck && !t.installed {
		// Fatal: the exit's one line says it.
		code := exitRunner
		if isCheck {
			r.m.checkFailures.WithLabelValues(t.name).Inc()
			code = exitRender
		} else {
			r.m.renderErrors.WithLabelValues(t.name).Inc()
		}
		return false, &errExit{code: code, err: fmt.Errorf("template %s: %w", t.name, err)}
	}
	var ce *checkError
	if errors.As(err, &ce) {
		r.m.checkFailures.WithLabelValues(t.name).Inc()
		r.log.Error("check rejected the new file; old file kept, no command run", "template", t.name, "destination", t.cfg.Destination, "check", ce.cmd, "err", ce.err, "output", strings.TrimSpace(ce.output))
	} else {
		r.m.renderErrors.WithLabelValues(t.name).Inc()
		r.log.Error("cannot write destination; old file kept", "template", t.name, "err", err)
	}
	return false, nil
}

// diffLines splits s into lines that keep their "\n"; unlike
// difflib.SplitLines it adds no empty line after a final newline (which made
// the hunk header count one line too many).
func diffLines(s string) []string {
	if s == "" {
		return nil
	}
	l := strings.SplitAfter(s, "\n")
	if l[len(l)-1] == "" {
		l = l[:len(l)-1]
	} else {
		l[len(l)-1] += "\n\\ No newline at end of file\n"
	}
	return l
}

// dryPrint is consul-template's -dry: when the output differs from the file
// on disk, "> DEST" and the contents go to stdout and nothing is written
// (renderer/renderer.go Render).
func (r *runner) dryPrint(t *tmpl, out []byte) bool {
	if prev, ok := r.dryLast[t.cfg.Destination]; ok && string(prev) == string(out) {
		return false
	}
	r.dryLast[t.cfg.Destination] = append([]byte(nil), out...)
	if onDisk, err := os.ReadFile(t.cfg.Destination); err == nil && string(onDisk) == string(out) {
		// The same bytes with another owner than user/group ask for:
		// consul-template would write it again, so it prints it.
		if need, _ := chownNeeded(t.cfg.Destination, t.cfg); !need {
			return false
		}
	}
	fmt.Fprintf(r.stdout, "> %s\n%s", t.cfg.Destination, out)
	return true
}

// onceExec is the end of -once: with an -exec command, the child is started
// now, waited for, and templater exits with its code, as consul-template
// does (manager/runner.go Start: once mode waits for the child).
func (r *runner) onceExec(ctx context.Context) error {
	e := r.cfg.Exec
	if e == nil || r.cfg.Dry || r.cfg.Diff {
		return nil
	}
	if err := r.startChild(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case <-r.childCh:
	}
	ex := r.child.Exit()
	r.child = nil
	if ex.Success() {
		return nil
	}
	return &errExit{code: ex.ExitCode(), err: fmt.Errorf("exec child %s", ex)}
}

// manageChild starts the -exec child once every template is complete, and
// reloads (signal) or restarts it when files changed after that.
func (r *runner) manageChild(ctx context.Context, anyChanged bool) error {
	e := r.cfg.Exec
	if e == nil || len(e.Argv) == 0 || r.cfg.Dry || r.cfg.Diff || r.cfg.Once {
		return nil
	}
	if r.child == nil {
		if !r.allComplete() {
			return nil
		}
		return r.startChild()
	}
	if !anyChanged {
		return nil
	}
	// consul-template waits for the splay before a reload and before a
	// restart's kill (child/child.go reload, kill).
	if err := supervisor.Splay(ctx, e.Splay); err != nil {
		return nil
	}
	if e.ReloadSignal != "" {
		sig, _ := parseConfigSignal(e.ReloadSignal)
		r.log.Info("sending reload signal to exec child", "signal", supervisor.SignalName(sig))
		// The program, or the whole group of a command of several words,
		// as consul-template signals it (child/child.go signal).
		if err := r.child.Reload(sig); err != nil {
			r.log.Warn("reload signal failed", "err", err)
		}
		return nil
	}
	r.log.Info("restarting exec child: its templates changed")
	r.stopChild()
	return r.startChild()
}

func (r *runner) startChild() error {
	e := r.cfg.Exec
	argv, group, err := execArgv(e.Argv)
	if err != nil {
		// A blank command ("  "): consul-template fails to start it once
		// the templates are rendered ("failed parsing command"), exit 14.
		return &errExit{code: exitRunner, err: fmt.Errorf("-exec %q: %w", e.Command, err)}
	}
	// consul-template's default exec kill signal is SIGINT
	// (config/exec.go DefaultExecKillSignal); SIGNULL sends none, and the
	// child is killed after the kill timeout (child/child.go kill).
	ks := syscall.SIGINT
	if e.KillSignal != "" {
		ks, _ = parseConfigSignal(e.KillSignal)
	}
	stdout, _ := r.stdout.(*os.File)
	stderr, _ := r.stderr.(*os.File)
	// Where signals go, as consul-template's child package sends them
	// (v0.41.1 child/child.go signal and kill; manager/runner.go sets
	// Setpgid for sh -c subshells only): to the whole process group of a
	// command consul-template runs under sh -c (every string of several
	// words, so also one templater splits into plain words), else to the
	// program alone. A stop waits for that process only and SIGKILLs the
	// same target after the kill timeout (ChildOnly): what the program
	// left running in the background is neither signalled nor waited for.
	c, err := supervisor.Start(supervisor.Config{Argv: argv, Env: e.Env.environ(r.childEnv), KillSignal: ks, NoKillSignal: ks == 0, KillTimeout: e.KillTimeout,
		Log: r.log, Reaper: r.reaper, Stdin: r.stdin, Stdout: stdout, Stderr: stderr, ShellWrapper: group, ChildOnly: true})
	if err != nil {
		return &errExit{code: exitRunner, err: fmt.Errorf("-exec %q: %w", e.Command, err)}
	}
	r.child = c
	ch := make(chan struct{})
	r.childCh = ch
	go func() {
		<-c.Done()
		close(ch)
	}()
	r.log.Info("started exec child", "command", e.Command, "pid", c.Pid())
	return nil
}

func (r *runner) stopChild() {
	if r.child == nil {
		return
	}
	ex := r.child.Stop()
	r.log.Info("exec child stopped", "exit", ex.String())
	r.child = nil
	r.childCh = nil
}

// shellSyntax are the characters that need a shell to mean what they say.
const shellSyntax = "\n|&;<>()$`\\\"'*?[]#~{}="

// execArgv turns the exec command as written into the argv: a list is the
// argv; one string with shell syntax runs under sh -c, as consul-template
// runs every string of several words (child/command-prep.go CommandPrep);
// one string of plain words (the first no shell word) is split into the
// argv and run without a shell,
// so that signals reach the program itself (consul-template's sh -c wrapper
// eats them: hashicorp/consul-template#1557). group reports a string of
// several words: consul-template signals its whole process group (the sh -c
// wrapper's), and so does templater, whether it runs under sh -c or split.
func execArgv(cmd []string) (argv []string, group bool, err error) {
	switch {
	case len(cmd) == 1 && len(strings.Fields(cmd[0])) > 1 && !strings.ContainsAny(cmd[0], shellSyntax) && !supervisor.ShellWord(strings.Fields(cmd[0])[0]):
		return strings.Fields(cmd[0]), true, nil
	case len(cmd) == 1 && len(strings.Fields(cmd[0])) > 1:
		sh, err := exec.LookPath("sh")
		if err != nil {
			sh = "/bin/sh"
		}
		return []string{sh, "-c", cmd[0]}, true, nil
	case len(cmd) >= 1 && strings.TrimSpace(cmd[0]) != "":
		return cmd, false, nil
	}
	return nil, false, errors.New("blank: nothing to run")
}

// environ is the child's environment: templater's (or nothing, when
// pristine), filtered by the allow and deny globs, then extra (consul-
// template's CONSUL_* variables) and the custom NAME=VALUE entries
// (consul-template config/env.go Env).
func (e execEnv) environ(extra []string) []string {
	custom := append(append([]string{}, extra...), e.Custom...)
	if e.Pristine {
		return custom
	}
	match := func(k string, globs []string) bool {
		for _, g := range globs {
			if ok, _ := filepath.Match(g, k); ok {
				return true
			}
		}
		return false
	}
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if len(e.Allow) > 0 && !match(k, e.Allow) {
			continue
		}
		if match(k, e.Deny) {
			continue
		}
		out = append(out, kv)
	}
	return append(out, custom...)
}

// health is the /health answer: failing watches make it degraded while
// every destination holds its last good render (failed before), and the
// query layer's probe tells a cut-off agent, whose watches hang without an
// error.
func (r *runner) health() error {
	st := r.liveStore.Load()
	f, since := st.failing()
	if len(f) == 0 {
		// A cut-off host: the watches hang without an error.
		if down, since, err := st.env.q.Down(); down && r.allRendered.Load() {
			return telemetry.Degraded("the Consul agent has reached no server since %s (%s): %v; serving the last good files",
				since.UTC().Format(time.RFC3339), time.Since(since).Round(time.Second), err)
		}
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
		// Every destination holds its last good render: degraded, not
		// failed.
		return telemetry.Degraded("%s; serving the last good files", msg)
	}
	return errors.New(msg)
}
