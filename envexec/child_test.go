package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childMain: __child OUTDIR MODE [ARG]. It writes its environment to
// OUTDIR/env.PID (NUL-separated), its argv to OUTDIR/args.PID and appends
// "start PID" to OUTDIR/events. Modes: "exit N" exits with N; "hold N" logs
// "ready PID" once it catches signals, then logs each signal as "<name> PID"
// and exits N on SIGTERM or SIGINT; "deaf" logs SIGTERM and SIGINT and goes
// on; "stubborn" ignores them.
func childMain(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: __child OUTDIR exit|hold N")
		return 2
	}
	dir, mode := args[0], args[1]
	code, _ := strconv.Atoi(args[2])
	pid := os.Getpid()
	writeAtomic(filepath.Join(dir, fmt.Sprintf("env.%d", pid)), strings.Join(os.Environ(), "\x00"))
	writeAtomic(filepath.Join(dir, fmt.Sprintf("args.%d", pid)), strings.Join(args[3:], "\x00"))
	event(dir, "start %d", pid)
	if mode == "exit" {
		return code
	}
	if mode == "deaf" {
		// Logs every SIGTERM/SIGINT and keeps running: only SIGKILL ends it.
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		event(dir, "ready %d", pid)
		for s := range sigs {
			if s == syscall.SIGTERM {
				event(dir, "term %d", pid)
			} else {
				event(dir, "int %d", pid)
			}
		}
	}
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
		for {
			time.Sleep(time.Hour)
		}
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)
	event(dir, "ready %d", pid)
	for s := range sigs {
		sig := s.(syscall.Signal)
		switch sig {
		case syscall.SIGTERM:
			event(dir, "term %d", pid)
			return code
		case syscall.SIGINT:
			event(dir, "int %d", pid)
			return code
		default:
			event(dir, "%s %d", strings.ToLower(strings.TrimPrefix(sigName(sig), "SIG")), pid)
		}
	}
	return code
}

func sigName(s syscall.Signal) string {
	switch s {
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	}
	return s.String()
}

func writeAtomic(path, content string) {
	tmp := path + ".tmp"
	_ = os.WriteFile(tmp, []byte(content), 0o644)
	_ = os.Rename(tmp, path)
}

func event(dir, format string, args ...any) {
	f, err := os.OpenFile(filepath.Join(dir, "events"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, format+"\n", args...)
	f.Close()
}

// childArgs is the command line of the recording child.
func childArgs(dir, mode string, code int, extra ...string) []string {
	self, _ := os.Executable()
	return append([]string{"--", self, "__child", dir, mode, strconv.Itoa(code)}, extra...)
}

// childDir is a directory for a recording child's files. At the end of the
// test every child that recorded itself there and still runs is killed (a
// failed test can leave one behind: envexec killed with SIGKILL cannot stop
// its child's process group).
func childDir(t *testing.T) string {
	dir := t.TempDir()
	t.Cleanup(func() {
		for _, pid := range starts(dir) {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), dir) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return dir
}

// events reads the child's event log.
func events(dir string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, "events"))
	return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
}

func starts(dir string) []int {
	var pids []int
	for _, e := range events(dir) {
		if pid, ok := strings.CutPrefix(e, "start_"); ok {
			n, _ := strconv.Atoi(pid)
			pids = append(pids, n)
		}
	}
	return pids
}

// childEnvOf reads the environment the child with pid was given.
func childEnvOf(t *testing.T, dir string, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("env.%d", pid)))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// lastEnv is the environment of the most recently started child.
func lastEnv(t *testing.T, dir string) map[string]string {
	t.Helper()
	s := starts(dir)
	if len(s) == 0 {
		t.Fatal("the child never started")
	}
	return childEnvOf(t, dir, s[len(s)-1])
}
