package supervisor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"golang.org/x/sys/unix"
)

func TestArgv(t *testing.T) {
	cases := []struct {
		args []string
		mode ShellMode
		want []string
	}{
		{[]string{"true"}, ShellAuto, []string{"true"}},
		{[]string{"restart binstore"}, ShellAuto, []string{"/bin/sh", "-c", "restart binstore"}},
		{[]string{"a|b"}, ShellAuto, []string{"/bin/sh", "-c", "a|b"}},
		{[]string{"printf", "%s|", "a b", "c"}, ShellAuto, []string{"printf", "%s|", "a b", "c"}},
		{[]string{"echo", "a", "b"}, ShellAlways, []string{"/bin/sh", "-c", "echo a b"}},
		{[]string{"restart binstore"}, ShellNever, []string{"restart binstore"}},
	}
	for _, c := range cases {
		got, err := Argv(c.args, c.mode)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Argv(%q, %d) = %q, %v; want %q", c.args, c.mode, got, err, c.want)
		}
	}
	if _, err := Argv(nil, ShellAuto); err == nil {
		t.Error("Argv(nil) gave no error")
	}
	if _, err := Argv([]string{"  "}, ShellAuto); err == nil {
		t.Error("Argv(blank) gave no error")
	}
}

func TestShellFlag(t *testing.T) {
	var f ShellFlag
	for in, want := range map[string]ShellMode{"true": ShellAlways, "false": ShellNever, "auto": ShellAuto, "1": ShellAlways} {
		if err := f.Set(in); err != nil || f.Mode != want {
			t.Errorf("Set(%q) = %v, mode %d; want %d", in, err, f.Mode, want)
		}
	}
	if err := f.Set("maybe"); err == nil {
		t.Error("Set(maybe) gave no error")
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGHUP": syscall.SIGHUP, "hup": syscall.SIGHUP, "TERM": syscall.SIGTERM, "9": syscall.SIGKILL, "sigusr1": syscall.SIGUSR1} {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"SIGNOPE", "", "0", "99", "-1"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) gave no error", bad)
		} else if bad != "" && !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseSignal(%q) error %q does not name the input", bad, err)
		}
	}
	if Forwardable(syscall.SIGURG) || Forwardable(syscall.SIGCHLD) || !Forwardable(syscall.SIGHUP) {
		t.Error("Forwardable: SIGURG and SIGCHLD must not be forwarded, SIGHUP must")
	}
}

func output(t *testing.T) (*os.File, func() string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	return f, func() string {
		b, _ := os.ReadFile(f.Name())
		return string(b)
	}
}

func TestExitCodeAndSignalDeath(t *testing.T) {
	c, err := Start(Config{Argv: []string{"/bin/sh", "-c", "exit 7"}})
	if err != nil {
		t.Fatal(err)
	}
	if ex := c.Exit(); ex.Code != 7 || ex.Signal != 0 || ex.ExitCode() != 7 {
		t.Fatalf("exit = %+v, want code 7", ex)
	}
	c, err = Start(Config{Argv: []string{"/bin/sh", "-c", "kill -USR1 $$"}})
	if err != nil {
		t.Fatal(err)
	}
	if ex := c.Exit(); ex.Signal != syscall.SIGUSR1 || ex.ExitCode() != 128+int(syscall.SIGUSR1) {
		t.Fatalf("exit = %+v, want death by SIGUSR1", ex)
	}
	if _, err := Start(Config{Argv: []string{"/nonexistent/prog"}}); err == nil || !strings.Contains(err.Error(), "/nonexistent/prog") {
		t.Fatalf("Start of a missing program: err %v, want one naming it", err)
	}
}

func TestEnvAndArgsPassedExactly(t *testing.T) {
	out, read := output(t)
	c, err := Start(Config{Argv: []string{"printf", "%s|", "a b", "c\nd", "$HOME"}, Env: []string{"X=1"}, Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	c.Exit()
	if got := read(); got != "a b|c\nd|$HOME|" {
		t.Fatalf("output %q", got)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

// The stop reaches a grandchild that ignores SIGTERM: SIGKILL to the group
// after the grace period.
func TestStopKillsWholeGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "gc")
	script := `(trap "" TERM; exec sleep 300) & echo $! > ` + pidFile + `; wait`
	c, err := Start(Config{Argv: []string{"/bin/sh", "-c", script}, KillTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	gc := readPID(t, pidFile)
	if !Alive(gc) {
		t.Fatal("grandchild not running")
	}
	ex := c.Stop()
	if ex.Success() {
		t.Fatalf("stopped child reported success: %+v", ex)
	}
	deadline := time.Now().Add(5 * time.Second)
	for Alive(gc) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if Alive(gc) {
		t.Fatal("grandchild survived Stop")
	}
	// Stop again is harmless and returns the same exit.
	if again := c.Stop(); again != ex {
		t.Fatalf("second Stop = %+v, first %+v", again, ex)
	}
}

// After the child exits, Stop clears out what it left in its group.
func TestStopAfterExitClearsLeftovers(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "gc")
	c, err := Start(Config{Argv: []string{"/bin/sh", "-c", "sleep 300 & echo $! > " + pidFile}, KillTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	gc := readPID(t, pidFile)
	if ex := c.Exit(); !ex.Success() {
		t.Fatalf("child exit %+v", ex)
	}
	if !Alive(gc) {
		t.Fatal("leftover not running before Stop")
	}
	c.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for Alive(gc) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if Alive(gc) {
		t.Fatal("leftover survived Stop")
	}
}

func TestSignalReachesChild(t *testing.T) {
	out, read := output(t)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	c, err := Start(Config{Argv: []string{"/bin/sh", "-c", `trap 'echo got-usr1; exit 0' USR1; touch ` + ready + `; while :; do sleep 0.05; done`}, Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	waitFile(t, ready)
	if err := c.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitExit(t, c, 10*time.Second, "after SIGUSR1")
	if !strings.Contains(read(), "got-usr1") {
		t.Fatalf("child output %q", read())
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	ex, err := Run(ctx, Config{Argv: []string{"sleep", "300"}, KillTimeout: time.Second})
	if err == nil || ex.Signal != syscall.SIGTERM {
		t.Fatalf("Run after cancel = %+v, %v; want SIGTERM death and an error", ex, err)
	}
}

// The reaper is tested as a child subreaper (PR_SET_CHILD_SUBREAPER), which
// receives orphans exactly as PID 1 does, without being PID 1.
func TestReaperCollectsOrphansButNotOwnChildren(t *testing.T) {
	r := subreaper(t)

	// An owned child that exits at once: its Child must still see its status.
	owned, err := Start(Config{Argv: []string{"/bin/sh", "-c", "exit 3"}, Reaper: r})
	if err != nil {
		t.Fatal(err)
	}
	if ex := owned.Exit(); ex.Code != 3 {
		t.Fatalf("owned child exit %+v: the reaper stole its status", ex)
	}

	// A child whose own child outlives it: the grandchild is reparented to us.
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "orphan")
	c, err := Start(Config{Argv: []string{"/bin/sh", "-c", "(sleep 0.2; exit 0) & echo $! > " + pidFile}, Reaper: r})
	if err != nil {
		t.Fatal(err)
	}
	orphan := readPID(t, pidFile)
	c.Exit()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(orphan)); os.IsNotExist(err) {
			return // reaped: no zombie left
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("orphan %d was not reaped", orphan)
}

// RunCmd keeps a captured-output command's status from a running reaper.
func TestReaperRunCmdKeepsStatus(t *testing.T) {
	r := subreaper(t)
	for i := 0; i < 20; i++ {
		cmd := exec.Command("/bin/sh", "-c", "echo out; exit 4")
		var buf strings.Builder
		cmd.Stdout = &buf
		err := r.RunCmd(cmd)
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 4 || buf.String() != "out\n" {
			t.Fatalf("run %d: err %v, output %q; want exit 4 and the output", i, err, buf.String())
		}
	}
}

// A nil Reaper just runs the command. (No Reaper may run meanwhile: it
// would take the status.)
func TestNilReaperRunCmd(t *testing.T) {
	var nilReaper *Reaper
	if err := nilReaper.RunCmd(exec.Command("true")); err != nil {
		t.Fatalf("nil reaper: %v", err)
	}
}

// subreaper makes the test process a child subreaper for the test and runs
// a Reaper in it until the test ends; it waits for the Reaper to stop, so
// that it cannot take the exit status of a later test's children.
func subreaper(t *testing.T) *Reaper {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	r := NewReaper(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// TestAlive: this process is alive; an exited child is not, whether still
// a zombie (not yet waited for) or reaped.
func TestAlive(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Fatal("Alive(own pid) = false")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	eventually.True(t, 10*time.Second, "the exited, unreaped child not alive", func() bool { return !Alive(pid) })
	_ = cmd.Wait()
	if Alive(pid) {
		t.Fatal("a reaped child is alive")
	}
}

// ChildOnly: Stop is consul-template's child.kill (child/child.go): the
// kill signal to a sh -c wrapper's group, then KillTimeout for the child
// process alone; a job it left in the group (which ignores the signal) is
// neither waited for nor killed. Not a timing test: KillTimeout is an hour,
// so a Stop that waited for the group would not return.
func TestStopChildOnlyLeavesLeftovers(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "gc")
	script := `(trap "" TERM; exec sleep 300) & echo $! > ` + pidFile + `; wait`
	c, err := Start(Config{Argv: []string{"/bin/sh", "-c", script}, KillTimeout: time.Hour, ChildOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	gc := readPID(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(gc, syscall.SIGKILL) })
	done := make(chan Exit, 1)
	go func() { done <- c.Stop() }()
	select {
	case ex := <-done:
		if ex.Signal != syscall.SIGTERM {
			t.Errorf("child exit %+v, want killed by the SIGTERM sent to its group", ex)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Stop waited for the leftover job")
	}
	if !Alive(gc) {
		t.Error("the leftover job was killed; ChildOnly leaves it")
	}
	// The child gone, Stop again returns at once.
	if ex := c.Stop(); ex.Signal != syscall.SIGTERM {
		t.Errorf("second Stop = %+v", ex)
	}
}
