package main

// Differential tests of consul-template's behaviour beyond template
// functions: config files, flags, -once -exec, signals, -dry, command
// output. Each runs consul-template v0.41.1 and templater on the same input,
// each in a folder of its own, and compares what they did.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
)

// tool is one of the two programs under comparison.
type tool struct{ name, bin string }

func tools(t *testing.T) []tool {
	return []tool{{"consul-template", peerBinary(t)}, {"templater", binary(t)}}
}

// toolDir makes a folder for one tool holding files (name → contents);
// "@ADDR@" in a file is replaced with the agent's address.
func toolDir(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), strings.ReplaceAll(name, "-", ""))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, body := range files {
		proctest.WriteFile(t, filepath.Join(dir, f), strings.ReplaceAll(body, "@ADDR@", agent.HTTPAddr()))
	}
	return dir
}

// bothIn runs both tools with args, each in its own folder with files, and
// returns their outcomes (dst read from that folder) and folders.
func bothIn(t *testing.T, files map[string]string, dst string, args ...string) (out [2]outcome, dirs [2]string) {
	t.Helper()
	var wg sync.WaitGroup
	for i, tl := range tools(t) {
		dirs[i] = toolDir(t, tl.name, files)
		wg.Add(1)
		go func(i int, tl tool) {
			defer wg.Done()
			d := ""
			if dst != "" {
				d = filepath.Join(dirs[i], dst)
			}
			out[i] = runTool(t, tl.bin, dirs[i], d, 30*time.Second, args...)
		}(i, tl)
	}
	wg.Wait()
	return out, dirs
}

// startDaemon runs a tool without -once in dir, with the suite's
// environment.
func startDaemon(t *testing.T, bin, dir string, args ...string) *proctest.Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = dir, ctEnv
	return proctest.Start(t, cmd, proctest.Options{Combined: true})
}

// startBoth starts both tools as daemons with args, each in its own folder
// holding files, and returns them and their folders (peer first).
func startBoth(t *testing.T, files map[string]string, args ...string) (ds []*proctest.Proc, dirs []string) {
	t.Helper()
	for _, tl := range tools(t) {
		dir := toolDir(t, tl.name, files)
		ds = append(ds, startDaemon(t, tl.bin, dir, args...))
		dirs = append(dirs, dir)
	}
	return ds, dirs
}

// exitOrKill is d's exit code once it exits by itself within
// daemonStopWait, else 137 after a SIGKILL.
func exitOrKill(d *proctest.Proc) int {
	if d.Exited(daemonStopWait) {
		return d.Code()
	}
	return d.Stop(syscall.SIGKILL, daemonStopWait)
}

// daemonStopWait is how long a daemon has to exit after a stop signal.
const daemonStopWait = 20 * time.Second

// 4. A key read with `key` that is deleted keeps its last value, and other
// changes to the same file are still written.
func TestConformKeyDeletedMidRun(t *testing.T) {
	c := seedConform(t)
	put(t, c, "ct/del/a", "A1")
	put(t, c, "ct/del/b", "B1")
	files := map[string]string{"in.tmpl": `a={{ key "ct/del/a" }} b={{ key "ct/del/b" }}`}
	var ds []*proctest.Proc
	var outs []string
	for _, tl := range tools(t) {
		dir := toolDir(t, tl.name, files)
		ds = append(ds, startDaemon(t, tl.bin, dir, "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out"))
		outs = append(outs, filepath.Join(dir, "out"))
	}
	for _, o := range outs {
		eventually.True(t, 20*time.Second, "first render of "+o, func() bool { return readFile(o) == "a=A1 b=B1" })
	}
	if _, err := c.KV().Delete("ct/del/a", nil); err != nil {
		t.Fatal(err)
	}
	put(t, c, "ct/del/b", "B2")
	for _, o := range outs {
		eventually.True(t, 20*time.Second, "b=B2 in "+o, func() bool { return strings.Contains(readFile(o), "b=B2") })
	}
	if a, b := readFile(outs[0]), readFile(outs[1]); a != b {
		t.Fatalf("after the delete: consul-template wrote %q, templater %q", a, b)
	}
	for _, d := range ds {
		d.Stop(syscall.SIGINT, daemonStopWait)
	}
}

// 5. -once -exec: render, run the command, wait for it, exit with its code.
func TestConformOnceExec(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`, "child.sh": "cat out > seen\nexit 3\n"}
	res, dirs := bothIn(t, files, "out", "-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out", "-exec", "sh child.sh")
	sameOutcome(t, "-once -exec", res[0], res[1])
	if a, b := readFile(filepath.Join(dirs[0], "seen")), readFile(filepath.Join(dirs[1], "seen")); a != b || a == "" {
		t.Fatalf("child saw %q (consul-template) and %q (templater)", a, b)
	}
}

// An -exec command of plain words whose first word is a shell's own (exit,
// exec, cd, umask, …) runs under sh -c, as consul-template runs every
// command of several words: the same exit code, and stdin reaches the
// child as consul-template's does (child.NewInput Stdin).
func TestConformExecShellWords(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`}
	for _, cmd := range []string{"exit 3", "exec sleep 0", "cd /", "umask 022", "read line"} {
		res, _ := bothIn(t, files, "out", "-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out", "-exec", cmd)
		sameOutcome(t, "-exec "+cmd, res[0], res[1])
	}
}

// Template commands and the -exec child read consul-template's standard
// input (child.NewInput Stdin), and a command that leaves a process in the
// background ends when the command does.
func TestConformCommandStdinAndBackground(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`}
	for _, args := range [][]string{
		{"-template", "in.tmpl:out:head -c 5 > cmd-read", "-exec", "sleep 0"},
		{"-template", "in.tmpl:out", "-exec", "head -c 5"},
		{"-template", "in.tmpl:out:sleep 5 &"},
	} {
		var res [2]outcome
		var wg sync.WaitGroup
		for i, tl := range tools(t) {
			dir := toolDir(t, tl.name, files)
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(tl.bin, append([]string{"-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err"}, args...)...)
				cmd.Dir, cmd.Env, cmd.Stdin = dir, ctEnv, strings.NewReader("hello world\n")
				p := proctest.Start(t, cmd, proctest.Options{})
				res[i] = outcome{Code: exitOrKill(p), Stdout: p.Stdout.String() + readFile(filepath.Join(dir, "cmd-read"))}
			}()
		}
		wg.Wait()
		if res[0].Code != res[1].Code || res[0].Stdout != res[1].Stdout {
			t.Errorf("%q: consul-template exit %d, read %q; templater exit %d, read %q", args, res[0].Code, res[0].Stdout, res[1].Code, res[1].Stdout)
		}
	}
}

// 6. -exec with arguments: a forwarded signal reaches the program and does
// not end it, and the kill signal stops templater (exit 12, as
// consul-template) leaving no process of the child behind. consul-template
// runs the same command under sh -c, whose shell dies of the forwarded
// signal and leaves the program running (hashicorp/consul-template#1557,
// #1666; README, differences): it is run too and what it did is logged.
func TestConformExecSignals(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`, "child.sh": `echo $$ > child.pid
trap 'echo usr1 >> sig.log' USR1
trap 'echo int >> sig.log; exit 0' INT
trap 'echo term >> sig.log; exit 0' TERM
while :; do sleep 0.1; done
`}
	type run struct {
		d   *proctest.Proc
		dir string
	}
	var runs []run
	for _, tl := range tools(t) {
		dir := toolDir(t, tl.name, files)
		d := startDaemon(t, tl.bin, dir, "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out", "-exec", "sh child.sh with-args")
		runs = append(runs, run{d, dir})
	}
	pid := func(r run) int {
		var p int
		fmt.Sscan(readFile(filepath.Join(r.dir, "child.pid")), &p)
		return p
	}
	for _, r := range runs {
		eventually.True(t, 20*time.Second, "child started", func() bool { return pid(r) > 0 })
	}
	time.Sleep(300 * time.Millisecond) // let the traps be set
	for _, r := range runs {
		_ = r.d.Cmd.Process.Signal(syscall.SIGUSR1)
	}
	for _, r := range runs {
		eventually.True(t, 20*time.Second, "usr1 reached the program", func() bool { return strings.Contains(readFile(filepath.Join(r.dir, "sig.log")), "usr1") })
	}
	time.Sleep(300 * time.Millisecond)
	peer, ours := runs[0], runs[1]
	if !ours.d.Alive() {
		t.Fatalf("templater exited (%d) on a forwarded signal the program caught", ours.d.Code())
	}
	code := ours.d.Stop(syscall.SIGINT, daemonStopWait)
	if code != exitSignal {
		t.Errorf("templater exit on SIGINT: %d, want %d (consul-template's ExitCodeInterrupt)", code, exitSignal)
	}
	eventually.True(t, 20*time.Second, "templater's child gone", func() bool { return syscall.Kill(pid(ours), 0) != nil })
	if got := readFile(filepath.Join(ours.dir, "sig.log")); got != "usr1\nint\n" {
		t.Errorf("templater's program saw %q, want usr1 then int (the exec kill signal, SIGINT by default)", got)
	}
	peerAlive := peer.d.Alive()
	peerCode := peer.d.Stop(syscall.SIGINT, daemonStopWait)
	orphan := syscall.Kill(pid(peer), 0) == nil
	if orphan {
		_ = syscall.Kill(pid(peer), syscall.SIGKILL)
	}
	t.Logf("consul-template: running after the forwarded signal: %v; exit %d; program left running: %v; program saw %q",
		peerAlive, peerCode, orphan, readFile(filepath.Join(peer.dir, "sig.log")))
}

// 7. Config blocks: default_delimiters, kill_signal, reload_signal.
func TestConformDefaultDelimiters(t *testing.T) {
	seedConform(t)
	files := map[string]string{
		"in.tmpl":     `[[ key "ct/name" ]] {{ literal }}`,
		"config.hcl":  "consul {\n address = \"@ADDR@\"\n}\ndefault_delimiters {\n left = \"[[\"\n right = \"]]\"\n}\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n",
		"in2.tmpl":    `<< key "ct/name" >>`,
		"config2.hcl": "template {\n source = \"in2.tmpl\"\n destination = \"out2\"\n left_delimiter = \"<<\"\n right_delimiter = \">>\"\n}\n",
	}
	res, _ := bothIn(t, files, "out", "-once", "-log-level", "err", "-config", "config.hcl")
	sameOutcome(t, "default_delimiters", res[0], res[1])
	res, _ = bothIn(t, files, "out2", "-once", "-log-level", "err", "-consul-addr", agent.HTTPAddr(), "-config", "config2.hcl")
	sameOutcome(t, "left/right_delimiter", res[0], res[1])
}

func TestConformKillAndReloadSignal(t *testing.T) {
	seedConform(t)
	files := map[string]string{
		"in.tmpl":    `one {{ key "ct/name" }}`,
		"config.hcl": "consul {\n address = \"@ADDR@\"\n}\nkill_signal = \"SIGUSR2\"\nreload_signal = \"SIGUSR1\"\nlog_level = \"err\"\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n",
	}
	ds, dirs := startBoth(t, files, "-config", "config.hcl")
	for _, dir := range dirs {
		eventually.True(t, 20*time.Second, "first render", func() bool { return readFile(filepath.Join(dir, "out")) == "one hello" })
		os.WriteFile(filepath.Join(dir, "in.tmpl"), []byte(`two {{ key "ct/name" }}`), 0o644)
	}
	for _, d := range ds {
		_ = d.Cmd.Process.Signal(syscall.SIGUSR1)
	}
	for _, dir := range dirs {
		eventually.True(t, 20*time.Second, "reload_signal re-read the template", func() bool { return readFile(filepath.Join(dir, "out")) == "two hello" })
	}
	a, b := ds[0].Stop(syscall.SIGUSR2, daemonStopWait), ds[1].Stop(syscall.SIGUSR2, daemonStopWait)
	if a != b || a == -1 {
		t.Fatalf("exit on kill_signal: consul-template %d, templater %d\n%s", a, b, ds[1].Stdout.String())
	}
}

// The reload signal with a configuration file that no longer parses, or a
// template that no longer parses: consul-template stops (cli.go Run); so
// does templater by default, with the same exit code, and the rendered file
// stays as it was.
func TestConformReloadBroken(t *testing.T) {
	seedConform(t)
	for _, tc := range []struct{ name, file, text string }{
		{"config", "config.hcl", "template {\n source = \n"},
		{"template", "in.tmpl", `two {{ key "ct/name" `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{
				"in.tmpl":    `one {{ key "ct/name" }}`,
				"config.hcl": "consul {\n address = \"@ADDR@\"\n}\nlog_level = \"err\"\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n",
			}
			ds, dirs := startBoth(t, files, "-config", "config.hcl")
			for i, dir := range dirs {
				eventually.True(t, 20*time.Second, "first render", func() bool { return readFile(filepath.Join(dir, "out")) == "one hello" })
				proctest.WriteFile(t, filepath.Join(dir, tc.file), tc.text)
				ds[i].Signal(t, syscall.SIGHUP)
			}
			var codes [2]int
			for i, d := range ds {
				codes[i] = exitOrKill(d)
				if got := readFile(filepath.Join(dirs[i], "out")); got != "one hello" {
					t.Errorf("%s: the rendered file became %q", tools(t)[i].name, got)
				}
			}
			if codes[0] != codes[1] {
				t.Errorf("reload with a broken %s: consul-template exit %d, templater %d\n%s", tc.name, codes[0], codes[1], ds[1].Stdout.String())
			}
		})
	}
}

// 8. -config DIR reads every file in the folder, whatever its name, in
// lexical order (consul-template config.FromPath walks the folder).
func TestConformConfigDir(t *testing.T) {
	seedConform(t)
	files := map[string]string{
		"in.tmpl":          `{{ key "ct/name" }} [[ key "ct/name" ]]`,
		"in2.tmpl":         `two {{ key "ct/name" }} [[ key "ct/name" ]]`,
		"conf/00-consul":   "consul {\n address = \"@ADDR@\"\n}\n",
		"conf/10-tmpl.hcl": "template {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n",
		"conf/20-delims":   "template {\n source = \"in2.tmpl\"\n destination = \"out2\"\n left_delimiter = \"[[\"\n right_delimiter = \"]]\"\n}\n",
		"conf/sub/30.json": `{"log_level": "err"}`,
	}
	res, dirs := bothIn(t, files, "out", "-once", "-config", "conf")
	sameOutcome(t, "-config DIR", res[0], res[1])
	if a, b := readFile(filepath.Join(dirs[0], "out2")), readFile(filepath.Join(dirs[1], "out2")); a != b || a == "" {
		t.Fatalf("out2: consul-template %q, templater %q", a, b)
	}
}

// 9. The output of a successful command is printed.
func TestConformCommandOutput(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`}
	res, _ := bothIn(t, files, "out", "-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out:echo reload-said-this; echo to-stderr >&2")
	sameOutcome(t, "command", res[0], res[1])
	for i, name := range []string{"consul-template", "templater"} {
		if !strings.Contains(res[i].Stdout, "reload-said-this\n") || !strings.Contains(res[i].Stderr, "to-stderr\n") {
			t.Errorf("%s: stdout %q stderr %q", name, res[i].Stdout, res[i].Stderr)
		}
	}
	if res[0].Stdout != res[1].Stdout {
		t.Errorf("stdout: consul-template %q, templater %q", res[0].Stdout, res[1].Stdout)
	}
}

// A template command of one word runs as the program itself, without a
// shell (consul-template child/command-prep.go CommandPrep): a program that
// does not exist, or a word holding shell syntax, is exec's "executable
// file not found", with the same exit code.
func TestConformSingleWordCommand(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`}
	for _, cmd := range []string{"nosuch-berth-program", "true;false", "false", "true"} {
		res, _ := bothIn(t, files, "out", "-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out:"+cmd)
		sameOutcome(t, "command "+cmd, res[0], res[1])
		peer, ours := strings.Contains(res[0].Stderr, "executable file not found"), strings.Contains(res[1].Stderr, "executable file not found")
		if peer != ours {
			t.Errorf("command %q: consul-template says \"executable file not found\" %v, templater %v\n%s", cmd, peer, ours, res[1].Stderr)
		}
	}
}

// 10. -dry prints "> DEST" and the contents, writes nothing, runs nothing.
func TestConformDry(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": "line {{ key \"ct/name\" }}\n", "same.tmpl": "unchanged\n", "same": "unchanged\n"}
	res, dirs := bothIn(t, files, "out", "-once", "-dry", "-consul-addr", agent.HTTPAddr(), "-log-level", "err",
		"-template", "in.tmpl:out:touch ran", "-template", "same.tmpl:same")
	sameOutcome(t, "-dry", res[0], res[1])
	if res[0].Stdout != res[1].Stdout {
		t.Errorf("-dry stdout: consul-template %q, templater %q", res[0].Stdout, res[1].Stdout)
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "ran")); err == nil {
			t.Errorf("a command ran under -dry in %s", d)
		}
	}
}

// -diff (templater's own): the hunk header counts the lines right.
func TestDiffHunkHeader(t *testing.T) {
	seedConform(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "in.tmpl"), filepath.Join(dir, "out")
	os.WriteFile(src, []byte(`{{ key "ct/name" }}`+"\n"), 0o644)
	os.WriteFile(dst, []byte("old\n"), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-once", "-diff", "-http-addr", agent.HTTPAddr(), "-template", src + ":" + dst}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "@@ -1 +1 @@\n-old\n+hello\n") {
		t.Fatalf("-diff of a one-line file:\n%s", stdout.String())
	}
}

// 11. Every flag consul-template v0.41.1 lists in its -h is accepted by
// templater with the same exit code as consul-template (-parse-only, so
// nothing is contacted), except -dedup and -vault-*, which templater refuses
// with one line naming the flag.
func TestConformEveryFlag(t *testing.T) {
	ct := peerBinary(t)
	out, _ := exec.Command(ct, "-h").CombinedOutput()
	flagRe := regexp.MustCompile(`^  -([a-z0-9-]+)(=<([a-z_-]+)>)?`)
	type fl struct{ name, kind string }
	var flags []fl
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "  -v, -version") {
			flags = append(flags, fl{"v", ""}, fl{"version", ""})
			continue
		}
		if m := flagRe.FindStringSubmatch(line); m != nil {
			flags = append(flags, fl{m[1], m[3]})
		}
	}
	if len(flags) < 60 {
		t.Fatalf("read only %d flags from consul-template -h:\n%s", len(flags), out)
	}
	sock := syslogListener(t)
	value := map[string]string{"duration": "2s", "int": "3", "signal": "SIGHUP", "bool": "true", "address": "127.0.0.1:1",
		"path": "tok", "token": "x", "username[:password]": "u:p", "level": "err", "facility": "LOCAL3", "name": "ct-test",
		"template": "in.tmpl:out", "command": "true", "string": "x", "token-file": "tok", "": ""}
	files := map[string]string{"in.tmpl": "static\n", "tok": "secret\n", "cfg.hcl": "log_level = \"err\"\n"}
	for _, f := range flags {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			arg := "-" + f.name
			switch {
			case f.name == "config":
				arg += "=cfg.hcl"
			case f.name == "default-left-delimiter" || f.name == "default-right-delimiter":
				arg += "=" + map[bool]string{true: "{{", false: "}}"}[strings.Contains(f.name, "left")]
			case f.name == "exec-env-custom":
				arg += "=A=1"
			case f.name == "exec-env-allowlist" || f.name == "exec-env-denylist":
				arg += "=X*"
			case f.kind != "":
				v, ok := value[f.kind]
				if !ok {
					t.Fatalf("no test value for -%s=<%s>", f.name, f.kind)
				}
				arg += "=" + v
			}
			args := []string{"-parse-only", "-log-level", "err", "-template", "in.tmpl:out", arg}
			if strings.HasPrefix(f.name, "syslog-") {
				args = append(args, "-syslog")
			}
			ours := append(append([]string{}, args...), "-syslog-socket", sock)
			res := [2]outcome{}
			for i, tl := range tools(t) {
				a := args
				if i == 1 {
					a = ours
				}
				if i == 0 && (f.name == "syslog" || strings.HasPrefix(f.name, "syslog-")) {
					continue // no local syslog socket for consul-template here; templater's is the test's
				}
				res[i] = runTool(t, tl.bin, toolDir(t, tl.name, files), "", 30*time.Second, a...)
			}
			refused := f.name == "dedup" || strings.HasPrefix(f.name, "vault-")
			switch {
			case flagDifferences[f.name] != "":
				line := strings.TrimSpace(res[1].Stderr)
				if res[0].Code != 0 || res[1].Code == 0 || strings.Contains(line, "\n") {
					t.Errorf("%s (%s): consul-template exit %d, templater exit %d, stderr %q", arg, flagDifferences[f.name], res[0].Code, res[1].Code, res[1].Stderr)
				}
			case refused:
				line := strings.TrimSpace(res[1].Stderr)
				if res[1].Code != exitFlags || strings.Contains(line, "\n") || !strings.Contains(line, "-"+f.name) || !strings.Contains(line, "not supported") {
					t.Errorf("templater %s: exit %d, stderr %q; want exit %d and one line refusing it", arg, res[1].Code, res[1].Stderr, exitFlags)
				}
			case f.name == "syslog" || strings.HasPrefix(f.name, "syslog-"):
				if res[1].Code != 0 {
					t.Errorf("templater %s: exit %d: %s", arg, res[1].Code, res[1].Stderr)
				}
			default:
				if res[0].Code != res[1].Code {
					t.Errorf("%s: consul-template exit %d, templater exit %d\n  templater stderr: %s", arg, res[0].Code, res[1].Code, res[1].Stderr)
				}
			}
		})
	}
}

// flagDifferences are flag values consul-template accepts and templater
// refuses with one line (README, differences).
var flagDifferences = map[string]string{
	"consul-ssl-key": "a client key without a client certificate is refused, not ignored",
}

// syslogListener is a unix datagram socket standing in for the local syslog
// daemon (the machine running the tests has none); it returns its path.
func syslogListener(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return p
}

// -syslog sends the log to the syslog socket, with the facility and name.
func TestSyslog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := toolDir(t, "templater", map[string]string{"in.tmpl": "x"})
	res := runTool(t, binary(t), dir, "", 30*time.Second, "-parse-only", "-log-level", "debug", "-syslog", "-syslog-facility", "LOCAL3",
		"-syslog-name", "ct-test", "-syslog-socket", p, "-template", "in.tmpl:out", "-exec", "true")
	if res.Code != 0 {
		t.Fatalf("exit %d: %s", res.Code, res.Stderr)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("nothing reached the syslog socket: %v (stderr %q)", err, res.Stderr)
	}
	// <PRI> with LOCAL3 (19) and NOTICE (5): 19*8+5 = 157.
	if msg := string(buf[:n]); !strings.HasPrefix(msg, "<157>") || !strings.Contains(msg, "ct-test") {
		t.Fatalf("syslog message %q", msg)
	}
}

// When the syslog socket cannot be reached, the error names what turned
// syslog on (a flag or a config key), not always -syslog.
func TestSyslogErrorNamesSource(t *testing.T) {
	files := map[string]string{"in.tmpl": "x", "fac.hcl": "syslog {\n  facility = \"LOCAL1\"\n}\n", "name.hcl": "syslog {\n  name = \"x\"\n}\n",
		"on.hcl": "syslog {\n  enabled = true\n}\n", "badfac.hcl": "syslog {\n  facility = \"BOGUS\"\n}\n"}
	sock := filepath.Join(t.TempDir(), "no-such-socket")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-syslog"}, "syslog (turned on by -syslog): "},
		{[]string{"-syslog-name=x"}, "syslog (turned on by -syslog-name): "},
		{[]string{"-syslog-facility=LOCAL2"}, "syslog (turned on by -syslog-facility): "},
		{[]string{"-config=fac.hcl"}, "syslog (turned on by config syslog.facility): "},
		{[]string{"-config=name.hcl"}, "syslog (turned on by config syslog.name): "},
		{[]string{"-config=on.hcl"}, "syslog (turned on by config syslog.enabled): "},
		{[]string{"-config=badfac.hcl"}, `config syslog.facility "BOGUS": `},
		{[]string{"-syslog-facility=BOGUS"}, `-syslog-facility "BOGUS": `},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			dir := toolDir(t, "templater", files)
			args := append([]string{"-parse-only", "-syslog-socket", sock, "-template", "in.tmpl:out"}, c.args...)
			res := runTool(t, binary(t), dir, "", 30*time.Second, args...)
			if res.Code == 0 || !strings.Contains(res.Stderr, c.want) {
				t.Errorf("%v: exit %d, stderr %q; want an error containing %q", c.args, res.Code, res.Stderr, c.want)
			}
		})
	}
}

// file() reads a file relative to the working folder.
func TestConformFile(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `[{{ file "data.txt" }}] [{{ file "sub/other.txt" | trimSpace }}]{{ key "ct/name" | writeToFile "side/w.txt" "" "" "0640" }}{{ "more" | writeToFile "side/w.txt" "" "" "0640" "append,newline" }}`,
		"data.txt": "line1\nline2\n", "sub/other.txt": "  x  \n"}
	res, dirs := bothIn(t, files, "out", "-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out")
	sameOutcome(t, "file, writeToFile", res[0], res[1])
	var side [2]string
	var modes [2]os.FileMode
	for i, d := range dirs {
		side[i] = readFile(filepath.Join(d, "side", "w.txt"))
		if st, err := os.Stat(filepath.Join(d, "side", "w.txt")); err == nil {
			modes[i] = st.Mode().Perm()
		}
	}
	if side[0] != side[1] || modes[0] != modes[1] {
		t.Errorf("writeToFile: consul-template %q %o, templater %q %o", side[0], modes[0], side[1], modes[1])
	}
}

// A template block with consul-template's documented settings: contents,
// perms, backup, error_on_missing_key, a command list, wait; and a JSON config.
func TestConformTemplateBlock(t *testing.T) {
	seedConform(t)
	files := map[string]string{
		"old": "previous\n",
		"config.hcl": `consul { address = "@ADDR@" }
log_level = "err"
template {
  contents = "{{ key \"ct/name\" }} {{ with parseJSON \"{}\" }}[{{ .missing }}]{{ end }}"
  destination = "old"
  perms = 0600
  backup = true
  command = ["sh", "-c", "echo ran > ran.txt"]
  wait { min = "10ms" max = "20ms" }
}
template {
  contents = "{{ with parseJSON \"{}\" }}{{ .missing }}{{ end }}"
  destination = "strict"
  error_on_missing_key = true
}
`,
		"config.json": `{"consul": {"address": "@ADDR@"}, "log_level": "err", "template": [{"contents": "json {{ key \"ct/name\" }}", "destination": "fromjson", "perms": "0640"}]}`,
	}
	res, dirs := bothIn(t, files, "old", "-once", "-config", "config.hcl")
	sameOutcome(t, "template block", res[0], res[1])
	for _, f := range []string{"old.bak", "ran.txt", "strict"} {
		if a, b := readFile(filepath.Join(dirs[0], f)), readFile(filepath.Join(dirs[1], f)); a != b {
			t.Errorf("%s: consul-template %q, templater %q", f, a, b)
		}
	}
	res, dirs = bothIn(t, files, "fromjson", "-once", "-config", "config.json")
	sameOutcome(t, "JSON config", res[0], res[1])
	for _, f := range []string{"old", "fromjson"} {
		var modes [2]os.FileMode
		for i, d := range dirs {
			if st, err := os.Stat(filepath.Join(d, f)); err == nil {
				modes[i] = st.Mode().Perm()
			}
		}
		if modes[0] != modes[1] {
			t.Errorf("%s mode: consul-template %o, templater %o", f, modes[0], modes[1])
		}
	}
}

// file() of a file that is not there (or cannot be read): consul-template
// fails at once (exit 14), with -once and without, rather than waiting for
// the file (hashicorp/consul-template#1366 asks for waiting; its docs say
// an unreadable file is an error). Each case runs both; one still running
// after the deadline is recorded as waiting (-1) and killed.
func TestConformFileMissing(t *testing.T) {
	seedConform(t)
	files := map[string]string{"missing.tmpl": `a{{ file "missing.txt" }}b`, "nodir.tmpl": `{{ file "nodir/x.txt" }}`,
		"dir.tmpl": `{{ file "sub" }}`, "sub/f.txt": "x", "withkey.tmpl": `{{ key "ct/name" }}{{ file "missing.txt" }}`,
		"present.tmpl": `[{{ file "sub/f.txt" }}]`,
		// error_fatal does not make a file() that cannot be read a logged
		// error: it is consul-template's watcher that fails.
		"nofatal.hcl":     "template_error_fatal = false\n",
		"tmplnofatal.hcl": "template {\n  source = \"missing.tmpl\"\n  destination = \"out\"\n  error_fatal = false\n}\n"}
	cases := [][]string{
		{"-once", "-template", "missing.tmpl:out"},
		{"-template", "missing.tmpl:out"},
		{"-once", "-template", "nodir.tmpl:out"},
		{"-once", "-template", "dir.tmpl:out"},
		{"-once", "-template", "withkey.tmpl:out"},
		{"-template", "withkey.tmpl:out"},
		{"-once", "-template", "present.tmpl:out"},
		{"-config", "nofatal.hcl", "-once", "-template", "missing.tmpl:out"},
		{"-config", "nofatal.hcl", "-template", "missing.tmpl:out"},
		{"-config", "tmplnofatal.hcl", "-once"},
		{"-config", "tmplnofatal.hcl"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			var wg sync.WaitGroup
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, files)
				wg.Add(1)
				go func(i int, bin string) {
					defer wg.Done()
					args := append([]string{"-consul-addr", agent.HTTPAddr(), "-log-level", "err"}, c...)
					res[i] = runTool(t, bin, dir, filepath.Join(dir, "out"), 10*time.Second, args...)
				}(i, tl.bin)
			}
			wg.Wait()
			sameOutcome(t, strings.Join(c, " "), res[0], res[1])
		})
	}
}

// A file read by file() deleted after the template rendered: consul-template
// exits 14; templater logs the error and keeps the old destination and
// running (README, differences: a template error after a render). Both run;
// the peer must still exit, or the difference is gone.
func TestConformFileDeletedMidRun(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `[{{ file "data.txt" }}]`, "data.txt": "x"}
	var ps [2]*proctest.Proc
	var dirs [2]string
	for i, tl := range tools(t) {
		dirs[i] = toolDir(t, tl.name, files)
		ps[i] = startDaemon(t, tl.bin, dirs[i], "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out")
	}
	for i := range dirs {
		eventually.True(t, 15*time.Second, "first render", func() bool { return readFile(filepath.Join(dirs[i], "out")) == "[x]" })
	}
	for i := range dirs {
		if err := os.Remove(filepath.Join(dirs[i], "data.txt")); err != nil {
			t.Fatal(err)
		}
	}
	if !ps[0].Exited(15 * time.Second) {
		t.Fatalf("consul-template still runs after the file was deleted: the difference is gone; drop it from README")
	}
	time.Sleep(time.Second)
	if !ps[1].Alive() || readFile(filepath.Join(dirs[1], "out")) != "[x]" {
		t.Fatalf("templater: alive %v, out %q; want running with the old file", ps[1].Alive(), readFile(filepath.Join(dirs[1], "out")))
	}
	t.Logf("consul-template exited %d", ps[0].Code())
}

// -exec-env-*: the child's environment.
func TestConformExecEnv(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`}
	res, _ := bothIn(t, files, "out", "-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out",
		"-exec-env-pristine", "-exec-env-custom", "A=1", "-exec-env-custom", "B=two words", "-exec", "env")
	sameOutcome(t, "-exec-env-pristine -exec-env-custom", res[0], res[1])
	// consul-template builds its CONSUL_* additions from a map: their order
	// varies from run to run, so the lines are compared sorted.
	if sortedLines(res[0].Stdout) != sortedLines(res[1].Stdout) {
		t.Errorf("child environment: consul-template %q, templater %q", res[0].Stdout, res[1].Stdout)
	}
	res, _ = bothIn(t, files, "out", "-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out",
		"-exec-env-allowlist", "CT_*", "-exec-env-denylist", "CT_EMPTY", "-exec", "env")
	if sortedLines(res[0].Stdout) != sortedLines(res[1].Stdout) || res[0].Code != res[1].Code {
		t.Errorf("allow/deny: consul-template %d %q, templater %d %q", res[0].Code, res[0].Stdout, res[1].Code, res[1].Stdout)
	}
	// A custom variable that the environment has too replaces it (one
	// HOME, the custom one), as os/exec does for consul-template.
	res, _ = bothIn(t, files, "out", "-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out",
		"-exec-env-custom", "HOME=/custom", "-exec-env-allowlist", "HOME", "-exec", "env")
	if sortedLines(res[0].Stdout) != sortedLines(res[1].Stdout) || res[0].Code != res[1].Code || !strings.Contains(res[1].Stdout, "HOME=/custom") {
		t.Errorf("custom over inherited: consul-template %d %q, templater %d %q", res[0].Code, res[0].Stdout, res[1].Code, res[1].Stdout)
	}
}

// -once with a key that never comes: consul-template waits forever
// (hashicorp/consul-template#870, #980, #1844); templater exits 2 after
// -once-timeout naming the key. Both are run; the peer is given 5 s.
func TestConformOnceMissingKey(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/never/there" }}`}
	tl := tools(t)
	peerDir, ourDir := toolDir(t, tl[0].name, files), toolDir(t, tl[1].name, files)
	var peer outcome
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		peer = runTool(t, tl[0].bin, peerDir, filepath.Join(peerDir, "out"), 5*time.Second, "-once", "-consul-addr", agent.HTTPAddr(), "-template", "in.tmpl:out")
	}()
	ours := runTool(t, tl[1].bin, ourDir, filepath.Join(ourDir, "out"), 30*time.Second, "-once", "-once-timeout", "2s", "-consul-addr", agent.HTTPAddr(), "-template", "in.tmpl:out")
	wg.Wait()
	if ours.Code != exitMissing || ours.Wrote || !strings.Contains(ours.Stderr, "kv.get(ct/never/there)") {
		t.Errorf("templater: %s, stderr %q; want exit %d naming the key", ours, ours.Stderr, exitMissing)
	}
	if peer.Code != -1 {
		t.Errorf("consul-template no longer waits (%s): the difference is gone", peer)
	}
}

func sortedLines(s string) string {
	l := strings.Split(s, "\n")
	sort.Strings(l)
	return strings.Join(l, "\n")
}

// Every config key templater honours or refuses (configSpec) is a key
// consul-template v0.41.1 reads: each is written in a config file with a
// plausible value, and consul-template must not call it an invalid key;
// templater must take it (configSpec.Keys) or refuse it with one line
// (configSpec.Refused). A made-up key is refused by both.
func TestConformConfigKeys(t *testing.T) {
	peerBinary(t)
	value := func(key string) string {
		last := key[strings.LastIndex(key, ".")+1:]
		switch {
		case strings.Contains(last, "signal"):
			return `"SIGHUP"`
		case last == "perms":
			return `"0644"`
		case last == "command":
			return `"true"`
		case strings.Contains(last, "list") || last == "custom":
			return `["X"]`
		case strings.HasSuffix(last, "timeout") || last == "backoff" || last == "max_backoff" || last == "splay" || last == "max_stale" ||
			last == "block_query_wait" || last == "dial_keep_alive" || last == "min" || last == "max" || last == "wait" || last == "ttl":
			return `"1s"`
		case last == "attempts" || strings.HasPrefix(last, "max_"):
			return "1"
		case last == "enabled" || last == "verify" || last == "backup" || last == "pristine" || last == "disable_keep_alives" || last == "bool" ||
			last == "create_dest_dirs" || last == "error_on_missing_key" || last == "error_fatal" || last == "template_error_fatal" ||
			last == "err_on_failed_lookup" || last == "in_place":
			return "false"
		case last == "log_level":
			return `"err"`
		case last == "source":
			return `"in.tmpl"`
		}
		return `"x"`
	}
	// block writes key = value nested in its blocks; a template block gets
	// contents and a destination unless the key is one of them.
	block := func(key, val string) string {
		parts := strings.Split(key, ".")
		body := parts[len(parts)-1] + " = " + val + "\n"
		if parts[0] == "template" && len(parts) == 2 {
			if parts[1] != "destination" {
				body += "destination = \"out\"\n"
			}
			if parts[1] != "contents" && parts[1] != "source" {
				body += "contents = \"x\"\n"
			}
		}
		for i := len(parts) - 2; i >= 0; i-- {
			body = parts[i] + " {\n" + body + "}\n"
		}
		return body
	}
	type keyCase struct {
		key     string
		refused bool
	}
	var keys []keyCase
	for _, k := range configSpec.Keys {
		keys = append(keys, keyCase{k, false})
	}
	for k := range configSpec.Refused {
		keys = append(keys, keyCase{k, true})
	}
	for _, kc := range keys {
		if kc.key == "template.check" || kc.key == "template.in_place" {
			continue // templater's own keys
		}
		t.Run(kc.key, func(t *testing.T) {
			t.Parallel()
			val := value(kc.key)
			if kc.refused && !strings.Contains(kc.key, ".") {
				val = "" // a refused top-level block
			}
			body := block(kc.key, val)
			if kc.refused && !strings.Contains(kc.key, ".") {
				body = kc.key + " {\n address = \"x\"\n}\n"
				if kc.key == "log_file" {
					body = "log_file {\n path = \"ct.log\"\n}\n"
				}
				if kc.key == "deduplicate" {
					body = "deduplicate {\n enabled = true\n}\n"
				}
			}
			files := map[string]string{"in.tmpl": "x", "cfg.hcl": body}
			res := [2]outcome{}
			for i, tl := range tools(t) {
				res[i] = runTool(t, tl.bin, toolDir(t, tl.name, files), "", 30*time.Second, "-parse-only", "-log-level", "err", "-config", "cfg.hcl")
			}
			if strings.Contains(res[0].Stderr, "invalid keys") {
				t.Fatalf("consul-template does not know %s:\n%s\nconfig:\n%s", kc.key, res[0].Stderr, body)
			}
			refusedLine := strings.Contains(res[1].Stderr, kc.key+": not supported") && strings.Count(strings.TrimSpace(res[1].Stderr), "\n") == 0
			if kc.refused != refusedLine {
				t.Errorf("templater on %s (refused: %v): exit %d, stderr %q\nconfig:\n%s", kc.key, kc.refused, res[1].Code, res[1].Stderr, body)
			}
		})
	}
	t.Run("made-up key", func(t *testing.T) {
		files := map[string]string{"cfg.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n colour = \"red\"\n}\n"}
		res := [2]outcome{}
		for i, tl := range tools(t) {
			res[i] = runTool(t, tl.bin, toolDir(t, tl.name, files), "", 30*time.Second, "-parse-only", "-config", "cfg.hcl")
		}
		if !strings.Contains(res[0].Stderr, "invalid keys") || res[0].Code != res[1].Code {
			t.Errorf("consul-template exit %d %q; templater exit %d %q", res[0].Code, lastLines(res[0].Stderr), res[1].Code, res[1].Stderr)
		}
	})
}

// Bad flag values and their exit codes, and flags that switch syslog on, as
// consul-template has them: each case runs both and compares the exit code.
func TestConformFlagValues(t *testing.T) {
	files := map[string]string{"in.tmpl": "static\n", "fac.hcl": "syslog {\n  facility = \"LOCAL1\"\n}\n", "name.hcl": "syslog {\n  name = \"x\"\n}\n",
		"off.hcl": "syslog {\n  enabled = false\n  facility = \"LOCAL1\"\n}\n"}
	// Signal names in a config file: top-level and in exec {}.
	sigConfigs := map[string]string{"ks-num": `kill_signal = "9"`, "ks-short": `kill_signal = "HUP"`, "ks-empty": `kill_signal = ""`,
		"ks-lower": `kill_signal = "sigterm"`, "ks-null": `kill_signal = "SIGNULL"`, "rs-pwr": `reload_signal = "SIGPWR"`,
		"rs-space": `reload_signal = "SIGHUP "`, "eks-short": "exec {\n  command = \"true\"\n  kill_signal = \"HUP\"\n}",
		"ers-empty": "exec {\n  command = \"true\"\n  reload_signal = \"\"\n}", "ers-mixed": "exec {\n  command = \"true\"\n  reload_signal = \"SigUsr1\"\n}",
		"ers-num": "exec {\n  command = \"true\"\n  reload_signal = \"10\"\n}"}
	files["nodest.hcl"] = "template {\n  source = \"in.tmpl\"\n}\n"
	files["ll-error.hcl"] = "log_level = \"error\"\n"
	files["ll-warn.hcl"] = "log_level = \"WARN\"\n"
	for name, body := range sigConfigs {
		files[name+".hcl"] = body + "\n"
	}
	cases := [][]string{
		{"-wait=5s:1s"}, {"-wait=abc"}, {"-wait=1s:2s:3s"}, {"-wait=1"}, {"-wait=-1s"}, {"-wait=1s:"}, {"-wait=:1s"}, {"-wait=1s:3s"},
		{"-consul-auth="}, {"-consul-auth=u:p"},
		// consul-template's log levels (logging/logging.go Levels, any case).
		{"-log-level=error"}, {"-log-level="}, {"-log-level=ERR"}, {"-log-level=Trace"}, {"-log-level=warning"}, {"-config=ll-error.hcl"}, {"-config=ll-warn.hcl"},
		// No syslog daemon on the test machines: where syslog is on, both
		// fail to reach it (or both reach one).
		{"-syslog-facility=BOGUS"}, {"-syslog-facility=LOCAL1"}, {"-syslog-name=x"}, {"-syslog=false", "-syslog-name=x"},
		{"-config=fac.hcl"}, {"-config=name.hcl"}, {"-config=off.hcl"},
		// Signal names: consul-template takes its own list of full SIG
		// names in any case; no numbers, short names, spaces or (for a
		// flag) empty values.
		{"-kill-signal=9"}, {"-kill-signal=HUP"}, {"-kill-signal=sighup"}, {"-kill-signal=SIGNULL"}, {"-kill-signal=SIGPWR"},
		{"-kill-signal= SIGINT"}, {"-kill-signal="}, {"-reload-signal=9"}, {"-reload-signal=SigUsr1"}, {"-reload-signal=USR1"},
		{"-reload-signal=SIGRTMIN"}, {"-exec-kill-signal=HUP"}, {"-exec-kill-signal=sigquit"}, {"-exec-kill-signal=SIGIOT"},
		{"-exec-reload-signal=1"}, {"-exec-reload-signal="}, {"-exec-reload-signal=SIGCHLD"}, {"-exec-reload-signal=SIGURG"},
		// A blank -template is a bad flag; one without a destination fails
		// when it renders (exit 14); empty pieces are dropped.
		{"-template="}, {"-template= "}, {"-template=in.tmpl"}, {"-template=in.tmpl:"}, {"-template=:out"},
		{"-template=in.tmpl::"}, {"-template=in.tmpl::x"}, {"-config=nodest.hcl"},
	}
	for name := range sigConfigs {
		cases = append(cases, []string{"-config=" + name + ".hcl"})
	}
	for _, c := range cases {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			for i, tl := range tools(t) {
				args := append([]string{"-parse-only", "-log-level", "err", "-template", "in.tmpl:out"}, c...)
				res[i] = runTool(t, tl.bin, toolDir(t, tl.name, files), "", 30*time.Second, args...)
			}
			if res[0].Code != res[1].Code {
				t.Errorf("%v: consul-template exit %d, templater exit %d\n  consul-template: %s\n  templater: %s", c, res[0].Code, res[1].Code, res[0].Stderr, res[1].Stderr)
			}
			if res[1].Code != 0 && strings.Contains(strings.TrimSpace(res[1].Stderr), "\n") {
				t.Errorf("%v: templater's error is more than one line: %q", c, res[1].Stderr)
			}
		})
	}
}

// TestConformTemplateColonOnly: -template ":" crashes consul-template v0.41.1
// (a Go panic, exit 2); templater refuses it with one line naming the
// template, exit 14 as any template without a destination (README,
// differences). The test fails if the peer stops crashing, so the row goes.
func TestConformTemplateColonOnly(t *testing.T) {
	files := map[string]string{"in.tmpl": "static\n"}
	var res [2]outcome
	for i, tl := range tools(t) {
		res[i] = runTool(t, tl.bin, toolDir(t, tl.name, files), "", 30*time.Second, "-once", "-log-level", "err", "-template", ":")
	}
	if peer := res[0]; peer.Code != 2 || !strings.Contains(peer.Stderr, "panic") {
		t.Errorf("consul-template no longer panics on -template \":\" (exit %d): the difference is gone, drop the README row\n%s", peer.Code, lastLines(peer.Stderr))
	}
	ours := res[1]
	if ours.Code != 14 || !strings.Contains(ours.Stderr, `-template ":"`) || strings.Contains(strings.TrimSpace(ours.Stderr), "\n") {
		t.Errorf("templater: exit %d, want 14 with one line naming -template \":\": %q", ours.Code, ours.Stderr)
	}
}

// TestConformTemplateFlagSplit: how -template "in:out[:command]" is cut
// into pieces, run with both tools in folders holding the same files: the
// exit code and every file each leaves behind (names and contents) are the
// same. consul-template keeps a one-letter piece with the piece after it (a
// Windows drive letter), so "a:b:c" renders the file "a:b" to "c".
func TestConformTemplateFlagSplit(t *testing.T) {
	files := map[string]string{"in.tmpl": "IN\n", "a:b": "AB\n", "a": "A\n", "t": "T\n"}
	for _, spec := range []string{
		"in.tmpl:out",
		"a:b:c",
		"t:out",
		"a::b",
		"::a:b",
		"in.tmpl::out",
		"in.tmpl:a:touch q",
		"in.tmpl:out:touch c:d",
		"in.tmpl:out:touch q",
		"in.tmpl:out:touch x:y:z",
	} {
		t.Run(spec, func(t *testing.T) {
			var res [2]outcome
			var left [2]string
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, files)
				res[i] = runTool(t, tl.bin, dir, "", 30*time.Second, "-once", "-log-level", "err", "-template", spec)
				left[i] = dirContents(t, dir)
			}
			if res[0].Code != res[1].Code || left[0] != left[1] {
				t.Errorf("-template %q:\nconsul-template: exit %d, files %s\n  stderr: %s\ntemplater:       exit %d, files %s\n  stderr: %s",
					spec, res[0].Code, left[0], lastLines(res[0].Stderr), res[1].Code, left[1], lastLines(res[1].Stderr))
			}
		})
	}
}

// dirContents lists the regular files in dir with their contents, sorted.
func dirContents(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		body, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "[%s=%q]", e.Name(), body)
	}
	return b.String()
}

// TestConformExamples: the shipped example templates render the same bytes
// with consul-template v0.41.1 as with templater, and the example configs,
// without their templater-only check line, are read by consul-template too
// (as their first comment says).
func TestConformExamples(t *testing.T) {
	for _, p := range []string{"../examples/nginx/nginx.conf.ctmpl", "../examples/haproxy/haproxy.cfg.ctmpl"} {
		t.Run(filepath.Base(p), func(t *testing.T) {
			text, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			peer, ours := both(t, string(text))
			if peer.Code != 0 {
				t.Errorf("consul-template cannot render %s: %s\n  %s", p, peer, lastLines(peer.Stderr))
			}
			sameOutcome(t, p, peer, ours)
		})
	}
	for _, p := range []string{"../examples/nginx/templater.hcl", "../examples/haproxy/templater.hcl"} {
		t.Run(filepath.Base(filepath.Dir(p))+"-config", func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			// The source is read by -parse-only: the example's own.
			src, err := filepath.Abs(filepath.Join(filepath.Dir(p), map[string]string{"nginx": "nginx.conf.ctmpl", "haproxy": "haproxy.cfg.ctmpl"}[filepath.Base(filepath.Dir(p))]))
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for _, l := range strings.Split(string(b), "\n") {
				switch f := strings.Fields(l); {
				case len(f) > 0 && f[0] == "check":
				case len(f) > 0 && f[0] == "source":
					kept = append(kept, fmt.Sprintf("source = %q", src))
				default:
					kept = append(kept, l)
				}
			}
			dir := t.TempDir()
			cfg := filepath.Join(dir, "ct.hcl")
			if err := os.WriteFile(cfg, []byte(strings.Join(kept, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			if o := runTool(t, peerBinary(t), dir, "", 30*time.Second, "-parse-only", "-config", cfg); o.Code != 0 {
				t.Errorf("consul-template refuses %s without its check line: %s\n  %s", p, o, lastLines(o.Stderr))
			}
		})
	}
}

// TestConformUnwritableDestination: a destination that cannot be written
// (its folder cannot be made, it is a folder) stops both tools with exit 14,
// with -once and without.
func TestConformUnwritableDestination(t *testing.T) {
	files := map[string]string{"in.tmpl": "static\n"}
	for _, dst := range []string{"/proc/berth-no-such/out", "."} {
		for _, once := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s once=%v", dst, once), func(t *testing.T) {
				t.Parallel()
				var res [2]outcome
				for i, tl := range tools(t) {
					args := []string{"-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:" + dst}
					if once {
						args = append(args, "-once")
					}
					res[i] = runTool(t, tl.bin, toolDir(t, tl.name, files), "", 20*time.Second, args...)
				}
				if res[0].Code != res[1].Code {
					t.Errorf("consul-template exit %d, templater exit %d\n  consul-template: %s\n  templater: %s", res[0].Code, res[1].Code, lastLines(res[0].Stderr), lastLines(res[1].Stderr))
				}
			})
		}
	}
}

// -h (and -help) prints the usage on standard output and exits 0, as
// consul-template does, so `templater -h | less` shows it.
func TestConformHelpOnStdout(t *testing.T) {
	ct := peerBinary(t)
	for _, arg := range []string{"-h", "-help"} {
		var ctOut, ctErr bytes.Buffer
		cmd := exec.Command(ct, arg)
		cmd.Stdout, cmd.Stderr = &ctOut, &ctErr
		ctCode := 0
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
			ctCode = ee.ExitCode()
		}
		var out, errb bytes.Buffer
		code := run([]string{arg}, &out, &errb)
		ctWhere, where := "stdout", "stdout"
		if ctOut.Len() == 0 {
			ctWhere = "stderr"
		}
		if out.Len() == 0 {
			where = "stderr"
		}
		if code != ctCode || where != ctWhere || (errb.Len() == 0) != (ctErr.Len() == 0) {
			t.Errorf("%s: templater exit %d, usage on %s (stderr %d bytes); consul-template exit %d, usage on %s (stderr %d bytes)",
				arg, code, where, errb.Len(), ctCode, ctWhere, ctErr.Len())
		}
	}
}

// With another kill signal, SIGINT is not a stop: consul-template (cli.go
// Run: only the kill and reload signals are its own, the rest go to the
// -exec child, and without one nowhere) keeps running, and so must
// templater; the kill signal then stops both with exit 12.
func TestConformSIGINTWhenNotKillSignal(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`}
	var ds []*proctest.Proc
	for _, tl := range tools(t) {
		dir := toolDir(t, tl.name, files)
		ds = append(ds, startDaemon(t, tl.bin, dir, "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-kill-signal", "SIGUSR1", "-template", "in.tmpl:out"))
		out := filepath.Join(dir, "out")
		eventually.True(t, 20*time.Second, "first render of "+out, func() bool { return readFile(out) != "" })
	}
	for _, d := range ds {
		d.Signal(t, syscall.SIGINT)
	}
	// A stop would be seen within daemonStopWait; the peer sets the pace:
	// once it has had its second, so has templater.
	time.Sleep(time.Second)
	if ds[0].Alive() != ds[1].Alive() {
		t.Errorf("after SIGINT with -kill-signal SIGUSR1: consul-template running %v, templater running %v", ds[0].Alive(), ds[1].Alive())
	}
	codes := []int{ds[0].Stop(syscall.SIGUSR1, daemonStopWait), ds[1].Stop(syscall.SIGUSR1, daemonStopWait)}
	if codes[0] != codes[1] {
		t.Errorf("the kill signal: consul-template exit %d, templater %d", codes[0], codes[1])
	}
}

// once and parseonly in a configuration file are read and have no effect
// in consul-template (its command line's value always wins: config.go
// Merge), so a file that has them runs as a daemon and renders; templater
// accepts them the same (with a warning), not refusing the file.
func TestConformOnceKeyInConfigFile(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`,
		"ct.hcl": "once = true\nparseonly = false\ntemplate {\n  source = \"in.tmpl\"\n  destination = \"out\"\n}\n"}
	var ds []*proctest.Proc
	for _, tl := range tools(t) {
		dir := toolDir(t, tl.name, files)
		ds = append(ds, startDaemon(t, tl.bin, dir, "-consul-addr", agent.HTTPAddr(), "-config", "ct.hcl"))
		out := filepath.Join(dir, "out")
		d := ds[len(ds)-1]
		eventually.True(t, 20*time.Second, "first render of "+out, func() bool { return readFile(out) != "" || !d.Alive() })
	}
	time.Sleep(time.Second) // a -once run would have exited by now
	if ds[0].Alive() != ds[1].Alive() {
		t.Errorf("once = true in the file: consul-template running %v, templater running %v", ds[0].Alive(), ds[1].Alive())
	}
	codes := []int{ds[0].Stop(syscall.SIGINT, daemonStopWait), ds[1].Stop(syscall.SIGINT, daemonStopWait)}
	if codes[0] != codes[1] {
		t.Errorf("consul-template exit %d, templater %d", codes[0], codes[1])
	}
}
