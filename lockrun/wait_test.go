package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
)

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
