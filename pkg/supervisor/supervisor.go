// Package supervisor runs and stops child processes for lockrun, envexec and
// templater, with one behaviour for all three:
//
//   - Start: each child in its own process group; its exit status reported
//     (Exit: code, or the signal that killed it, 128+N as shells report it).
//   - Stop (a restart, a lock loss, the program's own kill signal): the kill
//     signal to the whole group, KillTimeout for every process of it to go,
//     then SIGKILL to the group. consul-template's child.kill and consul
//     lock's killChild do the same to one process; the group is berth's, so
//     that nothing a child started outlives it. Config.ChildOnly stops as
//     consul-template does instead (templater's -exec child, and envexec's
//     default, as envconsul).
//   - Forward (a signal the program passes on): to the child process, or to
//     its whole group when the child is a "sh -c SCRIPT" wrapper, as
//     consul-template and envconsul do (child/child.go signal: the negative
//     pid when Setpgid, which manager/runner.go sets for sh -c subshells only).
//     A forwarded SIGINT or SIGTERM gives the child one KillTimeout; then its
//     group gets SIGKILL, without a second signal and a second grace. This
//     is consul lock's rule (command/lock/lock.go killChild: SIGTERM, a grace
//     period, SIGKILL) and was envexec's; lockrun used to send a second
//     SIGTERM and wait a second grace, templater never forwards SIGTERM (it
//     stops on it, templater/README.md), envconsul waits for ever.
//   - Reload (a change, -exec-reload-signal): the signal as Forward sends it,
//     without a grace; after Splay.
//   - Restart: Stop, then Start; after Splay.
//   - Splay: a uniformly random wait in [0, splay) before a reload or a
//     restart (consul-template child/child.go randomSplay).
//   - Quiescence (-wait min:max): act once no change came for min, and no
//     later than max after the first (consul-template manager/runner.go
//     quiescence).
//
// Where the three programs (or their peers) differed, the choice: the
// forwarding target is consul-template's and envconsul's (consul lock
// signals only its sh -c shell, which may die and leave the program without
// the signal, the trap of hashicorp/consul-template#1557); the grace is
// consul lock's. Which signals end the program itself stays each program's
// documented policy: lockrun forwards SIGINT/SIGTERM and exits once the
// child is gone (consul lock); envexec and templater stop on their kill
// signal (envconsul, consul-template) and templater also on SIGTERM
// (templater/README.md, differences).
//
// When the program runs as PID 1 a Reaper collects orphaned zombies.
package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config describes one child.
type Config struct {
	// Argv is the program and its arguments, as returned by Argv.
	Argv []string
	// Env is the child's environment; nil inherits the parent's.
	Env []string
	// Dir is the working directory; empty inherits.
	Dir string
	// Stdin is the child's standard input; nil gives it /dev/null.
	Stdin *os.File
	// Stdout and Stderr default to the parent's.
	Stdout, Stderr *os.File
	// KillSignal starts a stop (default SIGTERM).
	KillSignal syscall.Signal
	// NoKillSignal makes a stop send no signal at all: the child gets
	// KillTimeout to exit on its own, then its group gets SIGKILL
	// (consul-template's SIGNULL kill signal, child/child.go kill and
	// signal, which skip signal 0). KillSignal is then ignored.
	NoKillSignal bool
	// KillTimeout is the grace period before SIGKILL (default 5s).
	KillTimeout time.Duration
	// Reaper, when set, is told about the child so it never reaps it.
	Reaper *Reaper
	// Log receives the supervisor's messages; nil discards them.
	Log *slog.Logger
	// Terminal, when set, is a terminal whose foreground process group is
	// the caller's: the child's process group is made its foreground group,
	// as a shell does for a job, so that the child can read it (a background
	// group that reads its terminal is stopped by SIGTTIN). The caller gives
	// the terminal back once the child is gone.
	Terminal *os.File
	// ShellWrapper says the child is a shell running the user's command
	// (another shell than Argv's sh -c, which is recognised without it):
	// Forward and Reload then signal its whole group, as for sh -c.
	ShellWrapper bool
	// ChildOnly makes a stop treat the child as consul-template's child
	// package does (v0.41.1 child/child.go kill and signal), which
	// envconsul runs its command with: the kill signal goes where Forward
	// sends signals (the whole group of a sh -c wrapper, else the child
	// process), KillTimeout is for the child process itself to exit, and
	// only then SIGKILL goes to that same target. Processes the child left
	// in its group (a script's "&" job) are neither waited for nor killed,
	// and a forwarded stop's SIGKILL (Forward) goes to that target too.
	// Without it a stop signals and waits for the whole group.
	ChildOnly bool
}

// Exit is how a child ended.
type Exit struct {
	// Code is the exit code, or -1 when killed by a signal.
	Code int
	// Signal is the signal that killed it, or 0.
	Signal syscall.Signal
}

// ExitCode is Code, or 128+signal for a signal death, as shells report it.
func (e Exit) ExitCode() int {
	if e.Signal != 0 {
		return 128 + int(e.Signal)
	}
	return e.Code
}

// Success reports a zero exit.
func (e Exit) Success() bool { return e.Signal == 0 && e.Code == 0 }

func (e Exit) String() string {
	if e.Signal != 0 {
		return "killed by " + SignalName(e.Signal)
	}
	return fmt.Sprintf("exit code %d", e.Code)
}

// Child is a running (or finished) child process.
type Child struct {
	cfg  Config
	proc *os.Process
	log  *slog.Logger

	done chan struct{}
	exit Exit

	stopOnce sync.Once
	stopExit Exit

	// shell: the child is a "sh -c SCRIPT" wrapper; Forward and Reload
	// signal its whole group.
	shell bool
	// grace is the timer a forwarded SIGINT/SIGTERM started (Forward).
	graceMu sync.Mutex
	grace   *time.Timer
}

// Start starts the child in its own process group.
func Start(cfg Config) (*Child, error) {
	if len(cfg.Argv) == 0 {
		return nil, errors.New("no command given")
	}
	if cfg.KillSignal == 0 {
		cfg.KillSignal = syscall.SIGTERM
	}
	if cfg.KillTimeout <= 0 {
		cfg.KillTimeout = 5 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path, err := exec.LookPath(cfg.Argv[0])
	if err != nil {
		return nil, fmt.Errorf("start %q: %w", cfg.Argv[0], err)
	}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	env = lastOfEachName(env)
	stdin := cfg.Stdin
	if stdin == nil {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			return nil, fmt.Errorf("start %q: %w", cfg.Argv[0], err)
		}
		defer devnull.Close()
		stdin = devnull
	}
	stdout, stderr := cfg.Stdout, cfg.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	attr := &os.ProcAttr{
		Dir:   cfg.Dir,
		Env:   env,
		Files: []*os.File{stdin, stdout, stderr},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	if cfg.Terminal != nil {
		attr.Sys.Foreground, attr.Sys.Ctty = true, int(cfg.Terminal.Fd())
	}
	start := func() (*os.Process, error) { return os.StartProcess(path, cfg.Argv, attr) }
	var proc *os.Process
	if cfg.Reaper != nil {
		proc, err = cfg.Reaper.startOwned(start)
	} else {
		proc, err = start()
	}
	if err != nil {
		return nil, fmt.Errorf("start %q: %w", cfg.Argv[0], err)
	}
	c := &Child{cfg: cfg, proc: proc, log: log, done: make(chan struct{}), shell: cfg.ShellWrapper || IsShellWrapper(cfg.Argv)}
	log.Debug("child started", "pid", proc.Pid, "argv0", cfg.Argv[0])
	go c.wait()
	return c, nil
}

func (c *Child) wait() {
	st, err := c.proc.Wait()
	if c.cfg.Reaper != nil {
		c.cfg.Reaper.disown(c.proc.Pid)
	}
	switch {
	case err != nil:
		c.exit = Exit{Code: -1}
		c.log.Error("waiting for child failed", "pid", c.proc.Pid, "err", err)
	default:
		ws, _ := st.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			c.exit = Exit{Code: -1, Signal: ws.Signal()}
		} else {
			c.exit = Exit{Code: ws.ExitStatus()}
		}
	}
	close(c.done)
	c.graceMu.Lock()
	if c.grace != nil {
		c.grace.Stop()
	}
	c.graceMu.Unlock()
}

// Pid is the child's process ID, which is also its process group ID.
func (c *Child) Pid() int { return c.proc.Pid }

// Done is closed when the child has exited.
func (c *Child) Done() <-chan struct{} { return c.done }

// Exit is how the child ended; valid once Done is closed.
func (c *Child) Exit() Exit { <-c.done; return c.exit }

// Signal sends sig to the child process itself (as a terminal would to the
// foreground program, and as tini does by default).
func (c *Child) Signal(sig syscall.Signal) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	if err := syscall.Kill(c.proc.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to pid %d: %w", SignalName(sig), c.proc.Pid, err)
	}
	return nil
}

// SignalGroup sends sig to every process of the child's group.
func (c *Child) SignalGroup(sig syscall.Signal) error {
	if err := syscall.Kill(-c.proc.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to process group %d: %w", SignalName(sig), c.proc.Pid, err)
	}
	return nil
}

// groupAlive reports whether any live process is left in the child's group.
// Zombies do not count: they have exited and only wait for their parent (for
// orphans, PID 1, which may reap them late), and kill(2) still finds them.
func (c *Child) groupAlive() bool {
	if syscall.Kill(-c.proc.Pid, 0) != nil {
		return false
	}
	live, err := liveInGroup(c.proc.Pid)
	if err != nil {
		return true // no /proc: trust kill(2)
	}
	return live
}

// liveInGroup scans /proc for a process of group pgid that is not a zombie.
func liveInGroup(pgid int) (bool, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return false, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		if live, pg := procStat(n); live && pg == pgid {
			return true, nil
		}
	}
	return false, nil
}

// Alive reports whether process pid exists and has not exited: it is
// neither a zombie (exited, not yet waited for) nor dead (/proc/PID/stat,
// proc(5)).
func Alive(pid int) bool {
	live, _ := procStat(strconv.Itoa(pid))
	return live
}

// procStat reads /proc/PID/stat: whether the process is live (state not Z
// or X) and its process group. A process that cannot be read is not live.
func procStat(pid string) (live bool, pgrp int) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false, 0
	}
	// Fields after the command name "(...)": state ppid pgrp ...
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false, 0
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || string(f[0]) == "Z" || string(f[0]) == "X" {
		return false, 0
	}
	pg, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return false, 0
	}
	return true, pg
}

// Stop ends the child and everything in its process group: the kill signal
// to the group, up to KillTimeout for all of them to go, then SIGKILL to the
// group (with ChildOnly, the child alone: see Config). It is safe to call
// more than once and after the child exited (it then clears out processes
// the child left behind, unless ChildOnly). It returns the child's exit.
func (c *Child) Stop() Exit {
	c.stopOnce.Do(func() { c.stopExit = c.stop() })
	return c.stopExit
}

func (c *Child) stop() Exit {
	if c.cfg.ChildOnly {
		return c.stopChild()
	}
	pid := c.proc.Pid
	select {
	case <-c.done:
		if !c.groupAlive() {
			return c.exit
		}
	default:
	}
	if c.cfg.NoKillSignal {
		c.log.Debug("stopping child without a signal", "pid", pid, "grace", c.cfg.KillTimeout)
	} else {
		c.log.Debug("stopping child", "pid", pid, "signal", SignalName(c.cfg.KillSignal), "grace", c.cfg.KillTimeout)
		_ = c.SignalGroup(c.cfg.KillSignal)
	}
	deadline := time.NewTimer(c.cfg.KillTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-deadline.C:
			c.log.Warn("child did not stop within the grace period; sending SIGKILL to its process group", "pid", pid, "grace", c.cfg.KillTimeout)
			_ = c.SignalGroup(syscall.SIGKILL)
			<-c.done
			return c.exit
		case <-tick.C:
			select {
			case <-c.done:
				if !c.groupAlive() {
					return c.exit
				}
			default:
			}
		}
	}
}

// stopChild is Stop with ChildOnly: consul-template v0.41.1 child/child.go
// kill, which signals with signal (the process group only when it set
// Setpgid, for sh -c subshells), waits KillTimeout for the child process
// (cmd.Process.Wait) and SIGKILLs the same target when it is still there.
func (c *Child) stopChild() Exit {
	pid := c.proc.Pid
	select {
	case <-c.done:
		return c.exit
	default:
	}
	if c.cfg.NoKillSignal {
		c.log.Debug("stopping child without a signal", "pid", pid, "grace", c.cfg.KillTimeout, "group", c.shell)
	} else {
		c.log.Debug("stopping child", "pid", pid, "signal", SignalName(c.cfg.KillSignal), "grace", c.cfg.KillTimeout, "group", c.shell)
		_ = c.deliver(c.cfg.KillSignal)
	}
	deadline := time.NewTimer(c.cfg.KillTimeout)
	defer deadline.Stop()
	select {
	case <-c.done:
	case <-deadline.C:
		c.log.Warn("child did not stop within the grace period; sending SIGKILL", "pid", pid, "grace", c.cfg.KillTimeout, "group", c.shell)
		_ = c.deliver(syscall.SIGKILL)
		<-c.done
	}
	return c.exit
}

// Run starts a child, waits for it, and stops it when ctx is done.
func Run(ctx context.Context, cfg Config) (Exit, error) {
	c, err := Start(cfg)
	if err != nil {
		return Exit{Code: -1}, err
	}
	select {
	case <-c.Done():
		return c.Exit(), nil
	case <-ctx.Done():
		return c.Stop(), ctx.Err()
	}
}

// Prepare does ahead of time the one-time work of a program's first child
// start: Go's runtime probes pidfd support (with a throw-away clone) on the
// first process it starts or finds. Programs whose child start is latency
// critical (lockrun after acquiring a lock) call it early, in a goroutine.
func Prepare() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		_ = p.Release()
	}
}

// lastOfEachName keeps, of the entries of env with the same NAME (the text
// before the first "="), the last, in the order of those last entries;
// entries without "=" are kept as they are. This is what os/exec's Cmd does
// with duplicates (its Env documentation: "only the last value in the slice
// for each duplicate key is used"), and so what consul-template's and
// envconsul's children see when a custom variable or a -consul-token
// overrides an inherited one. os.StartProcess would pass both on, and
// getenv (and Go's os.Getenv) return the first: the inherited one.
func lastOfEachName(env []string) []string {
	seen := make(map[string]bool, len(env))
	kept := make([]string, 0, len(env))
	for i := len(env) - 1; i >= 0; i-- {
		name, _, ok := strings.Cut(env[i], "=")
		if ok {
			if seen[name] {
				continue
			}
			seen[name] = true
		}
		kept = append(kept, env[i])
	}
	slices.Reverse(kept)
	return kept
}
