package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/berth/berth/pkg/supervisor"
)

// startExecBoth starts both tools as daemons with args, each in its own
// folder holding files, child.sh among them made executable, and returns
// them and their folders (peer first). stop runs for each at the test's
// end, to stop the tool and whatever its child left running in dir.
func startExecBoth(t *testing.T, files map[string]string, args []string, stop func(d *proctest.Proc, dir string)) (ds []*proctest.Proc, dirs []string) {
	t.Helper()
	for _, tl := range tools(t) {
		dir := toolDir(t, tl.name, files)
		if err := os.Chmod(filepath.Join(dir, "child.sh"), 0o755); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, tl.bin, dir, args...)
		t.Cleanup(func() { stop(d, dir) })
		ds = append(ds, d)
		dirs = append(dirs, dir)
	}
	return ds, dirs
}

// TestConformExecKillSignal: the signal that stops the -exec child for a
// restart (its template changed, no reload signal), run with both tools
// against the same key: by default SIGINT; with SIGNULL, on the command
// line or as kill_signal = "" in an exec block, none (the child is killed
// after the kill timeout); a named signal is sent as named. What the child
// records must be the same for both.
func TestConformExecKillSignal(t *testing.T) {
	c := seedConform(t)
	const key = "ct/exec-kill"
	child := `#!/bin/sh
trap 'echo INT >> rec; exit 0' INT
trap 'echo TERM >> rec; exit 0' TERM
echo started >> rec
echo $$ >> pids
while :; do sleep 0.1; done
`
	for i, tc := range []struct {
		name string
		args []string
		cfg  string
	}{
		{name: "default"},
		{name: "-exec-kill-signal SIGNULL", args: []string{"-exec-kill-signal", "SIGNULL"}},
		{name: "-exec-kill-signal SIGTERM", args: []string{"-exec-kill-signal", "SIGTERM"}},
		{name: "exec kill_signal empty", cfg: "exec {\n  command = \"./child.sh\"\n  kill_signal = \"\"\n  kill_timeout = \"1s\"\n}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			put(t, c, key, fmt.Sprint(i, "a"))
			files := map[string]string{"in.tmpl": `{{ key "` + key + `" }}`, "child.sh": child}
			args := []string{"-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out"}
			if tc.cfg != "" {
				files["ct.hcl"] = tc.cfg
				args = append(args, "-config", "ct.hcl")
			} else {
				args = append(append(args, "-exec", "./child.sh", "-exec-kill-timeout", "1s"), tc.args...)
			}
			_, dirs := startExecBoth(t, files, args, func(d *proctest.Proc, dir string) {
				d.Stop(syscall.SIGINT, daemonStopWait)
				for _, f := range strings.Fields(readFile(filepath.Join(dir, "pids"))) {
					var pid int
					if _, err := fmt.Sscan(f, &pid); err != nil || pid <= 0 {
						continue
					}
					// A child left behind, if it is still ours (its
					// working directory is the test's).
					if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == dir {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
			starts := func(dir string) int { return strings.Count(readFile(filepath.Join(dir, "rec")), "started") }
			for _, dir := range dirs {
				eventually.True(t, 20*time.Second, "child started in "+dir, func() bool { return starts(dir) == 1 })
			}
			time.Sleep(300 * time.Millisecond) // let the traps be set
			put(t, c, key, fmt.Sprint(i, "b"))
			for _, dir := range dirs {
				eventually.True(t, 30*time.Second, "child restarted in "+dir, func() bool { return starts(dir) == 2 })
			}
			if peer, ours := readFile(filepath.Join(dirs[0], "rec")), readFile(filepath.Join(dirs[1], "rec")); peer != ours {
				t.Errorf("the child recorded:\nconsul-template: %q\ntemplater:       %q", peer, ours)
			}
		})
	}
}

// TestConformExecStopTarget: where the -exec child's stop goes, on a
// restart (its template changed) and when the tool gets its kill signal,
// for a child that leaves a job running in the background (a script's
// "&"): a single word and a command list run the program alone, which
// consul-template signals alone; a string of plain words is consul-template's
// sh -c subshell, whose whole process group it signals. Both tools run
// each form with the same key; what the program and its job record, the
// exit code and which jobs are still running afterwards must be the same.
func TestConformExecStopTarget(t *testing.T) {
	c := seedConform(t)
	const key = "ct/exec-stop-target"
	// The job traps TERM and keeps running, so a group stop that waits for
	// the whole group would also have to SIGKILL it.
	child := `#!/bin/sh
exec >/dev/null 2>&1
sh -c 'trap "echo job-TERM >> rec" TERM; while :; do sleep 0.1; done' &
echo $! >> jobs
trap 'echo TERM >> rec; exit 0' TERM
echo started >> rec
while :; do sleep 0.1; done
`
	for i, tc := range []struct {
		name string
		args []string
		cfg  string
	}{
		{name: "single word", args: []string{"-exec", "./child.sh"}},
		{name: "plain words", args: []string{"-exec", "./child.sh arg"}},
		{name: "command list", cfg: "exec {\n  command = [\"./child.sh\", \"arg\"]\n}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			put(t, c, key, fmt.Sprint(i, "a"))
			files := map[string]string{"in.tmpl": `{{ key "` + key + `" }}`, "child.sh": child}
			args := []string{"-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out",
				"-exec-kill-signal", "SIGTERM", "-exec-kill-timeout", "2s"}
			if tc.cfg != "" {
				files["ct.hcl"] = tc.cfg
				args = append(args, "-config", "ct.hcl")
			}
			args = append(args, tc.args...)
			jobs := func(dir string) (live []string) {
				for _, f := range strings.Fields(readFile(filepath.Join(dir, "jobs"))) {
					var pid int
					if _, err := fmt.Sscan(f, &pid); err != nil || pid <= 0 {
						continue
					}
					// Still running, and still ours (its working directory
					// is the test's).
					if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == dir && supervisor.Alive(pid) {
						live = append(live, f)
					}
				}
				return live
			}
			ds, dirs := startExecBoth(t, files, args, func(d *proctest.Proc, dir string) {
				d.Stop(syscall.SIGKILL, daemonStopWait)
				for _, f := range jobs(dir) {
					var pid int
					fmt.Sscan(f, &pid)
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			starts := func(dir string) int { return strings.Count(readFile(filepath.Join(dir, "rec")), "started") }
			seen := func(dir string) string {
				l := strings.Split(strings.TrimSpace(readFile(filepath.Join(dir, "rec"))), "\n")
				sort.Strings(l)
				return fmt.Sprintf("recorded %q, jobs running: %d of %d", l, len(jobs(dir)), len(strings.Fields(readFile(filepath.Join(dir, "jobs")))))
			}
			for _, dir := range dirs {
				eventually.True(t, 20*time.Second, "child started in "+dir, func() bool { return starts(dir) == 1 })
			}
			time.Sleep(500 * time.Millisecond) // let the traps be set
			put(t, c, key, fmt.Sprint(i, "b"))
			for _, dir := range dirs {
				eventually.True(t, 30*time.Second, "child restarted in "+dir, func() bool { return starts(dir) == 2 })
			}
			time.Sleep(500 * time.Millisecond) // the traps again, and what the first stop left to record
			if peer, ours := seen(dirs[0]), seen(dirs[1]); peer != ours {
				t.Errorf("after the restart:\nconsul-template: %s\ntemplater:       %s", peer, ours)
			}
			var codes [2]int
			for i, d := range ds {
				codes[i] = d.Stop(syscall.SIGINT, daemonStopWait)
			}
			time.Sleep(500 * time.Millisecond)
			if peer, ours := seen(dirs[0]), seen(dirs[1]); peer != ours || codes[0] != codes[1] {
				t.Errorf("after the kill signal:\nconsul-template: exit %d, %s\ntemplater:       exit %d, %s", codes[0], peer, codes[1], ours)
			}
		})
	}
}

// TestConformCommandTimeoutTarget: what a template command's timeout kills,
// for a command that leaves a job in the background: consul-template kills
// the program alone when it runs without a shell (a single word, a list of
// several words), and the whole sh -c group of a string of several words.
// Both tools run each form with -once; the exit code and whether the job
// still runs afterwards must be the same.
func TestConformCommandTimeoutTarget(t *testing.T) {
	seedConform(t)
	cmd := `#!/bin/sh
exec >/dev/null 2>&1
sleep 300 &
echo $! >> jobs
while :; do sleep 0.1; done
`
	tmpl := func(command string) string {
		return "template {\n contents = \"x\"\n destination = \"out\"\n command = " + command + "\n command_timeout = \"1s\"\n}\n"
	}
	for name, command := range map[string]string{
		"single word":  `"./cmd.sh"`,
		"plain words":  `"./cmd.sh arg"`,
		"command list": `["./cmd.sh", "arg"]`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{"cmd.sh": cmd, "ct.hcl": tmpl(command)}
			var res [2]string
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, files)
				if err := os.Chmod(filepath.Join(dir, "cmd.sh"), 0o755); err != nil {
					t.Fatal(err)
				}
				o := runTool(t, tl.bin, dir, "", 30*time.Second, "-once", "-log-level", "err", "-consul-addr", agent.HTTPAddr(), "-config", "ct.hcl")
				time.Sleep(300 * time.Millisecond) // a SIGKILLed job is gone by now
				running := 0
				for _, f := range strings.Fields(readFile(filepath.Join(dir, "jobs"))) {
					var pid int
					if _, err := fmt.Sscan(f, &pid); err != nil || pid <= 0 {
						continue
					}
					if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == dir && supervisor.Alive(pid) {
						running++
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				res[i] = fmt.Sprintf("exit %d, jobs still running: %d (stderr: %s)", o.Code, running, lastLines(o.Stderr))
			}
			peer, _, _ := strings.Cut(res[0], " (stderr")
			ours, _, _ := strings.Cut(res[1], " (stderr")
			if peer != ours {
				t.Errorf("command %s:\nconsul-template: %s\ntemplater:       %s", command, res[0], res[1])
			}
		})
	}
}
