// Package proctest runs a program under test as a child process, the way
// the end-to-end tests of the programs drive it: its output captured while
// it runs, its exit awaited and its exit code read, signals sent to it, its
// /metrics scraped, a free loopback address for it to listen on, the tools
// a test needs found (or the test skipped, or failed with CI=true), and the
// program of the package under test built once (Build).
package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
)

// StopGrace is how long a program still running at the end of its test has
// between SIGTERM and SIGKILL.
const StopGrace = 10 * time.Second

// waitDelay bounds how long Wait waits for the output pipes after the
// program exited: a child it left behind (after a failed test) may keep them
// open.
const waitDelay = 2 * time.Second

// Proc is a program started by Start: running until Done is closed.
type Proc struct {
	// Cmd is the started command.
	Cmd *exec.Cmd
	// Stdout and Stderr hold what the program wrote so far. With
	// Options.Combined both are the same buffer, holding both streams in the
	// order they were written.
	Stdout, Stderr *eventually.Buffer

	done chan struct{}
	code int
	err  error
}

// Options tune Start.
type Options struct {
	// Combined captures stdout and stderr in one buffer (a log read as a
	// whole).
	Combined bool
}

// Start starts cmd (built but not started; its Stdout and Stderr must be
// unset) with its output captured, and makes sure it is gone at the end of
// t: a program still running then gets SIGTERM and, StopGrace later,
// SIGKILL. When t failed, the output is logged. A command that cannot start
// fails t.
func Start(t testing.TB, cmd *exec.Cmd, opts Options) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, Stdout: &eventually.Buffer{}, done: make(chan struct{})}
	p.Stderr = p.Stdout
	if !opts.Combined {
		p.Stderr = &eventually.Buffer{}
	}
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		p.code = ExitCode(cmd.ProcessState)
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.Alive() {
			p.stop(syscall.SIGTERM, StopGrace)
		}
		if p.Alive() {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			name := filepath.Base(cmd.Path)
			if opts.Combined {
				t.Logf("%s output:\n%s", name, p.Stdout)
			} else {
				t.Logf("%s stdout:\n%s\n%s stderr:\n%s", name, p.Stdout, name, p.Stderr)
			}
		}
	})
	return p
}

// ExitCode is a finished process's exit code as a shell reports it: its
// own code, or 128+N when signal N killed it; -1 for a nil state.
func ExitCode(st *os.ProcessState) int {
	if st == nil {
		return -1
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// Done is closed once the program has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Alive reports whether the program is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Code waits for the program to exit and returns its exit code (see
// ExitCode).
func (p *Proc) Code() int {
	<-p.done
	return p.code
}

// Err waits for the program to exit and returns what os/exec's Wait
// returned: nil after exit 0, an *exec.ExitError after another exit, or
// exec.ErrWaitDelay when something the program left behind kept its output
// open.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Exited waits up to timeout for the program to exit and reports whether it
// did.
func (p *Proc) Exited(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Wait waits up to timeout for the program to exit and returns its exit
// code; a program still running then fails t, showing its stderr.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	if !p.Exited(timeout) {
		t.Fatalf("%s still running after %s\nstderr:\n%s", filepath.Base(p.Cmd.Path), timeout, p.Stderr)
	}
	return p.code
}

// handlerWait bounds how long Signal and Stop wait for the program to
// install its handler for the signal they send.
const handlerWait = 5 * time.Second

// Catches reports whether the program has a handler installed for sig: bit
// sig-1 of the SigCgt mask in /proc/PID/status (Linux, proc(5)). It is
// false once the program has exited or when the mask cannot be read.
func (p *Proc) Catches(sig syscall.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err == nil && m&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// awaitHandler waits up to handlerWait until the running program catches
// sig, so a signal sent right after start is not met by the default action
// of a program (ours or a peer) still setting up: that is a race of the
// test, not a behaviour under test. Signals that cannot be caught, and a
// program that never installs a handler, are sent after at most the bound.
func (p *Proc) awaitHandler(sig syscall.Signal) {
	if sig == syscall.SIGKILL || sig == syscall.SIGSTOP || sig == syscall.SIGCONT {
		return
	}
	deadline := time.Now().Add(handlerWait)
	for p.Alive() && !p.Catches(sig) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// Signal sends sig to the program, once it has a handler for sig (see
// awaitHandler); a signal that cannot be sent fails t.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	p.awaitHandler(sig)
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s to %s: %v", sig, filepath.Base(p.Cmd.Path), err)
	}
}

// Stop sends sig, once the program has a handler for it (see
// awaitHandler), and waits up to timeout for the program to exit; it
// returns the exit code, or -1 when the program is still running.
func (p *Proc) Stop(sig syscall.Signal, timeout time.Duration) int {
	p.awaitHandler(sig)
	return p.stop(sig, timeout)
}

// stop is Stop without waiting for a handler.
func (p *Proc) stop(sig syscall.Signal, timeout time.Duration) int {
	_ = p.Cmd.Process.Signal(sig)
	if !p.Exited(timeout) {
		return -1
	}
	return p.code
}
