package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
)

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
			var dirs []string
			for _, tl := range tools(t) {
				dir := toolDir(t, tl.name, files)
				if err := os.Chmod(filepath.Join(dir, "child.sh"), 0o755); err != nil {
					t.Fatal(err)
				}
				d := startDaemon(t, tl.bin, dir, args...)
				t.Cleanup(func() {
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
				dirs = append(dirs, dir)
			}
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
