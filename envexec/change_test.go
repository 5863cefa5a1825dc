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
)

func TestChangeRestartDeleteAndUnrelated(t *testing.T) {
	a, c, n := nsWith(t, "app/PORT", "80", "app/DEBUG", "1")
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n + "/app", "-kill-timeout", "5s", "-log-level", "debug"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "first start", func() bool { return len(starts(dir)) == 1 })
	first := starts(dir)[0]
	if env := lastEnv(t, dir); env["PORT"] != "80" || env["DEBUG"] != "1" {
		t.Fatalf("first environment: PORT=%q DEBUG=%q", env["PORT"], env["DEBUG"])
	}

	// A change: the child is stopped and started with the new value.
	put(t, c, n+"/app/PORT", "81")
	eventually.True(t, 20*time.Second, "restart after a change", func() bool { return len(starts(dir)) == 2 })
	if env := lastEnv(t, dir); env["PORT"] != "81" {
		t.Fatalf("after the change PORT=%q, want 81", env["PORT"])
	}
	if !contains(events(dir), fmt.Sprintf("term_%d", first)) {
		t.Errorf("the first child was not stopped with SIGTERM: %v", events(dir))
	}

	// Changes outside the prefix (a sibling that shares its first letters,
	// another tree) do not even wake the watch; a folder key and a key that
	// cannot be a variable name wake it but change nothing: no restart.
	put(t, c, n+"/app2/PORT", "99")
	put(t, c, n+"/other", "x")
	put(t, c, n+"/app/folder/", "")
	eventually.True(t, 20*time.Second, "envexec to see the folder key", func() bool {
		return strings.Count(p.stderr.String(), "Consul changed but the environment did not") >= 1
	})
	put(t, c, n+"/app/not=a-name", "x")
	eventually.True(t, 20*time.Second, "envexec to see the invalid key", func() bool {
		return strings.Count(p.stderr.String(), "Consul changed but the environment did not") >= 2
	})
	if s := starts(dir); len(s) != 2 {
		t.Fatalf("a change that left the environment alone restarted the child: %v\n%s", events(dir), p.stderr)
	}
	// A deleted key disappears on the restart.
	del(t, c, n+"/app/DEBUG")
	eventually.True(t, 20*time.Second, "restart after a delete", func() bool { return len(starts(dir)) >= 3 })
	if s := starts(dir); len(s) != 3 {
		t.Fatalf("want exactly 3 starts, got %d: %v\n%s", len(s), events(dir), p.stderr)
	}
	env := lastEnv(t, dir)
	if _, ok := env["DEBUG"]; ok {
		t.Errorf("deleted key DEBUG still in the environment")
	}
	if env["PORT"] != "81" {
		t.Errorf("PORT=%q, want 81", env["PORT"])
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit %d, want 0\n%s", code, p.stderr)
	}
}

func TestOnChangeSignal(t *testing.T) {
	a, c, n := nsWith(t, "V", "1")
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-on-change", "signal", "-change-signal", "USR1"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "first start", func() bool { return len(starts(dir)) == 1 })
	pid := starts(dir)[0]
	put(t, c, n+"/V", "2")
	eventually.True(t, 20*time.Second, "SIGUSR1 to the child", func() bool { return contains(events(dir), fmt.Sprintf("usr1_%d", pid)) })
	put(t, c, n+"/V", "3")
	eventually.True(t, 20*time.Second, "a second SIGUSR1", func() bool {
		k := 0
		for _, e := range events(dir) {
			if e == fmt.Sprintf("usr1_%d", pid) {
				k++
			}
		}
		return k == 2
	})
	if s := starts(dir); len(s) != 1 {
		t.Errorf("the child was restarted with -on-change signal: %v", events(dir))
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)
}

func TestWaitQuiescenceAndExecFlag(t *testing.T) {
	a, c, n := nsWith(t, "V", "0")
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-wait", "1500ms:20s"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	// A burst of writes well inside the quiet period makes one restart with
	// the last value.
	for i := 1; i <= 3; i++ {
		put(t, c, n+"/V", strconv.Itoa(i))
	}
	eventually.True(t, 30*time.Second, "one restart after the burst", func() bool { return len(starts(dir)) >= 2 })
	if s := starts(dir); len(s) != 2 || childEnvOf(t, dir, s[1])["V"] != "3" {
		t.Errorf("want one restart with V=3, got %v (V=%q)", events(dir), lastEnv(t, dir)["V"])
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)

	// -exec gives the command as one string (run with sh -c).
	out := filepath.Join(dir, "exec-out")
	p = runEnvexec(t, a.HTTPAddr(), nil, "-once", "-prefix", n, "-exec", `printf '%s' "$V" > `+out)
	if b, _ := os.ReadFile(out); p.code != 0 || string(b) != "3" {
		t.Errorf("-exec: exit %d, output %q\n%s", p.code, b, p.stderr)
	}
	p = runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-exec", "true", "--", "true")
	if p.code != exitUsage || !strings.Contains(p.stderr.String(), "not both") {
		t.Errorf("-exec with arguments: exit %d %s", p.code, p.stderr)
	}
	p = runEnvexec(t, a.HTTPAddr(), nil, "-prefix", n, "-wait", "5s:1s", "--", "true")
	if p.code != exitUsage || !strings.Contains(p.stderr.String(), "-wait") {
		t.Errorf("bad -wait: exit %d %s", p.code, p.stderr)
	}
}

func TestKillSignalAndTimeout(t *testing.T) {
	a, c, n := nsWith(t, "V", "1")

	// -exec-kill-signal chooses the signal that stops the command.
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-exec-kill-signal", "SIGINT"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	first := starts(dir)[0]
	put(t, c, n+"/V", "2")
	eventually.True(t, 20*time.Second, "restart", func() bool { return len(starts(dir)) == 2 })
	if !contains(events(dir), fmt.Sprintf("int_%d", first)) {
		t.Errorf("the child was not stopped with SIGINT: %v", events(dir))
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)

	// A child that ignores the kill signal is killed after -kill-timeout.
	dir = childDir(t)
	p = startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-kill-timeout", "500ms"}, childArgs(dir, "stubborn", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	first = starts(dir)[0]
	put(t, c, n+"/V", "3")
	eventually.True(t, 20*time.Second, "restart of the stubborn child", func() bool { return len(starts(dir)) == 2 })
	if err := syscall.Kill(first, 0); err == nil {
		t.Errorf("the stubborn child %d still exists after the restart", first)
	}
	if !strings.Contains(p.stderr.String(), "SIGKILL") {
		t.Errorf("no SIGKILL in the log:\n%s", p.stderr)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit %d, want %d (the stubborn child killed)", code, 128+int(syscall.SIGKILL))
	}
}
