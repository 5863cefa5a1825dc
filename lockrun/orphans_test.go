package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
)

// TestGrandchildrenUnlikeConsulLock runs consul lock and lockrun on a
// command string whose shell starts a process of its own, and looks, once
// the tool has exited and so released the lock, whether that process still
// runs. consul lock signals the shell alone (command/lock killChild and
// agent ForwardSignals signal the child's pid) and waits for the shell alone
// (os/exec Cmd.Wait): the grandchild runs on without the lock, reported as
// hashicorp/consul#2022 (lock lost) and #873. lockrun stops the child's whole
// process group (README differences table). Both tools run here, so the row
// stays true: should consul lock change, the test says so.
func TestGrandchildrenUnlikeConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	cases := []struct {
		name   string
		script string // %s: the file the grandchild writes its pid to
		sig    syscall.Signal
	}{
		// SIGTERM to the holder while the shell waits for its grandchild.
		{"term-while-running", `sh -c 'echo $$ > %s; exec sleep 60'; true`, syscall.SIGTERM},
		// The shell exits, leaving a background job behind.
		{"left-in-background", `sh -c 'echo $$ > %s; exec sleep 60' & sleep 60`, 0},
	}
	run := func(t *testing.T, bin string, pre []string, script string, sig syscall.Signal) (alive bool) {
		pidFile := t.TempDir() + "/pid"
		args := append(pre, "test/grandchild", fmt.Sprintf(script, pidFile))
		p := proctest.Start(t, command(a, bin, args...), proctest.Options{})
		pid := 0
		eventually.True(t, 20*time.Second, "the grandchild's pid", func() bool {
			b, _ := os.ReadFile(pidFile)
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			return pid > 0
		})
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		if sig != 0 {
			p.Signal(t, sig)
		} else {
			// The shell's own sleep is the child's end: kill it alone, the
			// shell then exits (the shell is the grandchild's parent).
			shell := parent(t, pid)
			killShellSleep(t, shell, pid)
		}
		if code := p.Wait(t, 30*time.Second); code != 0 {
			t.Fatalf("%s: exit %d", bin, code)
		}
		return running(pid)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !run(t, a.Bin, []string{"lock"}, c.script, c.sig) {
				t.Errorf("consul lock stopped the grandchild: the README's row on grandchildren is out of date")
			}
			if run(t, lockrunPath(t), nil, c.script, c.sig) {
				t.Errorf("lockrun exited with the grandchild still running, without the lock")
			}
		})
	}
}

// killShellSleep kills the shell's children other than keep (its own
// sleep), so that the shell exits.
func killShellSleep(t *testing.T, shell, keep int) {
	t.Helper()
	eventually.True(t, 20*time.Second, "the shell's sleep", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", shell, shell))
		for _, f := range strings.Fields(string(b)) {
			if pid, _ := strconv.Atoi(f); pid != keep && pid > 0 {
				return syscall.Kill(pid, syscall.SIGKILL) == nil
			}
		}
		return false
	})
}

// parent is pid's parent process.
func parent(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	return ppid
}

// running reports whether pid is a live process (not gone, not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}
