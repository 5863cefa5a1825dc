package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
)

func TestIsShellWrapper(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want bool
	}{
		{[]string{"/bin/sh", "-c", "a | b"}, true},
		{[]string{"sh", "-c", "x", "name"}, true},
		{[]string{"/usr/bin/sh", "-c", "x"}, true},
		{[]string{"sh", "script.sh"}, false},
		{[]string{"bash", "-c", "x"}, false},
		{[]string{"sh", "-c"}, false},
		{nil, false},
	} {
		if got := IsShellWrapper(c.argv); got != c.want {
			t.Errorf("IsShellWrapper(%q) = %v, want %v", c.argv, got, c.want)
		}
	}
}

// waitExit fails t unless c's child exits within timeout; when says when
// it should have ("on SIGUSR1").
func waitExit(t *testing.T, c *Child, timeout time.Duration, when string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(timeout):
		t.Fatalf("child still running %s", when)
	}
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	eventually.True(t, 20*time.Second, path+" to appear", func() bool { _, err := os.Stat(path); return err == nil })
}

// A forwarded SIGTERM that the child ignores: it gets the signal once, and
// SIGKILL once KillTimeout is over (checked from below only: it cannot come
// earlier); a second SIGTERM does not start a second grace.
func TestForwardTermThenOneGrace(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	ready := filepath.Join(dir, "ready")
	script := `trap 'echo term >> ` + log + `' TERM; touch ` + ready + `; while :; do sleep 0.05; done`
	const grace = 500 * time.Millisecond
	// Exec'd as given (not a sh -c wrapper of ours): the signal goes to the
	// shell only, so its sleeps do not die of it.
	c, err := Start(Config{Argv: []string{"/bin/sh", "-e", "-c", script}, KillTimeout: grace})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	waitFile(t, ready)
	sent := time.Now()
	if err := c.Forward(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(grace / 5)
	if err := c.Forward(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, c, 60*time.Second, "long after the grace period")
	took := time.Since(sent)
	if ex := c.Exit(); ex.Signal != syscall.SIGKILL {
		t.Fatalf("exit %v, want death by SIGKILL", ex)
	}
	if took < grace {
		t.Errorf("SIGKILL after %s, before the grace period %s", took, grace)
	}
	b, _ := os.ReadFile(log)
	if got := strings.Count(string(b), "term"); got != 2 {
		t.Errorf("child got SIGTERM %d times, want the 2 forwarded", got)
	}
}

// A signal for a sh -c wrapper reaches the program under the shell (the
// whole group); for an exec'd program only the program.
func TestForwardTargetsGroupOfShellWrapper(t *testing.T) {
	dir := t.TempDir()
	gcPID := filepath.Join(dir, "gc")
	gcLog := filepath.Join(dir, "gclog")
	// The grandchild is a second shell that logs USR1; the wrapper shell
	// catches USR1 and goes on waiting (an ignored signal would stay ignored
	// in the grandchild).
	inner := `trap 'echo usr1 >> ` + gcLog + `' USR1; echo $$ > ` + gcPID + `; while :; do sleep 0.05; done`
	argv, err := Argv([]string{`trap : USR1; /bin/sh -c "` + inner + `" & while :; do wait; done`}, ShellAuto)
	if err != nil {
		t.Fatal(err)
	}
	if !IsShellWrapper(argv) {
		t.Fatalf("Argv gave %q, not a sh -c wrapper", argv)
	}
	// Its sleeps die of the signal; the shells' reports of that go to a file.
	errs, _ := output(t)
	c, err := Start(Config{Argv: argv, KillTimeout: time.Second, Stderr: errs})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	readPID(t, gcPID) // written after its trap is set
	if err := c.Forward(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(gcLog); strings.Contains(string(b), "usr1") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b, _ := os.ReadFile(gcLog); !strings.Contains(string(b), "usr1") {
		t.Fatal("the program under sh -c did not get the forwarded signal")
	}
	if err := c.Reload(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(gcLog); strings.Count(string(b), "usr1") == 2 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the program under sh -c did not get the reload signal")
}

// A forwarded signal the child dies of: no SIGKILL follows, and the exit is
// the signal's.
func TestForwardIntChildExits(t *testing.T) {
	c, err := Start(Config{Argv: []string{"sleep", "300"}, KillTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Forward(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if ex := c.Exit(); ex.Signal != syscall.SIGINT {
		t.Fatalf("exit %v, want death by SIGINT", ex)
	}
	// After the exit, forwarding is a no-op, not an error.
	if err := c.Forward(syscall.SIGTERM); err != nil {
		t.Fatalf("Forward after exit: %v", err)
	}
	if err := c.Forward(syscall.SIGURG); err != nil {
		t.Fatalf("Forward of SIGURG: %v", err)
	}
}

func TestSplay(t *testing.T) {
	if SplayDelay(0) != 0 || SplayDelay(-time.Second) != 0 {
		t.Error("SplayDelay of a non-positive max is not 0")
	}
	for i := 0; i < 1000; i++ {
		if d := SplayDelay(10 * time.Millisecond); d < 0 || d >= 10*time.Millisecond {
			t.Fatalf("SplayDelay(10ms) = %s, outside [0, 10ms)", d)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Splay(ctx, time.Hour); err == nil {
		t.Error("Splay on a cancelled context returned nil")
	}
	if err := Splay(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Splay(1ms) = %v", err)
	}
}

func TestQuiescence(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	q := Quiescence{Min: 2 * time.Second, Max: 5 * time.Second}
	if q.Pending() || !q.Due().IsZero() || q.Ready(at(100)) {
		t.Fatal("zero Quiescence has something pending")
	}
	q.Change(at(0))
	if got := q.Due(); !got.Equal(at(2)) {
		t.Fatalf("one change: due %s, want +2s", got.Sub(t0))
	}
	if q.Ready(at(1.9)) || !q.Ready(at(2)) {
		t.Fatal("Ready before or not at the due time")
	}
	// Changes every second keep pushing by Min until Max after the first.
	for s := 1.0; s <= 4; s++ {
		q.Change(at(s))
	}
	if got := q.Due(); !got.Equal(at(5)) {
		t.Fatalf("a burst: due %s, want the max +5s", got.Sub(t0))
	}
	q.Reset()
	if q.Pending() {
		t.Fatal("pending after Reset")
	}
	// The next burst counts its max from its own first change.
	q.Change(at(10))
	if got := q.Due(); !got.Equal(at(12)) {
		t.Fatalf("after Reset: due %s, want +12s", got.Sub(t0))
	}
	// No usable Max: only Min counts.
	q = Quiescence{Min: time.Second}
	q.Change(at(0))
	q.Change(at(30))
	if got := q.Due(); !got.Equal(at(31)) {
		t.Fatalf("Max 0: due %s, want +31s", got.Sub(t0))
	}
}
