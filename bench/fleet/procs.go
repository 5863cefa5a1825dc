package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// procs starts child processes and stops every one of them; children also
// die with the driver (Pdeathsig), so nothing outlives a killed run.
type procs struct {
	mu   sync.Mutex
	dir  string
	cmds []*exec.Cmd
	done map[*exec.Cmd]chan struct{}
}

func newProcs(dir string) *procs { return &procs{dir: dir, done: map[*exec.Cmd]chan struct{}{}} }

// start runs bin with args, output to <dir>/<name>.log, in a clean
// environment (no CONSUL_* variables of the caller leak in).
func (p *procs) start(name, bin string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(p.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + p.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ch := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(ch) }()
	p.mu.Lock()
	p.cmds = append(p.cmds, cmd)
	p.done[cmd] = ch
	p.mu.Unlock()
	return cmd, nil
}

// stop sends SIGINT to each command, then SIGKILL to those still running
// after 10 s, and waits for all of them.
func (p *procs) stop(cmds ...*exec.Cmd) {
	for _, c := range cmds {
		_ = c.Process.Signal(syscall.SIGINT)
	}
	deadline := time.After(10 * time.Second)
	for _, c := range cmds {
		p.mu.Lock()
		ch := p.done[c]
		p.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			_ = c.Process.Kill()
			<-ch
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := p.cmds[:0]
	for _, c := range p.cmds {
		if !contains(cmds, c) {
			keep = append(keep, c)
		}
	}
	p.cmds = keep
}

func contains(cmds []*exec.Cmd, c *exec.Cmd) bool {
	for _, x := range cmds {
		if x == c {
			return true
		}
	}
	return false
}

// stopAll stops every command still running, last started first.
func (p *procs) stopAll() {
	p.mu.Lock()
	cmds := append([]*exec.Cmd(nil), p.cmds...)
	p.mu.Unlock()
	for i := len(cmds) - 1; i >= 0; i-- {
		p.stop(cmds[i])
	}
}
