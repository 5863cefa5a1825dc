package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/proctest"
)

// procState is the state letter of process pid in /proc ("T": stopped), or
// "" when it is gone.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// stoppedWithin reports whether process pid is stopped within d.
func stoppedWithin(pid int, d time.Duration) bool {
	for end := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if procState(pid) == "T" {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// TestStopSignalNamesTheStop: stopSignal tells a kill -STOP (not the
// terminal's) from a job-control stop, reports each stop once, and leaves a
// running child and an exit alone.
func TestStopSignalNamesTheStop(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	// A group of its own, with us (its parent) outside it: not orphaned,
	// where SIGTSTP, SIGTTIN and SIGTTOU would be discarded.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	if got := stopSignal(pid); got != 0 {
		t.Fatalf("running child: stopSignal %v, want 0", got)
	}
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU} {
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		if !stoppedWithin(pid, 5*time.Second) {
			t.Fatalf("%v did not stop the child", sig)
		}
		got := syscall.Signal(0)
		for end := time.Now().Add(5 * time.Second); got == 0 && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			got = stopSignal(pid)
		}
		if got != sig {
			t.Errorf("stopped by %v: stopSignal %v", sig, got)
		}
		if again := stopSignal(pid); again != 0 {
			t.Errorf("stopped by %v: the stop reported twice (%v)", sig, again)
		}
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(5 * time.Second); procState(pid) == "T" && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	_ = cmd.Process.Kill()
	time.Sleep(100 * time.Millisecond)
	if got := stopSignal(pid); got != 0 {
		t.Errorf("killed child: stopSignal %v, want 0", got)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the exit was not left for Wait: %v", err)
	}
}

// TestChildSIGSTOPOnTerminalAsConsulLock: in an interactive shell, a
// SIGSTOP sent to the command from elsewhere (kill -STOP from another
// terminal) is not a job-control stop: consul lock, whose child shares its
// process group, goes on waiting for its child; the shell says nothing and
// the job stays in the foreground; a SIGCONT from there continues the child.
// lockrun, which follows Ctrl-Z (TestCtrlZAsConsulLock), stopped itself on
// any stop of its child, so the shell printed "Stopped". Ctrl-Z after the
// SIGCONT still stops the job, and fg finishes it.
func TestChildSIGSTOPOnTerminalAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	type seen struct {
		toolStopped, shellStopped bool // after the SIGSTOP to the child
		ctrlZStopped, finished    bool // after the SIGCONT: Ctrl-Z, then fg
	}
	observe := func(lockCmd string) seen {
		dir := t.TempDir()
		tm := proctest.OnTerminal(t, `PS1='$ ' exec bash --norc --noprofile -i`, env(a))
		tm.Type(lockCmd + fmt.Sprintf(` test/sigstop-tty 'echo rea''dy $PPID $$ e''nd; while [ ! -e %s/go ]; do sleep 0.05; done; echo fin''ished'`+"\n", dir))
		var r seen
		if !tm.WaitFor(" end", 10*time.Second) {
			t.Logf("%s on a terminal printed %q", lockCmd, tm.Output())
			return r
		}
		tool, child := killAtEnd(t, tm)
		if child == 0 {
			t.Fatalf("%s: no pids in %q", lockCmd, tm.Output())
		}
		if err := syscall.Kill(child, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		if !stoppedWithin(child, 5*time.Second) {
			t.Fatalf("%s: SIGSTOP did not stop the child", lockCmd)
		}
		r.toolStopped = stoppedWithin(tool, time.Second)
		r.shellStopped = tm.WaitFor("Stopped", 500*time.Millisecond)
		if r.toolStopped || r.shellStopped {
			// Continue it as fg would, for the rest of the run.
			tm.Type("fg\n")
		}
		if err := syscall.Kill(child, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(5 * time.Second); procState(child) == "T" && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		before := strings.Count(tm.Output(), "Stopped")
		tm.Type("\x1a")
		for end := time.Now().Add(10 * time.Second); !r.ctrlZStopped && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			r.ctrlZStopped = strings.Count(tm.Output(), "Stopped") > before
		}
		if r.ctrlZStopped {
			tm.Type("fg\n")
		}
		if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		r.finished = tm.WaitFor("finished", 10*time.Second)
		t.Logf("%s on a terminal printed %q", lockCmd, tm.Output())
		return r
	}
	asConsulLock(t, a, "SIGSTOP to the child, SIGCONT, Ctrl-Z and fg on a terminal", observe)
}

// TestChildSIGSTOPAsConsulLock: without a terminal (a script, cron), a
// child stopped by SIGSTOP is waited for by consul lock, which holds the
// lock meanwhile and stays running; a SIGCONT continues the child, which
// runs to its end. lockrun does the same, and it is not stopped either for
// a SIGTSTP to the child (a job-control stop only matters on a terminal).
func TestChildSIGSTOPAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	type seen struct {
		toolStopped, heldWhileStopped, finished bool
		code                                    int
	}
	observe := func(bin string, args ...string) seen {
		dir := t.TempDir()
		script := fmt.Sprintf(`echo $PPID $$ > %[1]s/pids; while [ ! -e %[1]s/go ]; do sleep 0.05; done; echo finished > %[1]s/out`, dir)
		cmd := command(a, bin, append(args, "test/sigstop", script)...)
		// As a script's job: its own group, so that consul lock's (which
		// its child shares) is not orphaned, where SIGTSTP is discarded.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill() }()
		var tool, child int
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if b, err := os.ReadFile(dir + "/pids"); err == nil && strings.HasSuffix(string(b), "\n") {
				_, _ = fmt.Sscan(string(b), &tool, &child)
				break
			}
		}
		if child == 0 {
			t.Fatalf("%s %q: the command did not start", bin, args)
		}
		t.Cleanup(func() { _ = syscall.Kill(-child, syscall.SIGKILL); _ = syscall.Kill(child, syscall.SIGKILL) })
		var r seen
		for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGTSTP} {
			if err := syscall.Kill(child, sig); err != nil {
				t.Fatal(err)
			}
			if !stoppedWithin(child, 5*time.Second) {
				t.Fatalf("%s: %v did not stop the child", bin, sig)
			}
			r.toolStopped = r.toolStopped || stoppedWithin(tool, time.Second)
			pair, _, err := a.Client().KV().Get("test/sigstop/.lock", nil)
			r.heldWhileStopped = err == nil && pair != nil && pair.Session != ""
			if err := syscall.Kill(child, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if r.toolStopped {
				// Continued for the rest of the run (a SIGCONT to lockrun
				// is also forwarded to its child: not sent otherwise).
				_ = syscall.Kill(tool, syscall.SIGCONT)
			}
			for end := time.Now().Add(5 * time.Second); procState(child) == "T" && time.Now().Before(end); {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if err := os.WriteFile(dir+"/go", nil, 0o644); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if ee, ok := err.(*exec.ExitError); ok {
				r.code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not finish after the child was continued", bin)
		}
		b, _ := os.ReadFile(dir + "/out")
		r.finished = string(b) == "finished\n"
		return r
	}
	want := observe(a.Bin, "lock")
	if got := observe(lockrunPath(t)); got != want {
		t.Errorf("SIGSTOP, then SIGTSTP to the child, each continued, without a terminal: lockrun %+v; consul lock %+v", got, want)
	}
}

// TestCtrlZPastTheLease: a job stopped with Ctrl-Z renews nothing
// meanwhile (lockrun is stopped too, as consul lock is). At fg after the
// lease ran out, lockrun asks Consul's leader: when the lock is still ours
// (the session outlived the stop) the lease starts again and the command
// goes on; when it is not (here the session is destroyed during the stop,
// as its TTL would end it), another holder may have the lock, so the
// command's group gets SIGKILL while still stopped, without running again,
// and lockrun exits 13 (consul lock continues its child, which runs without
// the lock until consul lock sees it lost: README differences).
func TestCtrlZPastTheLease(t *testing.T) {
	a := consultest.Require(t, agent)
	for _, sessionEnds := range []bool{false, true} {
		t.Run(fmt.Sprintf("session ends %v", sessionEnds), func(t *testing.T) {
			dir := t.TempDir()
			ran := filepath.Join(dir, "ran")
			tm := proctest.OnTerminal(t, `PS1='$ ' exec bash --norc --noprofile -i`, env(a))
			// -lock-delay 5s, -kill-timeout 1s: a lease of 3s. The command
			// notes a SIGTERM too: after the loss it may not run, even for that.
			tm.Type(lockrunPath(t) + fmt.Sprintf(` -lock-delay 5s -kill-timeout 1s test/ctrlz-lease 'trap "echo term >> %[1]s" TERM; echo rea''dy $$ $LOCKRUN_SESSION e''nd; while [ ! -e %[2]s/go ]; do echo tick >> %[1]s; sleep 0.05; done'`, ran, dir) + "\n")
			if !tm.WaitFor(" end", 10*time.Second) {
				t.Fatalf("lockrun did not start its command: %q", tm.Output())
			}
			f := strings.Fields(tm.Output()[strings.LastIndex(tm.Output(), "ready "):])
			if child, err := strconv.Atoi(f[1]); err == nil {
				t.Cleanup(func() { _ = syscall.Kill(-child, syscall.SIGKILL) })
			}
			tm.Type("\x1a")
			if !tm.WaitFor("Stopped", 10*time.Second) {
				t.Fatalf("Ctrl-Z did not stop the job: %q", tm.Output())
			}
			if sessionEnds {
				if _, err := a.Client().Session().Destroy(f[2], nil); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(4500 * time.Millisecond)
			before, _ := os.ReadFile(ran)
			tm.Type("fg\n")
			if !sessionEnds {
				time.Sleep(time.Second)
				if after, _ := os.ReadFile(ran); len(after) <= len(before) {
					t.Errorf("fg with the lock still ours: the command did not go on: %q", tm.Output())
				}
				if err := os.WriteFile(dir+"/go", nil, 0o644); err != nil {
					t.Fatal(err)
				}
				tm.Type("echo r''c=$?\n")
				if !tm.WaitFor("rc=0", 10*time.Second) {
					t.Errorf("fg with the lock still ours: want exit 0: %q", tm.Output())
				}
				return
			}
			tm.Type("echo r''c=$?\n")
			if !tm.WaitFor("rc=13", 10*time.Second) {
				t.Errorf("fg after the lock was lost: want exit 13: %q", tm.Output())
			}
			if after, _ := os.ReadFile(ran); string(after) != string(before) {
				t.Errorf("the command ran again after the lock was lost: it wrote %q", after[len(before):])
			}
		})
	}
}

// killAtEnd reads the last "ready TOOL CHILD" line the command printed on
// the terminal (the tool's pid, $PPID, and the child's, $$, which leads
// its process group under lockrun) and kills both at the end of the test:
// they are not in the shell's group, which tm.Stop kills alone. A line
// that cannot be read gives zeros and no kill.
func killAtEnd(t *testing.T, tm *proctest.Terminal) (tool, child int) {
	t.Helper()
	out := tm.Output()
	i := strings.LastIndex(out, "ready ")
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(out[i:])
	if len(f) < 3 {
		return 0, 0
	}
	tool, err1 := strconv.Atoi(f[1])
	child, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || tool <= 0 || child <= 0 {
		return 0, 0
	}
	t.Cleanup(func() {
		_ = syscall.Kill(tool, syscall.SIGKILL)
		_ = syscall.Kill(-child, syscall.SIGKILL)
		_ = syscall.Kill(child, syscall.SIGKILL)
	})
	return tool, child
}

// TestCtrlZWhileTheChildWaitsInVforkAsConsulLock: Ctrl-Z while the command
// waits in vfork(2) for a child that has not exec'd yet (dash, Debian's
// sh, starts commands with vfork: a fork-heavy script is often there)
// stops that child, and the kernel keeps the command in vfork, never
// stopped, until the child is continued. consul lock, in the command's
// process group, is stopped by the terminal itself: the prompt comes back,
// and fg finishes the job. lockrun, which waited for its child's stop
// report, left the terminal hanging (Ctrl-C too: the stopped child holds
// it). Made here without a race: perl's clone(CLONE_VFORK) (a copy of
// memory, as fork, but the parent waits as for vfork) whose child blocks
// opening a FIFO before it exits.
func TestCtrlZWhileTheChildWaitsInVforkAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	clone := map[string]int{"amd64": 56, "arm64": 220}[runtime.GOARCH]
	if clone == 0 {
		t.Skipf("no clone(2) number for %s", runtime.GOARCH)
	}
	perl, err := exec.LookPath("perl")
	if err != nil {
		t.Fatalf("perl (Debian's perl-base, always installed) is needed: %v", err)
	}
	type seen struct{ ctrlZStopped, finished bool }
	observe := func(lockCmd string) seen {
		dir := t.TempDir()
		fifo := filepath.Join(dir, "fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		// CLONE_VFORK|SIGCHLD; the child blocks opening the FIFO for
		// reading until the test opens it for writing, then exits.
		script := fmt.Sprintf(`use POSIX; $| = 1;
print "ready ", getppid(), " $$ end\n";
my $p = syscall(%d, 0x4000 | 17, 0, 0, 0, 0);
die "clone: $!" if $p < 0;
if ($p == 0) { open(my $f, "<", $ARGV[0]); POSIX::_exit(0); }
waitpid($p, 0);
print "finished\n";
`, clone)
		pl := filepath.Join(dir, "vfork.pl")
		if err := os.WriteFile(pl, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		tm := proctest.OnTerminal(t, `PS1='$ ' exec bash --norc --noprofile -i`, env(a))
		// A key of its own per run (-count): a holder killed at the end
		// may leave the lock-delay on it.
		tm.Type(fmt.Sprintf("%s test/vfork-tty/%s %s %s %s\n", lockCmd, filepath.Base(filepath.Dir(dir)), perl, pl, fifo))
		var r seen
		if !tm.WaitFor(" end", 10*time.Second) {
			t.Fatalf("%s on a terminal printed %q", lockCmd, tm.Output())
		}
		_, child := killAtEnd(t, tm)
		if child == 0 {
			t.Fatalf("%s: no pids in %q", lockCmd, tm.Output())
		}
		for end := time.Now().Add(10 * time.Second); procState(child) != "D"; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s: the command did not wait in vfork (state %q)", lockCmd, procState(child))
			}
		}
		tm.Type("\x1a")
		if r.ctrlZStopped = tm.WaitFor("Stopped", 10*time.Second); r.ctrlZStopped {
			tm.Type("fg\n")
		}
		// The FIFO's reader, once continued, lets the command finish.
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				_ = f.Close()
				break
			}
		}
		r.finished = tm.WaitFor("finished", 10*time.Second)
		t.Logf("%s on a terminal printed %q", lockCmd, tm.Output())
		return r
	}
	asConsulLock(t, a, "Ctrl-Z while the command waits in vfork, then fg", observe)
}

// asConsulLock runs observe with consul lock, then with lockrun (each as
// the command line typed at the start), and reports what differs, named
// by what.
func asConsulLock[T comparable](t *testing.T, a *consultest.Agent, what string, observe func(lockCmd string) T) {
	t.Helper()
	want := observe(a.Bin + " lock")
	if got := observe(lockrunPath(t)); got != want {
		t.Errorf("%s: lockrun %+v; consul lock %+v", what, got, want)
	}
}
