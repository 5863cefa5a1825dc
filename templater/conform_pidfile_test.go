package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/proctest"
)

// pidFileState is what one tool left in its pid file: the contents with
// the tool's own PID written as <PID> (so the two can be compared), the
// mode, or that there is none.
func pidFileState(path string, pid int) string {
	st, err := os.Stat(path)
	if err != nil {
		return "no pid file"
	}
	b, _ := os.ReadFile(path)
	return fmt.Sprintf("%q mode %o", strings.ReplaceAll(string(b), strconv.Itoa(pid), "<PID>"), st.Mode().Perm())
}

// -pid-file (and pid_file): what the file holds while the tool runs, whether
// it is left after a stop or after -once, and the exit code when it cannot
// be written. Both tools run each case; every wait is bounded and every
// process started is stopped (proctest kills what is left at the end).
func TestConformPidFile(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": "static\n", "nodir.hcl": "pid_file = \"nodir/pid\"\n", "cfg.hcl": "pid_file = \"fromcfg.pid\"\n"}
	base := func() []string {
		return []string{"-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out"}
	}

	t.Run("running", func(t *testing.T) {
		t.Parallel()
		for _, c := range [][]string{{"-pid-file", "my.pid"}, {"-config", "cfg.hcl"}} {
			pidName := "my.pid"
			if c[0] == "-config" {
				pidName = "fromcfg.pid"
			}
			var during, after [2]string
			var codes [2]int
			var ps [2]*proctest.Proc
			var dirs [2]string
			for i, tl := range tools(t) {
				dirs[i] = toolDir(t, tl.name, files)
				ps[i] = startDaemon(t, tl.bin, dirs[i], append(base(), c...)...)
			}
			for i := range ps {
				p := filepath.Join(dirs[i], pidName)
				deadline := time.Now().Add(15 * time.Second)
				for time.Now().Before(deadline) && readFile(p) == "" && ps[i].Alive() {
					time.Sleep(50 * time.Millisecond)
				}
				// A pid file written in pieces would show a prefix here:
				// give the writer a moment, then read.
				time.Sleep(200 * time.Millisecond)
				during[i] = pidFileState(p, ps[i].Cmd.Process.Pid)
			}
			for i := range ps {
				codes[i] = ps[i].Stop(syscall.SIGINT, daemonStopWait)
				after[i] = pidFileState(filepath.Join(dirs[i], pidName), ps[i].Cmd.Process.Pid)
			}
			if during[0] != during[1] || codes[0] != codes[1] || after[0] != after[1] {
				t.Errorf("%v: consul-template: running %s, SIGINT exit %d, then %s; templater: running %s, SIGINT exit %d, then %s",
					c, during[0], codes[0], after[0], during[1], codes[1], after[1])
			}
		}
	})

	cases := [][]string{
		{"-once", "-pid-file", "my.pid"},
		{"-once", "-pid-file", "nodir/pid"},
		{"-pid-file", "nodir/pid"},
		{"-once", "-config", "nodir.hcl"},
		{"-once", "-pid-file", "."},
	}
	for _, c := range cases {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			var left [2]string
			var wg sync.WaitGroup
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, files)
				wg.Add(1)
				go func(i int, bin string) {
					defer wg.Done()
					// A tool that does not exit is killed at the deadline
					// (code -1), so a difference cannot hang the test.
					res[i] = runTool(t, bin, dir, filepath.Join(dir, "out"), 15*time.Second, append(base(), c...)...)
					if _, err := os.Stat(filepath.Join(dir, "my.pid")); err == nil {
						left[i] = "pid file left"
					}
				}(i, tl.bin)
			}
			wg.Wait()
			sameOutcome(t, strings.Join(c, " "), res[0], res[1])
			if left[0] != left[1] {
				t.Errorf("%v: after exit: consul-template %q, templater %q", c, left[0], left[1])
			}
		})
	}
}
