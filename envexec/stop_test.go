package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/supervisor"
)

// leftovers reads the PIDs a script wrote to dir/bg (one a line) and kills
// them at the end of the test.
func leftovers(t *testing.T, dir string) func() []int {
	t.Helper()
	read := func() []int {
		b, _ := os.ReadFile(filepath.Join(dir, "bg"))
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return pids
	}
	t.Cleanup(func() {
		for _, pid := range read() {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.HasPrefix(string(b), "sleep") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return read
}

// TestStopWaitsForCommandOnly: a restart, and envexec's own stop, wait for
// the command process alone, as envconsul's child does (consul-template
// v0.41.1 child/child.go kill: the kill signal to the sh -c subshell's
// group, then cmd.Process.Wait for up to the kill timeout; SIGKILL only when
// that process is still there). A script that left an "&" job behind (a
// background job of a non-interactive sh ignores SIGINT, the default exec
// kill signal) is restarted at once, not after -kill-timeout (1h here); the
// job keeps running, as under envconsul. A command that exits by itself
// while its job runs ends envexec at once with its code. -stop-group keeps
// the whole-group stop: the job is waited for, then SIGKILLed.
func TestStopWaitsForCommandOnly(t *testing.T) {
	a, c, n := nsWith(t, "V", "1")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := childDir(t)
	bg := leftovers(t, dir)
	// One argument of several words: run with sh -c, as envconsul does.
	script := fmt.Sprintf("sleep 3600 & echo $! >> %s/bg; exec %s __child %s hold 0", dir, self, dir)
	p := startEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-kill-timeout", "1h", "-log-level", "debug", "--", script)
	eventually.True(t, 20*time.Second, "first start", func() bool { return len(starts(dir)) == 1 && len(bg()) == 1 })
	first := starts(dir)[0]
	waitReady(t, dir, first)
	put(t, c, n+"/V", "2")
	eventually.True(t, 20*time.Second, "the restart, with the first script's & job still running", func() bool { return len(starts(dir)) == 2 })
	if !contains(events(dir), fmt.Sprintf("int_%d", first)) {
		t.Errorf("the first command did not get SIGINT: %v", events(dir))
	}
	if job := bg()[0]; !supervisor.Alive(job) {
		t.Errorf("the first script's & job %d was stopped; envconsul leaves it running", job)
	}
	waitReady(t, dir, starts(dir)[1])
	p.signal(syscall.SIGINT) // envexec's kill signal
	if code := p.wait(20 * time.Second); code != exitInterrupted {
		t.Errorf("exit %d, want %d\n%s", code, exitInterrupted, p.stderr)
	}

	// The command exits by itself, its & job running: envexec exits at once.
	dir2 := childDir(t)
	bg2 := leftovers(t, dir2)
	p = startEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-kill-timeout", "1h", "--", fmt.Sprintf("sleep 3600 & echo $! >> %s/bg; exit 3", dir2))
	if code := p.wait(20 * time.Second); code != 3 {
		t.Errorf("exit %d, want the command's 3\n%s", code, p.stderr)
	}
	if len(bg2()) != 1 {
		t.Errorf("the script did not start its job")
	}

	// -stop-group: the job is part of the stop, SIGKILLed after
	// -kill-timeout.
	dir3 := childDir(t)
	bg3 := leftovers(t, dir3)
	script = fmt.Sprintf("sleep 3600 & echo $! >> %s/bg; exec %s __child %s hold 0", dir3, self, dir3)
	p = startEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-kill-timeout", "1s", "-stop-group", "--", script)
	eventually.True(t, 20*time.Second, "first start", func() bool { return len(starts(dir3)) == 1 && len(bg3()) == 1 })
	waitReady(t, dir3, starts(dir3)[0])
	put(t, c, n+"/V", "3")
	eventually.True(t, 20*time.Second, "the restart", func() bool { return len(starts(dir3)) == 2 })
	if job := bg3()[0]; supervisor.Alive(job) {
		t.Errorf("-stop-group: the first script's & job %d survived the restart", job)
	}
	waitReady(t, dir3, starts(dir3)[1])
	p.signal(syscall.SIGINT)
	if code := p.wait(20 * time.Second); code != exitInterrupted {
		t.Errorf("-stop-group: exit %d, want %d\n%s", code, exitInterrupted, p.stderr)
	}
}
