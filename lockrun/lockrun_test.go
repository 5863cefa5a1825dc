package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/hashicorp/consul/api"
)

var (
	agent      *consultest.Agent
	lockrunBin proctest.Build // lockrun, built for the first test that runs it
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(asLockrunEnv); dir != "" {
		runAsHeldLockrun(dir) // the test binary as lockrun; exits
	}
	code := consultest.Main(m, &agent)
	lockrunBin.Remove()
	os.Exit(code)
}

// lockrunPath is the lockrun binary built for these tests.
func lockrunPath(t *testing.T) string {
	t.Helper()
	return lockrunBin.Path(t)
}

type result struct {
	code           int
	stdout, stderr string
}

func env(a *consultest.Agent, extra ...string) []string {
	return append(append(append(os.Environ(), a.Env()...), "SHELL=/bin/sh"), extra...)
}

func command(a *consultest.Agent, bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = env(a)
	return cmd
}

// startLR starts lockrun with args against a; it is stopped at the end of
// the test.
func startLR(t *testing.T, a *consultest.Agent, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.Start(t, command(a, lockrunPath(t), args...), proctest.Options{})
}

// runLR runs lockrun with args against a to its end.
func runLR(t *testing.T, a *consultest.Agent, args ...string) result {
	t.Helper()
	p := startLR(t, a, args...)
	return result{p.Code(), p.Stdout.String(), p.Stderr.String()}
}

func sessionsNamed(t *testing.T, a *consultest.Agent, sub string) []string {
	t.Helper()
	ss, _, err := a.Client().Session().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range ss {
		if strings.Contains(s.Name, sub) {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// overlapLog is the shared file children append "enter ID TOKEN" and
// "exit ID" lines to; each line is one O_APPEND write, so the file's order is
// the order in which the children held the lock.
const childScript = `echo "enter $$ $LOCKRUN_TOKEN" >> %[1]s; sleep 0.02; echo "exit $$" >> %[1]s`

type overlap struct {
	max    int
	tokens []uint64
	enters int
}

func readOverlap(t *testing.T, path string) overlap {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var o overlap
	cur := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch fields[0] {
		case "enter":
			cur++
			o.enters++
			if cur > o.max {
				o.max = cur
			}
			if len(fields) == 3 {
				tok, err := strconv.ParseUint(fields[2], 10, 64)
				if err != nil {
					t.Fatalf("bad token in %q", sc.Text())
				}
				o.tokens = append(o.tokens, tok)
			}
		case "exit":
			cur--
		}
	}
	return o
}

// contend runs procs processes each running `runs` times in a row.
func contend(t *testing.T, a *consultest.Agent, procs, runs int, argsFor func(i int) (string, []string)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, procs*runs)
	for p := 0; p < procs; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for r := 0; r < runs; r++ {
				bin, args := argsFor(p)
				cmd := command(a, bin, args...)
				var errb bytes.Buffer
				cmd.Stderr = &errb
				if err := cmd.Run(); err != nil {
					errs <- fmt.Sprintf("%s %v: %v: %s", filepath.Base(bin), args, err, errb.String())
					return
				}
			}
		}(p)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestSemaphoreMutualExclusion(t *testing.T) {
	a := consultest.Require(t, agent)
	log := filepath.Join(t.TempDir(), "log")
	bin := lockrunPath(t)
	contend(t, a, 5, 20, func(int) (string, []string) {
		return bin, []string{"-n", "2", "test/sem-excl", fmt.Sprintf(childScript, log)}
	})
	o := readOverlap(t, log)
	if o.enters != 100 {
		t.Fatalf("%d runs entered, want 100", o.enters)
	}
	if o.max > 2 {
		t.Fatalf("%d holders overlapped, semaphore allows 2", o.max)
	}
	if o.max < 2 {
		t.Logf("note: never saw 2 holders at once")
	}
}

func TestLockExclusionAndIncreasingTokens(t *testing.T) {
	a := consultest.Require(t, agent)
	log := filepath.Join(t.TempDir(), "log")
	bin := lockrunPath(t)
	contend(t, a, 3, 10, func(int) (string, []string) {
		return bin, []string{"test/lock-excl", fmt.Sprintf(childScript, log)}
	})
	o := readOverlap(t, log)
	if o.enters != 30 || o.max != 1 {
		t.Fatalf("%d runs, max overlap %d; want 30 and 1", o.enters, o.max)
	}
	for i := 1; i < len(o.tokens); i++ {
		if o.tokens[i] <= o.tokens[i-1] {
			t.Fatalf("fencing tokens not strictly increasing: %v", o.tokens)
		}
	}
	// The key was deleted after each run (nobody waiting), yet tokens grew.
	// Delete it explicitly too and check the next token is still higher.
	if _, err := a.Client().KV().Delete("test/lock-excl/.lock", nil); err != nil {
		t.Fatal(err)
	}
	r := runLR(t, a, "test/lock-excl", `echo $LOCKRUN_TOKEN`)
	tok, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 64)
	if err != nil || tok <= o.tokens[len(o.tokens)-1] {
		t.Fatalf("token after key deletion %q (err %v), last before %d", r.stdout, err, o.tokens[len(o.tokens)-1])
	}
}

func TestInteropWithConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	bin := lockrunPath(t)
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "log")
			prefix := fmt.Sprintf("test/interop-%d", n)
			script := fmt.Sprintf(`echo "enter $$" >> %[1]s; sleep 0.03; echo "exit $$" >> %[1]s`, log)
			contend(t, a, 4, 6, func(p int) (string, []string) {
				if p%2 == 0 {
					return a.Bin, []string{"lock", "-n", strconv.Itoa(n), prefix, script}
				}
				return bin, []string{"-n", strconv.Itoa(n), prefix, script}
			})
			o := readOverlap(t, log)
			if o.enters != 24 || o.max > n {
				t.Fatalf("%d runs, max overlap %d; want 24 and at most %d", o.enters, o.max, n)
			}
		})
	}
}

func readInt(t *testing.T, path string) string {
	t.Helper()
	var s string
	eventually.True(t, 20*time.Second, path, func() bool {
		b, _ := os.ReadFile(path)
		s = strings.TrimSpace(string(b))
		return s != ""
	})
	return s
}

func TestLockLostStopsProcessGroup(t *testing.T) {
	a := consultest.Require(t, agent)
	for _, how := range []string{"session-destroyed", "key-deleted"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			prefix := "test/lost-" + how
			script := fmt.Sprintf(`sleep 300 & echo $! > %[1]s/gc; echo $$ > %[1]s/child; echo $LOCKRUN_SESSION > %[1]s/sess; wait`, dir)
			grace := 3 * time.Second
			p := startLR(t, a, "-kill-timeout", grace.String(), prefix, script)
			sess := readInt(t, dir+"/sess")
			child, _ := strconv.Atoi(readInt(t, dir+"/child"))
			gc, _ := strconv.Atoi(readInt(t, dir+"/gc"))
			if !supervisor.Alive(child) || !supervisor.Alive(gc) {
				t.Fatal("child or grandchild not running")
			}
			lostAt := time.Now()
			if how == "session-destroyed" {
				if _, err := a.Client().Session().Destroy(sess, nil); err != nil {
					t.Fatal(err)
				}
			} else if _, err := a.Client().KV().Delete(prefix+"/.lock", nil); err != nil {
				t.Fatal(err)
			}
			if !p.Exited(grace + 10*time.Second) {
				t.Fatalf("lockrun did not exit after the lock was lost; stderr %s", p.Stderr)
			}
			if code := p.Code(); code != exitLockLost {
				t.Fatalf("exit %d, want code %d; stderr %s", code, exitLockLost, p.Stderr)
			}
			// The bound: both gone within the grace period.
			eventually.True(t, grace, "child and grandchild gone", func() bool { return !supervisor.Alive(child) && !supervisor.Alive(gc) })
			t.Logf("lock lost → child and grandchild gone in %s", time.Since(lostAt).Round(time.Millisecond))
			if !strings.Contains(p.Stderr.String(), "lost") {
				t.Errorf("stderr does not say the lock was lost: %s", p.Stderr)
			}
		})
	}
}

func TestSignalsForwardedAndReleaseOnTerm(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	script := fmt.Sprintf(`trap 'echo usr1 >> %[1]s/sig' USR1; trap 'echo hup >> %[1]s/sig' HUP; trap 'echo term >> %[1]s/sig; exit 0' TERM; echo $$ > %[1]s/child; while :; do sleep 0.05; done`, dir)
	p := startLR(t, a, "-name", "sigtest", "test/signals", script)
	readInt(t, dir+"/child")
	sigs := func() string { b, _ := os.ReadFile(dir + "/sig"); return string(b) }
	p.Signal(t, syscall.SIGUSR1)
	eventually.True(t, 10*time.Second, "USR1 to reach the child", func() bool { return strings.Contains(sigs(), "usr1") })
	p.Signal(t, syscall.SIGHUP)
	eventually.True(t, 10*time.Second, "HUP to reach the child", func() bool { return strings.Contains(sigs(), "hup") })
	p.Signal(t, syscall.SIGTERM)
	if code := p.Code(); code != 0 {
		t.Fatalf("lockrun after SIGTERM: exit %d; stderr %s", code, p.Stderr)
	}
	if !strings.Contains(sigs(), "term") {
		t.Fatalf("TERM not forwarded: %q", sigs())
	}
	pair, _, err := a.Client().KV().Get("test/signals/.lock", nil)
	if err != nil {
		t.Fatal(err)
	}
	if pair != nil && pair.Session != "" {
		t.Fatalf("lock still held after exit: %+v", pair)
	}
	if s := sessionsNamed(t, a, "sigtest"); len(s) != 0 {
		t.Fatalf("sessions left behind: %v", s)
	}
}

// TestForwardedTermOneGrace: a child that ignores SIGTERM gets the forwarded
// SIGTERM once and, -kill-timeout later, SIGKILL to its group (consul lock's
// killChild; pkg/supervisor Forward), not a second SIGTERM and a second
// grace; the lock is released after. The time is checked from below only.
func TestForwardedTermOneGrace(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	script := fmt.Sprintf(`trap 'echo term >> %[1]s/sig' TERM; echo $$ > %[1]s/child; while :; do sleep 0.05; done`, dir)
	const grace = 2 * time.Second
	p := startLR(t, a, "-name", "deaftest", "-exact-exit-code", "-kill-timeout", grace.String(), "test/deaf", script)
	readInt(t, dir+"/child") // written after the trap is set
	sent := time.Now()
	p.Signal(t, syscall.SIGTERM)
	if !p.Exited(grace + 60*time.Second) {
		t.Fatal("lockrun still running long after the grace period")
	}
	took := time.Since(sent)
	t.Logf("SIGTERM to exit: %s with -kill-timeout %s", took.Round(time.Millisecond), grace)
	if code := p.Code(); code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit %d, want %d (the child killed, -exact-exit-code)", code, 128+int(syscall.SIGKILL))
	}
	if took < grace {
		t.Errorf("exit %s after SIGTERM, before -kill-timeout %s", took, grace)
	}
	b, _ := os.ReadFile(dir + "/sig")
	if n := strings.Count(string(b), "term"); n != 1 {
		t.Errorf("the child got SIGTERM %d times, want 1 (one forwarded signal, one grace period)", n)
	}
	if pair, _, err := a.Client().KV().Get("test/deaf/.lock", nil); err != nil {
		t.Fatal(err)
	} else if pair != nil && pair.Session != "" {
		t.Errorf("lock still held after exit: %+v", pair)
	}
}

func TestInterruptWhileWaiting(t *testing.T) {
	a := consultest.Require(t, agent)
	for _, n := range []string{"1", "2"} {
		t.Run("n="+n, func(t *testing.T) {
			prefix := "test/interrupt-" + n
			dir := t.TempDir()
			want := 1
			if n == "2" {
				want = 2
			}
			for i := 0; i < want; i++ {
				// Stopped (SIGTERM) at the end of the subtest.
				startLR(t, a, "-n", n, "-name", "holder-"+n, prefix, fmt.Sprintf("touch %s/h%d; sleep 300", dir, i))
				readyFile := fmt.Sprintf("%s/h%d", dir, i)
				eventually.True(t, 20*time.Second, "holder to hold", func() bool { _, err := os.Stat(readyFile); return err == nil })
			}
			w := startLR(t, a, "-n", n, "-name", "waiter-"+n, prefix, "touch "+dir+"/waiter-ran")
			var sess []string
			eventually.True(t, 10*time.Second, "waiter's session", func() bool { sess = sessionsNamed(t, a, "waiter-"+n); return len(sess) == 1 })
			if n == "2" {
				eventually.True(t, 10*time.Second, "waiter's contender key", func() bool {
					p, _, _ := a.Client().KV().Get(prefix+"/"+sess[0], nil)
					return p != nil
				})
			}
			time.Sleep(200 * time.Millisecond)
			w.Signal(t, syscall.SIGINT)
			if code := w.Code(); code != exitInterrupted {
				t.Fatalf("waiter exit %d, want %d", code, exitInterrupted)
			}
			if _, err := os.Stat(dir + "/waiter-ran"); err == nil {
				t.Fatal("interrupted waiter ran its command")
			}
			if s := sessionsNamed(t, a, "waiter-"+n); len(s) != 0 {
				t.Fatalf("waiter's session left behind: %v", s)
			}
			if p, _, _ := a.Client().KV().Get(prefix+"/"+sess[0], nil); p != nil {
				t.Fatalf("waiter's contender key left behind: %s", p.Key)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	startLR(t, a, "test/timeout", "touch "+dir+"/held; sleep 300") // stopped at the end
	eventually.True(t, 20*time.Second, "holder", func() bool { _, err := os.Stat(dir + "/held"); return err == nil })
	for _, flagName := range []string{"-timeout", "-try"} {
		start := time.Now()
		r := runLR(t, a, flagName, "300ms", "-name", "timeout-waiter", "test/timeout", "touch "+dir+"/ran")
		if r.code != exitTimeout || !strings.Contains(r.stderr, "not acquired within") {
			t.Fatalf("%s: exit %d stderr %q; want %d", flagName, r.code, r.stderr, exitTimeout)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("%s 300ms took %s", flagName, el)
		}
	}
	if _, err := os.Stat(dir + "/ran"); err == nil {
		t.Fatal("command ran without the lock")
	}
	if s := sessionsNamed(t, a, "timeout-waiter"); len(s) != 0 {
		t.Fatalf("sessions left behind: %v", s)
	}
}

func TestChildEnvArgsAndExitCodes(t *testing.T) {
	a := consultest.Require(t, agent)
	r := runLR(t, a, "test/env", "printf", "%s|", "a b", "$HOME", `"q"`)
	if r.code != 0 || r.stdout != `a b|$HOME|"q"|` {
		t.Fatalf("args not exec'd as given: %q (exit %d, %s)", r.stdout, r.code, r.stderr)
	}
	r = runLR(t, a, "test/env", `echo one; echo "$CONSUL_LOCK_HELD $LOCKRUN_SESSION $LOCKRUN_TOKEN"`)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || lines[0] != "one" {
		t.Fatalf("shell string not run with sh -c: %q", r.stdout)
	}
	f := strings.Fields(lines[1])
	if len(f) != 3 || f[0] != "true" || len(f[1]) != 36 {
		t.Fatalf("child env: %q", lines[1])
	}
	if _, err := strconv.ParseUint(f[2], 10, 64); err != nil {
		t.Fatalf("LOCKRUN_TOKEN %q not a number", f[2])
	}
	// PREFIX -- COMMAND ARGS: the separator is not the command (issue 11).
	if r = runLR(t, a, "test/env", "--", "echo", "after", "dashes"); r.code != 0 || strings.TrimSpace(r.stdout) != "after dashes" {
		t.Fatalf("PREFIX -- COMMAND: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r = runLR(t, a, "-shell=true", "test/env", "echo", "joined", "words"); strings.TrimSpace(r.stdout) != "joined words" {
		t.Fatalf("-shell=true: %q", r.stdout)
	}
	if r = runLR(t, a, "-shell=false", "test/env", "echo hi"); r.code != exitOK || !strings.Contains(r.stderr, "echo hi") {
		t.Fatalf("-shell=false with one string: exit %d %q", r.code, r.stderr)
	}
	if r = runLR(t, a, "test/env", "exit 3"); r.code != 0 {
		t.Fatalf("failed child without -child-exit-code: exit %d, want 0 as consul lock", r.code)
	}
	if r = runLR(t, a, "-exact-exit-code", "test/env", "exit 3"); r.code != 3 {
		t.Fatalf("-exact-exit-code: exit %d, want 3", r.code)
	}
	if r = runLR(t, a, "-exact-exit-code", "test/env", "kill -KILL $$"); r.code != 128+9 {
		t.Fatalf("-exact-exit-code with signal death: exit %d, want 137", r.code)
	}
	// -pass-stdin
	cmd := command(a, lockrunPath(t), "-pass-stdin", "test/env", "cat")
	cmd.Stdin = strings.NewReader("from stdin")
	out, err := cmd.Output()
	if err != nil || string(out) != "from stdin" {
		t.Fatalf("-pass-stdin: %q %v", out, err)
	}
	cmd = command(a, lockrunPath(t), "test/env", "cat")
	cmd.Stdin = strings.NewReader("from stdin")
	if out, _ = cmd.Output(); len(out) != 0 {
		t.Fatalf("stdin given without -pass-stdin: %q", out)
	}
}

func TestBadInput(t *testing.T) {
	a := consultest.Require(t, agent)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "missing PREFIX"},
		{[]string{"only-prefix"}, exitUsage, "missing COMMAND"},
		{[]string{"-n", "0", "p", "true"}, exitUsage, "-n 0"},
		{[]string{"-n", "-3", "p", "true"}, exitUsage, "-n -3"},
		{[]string{"-timeout", "-1s", "p", "true"}, exitUsage, "-timeout -1s"},
		{[]string{"-try", "-1s", "p", "true"}, exitUsage, "-try -1s"},
		{[]string{"-timeout", "2s", "-try", "-1s", "p", "true"}, exitUsage, "-try -1s"},
		{[]string{"-try", "2s", "-timeout", "-1s", "p", "true"}, exitUsage, "-timeout -1s"},
		{[]string{"-try", "abc", "p", "true"}, exitUsage, "flag -try"},
		{[]string{"-kill-timeout", "0s", "p", "true"}, exitUsage, "-kill-timeout"},
		{[]string{"-monitor-retry", "-1", "p", "true"}, exitUsage, "-monitor-retry"},
		{[]string{"-shell=maybe", "p", "true"}, exitUsage, "-shell"},
		{[]string{"-no-such-flag", "p", "true"}, exitUsage, "no-such-flag"},
		{[]string{"-log-format", "xml", "p", "true"}, exitUsage, "xml"},
		{[]string{"-n", "2", "/", "true"}, exitUsage, "PREFIX"},
		{[]string{"-http-addr", "127.0.0.1:1", "-timeout", "1s", "p", "true"}, exitConsul, "unreachable"},
		{[]string{"-kill-timeout", "13s", "p", "true"}, exitUsage, "-kill-timeout 13s with -lock-delay 15s"},
		{[]string{"-lock-delay", "0s", "p", "true"}, exitUsage, "-lock-delay 0s"},
		{[]string{"p", "--"}, exitUsage, "missing COMMAND after --"},
		{[]string{"p", "/nonexistent/cmd"}, exitOK, "/nonexistent/cmd"},
	}
	for _, c := range cases {
		r := runLR(t, a, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("lockrun %q: exit %d stderr %q; want exit %d and %q", c.args, r.code, r.stderr, c.code, c.want)
		}
		if c.code == exitUsage && strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 && !strings.Contains(r.stderr, "Usage") {
			t.Errorf("lockrun %q: error is not one line: %q", c.args, r.stderr)
		}
	}
}

func TestConflictingKindsAndLimits(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	// Each holder is stopped (SIGTERM) at the end of the test.
	hold := func(n, prefix, marker string) {
		startLR(t, a, "-n", n, prefix, "touch "+dir+"/"+marker+"; sleep 300")
		eventually.True(t, 20*time.Second, "holder", func() bool { _, err := os.Stat(dir + "/" + marker); return err == nil })
	}
	hold("2", "test/conflict-sem", "sem")
	hold("1", "test/conflict-lock", "lock")

	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-n", "3", "-name", "bad-contender", "test/conflict-sem", "true"}, "limit conflict"},
		{[]string{"-name", "bad-contender", "test/conflict-sem", "true"}, "semaphore"},
		{[]string{"-n", "2", "-name", "bad-contender", "test/conflict-lock", "true"}, "plain lock"},
	}
	for _, c := range cases {
		r := runLR(t, a, c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("lockrun %q: exit %d %q; want %d and %q", c.args, r.code, r.stderr, exitUsage, c.want)
		}
		if s := sessionsNamed(t, a, "bad-contender"); len(s) != 0 {
			t.Errorf("lockrun %q left sessions %v", c.args, s)
		}
	}
	// No contender key of the refused semaphore contender was left: only the
	// holder's key and .lock remain.
	keys, _, err := a.Client().KV().Keys("test/conflict-sem/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("keys under the semaphore: %v; want the holder's and .lock", keys)
	}
	var lockPair *api.KVPair
	if lockPair, _, err = a.Client().KV().Get("test/conflict-sem/.lock", nil); err != nil || lockPair == nil || lockPair.Flags != api.SemaphoreFlagValue {
		t.Fatalf("semaphore .lock damaged: %+v %v", lockPair, err)
	}
}

// ACL token (flags, file, environment) and TLS to a real agent with
// default-deny ACLs serving HTTPS with its own CA: lockrun holds the lock
// and runs its child with each shared credential; without a token it exits
// with the Consul code naming the refusal; with a wrong CA it names the TLS
// problem; the token never shows in its output. A token that may read the
// prefix but not write it ends lockrun at once (exit 10), as consul lock.
func TestACLTokenAndTLS(t *testing.T) {
	a := consultest.StartSecure(t, "lockrun-secure")
	run := func(c consultest.Credential, args ...string) (string, error) {
		args = append(append([]string{"-verbose", "-http-addr", "https://" + a.HTTPSAddr()}, c.Args...), args...)
		cmd := exec.Command(lockrunPath(t), args...)
		// A clean environment: nothing but what the credential gives.
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, c.Env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, c := range a.Credentials() {
		t.Run(c.Name, func(t *testing.T) {
			out, err := run(c, "test/secure", "echo held $LOCKRUN_TOKEN")
			if err != nil || !strings.Contains(out, "held ") {
				t.Fatalf("%v\n%s", err, out)
			}
			a.RequireNoToken(t, "lockrun's output", out)
		})
	}
	out, err := run(a.NoToken(), "test/secure", "true")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitConsul || !strings.Contains(out, "Permission denied") {
		t.Fatalf("without a token: %v\n%s", err, out)
	}
	// A token that may read the prefix but not write it: consul lock ends
	// at once on the 403 of its ?acquire (exit 1); lockrun too (exit 10),
	// for a lock and a semaphore, instead of waiting out -timeout.
	acl := a.Client().ACL()
	pol, _, err := acl.PolicyCreate(&api.ACLPolicy{Name: "read-only-prefix", Rules: `key_prefix "test/ro/" { policy = "read" }
session_prefix "" { policy = "write" }
key "test/ro-sem/x/.lock" { policy = "read" }
key_prefix "test/ro-sem/" { policy = "write" }
agent_prefix "" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ro, _, err := acl.TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// test/ro-sem/x: a semaphore whose contender keys may be written but
	// not its .lock.
	for _, c := range [][2]string{{"1", "test/ro/x"}, {"2", "test/ro/x"}, {"2", "test/ro-sem/x"}} {
		n, prefix := c[0], c[1]
		for _, peer := range []bool{true, false} {
			bin, args, want := lockrunPath(t), []string{"-n", n, "-timeout", "20s", prefix, "true"}, exitConsul
			if peer {
				bin, args, want = a.Bin, append([]string{"lock"}, args...), 1
			}
			cmd := exec.Command(bin, args...)
			cmd.Env = env(a.Agent, "CONSUL_HTTP_TOKEN="+ro.SecretID)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != want || time.Since(start) > 10*time.Second || !strings.Contains(string(out), "Permission denied") {
				t.Errorf("%s -n %s %s with a read-only token: exit %d after %s, want %d at once; output %q",
					filepath.Base(bin), n, prefix, code, time.Since(start).Round(time.Millisecond), want, out)
			}
		}
	}
	wrongCA := consultest.Credential{Args: append(a.TLSFlags(), "-token-file", a.TokenFile, "-ca-file", a.TokenFile)}
	out, err = run(wrongCA, "test/secure", "true")
	if low := strings.ToLower(out); err == nil || !strings.Contains(low, "certificate") && !strings.Contains(low, "tls") {
		t.Fatalf("bad CA file: %v\n%s", err, out)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	maddr := proctest.FreeAddr(t)
	startLR(t, a, "-metrics-addr", maddr, "test/metrics", "touch "+dir+"/held; sleep 300") // stopped at the end
	eventually.True(t, 20*time.Second, "holder", func() bool { _, err := os.Stat(dir + "/held"); return err == nil })
	proctest.WantMetrics(t, maddr,
		proctest.Sample{Name: "berth_lockrun_held", Value: 1},
		proctest.Sample{Name: "berth_lockrun_acquisitions_total", Value: 1},
		proctest.Sample{Name: "berth_lockrun_wait_seconds_count", Value: 1})
	if _, h := proctest.Get(t, maddr, "/health"); strings.TrimSpace(h) != "ok" {
		t.Errorf("/health = %q", h)
	}
	// A busy address is a usage error naming it.
	r := runLR(t, a, "-metrics-addr", maddr, "test/metrics2", "true")
	if r.code != exitUsage || !strings.Contains(r.stderr, "-metrics-addr") {
		t.Errorf("busy -metrics-addr: exit %d %q", r.code, r.stderr)
	}
}

// After a holder's session is invalidated, Consul refuses the lock for the
// session's lock-delay; the next contender says so and retries at its pace.
func TestLockDelayVisibleAndRetried(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	h := startLR(t, a, "-lock-delay", "4s", "-kill-timeout", "500ms", "test/delay", "echo $LOCKRUN_SESSION > "+dir+"/sess; sleep 300")
	sess := readInt(t, dir+"/sess")
	if _, err := a.Client().Session().Destroy(sess, nil); err != nil {
		t.Fatal(err)
	}
	<-h.Done()
	start := time.Now()
	r := runLR(t, a, "-lock-delay-retry", "200ms", "test/delay", "true")
	if r.code != 0 || !strings.Contains(r.stderr, "lock-delay in force") {
		t.Fatalf("exit %d, stderr %q; want success after a logged lock-delay", r.code, r.stderr)
	}
	t.Logf("acquired %s after the holder's session was destroyed (lock-delay 4s)", time.Since(start).Round(time.Millisecond))
}

// Consul going away while the lock is held: after -monitor-retry errors the
// lock counts as lost and the child is stopped (a dev agent restarts empty,
// so the lock could not be trusted anyway).
func TestConsulStoppedWhileHolding(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{NodeName: "lockrun-fault"})
	dir := t.TempDir()
	p := startLR(t, a, "-monitor-retry", "2", "-kill-timeout", "1s", "test/fault", "echo $$ > "+dir+"/child; exec sleep 300")
	child, _ := strconv.Atoi(readInt(t, dir+"/child"))
	a.Stop()
	if !p.Exited(30 * time.Second) {
		t.Fatalf("lockrun kept running with Consul gone; stderr %s", p.Stderr)
	}
	if code := p.Code(); code != exitLockLost {
		t.Fatalf("exit %d, want %d; stderr %s", code, exitLockLost, p.Stderr)
	}
	if supervisor.Alive(child) {
		t.Fatal("child still running after the lock was lost")
	}
	if !strings.Contains(p.Stderr.String(), "waiting for Consul's leader to confirm we hold the lock") {
		t.Errorf("retries not logged: %s", p.Stderr)
	}
}

// TestPrefixSpellingsExcludeConsulLock: consul lock names its keys with
// path.Join, so "x//y/", "x/./y" and "x/y" are one lock for it; a lockrun
// given another spelling of the prefix than a consul lock holder's must not
// run beside it (nor a consul lock beside a lockrun holder).
func TestPrefixSpellingsExcludeConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	bin := lockrunPath(t)
	for _, spellings := range [][]string{
		{"test/spell/x", "test//spell/x/", "/test/spell/./x//", "test/spell/y/../x"},
		{"", ".", "/", "./"}, // the KV root: the key .lock there
	} {
		for i, held := range spellings {
			other := spellings[(i+1)%len(spellings)]
			excludeSpelling(t, a, bin, held, other)
		}
	}
}

// excludeSpelling: a holder on the prefix spelt held, consul lock or
// lockrun, keeps the other tool on the spelling other from running.
func excludeSpelling(t *testing.T, a *consultest.Agent, bin, held, other string) {
	t.Helper()
	for _, holderIsConsul := range []bool{true, false} {
		dir := t.TempDir()
		holderBin, holderArgs, waiterBin, waiterArgs := a.Bin, []string{"lock"}, bin, []string(nil)
		if !holderIsConsul {
			holderBin, holderArgs, waiterBin, waiterArgs = bin, nil, a.Bin, []string{"lock"}
		}
		h := proctest.Start(t, command(a, holderBin, append(holderArgs, held, "touch "+dir+"/held; exec sleep 300")...), proctest.Options{})
		eventually.True(t, 20*time.Second, "holder", func() bool { _, err := os.Stat(dir + "/held"); return err == nil })
		cmd := command(a, waiterBin, append(waiterArgs, "-timeout", "500ms", other, "touch "+dir+"/ran")...)
		out, _ := cmd.CombinedOutput()
		if _, err := os.Stat(dir + "/ran"); err == nil {
			t.Errorf("%s holding %q, %s on %q ran beside it: %s", filepath.Base(holderBin), held, filepath.Base(waiterBin), other, out)
		}
		h.Signal(t, syscall.SIGTERM)
		<-h.Done()
	}
}

// exitCode runs bin (lockrun, or consul with "lock" among args) against a
// and returns its exit code; a run that cannot start fails the test.
func exitCode(t *testing.T, a *consultest.Agent, bin string, args ...string) int {
	t.Helper()
	err := command(a, bin, args...).Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// TestChildExitCodeAsConsulLock: with and without -child-exit-code, a child
// that succeeds, fails or dies of a signal gives lockrun the exit code it
// gives consul lock, and a line on standard error when consul lock prints
// one (its "Error running handler").
func TestChildExitCodeAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	run := func(bin string, args ...string) (int, string) {
		cmd := command(a, bin, args...)
		var errb strings.Builder
		cmd.Stderr = &errb
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), errb.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, errb.String()
	}
	for _, flags := range [][]string{nil, {"-child-exit-code"}} {
		for _, child := range []string{"true", "exit 3", "kill -KILL $$"} {
			args := append(append([]string{}, flags...), "test/exitcode", child)
			want, wantErr := run(a.Bin, append([]string{"lock"}, args...)...)
			got, gotErr := run(lockrunPath(t), args...)
			if got != want {
				t.Errorf("lockrun %q: exit %d; consul lock exits %d", args, got, want)
			}
			if (strings.TrimSpace(gotErr) == "") != (strings.TrimSpace(wantErr) == "") {
				t.Errorf("lockrun %q: stderr %q; consul lock's %q", args, gotErr, wantErr)
			}
		}
	}
}

// TestSessionNameAsConsulLock: without -name, the holder's session has the
// name consul lock gives its own, for the lock and the semaphore.
func TestSessionNameAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	holderName := func(bin string, pre []string, n, prefix string) string {
		_ = os.Remove(dir + "/held")
		args := append(append([]string{}, pre...), "-n", n, prefix, "touch "+dir+"/held; exec sleep 300")
		p := proctest.Start(t, command(a, bin, args...), proctest.Options{})
		defer func() { p.Signal(t, syscall.SIGTERM); <-p.Done() }()
		eventually.True(t, 20*time.Second, "holder", func() bool { _, err := os.Stat(dir + "/held"); return err == nil })
		prefix = strings.Trim(prefix, "/")
		var sess string
		if n == "1" {
			pair, _, err := a.Client().KV().Get(prefix+"/.lock", nil)
			if err != nil || pair == nil {
				t.Fatalf("%s: no lock key: %v", bin, err)
			}
			sess = pair.Session
		} else {
			keys, _, err := a.Client().KV().Keys(prefix+"/", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if !strings.HasSuffix(k, "/.lock") {
					sess = strings.TrimPrefix(k, prefix+"/")
				}
			}
		}
		se, _, err := a.Client().Session().Info(sess, nil)
		if err != nil || se == nil {
			t.Fatalf("%s: session %q: %v", bin, sess, err)
		}
		return se.Name
	}
	for _, n := range []string{"1", "2"} {
		prefix := "/test/sessname-" + n
		want := holderName(a.Bin, []string{"lock"}, n, prefix)
		if got := holderName(lockrunPath(t), nil, n, prefix); got != want {
			t.Errorf("-n %s: session name %q; consul lock's is %q", n, got, want)
		}
	}
}

// TestStopWhileHoldingAsConsulLock: SIGINT or SIGTERM to the holder while
// its child runs. The child ignores SIGINT and exits 5 on SIGTERM: with
// -child-exit-code, lockrun's exit code, whether the child got its
// graceful SIGTERM, whether it was gone within a second, and whether the
// lock was released are what they are with consul lock.
func TestStopWhileHoldingAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	type seen struct {
		code             int
		graceful, prompt bool
		released         bool
	}
	observe := func(bin string, pre []string, sig syscall.Signal) seen {
		dir := t.TempDir()
		prefix := "test/stop-" + strings.ToLower(supervisor.SignalName(sig))
		script := fmt.Sprintf(`trap '' INT; trap 'echo graceful >> %[1]s/out; exit 5' TERM; touch %[1]s/ready; while :; do sleep 0.1; done`, dir)
		p := proctest.Start(t, command(a, bin, append(pre, "-child-exit-code", prefix, script)...), proctest.Options{})
		eventually.True(t, 20*time.Second, "child", func() bool { _, err := os.Stat(dir + "/ready"); return err == nil })
		time.Sleep(100 * time.Millisecond)
		sent := time.Now()
		p.Signal(t, sig)
		var s seen
		s.code = p.Wait(t, 30*time.Second)
		s.prompt = time.Since(sent) < time.Second
		b, _ := os.ReadFile(dir + "/out")
		s.graceful = strings.Contains(string(b), "graceful")
		pair, _, err := a.Client().KV().Get(prefix+"/.lock", nil)
		if err != nil {
			t.Fatal(err)
		}
		s.released = pair == nil || pair.Session == ""
		return s
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		want := observe(a.Bin, []string{"lock"}, sig)
		if got := observe(lockrunPath(t), nil, sig); got != want {
			t.Errorf("%s to the holder: lockrun %+v; consul lock %+v", supervisor.SignalName(sig), got, want)
		}
	}
}

// TestShellAsConsulLock: a command string runs with $SHELL, as consul lock
// runs its commands (here bash, whose brace expansion sh lacks), for one
// string and for -shell with several arguments.
func TestShellAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	run := func(bin string, args ...string) string {
		cmd := command(a, bin, args...)
		cmd.Env = append(cmd.Env, "SHELL=/bin/bash")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %q: %v", bin, args, err)
		}
		return string(out)
	}
	for _, args := range [][]string{{"test/shell", "echo {a,b} ${BASH_VERSION:+bash}"}, {"-shell", "test/shell", "echo", "{c,d}"}} {
		want := run(a.Bin, append([]string{"lock"}, args...)...)
		if got := run(lockrunPath(t), args...); got != want {
			t.Errorf("lockrun %q with SHELL=/bin/bash printed %q; consul lock %q", args, got, want)
		}
	}
}

// TestTerminalAsConsulLock: run from a script on a terminal (no job
// control), the child reads the terminal with -pass-stdin, and the script
// reads it after; both work with consul lock, whose child shares its process
// group. lockrun's child has its own group: unless it is made the
// terminal's foreground group and the terminal is taken back after, the
// child or the script is stopped (SIGTTIN) or refused.
func TestTerminalAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	type seen struct{ childRead, scriptRead bool }
	observe := func(lockCmd string) seen {
		tm := proctest.OnTerminal(t, lockCmd+` -pass-stdin test/tty 'echo ready; read x; echo got:$x'; read y; echo after:$y`, env(a))
		var r seen
		if tm.WaitFor("ready", 10*time.Second) {
			tm.Type("hello\n")
			r.childRead = tm.WaitFor("got:hello", 10*time.Second)
		}
		tm.Type("world\n")
		r.scriptRead = tm.WaitFor("after:world", 10*time.Second)
		tm.Stop()
		if !r.childRead || !r.scriptRead {
			t.Logf("%s on a terminal printed %q", lockCmd, tm.Output())
		}
		return r
	}
	asConsulLock(t, a, "on a terminal", observe)
}

// TestForeignKeyAsConsulLock: a PREFIX/.lock written by something else (flags
// 0) is refused with consul lock's exit code, by an error naming the key
// without blaming a lock or semaphore that is not there.
func TestForeignKeyAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	if _, err := a.Client().KV().Put(&api.KVPair{Key: "test/foreign/.lock", Value: []byte("data")}, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"1", "2"} {
		args := []string{"-n", n, "-timeout", "5s", "test/foreign", "true"}
		err := command(a, a.Bin, append([]string{"lock"}, args...)...).Run()
		want := 0
		if ee, ok := err.(*exec.ExitError); ok {
			want = ee.ExitCode()
		}
		r := runLR(t, a, args...)
		if r.code != want || !strings.Contains(r.stderr, "test/foreign/.lock") || strings.Contains(r.stderr, "used by") {
			t.Errorf("-n %s: exit %d (consul lock %d), stderr %q", n, r.code, want, r.stderr)
		}
	}
}

// startOnPTY runs script with /bin/sh in a new session whose controlling
// terminal is a fresh pseudo-terminal, and returns the terminal's master.
func startOnPTY(t *testing.T, a *consultest.Agent, script string) (*os.File, *exec.Cmd) {
	t.Helper()
	m, s := proctest.OpenPTY(t)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = env(a)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return m, cmd
}

// TestTerminalTostopKeepsLog: on a terminal with tostop set, lockrun's own
// log lines written while the child has the terminal (it is in the
// background then) still reach it, from the first ("child started", written
// as the child takes the terminal) to the last.
func TestTerminalTostopKeepsLog(t *testing.T) {
	a := consultest.Require(t, agent)
	m, cmd := startOnPTY(t, a, "stty tostop; "+lockrunPath(t)+" -verbose test/tostop 'sleep 0.2'; echo rc=$?")
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = out.ReadFrom(m); close(done) }()
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case <-waitErr:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatal("lockrun on a tostop terminal did not finish")
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	m.Close()
	if o := out.String(); !strings.Contains(o, "child started") || !strings.Contains(o, "child exited") || !strings.Contains(o, "rc=0") {
		t.Fatalf("lockrun's log lines while the child had the terminal did not all reach it: %q", o)
	}
}

// sigIgnored reports whether pid ignores sig (SigIgn in /proc/PID/status).
func sigIgnored(t *testing.T, pid int, sig syscall.Signal) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return mask&(1<<(uint(sig)-1)) != 0
		}
	}
	t.Fatalf("no SigIgn in /proc/%d/status", pid)
	return false
}

// TestTerminalSIGTTOUOnlyWhileChildHasIt: on a terminal, lockrun ignores
// SIGTTOU while the child's group has the terminal (TestTerminalTostopKeepsLog)
// and no longer once it has taken the terminal back. The agent is paused
// as the child exits, to keep lockrun in its release while we look.
func TestTerminalSIGTTOUOnlyWhileChildHasIt(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	m, cmd := startOnPTY(t, a, "exec "+lockrunPath(t)+fmt.Sprintf(" test/ttou 'touch %[1]s/ready; while [ ! -e %[1]s/go ]; do sleep 0.05; done'", dir))
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait(); m.Close() }()
	go func() { _, _ = io.Copy(io.Discard, m) }()
	eventually.True(t, 20*time.Second, "child", func() bool { _, err := os.Stat(dir + "/ready"); return err == nil })
	if !sigIgnored(t, cmd.Process.Pid, syscall.SIGTTOU) {
		t.Fatal("SIGTTOU not ignored while the child has the terminal")
	}
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := a.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer resume()
	if err := os.WriteFile(dir+"/go", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cleared := false
	for end := time.Now().Add(3 * time.Second); !cleared && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		cleared = !sigIgnored(t, cmd.Process.Pid, syscall.SIGTTOU)
	}
	resume()
	if !cleared {
		t.Error("SIGTTOU still ignored after the child exited and lockrun took the terminal back")
	}
}

// TestDoubleSlashPrefixAsConsulLock: consul lock trims one leading "/" from
// PREFIX (command/lock/lock.go run, strings.TrimPrefix) and names its keys
// with path.Join, so "//x" gives the key "/x/.lock", which Consul refuses:
// consul lock exits 1 without running the command. lockrun must refuse it
// too, with no key written (a key beginning with "/" written through
// /v1/txn cannot be deleted with /v1/kv), for the lock and the semaphore.
func TestDoubleSlashPrefixAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	run := func(bin string, args ...string) (int, bool) {
		_ = os.Remove(dir + "/ran")
		cmd := command(a, bin, append(args, "touch "+dir+"/ran")...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s %q: %v: %s", bin, args, err, out)
		}
		_, statErr := os.Stat(dir + "/ran")
		return code, statErr == nil
	}
	for _, args := range [][]string{{"//test/dslash/"}, {"-n", "2", "//test/dslash/"}} {
		wantCode, wantRan := run(a.Bin, append([]string{"lock", "-timeout", "5s"}, args...)...)
		code, ran := run(lockrunPath(t), append([]string{"-timeout", "5s"}, args...)...)
		if code != wantCode || ran != wantRan {
			t.Errorf("lockrun %q: exit %d, command ran %v; consul lock: exit %d, ran %v", args, code, ran, wantCode, wantRan)
		}
	}
	keys, _, err := a.Client().KV().Keys("", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "/") {
			t.Errorf("key %q written", k)
			_, _, _, _ = a.Client().Txn().Txn(api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: k}}}, nil)
		}
	}
}

// TestScriptWithoutShebangAsConsulLock: consul lock runs its command with
// $SHELL -c (command/lock/lock.go startChild, agent/exec Script), and the
// shell runs an executable file that the kernel refuses (ENOEXEC: a script
// without "#!") as a shell script. Old cron scripts often lack the line;
// lockrun runs them too, with the output and exit code consul lock gives.
func TestScriptWithoutShebangAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	script := filepath.Join(t.TempDir(), "job")
	if err := os.WriteFile(script, []byte("echo \"ran $CONSUL_LOCK_HELD\"\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(bin string, args ...string) (int, string) {
		cmd := command(a, bin, args...)
		var out strings.Builder
		cmd.Stdout = &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s %q: %v", bin, args, err)
		}
		return code, out.String()
	}
	for _, flags := range [][]string{nil, {"-child-exit-code"}, {"-shell=false"}} {
		args := append(append([]string{}, flags...), "test/noshebang", script)
		wantCode, wantOut := run(a.Bin, append([]string{"lock"}, args...)...)
		code, out := run(lockrunPath(t), args...)
		if code != wantCode || out != wantOut {
			t.Errorf("lockrun %q: exit %d, printed %q; consul lock: exit %d, %q", args, code, out, wantCode, wantOut)
		}
	}
}

// TestTokenPrecedenceAsConsulLock: consul lock takes its ACL token in the
// consul CLI's order (api.NewClient, with command/flags HTTPFlags
// MergeOntoConfig): -token-file, then -token, then CONSUL_HTTP_TOKEN_FILE,
// then CONSUL_HTTP_TOKEN. Each case gives a good token one way and a wrong
// one another; lockrun must run the command exactly when consul lock does.
func TestTokenPrecedenceAsConsulLock(t *testing.T) {
	a := consultest.StartSecure(t, "lockrun-tokens")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad-token")
	if err := os.WriteFile(bad, []byte("00000000-0000-0000-0000-000000000001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		env  []string
	}{
		{"-token-file over -token", []string{"-token-file", a.TokenFile, "-token", "wrong"}, nil},
		{"-token over CONSUL_HTTP_TOKEN_FILE", []string{"-token", a.Token}, []string{"CONSUL_HTTP_TOKEN_FILE=" + bad}},
		{"CONSUL_HTTP_TOKEN_FILE over CONSUL_HTTP_TOKEN", nil, []string{"CONSUL_HTTP_TOKEN_FILE=" + a.TokenFile, "CONSUL_HTTP_TOKEN=wrong"}},
		{"-token over CONSUL_HTTP_TOKEN", []string{"-token", a.Token}, []string{"CONSUL_HTTP_TOKEN=wrong"}},
		// An empty -token is no token given: the variables still count.
		{"-token \"\" then CONSUL_HTTP_TOKEN", []string{"-token", ""}, []string{"CONSUL_HTTP_TOKEN=" + a.Token}},
		{"-token \"\" then CONSUL_HTTP_TOKEN_FILE", []string{"-token="}, []string{"CONSUL_HTTP_TOKEN_FILE=" + a.TokenFile}},
	}
	ran := func(bin string, pre []string, c int, args []string, env []string) bool {
		marker := filepath.Join(dir, fmt.Sprintf("ran-%d-%s", c, filepath.Base(bin)))
		args = append(append(append(append([]string{}, pre...), "-http-addr", "https://"+a.HTTPSAddr()), a.TLSFlags()...), args...)
		args = append(args, "-timeout", "5s", "test/tokens", "touch "+marker)
		cmd := exec.Command(bin, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "SHELL=/bin/sh"}, env...)
		out, _ := cmd.CombinedOutput()
		_, err := os.Stat(marker)
		t.Logf("%s: %s", filepath.Base(bin), out)
		return err == nil
	}
	for i, c := range cases {
		want := ran(a.Bin, []string{"lock"}, i, c.args, c.env)
		if got := ran(lockrunPath(t), nil, i, c.args, c.env); got != want {
			t.Errorf("%s: lockrun ran the command: %v; consul lock: %v", c.name, got, want)
		}
	}
}

// TestShortTimeoutStillTriesAsConsulLock: consul lock's -timeout bounds the
// wait, never the first attempt (api Lock.Lock and Semaphore.Acquire with
// LockTryOnce / SemaphoreTryOnce check the elapsed time only from the second
// attempt on, and the session is made before): with a free lock, even a
// -timeout shorter than a round trip to Consul runs the command.
func TestShortTimeoutStillTriesAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	run := func(bin string, args ...string) bool {
		_ = os.Remove(dir + "/ran")
		cmd := command(a, bin, append(args, "touch "+dir+"/ran")...)
		out, _ := cmd.CombinedOutput()
		_, err := os.Stat(dir + "/ran")
		t.Logf("%s %q: %s", filepath.Base(bin), args, out)
		return err == nil
	}
	for _, args := range [][]string{{"-timeout", "1us", "test/short-timeout"}, {"-try=1us", "-n", "2", "test/short-timeout-sem"}} {
		want := run(a.Bin, append([]string{"lock"}, args...)...)
		if got := run(lockrunPath(t), args...); got != want {
			t.Errorf("lockrun %q on a free lock ran the command: %v; consul lock: %v", args, got, want)
		}
	}
}

// TestNumberFormsAsConsulLock: consul lock reads -n and -monitor-retry with
// the standard library's flag.IntVar (command/lock/lock.go init), which
// takes Go's integer literals (strconv.ParseInt base 0: 0x10, 0o7, 0b11,
// 1_000, a sign). lockrun accepts and refuses the same spellings.
func TestNumberFormsAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	code := func(bin string, args ...string) int { return exitCode(t, a, bin, args...) }
	for _, flag := range []string{"-monitor-retry=0x3", "-monitor-retry=0b11", "-monitor-retry=1_0", "-monitor-retry=+2", "-monitor-retry=07", "-monitor-retry=08",
		"-monitor-retry=3.0", "-n=0x2", "-n=0o2", "-n=1_0", "-n=2.0"} {
		args := []string{flag, "test/numbers-" + strings.NewReplacer("=", "", "-", "", ".", "").Replace(flag), "true"}
		want := code(a.Bin, append([]string{"lock"}, args...)...)
		if got := code(lockrunPath(t), args...); got != want {
			t.Errorf("lockrun %q: exit %d; consul lock: exit %d", args, got, want)
		}
	}
}

// TestTLSMismatchAsConsulLock: consul lock asks the agent once before
// anything else (command/lock/lock.go run, Agent().NodeName) and exits 1
// when that fails, so a wrong scheme (https:// to a plain HTTP agent) or a
// server certificate it cannot verify ends it at once. lockrun retries a
// Consul that is away, but these never heal by retrying: it must end too,
// without running the command, rather than retry for ever.
func TestTLSMismatchAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	s := consultest.StartSecure(t, "lockrun-tls-mismatch")
	dir := t.TempDir()
	cases := [][]string{
		{"-http-addr", "https://" + a.HTTPAddr()},
		{"-http-addr", "https://" + s.HTTPSAddr(), "-token", s.Token}, // no -ca-file: the agent's CA is unknown
	}
	for i, flags := range cases {
		marker := filepath.Join(dir, strconv.Itoa(i))
		args := append(append([]string{}, flags...), "test/tls-mismatch", "touch "+marker)
		peer := exec.Command(a.Bin, append([]string{"lock"}, args...)...)
		peer.Env = []string{"PATH=" + os.Getenv("PATH"), "SHELL=/bin/sh"}
		if out, err := peer.CombinedOutput(); err == nil {
			t.Fatalf("consul lock %q succeeded: %s", args, out)
		}
		cmd := exec.Command(lockrunPath(t), args...)
		cmd.Env = peer.Env
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Either lockrun ends, or it says it waits and retries: read until
		// one of the two, then stop it.
		var lines []string
		retried := false
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.Contains(sc.Text(), "waiting for Consul") {
				retried = true
				_ = cmd.Process.Kill()
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		err = cmd.Wait()
		if _, statErr := os.Stat(marker); statErr == nil {
			t.Errorf("lockrun %q ran the command", args)
		}
		if retried || err == nil {
			t.Errorf("lockrun %q: retried %v, exit %v; consul lock exits 1 at once:\n%s", args, retried, err, strings.Join(lines, "\n"))
		}
	}
}

// TestQuietWhileWaitingAsConsulLock: without -verbose, consul lock says
// nothing while it waits for a held lock or a full semaphore (its progress
// lines are -verbose only, command/lock/lock.go run); run from cron,
// anything on standard error is mailed. A waiter that gives up after
// -timeout prints the one line saying so, as consul lock does.
func TestQuietWhileWaitingAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	dir := t.TempDir()
	for _, n := range []string{"1", "2"} {
		prefix := "test/quiet-wait-" + n
		holders, _ := strconv.Atoi(n)
		for i := 0; i < holders; i++ {
			marker := fmt.Sprintf("%s/held-%s-%d", dir, n, i)
			startLR(t, a, "-n", n, prefix, "touch "+marker+"; exec sleep 300") // stopped at the end
			eventually.True(t, 20*time.Second, "holder", func() bool { _, err := os.Stat(marker); return err == nil })
		}
		stderrLines := func(bin string, pre ...string) []string {
			cmd := command(a, bin, append(pre, "-n", n, "-timeout", "1s", prefix, "true")...)
			var errb strings.Builder
			cmd.Stderr = &errb
			_ = cmd.Run()
			return strings.Split(strings.TrimSpace(errb.String()), "\n")
		}
		want := stderrLines(a.Bin, "lock")
		if got := stderrLines(lockrunPath(t)); len(got) != len(want) {
			t.Errorf("-n %s waiter that timed out printed %d lines on stderr, consul lock %d:\n%s", n, len(got), len(want), strings.Join(got, "\n"))
		}
	}
}

// TestBadAddressAsConsulLock: an agent address whose port no connection can
// use is refused at once with consul lock's exit code and a line naming it,
// not retried until -timeout (a typo in CONSUL_HTTP_ADDR would hang a cron
// job).
func TestBadAddressAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	for _, addr := range []string{"127.0.0.1:abc", "bogus:xx", "127.0.0.1:99999"} {
		args := []string{"-http-addr", addr, "-timeout", "5s", "test/badaddr", "true"}
		want := exitCode(t, a, a.Bin, append([]string{"lock"}, args...)...)
		r := runLR(t, a, args...)
		if r.code != want || !strings.Contains(r.stderr, addr) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("-http-addr %s: exit %d (consul lock %d), stderr %q", addr, r.code, want, r.stderr)
		}
	}
}

// TestRefusedKeyEndsAsConsulLock: a lock key Consul refuses (400: a prefix
// holding a tab) ends both tools at once, consul lock with 1, lockrun with
// its exit code for Consul refusing (10, README exit codes), for a lock and
// for a semaphore; neither waits.
func TestRefusedKeyEndsAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	for _, extra := range [][]string{nil, {"-n", "2"}} {
		args := append(append([]string{}, extra...), "test/refused\tkey", "true")
		if want := exitCode(t, a, a.Bin, append([]string{"lock"}, args...)...); want != 1 {
			t.Fatalf("consul lock %q: exit %d, want 1 (the case shows nothing)", args, want)
		}
		r := runLR(t, a, args...)
		if r.code != exitConsul || !strings.Contains(r.stderr, "400") || !strings.Contains(r.stderr, `"test/refused\tkey`) {
			t.Errorf("%q: exit %d, stderr %q; want %d naming Consul's 400 and the key or prefix", args, r.code, r.stderr, exitConsul)
		}
	}
}

// TestOneWordShellCommandsAsConsulLock: consul lock runs every command with
// $SHELL -c, so a command whose first word is a shell builtin, an
// assignment or a function bash exported runs there; lockrun runs those in
// the shell too (a program it still runs itself): same output, same exit.
func TestOneWordShellCommandsAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash is not installed: exported functions need it")
	}
	run := func(bin string, args ...string) (int, string) {
		cmd := command(a, bin, args...)
		cmd.Env = append(cmd.Env, "SHELL=/bin/bash", "BASH_FUNC_berthf%%=() {  echo in-function\n}")
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	// Several arguments whose first is such a word are joined into one
	// shell command line, as consul lock joins every command.
	for _, words := range [][]string{{"berthf"}, {"umask"}, {"FOO=1"}, {"true"},
		{"exit", "3"}, {"FOO=4", "sh", "-c", "echo $FOO; exit $FOO"}, {"berthf", "ignored"}, {"cd", "/", "&&", "pwd"}} {
		args := append([]string{"-child-exit-code", "test/oneword"}, words...)
		wc, wout := run(a.Bin, append([]string{"lock"}, args...)...)
		gc, gout := run(lockrunPath(t), args...)
		if wc != gc || wout != gout {
			t.Errorf("%q: consul lock exit %d, stdout %q; lockrun exit %d, stdout %q", words, wc, wout, gc, gout)
		}
	}
}

// TestSemaphoreLockKeyLeftAsConsulLock: two holders of a -n 2 semaphore
// finish while a third waiter, killed with SIGKILL, left its contender
// key behind (its session lives until its TTL). consul lock's last holder
// deletes .lock then (the Consul API's Semaphore.Destroy prunes dead
// holders and ignores contenders); so does lockrun's, and the prefix is
// usable at once by a plain lock or another limit.
func TestSemaphoreLockKeyLeftAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client()
	held := func(prefix string) int { // keys under prefix with a session
		pairs, _, _ := c.KV().List(prefix+"/", nil)
		n := 0
		for _, p := range pairs {
			if p.Session != "" {
				n++
			}
		}
		return n
	}
	left := func(bin string, lockArgs []string, prefix string) bool {
		var holders []*exec.Cmd
		for i := 0; i < 2; i++ {
			h := command(a, bin, append(append([]string{}, lockArgs...), "-n", "2", prefix, "sleep 3")...)
			if err := h.Start(); err != nil {
				t.Fatal(err)
			}
			holders = append(holders, h)
		}
		eventually.True(t, 20*time.Second, "two holders", func() bool { return held(prefix) == 2 })
		w := command(a, bin, append(append([]string{}, lockArgs...), "-n", "2", prefix, "true")...)
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		eventually.True(t, 20*time.Second, "the waiter's contender key", func() bool { return held(prefix) == 3 })
		_ = w.Process.Kill()
		_ = w.Wait()
		for _, h := range holders {
			_ = h.Wait()
		}
		p, _, err := c.KV().Get(prefix+"/.lock", nil)
		if err != nil {
			t.Fatal(err)
		}
		return p != nil
	}
	want := left(a.Bin, []string{"lock"}, "test/semleft-peer")
	got := left(lockrunPath(t), nil, "test/semleft-ours")
	if got != want {
		t.Errorf(".lock left after the holders finished: lockrun %v, consul lock %v", got, want)
	}
}

// TestSemaphoreValueWithoutLimitAsConsulLock: a semaphore .lock whose value
// has no "Limit" (or is JSON null) has limit 0 for consul lock, which refuses
// it as a limit conflict (exit 1) and leaves it; lockrun does the same
// instead of taking it over with its own -n and deleting it after. A value
// with a limit but no holders makes consul lock panic (api Semaphore.Acquire
// writes to the nil map); lockrun takes it.
func TestSemaphoreValueWithoutLimitAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	kv := a.Client().KV()
	put := func(prefix, value string) {
		if _, err := kv.DeleteTree(prefix+"/", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(&api.KVPair{Key: prefix + "/.lock", Flags: api.SemaphoreFlagValue, Value: []byte(value)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, value := range []string{`{"Holders":{}}`, `null`} {
		prefix := fmt.Sprintf("test/semnolimit-%d", i)
		args := []string{"-n", "2", "-timeout", "2s", prefix, "true"}
		put(prefix, value)
		want := 0
		if ee, ok := command(a, a.Bin, append([]string{"lock"}, args...)...).Run().(*exec.ExitError); ok {
			want = ee.ExitCode()
		}
		put(prefix, value)
		r := runLR(t, a, args...)
		if r.code != want || want != exitUsage || !strings.Contains(r.stderr, "limit conflict") {
			t.Errorf(".lock %s: lockrun exit %d %q; consul lock exit %d", value, r.code, r.stderr, want)
		}
		if p, _, err := kv.Get(prefix+"/.lock", nil); err != nil || p == nil || string(p.Value) != value {
			t.Errorf(".lock %s after lockrun: %+v %v", value, p, err)
		}
	}
	put("test/semnolimit-h", `{"Limit":2}`)
	if r := runLR(t, a, "-n", "2", "-timeout", "2s", "test/semnolimit-h", "true"); r.code != 0 {
		t.Errorf(`.lock {"Limit":2}: lockrun exit %d %q; want 0`, r.code, r.stderr)
	}
}

// TestUnknownDatacenterAsConsulLock: a -datacenter the cluster does not
// know (a typo) ends consul lock at once ("No path to datacenter"); lockrun
// ends at once too, with the Consul code and the datacenters it knows,
// instead of retrying it forever as an unreachable datacenter. The one the
// cluster has still works.
func TestUnknownDatacenterAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	peer := command(a, a.Bin, "lock", "-datacenter", "nodc", "test/nodc", "true").Run()
	if _, ok := peer.(*exec.ExitError); !ok {
		t.Fatalf("consul lock -datacenter nodc: %v; want a failure", peer)
	}
	p := startLR(t, a, "-datacenter", "nodc", "test/nodc", "true")
	if code := p.Wait(t, 10*time.Second); code != exitConsul || !strings.Contains(p.Stderr.String(), `-datacenter "nodc"`) {
		t.Errorf("lockrun -datacenter nodc: exit %d %q; want %d naming the flag", code, p.Stderr.String(), exitConsul)
	}
	dcs, err := a.Client().Catalog().Datacenters()
	if err != nil || len(dcs) == 0 {
		t.Fatal(dcs, err)
	}
	if r := runLR(t, a, "-datacenter", dcs[0], "test/nodc", "true"); r.code != 0 {
		t.Errorf("lockrun -datacenter %s: exit %d %q", dcs[0], r.code, r.stderr)
	}
}

// TestNohupAsConsulLock: started with SIGHUP ignored (nohup), consul lock
// leaves it ignored, for itself and for its child, so a SIGHUP (the
// terminal hanging up) ends neither; lockrun too: its child inherits the
// ignored SIGHUP and a SIGHUP to lockrun does nothing.
func TestNohupAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	script := `grep ^SigIgn: /proc/self/status; kill -HUP $PPID; sleep 0.3; echo survived`
	observe := func(bin string, pre ...string) string {
		args := append(pre, "test/nohup", script)
		cmd := command(a, "/bin/sh", append([]string{"-c", `trap '' HUP; exec "$@"`, "sh", bin}, args...)...)
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return fmt.Sprintf("exit %d, stdout %q", code, out)
	}
	want := observe(a.Bin, "lock")
	if !strings.Contains(want, "survived") {
		t.Fatalf("consul lock under nohup: %s", want)
	}
	if got := observe(lockrunPath(t)); got != want {
		t.Errorf("under nohup: lockrun %s; consul lock %s", got, want)
	}
}

// TestSchemeAddressVariableAsConsulLock: CONSUL_HTTP_ADDR with a scheme and
// an IPv6 address ("http://[::1]:PORT", here a relay to the agent) works
// for consul lock, whose API client strips the scheme; lockrun runs the
// command too instead of refusing the address.
func TestSchemeAddressVariableAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", a.HTTPAddr())
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	addr := "CONSUL_HTTP_ADDR=http://" + ln.Addr().String()
	for _, bin := range []string{a.Bin, lockrunPath(t)} {
		args := []string{"-timeout", "5s", "test/v6addr", "echo ran"}
		if bin == a.Bin {
			args = append([]string{"lock"}, args...)
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = env(a, addr)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil || string(out) != "ran\n" {
			t.Errorf("%s with %s: %v, stdout %q, stderr %q", filepath.Base(bin), addr, err, out, errb.String())
		}
	}
}
