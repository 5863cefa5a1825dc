package supervisor

import (
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// IsShellWrapper reports whether argv is "sh -c SCRIPT ...": a shell that
// runs the user's command, which may not exec it, so that a signal for the
// command must go to the shell's whole process group to reach it.
func IsShellWrapper(argv []string) bool {
	return len(argv) >= 3 && filepath.Base(argv[0]) == "sh" && argv[1] == "-c"
}

// deliver sends sig where Forward and Reload send it: the child process, or
// its whole group for a sh -c wrapper. A child that has exited gets nothing.
func (c *Child) deliver(sig syscall.Signal) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	if c.shell {
		return c.SignalGroup(sig)
	}
	return c.Signal(sig)
}

// Forward passes on a signal the program received: to the child process, or
// to its whole group when the child is a sh -c wrapper (see the package
// doc). SIGURG and SIGCHLD are not forwarded (Forwardable). A forwarded
// SIGINT or SIGTERM also starts the grace period: if the child still runs
// KillTimeout later, its process group gets SIGKILL. Only the first one
// starts it; later ones are forwarded without extending it. The error is
// the kill(2) failure, if any; a child that has exited is not an error.
func (c *Child) Forward(sig syscall.Signal) error {
	return c.forward(sig, sig == syscall.SIGINT || sig == syscall.SIGTERM)
}

// ForwardStop forwards sig as Forward does and starts the grace period
// whatever the signal: for a signal the program's peer treats as a stop
// when it forwards it (consul-template child/child.go Signal: the exec kill
// signal, which envconsul forwards, kills the child with KillTimeout and
// then SIGKILL).
func (c *Child) ForwardStop(sig syscall.Signal) error { return c.forward(sig, true) }

// forward delivers sig when Forwardable and, with stop, starts the grace
// period.
func (c *Child) forward(sig syscall.Signal, stop bool) error {
	if !Forwardable(sig) {
		return nil
	}
	c.log.Debug("forwarding signal", "pid", c.proc.Pid, "signal", SignalName(sig), "group", c.shell, "stop", stop)
	err := c.deliver(sig)
	if stop {
		c.startGrace()
	}
	return err
}

// startGrace arms, once per child, the SIGKILL that follows a forwarded
// SIGINT/SIGTERM (or ForwardStop's signal) after KillTimeout.
func (c *Child) startGrace() {
	c.graceMu.Lock()
	defer c.graceMu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	if c.grace != nil {
		return
	}
	c.grace = time.AfterFunc(c.cfg.KillTimeout, func() {
		select {
		case <-c.done:
			return
		default:
		}
		if c.cfg.ChildOnly {
			c.log.Warn("child still running after the forwarded signal and its grace period; sending SIGKILL",
				"pid", c.proc.Pid, "grace", c.cfg.KillTimeout, "group", c.shell)
			_ = c.deliver(syscall.SIGKILL)
			return
		}
		c.log.Warn("child still running after the forwarded signal and its grace period; sending SIGKILL to its process group",
			"pid", c.proc.Pid, "grace", c.cfg.KillTimeout)
		_ = c.SignalGroup(syscall.SIGKILL)
	})
}

// Reload sends the reload (or change) signal as Forward does, to the child
// process or a sh -c wrapper's whole group, without a grace period:
// consul-template child/child.go reload. Call Splay first when one is set.
func (c *Child) Reload(sig syscall.Signal) error {
	c.log.Debug("reload signal", "pid", c.proc.Pid, "signal", SignalName(sig), "group", c.shell)
	return c.deliver(sig)
}

// NotifyAll relays every signal to ch, as signal.Notify(ch) without a list
// does, but SIGURG: the Go runtime sends that one to its own threads to
// preempt goroutines, many times a second while busy (hundreds during a
// child's stop), and os/signal drops a signal that finds ch full, so
// SIGURG would push out the kill or reload signal a user sends.
func NotifyAll(ch chan<- os.Signal) {
	signal.Notify(ch)
	signal.Reset(syscall.SIGURG)
}
