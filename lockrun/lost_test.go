package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/supervisor"
)

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
	p := startLR(t, a, "-name", "deaftest", "-child-exit-code", "-kill-timeout", grace.String(), "test/deaf", script)
	readInt(t, dir+"/child") // written after the trap is set
	sent := time.Now()
	p.Signal(t, syscall.SIGTERM)
	if !p.Exited(grace + 60*time.Second) {
		t.Fatal("lockrun still running long after the grace period")
	}
	took := time.Since(sent)
	t.Logf("SIGTERM to exit: %s with -kill-timeout %s", took.Round(time.Millisecond), grace)
	if code := p.Code(); code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit %d, want %d (the child killed, -child-exit-code)", code, 128+int(syscall.SIGKILL))
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
