package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
)

// count is how many events of the child's log equal e.
func count(dir, e string) int {
	n := 0
	for _, x := range events(dir) {
		if x == e {
			n++
		}
	}
	return n
}

// TestForwardedTermOneKillTimeout: after a forwarded SIGTERM a command that
// ignores it gets SIGKILL once -kill-timeout is over, without a second kill
// signal and a second grace period. The child logs every SIGTERM it gets:
// exactly one means the grace was not started twice. The time to SIGKILL is
// logged and only checked from below (it cannot come before the timeout).
func TestForwardedTermOneKillTimeout(t *testing.T) {
	a := consultest.Require(t, agent)
	n := ns(t)
	put(t, a.Client(), n+"/V", "1")
	const grace = 2 * time.Second
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-kill-timeout", grace.String()}, childArgs(dir, "deaf", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	pid := starts(dir)[0]
	// The child logs its start before it installs its handler: wait until
	// it is there (a SIGTERM before would kill it).
	waitReady(t, dir, pid)
	sent := time.Now()
	p.signal(syscall.SIGTERM)
	code := p.wait(60 * time.Second)
	took := time.Since(sent)
	t.Logf("SIGTERM to exit: %s with -kill-timeout %s", took.Round(time.Millisecond), grace)
	if code != 255 {
		t.Errorf("exit %d, want 255 (the command killed)\n%s", code, p.stderr)
	}
	if got := count(dir, fmt.Sprintf("term_%d", pid)); got != 1 {
		t.Errorf("the command got SIGTERM %d times, want 1 (one forwarded signal, one grace period): %v", got, events(dir))
	}
	if took < grace {
		t.Errorf("SIGKILL after %s, before -kill-timeout %s", took, grace)
	}
}

// waitReady waits until the child pid catches signals.
func waitReady(t *testing.T, dir string, pid int) {
	t.Helper()
	eventually.True(t, 10*time.Second, "the child's signal handlers", func() bool { return contains(events(dir), fmt.Sprintf("ready_%d", pid)) })
}

// TestKillAndReloadSignals follows envconsul's signal handling (cli.go,
// CLI.Run; defaults in config.go: DefaultKillSignal SIGINT,
// DefaultReloadSignal SIGHUP): the kill signal stops the command with the
// exec kill signal and ends envexec with exit 12 (envconsul's
// ExitCodeInterrupt); the reload signal stops the command and starts again
// with the configuration read anew; an empty -kill-signal/-reload-signal
// listens for none, so the signal goes to the command.
func TestKillAndReloadSignals(t *testing.T) {
	a := consultest.Require(t, agent)
	n := ns(t)
	put(t, a.Client(), n+"/V", "1")
	hold := func(t *testing.T, args ...string) (*proc, string, int) {
		dir := childDir(t)
		p := startEnvexec(t, a.HTTPAddr(), nil, append(append([]string{"-prefix", n}, args...), childArgs(dir, "hold", 7)...)...)
		eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
		pid := starts(dir)[0]
		waitReady(t, dir, pid)
		return p, dir, pid
	}

	// The kill signal: envexec ends with exit 12, the command stopped with
	// the exec kill signal, and the kill signal not forwarded to it.
	for _, c := range []struct {
		name string
		args []string
		send syscall.Signal
		// stop and kill name the exec kill signal and the kill signal as
		// the child logs them (term, int, usr1).
		stop, kill string
	}{
		{"default kill signal SIGINT", []string{"-exec-kill-signal", "SIGTERM"}, syscall.SIGINT, "term", "int"},
		{"-kill-signal SIGUSR1", []string{"-kill-signal", "SIGUSR1", "-exec-kill-signal", "SIGINT"}, syscall.SIGUSR1, "int", "usr1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, dir, pid := hold(t, c.args...)
			p.signal(c.send)
			if code := p.wait(30 * time.Second); code != exitInterrupted {
				t.Errorf("exit %d, want %d\n%s", code, exitInterrupted, p.stderr)
			}
			if !contains(events(dir), fmt.Sprintf("%s_%d", c.stop, pid)) || contains(events(dir), fmt.Sprintf("%s_%d", c.kill, pid)) {
				t.Errorf("want the command stopped with the exec kill signal (%s), the kill signal (%s) not forwarded: %v", c.stop, c.kill, events(dir))
			}
		})
	}
	// SIGNULL is consul-template's name for "no signal" (signals/signals.go,
	// SignalLookup), which envconsul's -kill-signal and -reload-signal take.
	for _, none := range []string{"", "SIGNULL"} {
		t.Run("-kill-signal "+none+": SIGINT goes to the command", func(t *testing.T) {
			p, dir, pid := hold(t, "-kill-signal", none)
			p.signal(syscall.SIGINT)
			if code := p.wait(30 * time.Second); code != 7 {
				t.Errorf("exit %d, want the command's 7\n%s", code, p.stderr)
			}
			if !contains(events(dir), fmt.Sprintf("int_%d", pid)) {
				t.Errorf("SIGINT not forwarded: %v", events(dir))
			}
		})
	}
	t.Run("default reload signal SIGHUP", func(t *testing.T) {
		p, dir, pid := hold(t)
		p.signal(syscall.SIGHUP)
		eventually.True(t, 20*time.Second, "a new command after the reload", func() bool { return len(starts(dir)) == 2 })
		if !contains(events(dir), fmt.Sprintf("int_%d", pid)) || contains(events(dir), fmt.Sprintf("hup_%d", pid)) {
			t.Errorf("want the command stopped with SIGINT (the default exec kill signal) for the reload, SIGHUP not forwarded: %v", events(dir))
		}
		if lastEnv(t, dir)["V"] != "1" {
			t.Errorf("after the reload V=%q", lastEnv(t, dir)["V"])
		}
		// The new command logs its start before it catches signals.
		waitReady(t, dir, starts(dir)[1])
		p.signal(syscall.SIGTERM)
		if code := p.wait(30 * time.Second); code != 7 {
			t.Errorf("exit %d after the reload, want the command's 7\n%s", code, p.stderr)
		}
	})
	for _, none := range []string{"", "signull"} {
		t.Run("-reload-signal "+none+": SIGHUP goes to the command", func(t *testing.T) {
			p, dir, pid := hold(t, "-reload-signal", none)
			p.signal(syscall.SIGHUP)
			eventually.True(t, 10*time.Second, "forwarded SIGHUP", func() bool { return contains(events(dir), fmt.Sprintf("hup_%d", pid)) })
			if len(starts(dir)) != 1 {
				t.Errorf("restarted: %v", events(dir))
			}
			p.signal(syscall.SIGTERM)
			p.wait(30 * time.Second)
		})
	}
}

// TestSplayBeforeStopAndReload: with -splay, envconsul waits a random splay
// before stopping its command on its kill or reload signal, and before
// forwarding the exec reload signal (runner.go Stop, consul-template
// v0.41.1 child/child.go kill(false) and reload()). envconsul cannot run
// here; the rule is read there. envexec logs the delay it drew; the test
// checks the act came no sooner.
func TestSplayBeforeStopAndReload(t *testing.T) {
	a := consultest.Require(t, agent)
	n := ns(t)
	put(t, a.Client(), n+"/V", "1")
	drawn := func(t *testing.T, p *proc) time.Duration {
		t.Helper()
		var d time.Duration
		eventually.True(t, 20*time.Second, "the splay logged", func() bool {
			m := regexp.MustCompile(`waiting for the splay before [^"]*".* splay=(\S+)`).FindStringSubmatch(p.stderr.String())
			if m == nil {
				return false
			}
			var err error
			d, err = time.ParseDuration(m[1])
			return err == nil
		})
		return d
	}
	for _, c := range []struct {
		name string
		args []string
		send syscall.Signal
		// done reports that the act the splay delays happened.
		done func(dir string, pid int) bool
	}{
		{"kill signal", nil, syscall.SIGINT, func(dir string, pid int) bool { return contains(events(dir), fmt.Sprintf("int_%d", pid)) }},
		{"reload signal", []string{"-reload-signal", "SIGHUP"}, syscall.SIGHUP, func(dir string, _ int) bool { return len(starts(dir)) == 2 }},
		{"exec reload signal", []string{"-exec-reload-signal", "SIGUSR1"}, syscall.SIGUSR1, func(dir string, pid int) bool { return contains(events(dir), fmt.Sprintf("usr1_%d", pid)) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := childDir(t)
			args := append([]string{"-prefix", n, "-splay", "2s", "-log-level", "info"}, c.args...)
			p := startEnvexec(t, a.HTTPAddr(), nil, append(args, childArgs(dir, "hold", 7)...)...)
			// Stop, not Signal: envexec may exit between a liveness check
			// and the SIGKILL (it does after the kill signal's splay).
			defer p.run.Stop(syscall.SIGKILL, 10*time.Second)
			eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
			pid := starts(dir)[0]
			waitReady(t, dir, pid)
			t0 := time.Now()
			p.signal(c.send)
			d := drawn(t, p)
			eventually.True(t, 30*time.Second, "the act after the splay", func() bool { return c.done(dir, pid) })
			if took := time.Since(t0); took < d {
				t.Errorf("acted %s after the signal, before the splay drawn, %s\n%s", took, d, p.stderr)
			}
		})
	}
}

// TestNoExecKillSignal: an exec kill signal of SIGNULL or "" (flag or
// exec.kill_signal) sends the command nothing on a restart; it gets
// -kill-timeout to exit, then SIGKILL, as envconsul (consul-template
// v0.41.1 child/child.go kill: signal skips SIGNULL, then the wait, then
// os.Kill; signals/mapstructure.go decodes "" to SIGNULL). The child logs
// every SIGTERM and SIGINT it gets and only SIGKILL ends it. The time to
// the restart is checked from below only.
func TestNoExecKillSignal(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client()
	n := ns(t)
	put(t, c, n+"/V", "0")
	const grace = time.Second
	conf := filepath.Join(t.TempDir(), "exec.hcl")
	if err := os.WriteFile(conf, []byte(`exec { kill_signal = "" }`), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, how := range [][]string{
		{"-exec-kill-signal", "SIGNULL"},
		{"-exec-kill-signal", ""},
		{"-config", conf},
	} {
		t.Run(strings.Join(how, "="), func(t *testing.T) {
			dir := childDir(t)
			args := append(append([]string{"-prefix", n, "-kill-timeout", grace.String()}, how...), childArgs(dir, "deaf", 0)...)
			p := startEnvexec(t, a.HTTPAddr(), nil, args...)
			eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
			first := starts(dir)[0]
			waitReady(t, dir, first)
			changed := time.Now()
			put(t, c, n+"/V", fmt.Sprint(i+1))
			eventually.True(t, 30*time.Second, "restart", func() bool { return len(starts(dir)) == 2 })
			took := time.Since(changed)
			t.Logf("change to restart: %s with -kill-timeout %s", took.Round(time.Millisecond), grace)
			for _, e := range []string{"term", "int"} {
				if contains(events(dir), fmt.Sprintf("%s_%d", e, first)) {
					t.Errorf("the command got SIG%s, want no signal: %v", strings.ToUpper(e), events(dir))
				}
			}
			if took < grace {
				t.Errorf("restarted after %s, before -kill-timeout %s", took, grace)
			}
			if !strings.Contains(p.stderr.String(), "SIGKILL") {
				t.Errorf("no SIGKILL in the log:\n%s", p.stderr)
			}
			waitReady(t, dir, starts(dir)[1])
			p.signal(syscall.SIGTERM) // forwarded; the deaf child is killed after -kill-timeout
			p.wait(30 * time.Second)
		})
	}
}

// TestKillSignalDuringSlowRestart: the kill signal sent while a restart
// waits for a job the command left behind (a background `sleep`, which a
// non-interactive shell runs with SIGINT ignored) still stops envexec
// with exit 12, as envconsul's (cli.go Run reads signals apart from the
// runner). The Go runtime's own SIGURG, hundreds a second during such a
// wait, once filled the signal channel and the kill signal was dropped.
func TestKillSignalDuringSlowRestart(t *testing.T) {
	a := consultest.Require(t, agent)
	n := ns(t)
	put(t, a.Client(), n+"/X", "one")
	dir := t.TempDir()
	script := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$X\" >> "+filepath.Join(dir, "starts")+"\ntrap 'exit 0' INT\nsleep 30 &\nwait\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := startEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-kill-timeout", "8s", script)
	startsOf := func() string { b, _ := os.ReadFile(filepath.Join(dir, "starts")); return string(b) }
	eventually.True(t, 20*time.Second, "first start", func() bool { return startsOf() == "one\n" })
	put(t, a.Client(), n+"/X", "two")
	// The restart has begun once the old command is gone; its sleep holds
	// the restart for -kill-timeout.
	time.Sleep(time.Second)
	p.signal(syscall.SIGINT)
	if code := p.wait(60 * time.Second); code != exitInterrupted {
		t.Errorf("exit %d after the kill signal during a restart, want %d; starts %q\n%s", code, exitInterrupted, startsOf(), p.stderr)
	}
}

// lines are the lines of s.
func lines(s string) []string { return strings.Split(s, "\n") }

// TestFixedSignalLines: envconsul prints "Reloading configuration..." when
// its reload signal comes and "Cleaning up..." when its kill signal comes,
// on its error stream and whatever the log level (cli.go Run, before it
// stops its runner), also while it waits for Consul; envexec prints the
// same lines. Another signal that ends the wait (SIGTERM) prints neither.
func TestFixedSignalLines(t *testing.T) {
	a := consultest.Require(t, agent)
	n := ns(t)
	put(t, a.Client(), n+"/V", "1")
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-log-level", "error"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	waitReady(t, dir, starts(dir)[0])
	p.signal(syscall.SIGHUP)
	eventually.True(t, 20*time.Second, "the start after the reload", func() bool { return len(starts(dir)) == 2 })
	waitReady(t, dir, starts(dir)[1])
	if !contains(lines(p.stderr.String()), "Reloading configuration...") {
		t.Errorf("no \"Reloading configuration...\" line after SIGHUP:\n%s", p.stderr)
	}
	p.signal(syscall.SIGINT)
	if code := p.wait(30 * time.Second); code != exitInterrupted {
		t.Errorf("exit %d, want %d\n%s", code, exitInterrupted, p.stderr)
	}
	if !contains(lines(p.stderr.String()), "Cleaning up...") {
		t.Errorf("no \"Cleaning up...\" line after SIGINT:\n%s", p.stderr)
	}

	// While waiting for Consul (nothing listens at dead).
	dead := proctest.FreeAddr(t)
	for _, tc := range []struct {
		sig  syscall.Signal
		want string
	}{{syscall.SIGINT, "Cleaning up..."}, {syscall.SIGTERM, ""}} {
		// -log-level info: the waiting line is an info line.
		p := startEnvexec(t, dead, nil, append([]string{"-prefix", n, "-log-level", "info"}, childArgs(dir, "exit", 0)...)...)
		eventually.True(t, 20*time.Second, "envexec to say it waits", func() bool {
			return strings.Contains(p.stderr.String(), "waiting for Consul before starting the command")
		})
		p.signal(tc.sig)
		if code := p.wait(30 * time.Second); code != exitInterrupted {
			t.Errorf("%s while waiting: exit %d, want %d\n%s", sigName(tc.sig), code, exitInterrupted, p.stderr)
		}
		got := contains(lines(p.stderr.String()), "Cleaning up...")
		if got != (tc.want != "") {
			t.Errorf("%s while waiting: \"Cleaning up...\" printed: %v, want %v\n%s", sigName(tc.sig), got, tc.want != "", p.stderr)
		}
	}
}
