package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

// outcome is what a run of consul lock or lockrun did, as a script sees it.
type outcome struct {
	code int
	ran  string   // what the command wrote to its marker file ("-": it did not run)
	keys []string // KV keys added by the run, session IDs as <session>
	// sessions is the number of sessions the run left (sessions of other
	// tests that expire meanwhile are not counted).
	sessions int
}

var sessionID = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// runOutcome runs bin (lockrun, or consul with "lock" first in args)
// against a (c its client) with "stdin" as standard input; MARK in args is replaced by a
// fresh marker path.
func runOutcome(t *testing.T, a *consultest.Agent, c *api.Client, bin string, args []string) outcome {
	t.Helper()
	marker := filepath.Join(t.TempDir(), "ran")
	args = slices.Clone(args)
	for i := range args {
		args[i] = strings.ReplaceAll(args[i], "MARK", marker)
	}
	keys := func() []string {
		ks, _, err := c.KV().Keys("", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	sessions := func() []string {
		ss, _, err := c.Session().List(nil)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range ss {
			ids = append(ids, s.ID)
		}
		return ids
	}
	before, sessBefore := keys(), sessions()
	cmd := command(a, bin, args...)
	cmd.Stdin = strings.NewReader("stdin")
	out, err := cmd.CombinedOutput()
	o := outcome{ran: "-"}
	if ee, ok := err.(*exec.ExitError); ok {
		o.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %q: %v", bin, args, err)
	}
	t.Logf("%s %q: exit %d: %s", filepath.Base(bin), args, o.code, out)
	if b, err := os.ReadFile(marker); err == nil {
		o.ran = string(b)
	}
	for _, k := range keys() {
		if !slices.Contains(before, k) {
			o.keys = append(o.keys, sessionID.ReplaceAllString(k, "<session>"))
		}
	}
	for _, id := range sessions() {
		if !slices.Contains(sessBefore, id) {
			o.sessions++
		}
	}
	return o
}

// TestOddInputsAsConsulLock runs consul lock and lockrun on the same odd
// command lines (bad or edge values of every consul lock flag, prefixes
// with extra slashes or naming the KV root, blank or missing commands) and
// compares what a script sees: the exit code, whether the command ran (and
// what it read), the KV keys and sessions left behind. The peer is the
// oracle: no expected value is written here.
func TestOddInputsAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client() // one client: a new one per call would open a connection each
	cases := [][]string{
		// -n
		{"-n", "abc", "test/odd", "touch MARK"},
		{"-n", "0", "test/odd", "touch MARK"},
		{"-n", "-1", "test/odd", "touch MARK"},
		{"-n", "0"},
		{"-n", "0", "test/odd"},
		{"-n", "2", "-pass-stdin", "test/odd-sem", "cat > MARK"},
		{"-n", "2", "test/odd-sem", "cat > MARK"},
		{"-pass-stdin", "test/odd", "cat > MARK"},
		// -timeout and its older name -try: the last one given wins
		{"-try", "abc", "test/odd", "touch MARK"},
		{"-try", "1", "test/odd", "touch MARK"},
		{"-try", "-1s", "test/odd", "touch MARK"},
		{"-try", "0", "test/odd", "touch MARK"},
		{"-timeout", "1s", "-try", "2s", "test/odd", "touch MARK"},
		{"-timeout", "-1s", "-try", "2s", "test/odd", "touch MARK"},
		{"-try", "2s", "-timeout", "-1s", "test/odd", "touch MARK"},
		// boolean flags
		{"-child-exit-code=maybe", "test/odd", "touch MARK"},
		{"-child-exit-code=false", "test/odd", "touch MARK; exit 3"},
		{"-verbose=xyz", "test/odd", "touch MARK"},
		{"-shell=yes", "test/odd", "touch MARK"},
		{"-stale=maybe", "test/odd", "touch MARK"},
		// an empty -http-addr: the Consul API's default (CONSUL_HTTP_ADDR)
		{"-http-addr", "", "test/odd", "touch MARK"},
		{"-http-addr=", "-n", "2", "test/odd-sem", "touch MARK"},
		// a host no resolver finds (a stray space, a character no host
		// name has): consul lock exits at once; -timeout bounds a wait
		{"-timeout", "2s", "-http-addr", " 127.0.0.1:47999", "test/odd", "touch MARK"},
		{"-timeout", "2s", "-http-addr", "127.0.0.1 :47999", "test/odd", "touch MARK"},
		{"-timeout", "2s", "-http-addr", "http://bad host", "test/odd", "touch MARK"},
		{"-timeout", "2s", "-http-addr", "consul,local:47999", "test/odd", "touch MARK"},
		// -monitor-retry
		{"-monitor-retry", "-1", "test/odd", "touch MARK"},
		{"-monitor-retry", "abc", "test/odd", "touch MARK"},
		{"-monitor-retry", "0", "test/odd", "touch MARK"},
		{"-monitor-retry", "99999999999999999999", "test/odd", "touch MARK"},
		// -shell=false with a command string: not started
		{"-shell=false", "test/odd", "touch MARK"},
		{"-shell=false", "-child-exit-code", "test/odd", "touch MARK"},
		{"-shell=0", "test/odd", "touch", "MARK"},
		// prefixes
		{"/test/odd-slashes/", "touch MARK"},
		{"-n", "2", "/test/odd-slashes-sem/", "touch MARK"},
		{"", "touch MARK"},
		{"/", "touch MARK"},
		{".", "touch MARK"},
		{"-n", "2", "", "touch MARK"},
		{"-n", "2", "/", "touch MARK"},
		{"-n", "2", ".", "touch MARK"},
		{"-n", "2", "./", "touch MARK"},
		// prefixes whose keys keep a leading ".." (path.Join)
		{"..", "touch MARK"},
		{"../test/odd", "touch MARK"},
		{"test/../../odd", "touch MARK"},
		{"-n", "2", "../test/odd-sem", "touch MARK"},
		// blank or missing commands
		{"test/odd"},
		{""},
		{"test/odd", ""},
		{"test/odd", " "},
		{"test/odd", "", ""},
		{"test/odd", "", "touch MARK"},
		{"-shell=true", "test/odd", "", "touch MARK"},
		{"-shell=false", "test/odd", ""},
		{"-shell=false", "-child-exit-code", "test/odd", "", "touch", "MARK"},
	}
	// Sessions left may be fewer than consul lock's: consul lock's Unlock
	// destroys its session from the renew goroutine (api lock.go Unlock
	// closes sessionRenew; RenewPeriodic then calls Destroy) while the
	// command returns and the process exits, so whether its session is
	// left behind (until its TTL) is a race. lockrun must never leave more.
	for _, args := range cases {
		want := runOutcome(t, a, c, a.Bin, append([]string{"lock"}, args...))
		got := runOutcome(t, a, c, lockrunPath(t), args)
		if got.code != want.code || got.ran != want.ran || !slices.Equal(got.keys, want.keys) || got.sessions > want.sessions {
			t.Errorf("lockrun %q: exit %d, ran %q, left keys %q and %d sessions; consul lock: exit %d, ran %q, left keys %q and %d sessions",
				args, got.code, got.ran, got.keys, got.sessions, want.code, want.ran, want.keys, want.sessions)
		}
	}
}

// TestDoubleDashAfterPrefixRunsCommand: `lockrun PREFIX -- COMMAND ARGS`
// runs COMMAND ARGS as consul lock runs `PREFIX COMMAND ARGS`; consul lock
// itself hands "--" on to its shell (hashicorp/consul#776, README
// differences), which is logged here, not compared.
func TestDoubleDashAfterPrefixRunsCommand(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client() // one client: a new one per call would open a connection each
	for _, tc := range []struct{ flags, command []string }{
		{nil, []string{"touch", "MARK"}},
		{nil, []string{"touch MARK; exit 3"}},
		{[]string{"-child-exit-code"}, []string{"touch MARK; exit 3"}},
		{[]string{"-shell=false"}, []string{"touch", "MARK"}},
		{[]string{"-n", "2"}, []string{"touch", "MARK"}},
	} {
		without := append(append(slices.Clone(tc.flags), "test/dashdash"), tc.command...)
		with := append(append(slices.Clone(tc.flags), "test/dashdash", "--"), tc.command...)
		want := runOutcome(t, a, c, a.Bin, append([]string{"lock"}, without...))
		literal := runOutcome(t, a, c, a.Bin, append([]string{"lock"}, with...))
		t.Logf("consul lock %q: exit %d, ran %q (the difference README documents)", with, literal.code, literal.ran)
		got := runOutcome(t, a, c, lockrunPath(t), with)
		if got.code != want.code || got.ran != want.ran || !slices.Equal(got.keys, want.keys) {
			t.Errorf("lockrun %q: exit %d, ran %q, keys %q; consul lock %q: exit %d, ran %q, keys %q",
				with, got.code, got.ran, got.keys, without, want.code, want.ran, want.keys)
		}
	}
}

// TestInvalidUTF8PrefixAsConsulLock: a PREFIX that is not valid UTF-8 (a
// Latin-1 file name in it) is locked as consul lock locks it: the key with
// its bytes (consul lock's URL keeps them; lockrun's transaction JSON could
// not, so it acquires such a key with ?acquire= too). Alone, each tool runs
// the command and leaves the same keys and sessions (consul lock leaves the
// key: its clean-up deletes the key named in Consul's JSON answer, where
// the bad bytes read as U+FFFD, another key). A holder of either tool keeps
// the other waiting, which runs once it is released; lockrun's token is
// the key's index at acquisition, and the key names its session meanwhile.
// A semaphore there is refused (consul lock's loses its slot at once and
// then never acquires: api Semaphore.findLock compares listed keys).
func TestInvalidUTF8PrefixAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client()
	const prefix = "test/lat-\xe9t\xe9"
	key := prefix + "/.lock"
	mangled := strings.ToValidUTF8(key, "\uFFFD")
	kv := c.KV()
	exists := func(k string) bool {
		t.Helper()
		p, _, err := kv.Get(k, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p != nil
	}
	clear := func() {
		t.Helper()
		if _, err := kv.Delete(key, nil); err != nil {
			t.Fatal(err)
		}
	}
	clear()
	t.Cleanup(clear)

	// Alone: what a script sees, and the key with its bytes left behind.
	args := []string{prefix, "echo $CONSUL_LOCK_HELD > MARK"}
	want := runOutcome(t, a, c, a.Bin, append([]string{"lock"}, args...))
	wantLeft := exists(key)
	clear()
	got := runOutcome(t, a, c, lockrunPath(t), args)
	gotLeft := exists(key)
	if got.code != want.code || got.ran != want.ran || !slices.Equal(got.keys, want.keys) || got.sessions > want.sessions || gotLeft != wantLeft {
		t.Errorf("lockrun %q: exit %d, ran %q, left keys %q (%q with its bytes: %v) and %d sessions; consul lock: exit %d, ran %q, left keys %q (%v) and %d sessions",
			args, got.code, got.ran, got.keys, key, gotLeft, got.sessions, want.code, want.ran, want.keys, wantLeft, want.sessions)
	}
	if exists(mangled) {
		t.Errorf("a key %q (U+FFFD for the bad bytes) was written", mangled)
	}

	// Exclusion, both ways.
	bin := lockrunPath(t)
	for _, holderIsConsul := range []bool{true, false} {
		dir := t.TempDir()
		holderBin, holderArgs, waiterBin, waiterArgs := a.Bin, []string{"lock"}, bin, []string(nil)
		if !holderIsConsul {
			holderBin, holderArgs, waiterBin, waiterArgs = bin, nil, a.Bin, []string{"lock"}
		}
		name := func(b string) string { return filepath.Base(b) }
		h := proctest.Start(t, command(a, holderBin, append(holderArgs, prefix,
			fmt.Sprintf(`echo "$LOCKRUN_TOKEN $LOCKRUN_SESSION" > %[1]s/held; while [ ! -e %[1]s/go ]; do sleep 0.05; done`, dir))...), proctest.Options{})
		eventually.True(t, 20*time.Second, "holder", func() bool {
			b, err := os.ReadFile(dir + "/held")
			return err == nil && strings.HasSuffix(string(b), "\n")
		})
		pair, _, err := kv.Get(key, &api.QueryOptions{RequireConsistent: true})
		if err != nil || pair == nil || pair.Session == "" {
			t.Fatalf("%s holding %q: the key with its bytes is not held: %+v, %v", name(holderBin), prefix, pair, err)
		}
		if !holderIsConsul {
			b, _ := os.ReadFile(dir + "/held")
			f := strings.Fields(string(b))
			if len(f) != 2 || f[0] != strconv.FormatUint(pair.ModifyIndex, 10) || f[1] != pair.Session {
				t.Errorf("lockrun's token and session %q; the key's index %d and session %s", b, pair.ModifyIndex, pair.Session)
			}
		}
		w := proctest.Start(t, command(a, waiterBin, append(waiterArgs, prefix, "touch "+dir+"/ran")...), proctest.Options{})
		time.Sleep(1500 * time.Millisecond)
		if _, err := os.Stat(dir + "/ran"); err == nil {
			t.Errorf("%s holding %q, %s ran beside it", name(holderBin), prefix, name(waiterBin))
		}
		if !w.Alive() {
			t.Errorf("%s holding %q, %s did not wait (exit %d): %s", name(holderBin), prefix, name(waiterBin), w.Code(), w.Stderr.String())
		}
		if err := os.WriteFile(dir+"/go", nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if code := h.Wait(t, 20*time.Second); code != 0 {
			t.Errorf("%s holding %q: exit %d: %s", name(holderBin), prefix, code, h.Stderr.String())
		}
		if code := w.Wait(t, 30*time.Second); code != 0 {
			t.Errorf("%s waiting on %q: exit %d: %s", name(waiterBin), prefix, code, w.Stderr.String())
		}
		if _, err := os.Stat(dir + "/ran"); err != nil {
			t.Errorf("%s waiting on %q did not run once %s released it", name(waiterBin), prefix, name(holderBin))
		}
	}
	if exists(mangled) {
		t.Errorf("a key %q (U+FFFD for the bad bytes) was written", mangled)
	}

	// A semaphore: refused, nothing run or left.
	sem := []string{"-n", "2", "test/lat-sem-\xe9", "touch MARK"}
	if got := runOutcome(t, a, c, lockrunPath(t), sem); got.code != exitUsage || got.ran != "-" || len(got.keys) != 0 || got.sessions != 0 {
		t.Errorf("lockrun %q: exit %d, ran %q, left keys %q and %d sessions; want exit %d, nothing run or left",
			sem, got.code, got.ran, got.keys, got.sessions, exitUsage)
	}
}

// TestCtrlZAsConsulLock: Ctrl-Z in an interactive shell while the command
// runs stops the job and gives the prompt back, and fg continues the command
// to its end, as with consul lock, whose child shares its process group
// (command/lock startChild sets no process group). lockrun's child has a
// group of its own: lockrun stops itself with it, else the shell waited for
// lockrun and the terminal answered nobody. While the job is stopped its
// command does not run on (lockrun used to give it the terminal and a
// SIGCONT before it had stopped itself: its kill(2) of its own group
// returned before the stop).
func TestCtrlZAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	// status: the shell's $? for the stopped job, 128 + the signal that
	// stopped it (148 for SIGTSTP, 147 for SIGSTOP; bash 5.2 prints
	// "Stopped" for both).
	type seen struct {
		stopped, ranOnStopped, resumed bool
		status                         string
	}
	statusReport := regexp.MustCompile(`status=(\d+)`)
	observe := func(lockCmd string) seen {
		tm := proctest.OnTerminal(t, `PS1='$ ' exec bash --norc --noprofile -i`, env(a))
		tm.Type(lockCmd + " test/ctrlz 'echo rea''dy $PPID $$ e''nd; sleep 2; echo fin''ished'\n")
		var r seen
		if tm.WaitFor(" end", 10*time.Second) {
			killAtEnd(t, tm)
			tm.Type("\x1a")
			if r.stopped = tm.WaitFor("Stopped", 10*time.Second); r.stopped {
				// The job is stopped: its command too, past its sleep.
				time.Sleep(2500 * time.Millisecond)
				r.ranOnStopped = strings.Contains(tm.Output(), "finished")
				tm.Type("echo stat''us=$?\n")
				tm.WaitFor("status=1", 10*time.Second)
				if m := statusReport.FindStringSubmatch(tm.Output()); m != nil {
					r.status = m[1]
				}
				tm.Type("fg\n")
				r.resumed = tm.WaitFor("finished", 10*time.Second)
			}
		}
		if !r.stopped || !r.resumed {
			t.Logf("%s on a terminal printed %q", lockCmd, tm.Output())
		}
		return r
	}
	asConsulLock(t, a, "Ctrl-Z and fg on a terminal", observe)
}
