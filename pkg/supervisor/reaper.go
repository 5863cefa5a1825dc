package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Reaper collects zombie processes that are not the program's own children
// started through this package. A process running as PID 1 (in a container)
// inherits every orphan, and nobody else will wait for them.
//
// Children started with Config.Reaper set are registered before they can
// exit, so the Reaper never steals their exit status from their Child.
type Reaper struct {
	log *slog.Logger
	mu  sync.Mutex
	own map[int]bool
}

// NewReaper returns a Reaper; call Run to start reaping.
func NewReaper(log *slog.Logger) *Reaper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reaper{log: log, own: map[int]bool{}}
}

// NeedReaper reports whether this process should reap orphans (it is PID 1).
func NeedReaper() bool { return os.Getpid() == 1 }

func (r *Reaper) startOwned(start func() (*os.Process, error)) (*os.Process, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := start()
	if err == nil {
		r.own[p.Pid] = true
	}
	return p, err
}

func (r *Reaper) disown(pid int) {
	r.mu.Lock()
	delete(r.own, pid)
	r.mu.Unlock()
}

// Run reaps on every SIGCHLD (and every second, in case one was coalesced)
// until ctx is done.
func (r *Reaper) Run(ctx context.Context) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGCHLD)
	defer signal.Stop(ch)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		r.ReapOnce()
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-t.C:
		}
	}
}

// ReapOnce waits for every exited child that is not registered as owned and
// returns how many it reaped.
func (r *Reaper) ReapOnce() int {
	n := 0
	for _, pid := range ChildPIDs(os.Getpid()) {
		r.mu.Lock()
		if r.own[pid] {
			r.mu.Unlock()
			continue
		}
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		r.mu.Unlock()
		if err != nil && !errors.Is(err, syscall.ECHILD) {
			r.log.Debug("reap failed", "pid", pid, "err", err)
			continue
		}
		if got == pid {
			n++
			r.log.Debug("reaped orphan", "pid", pid)
		}
	}
	return n
}

// ChildPIDs lists the children of process pid from /proc (the children
// files of each of its threads; Linux 3.5+, CONFIG_PROC_CHILDREN), or nil
// when pid is gone.
func ChildPIDs(pid int) []int {
	files, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(s); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// RunCmd runs cmd (Start and Wait) registered as owned, so that a Reaper
// running beside it never takes its exit status. A nil Reaper just runs it.
// It is for commands whose output the caller captures through exec.Cmd.
func (r *Reaper) RunCmd(cmd *exec.Cmd) error {
	if r == nil {
		return cmd.Run()
	}
	r.mu.Lock()
	err := cmd.Start()
	if err == nil {
		r.own[cmd.Process.Pid] = true
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	defer r.disown(cmd.Process.Pid)
	return cmd.Wait()
}
