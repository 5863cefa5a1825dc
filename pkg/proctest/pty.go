package proctest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// OpenPTY returns a new pseudo-terminal's master and slave (/dev/ptmx,
// unlocked). No pseudo-terminal fails t.
func OpenPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// Terminal is a shell script running in a new session whose controlling
// terminal is a fresh pseudo-terminal, as a script run by an operator's
// shell (without job control) is: what it prints is collected, and Type
// types into it. The test's cleanup kills the script's session.
type Terminal struct {
	m    *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	read chan struct{} // closed when the terminal has nothing more to show
	stop sync.Once
}

// OnTerminal starts script with /bin/sh -c on a new pseudo-terminal, with
// the environment env.
func OnTerminal(t *testing.T, script string, env []string) *Terminal {
	t.Helper()
	m, s := OpenPTY(t)
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	tm := &Terminal{m: m, cmd: cmd, read: make(chan struct{})}
	go func() {
		defer close(tm.read)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(tm.Stop)
	return tm
}

// Stop kills the script's session and waits for it; later calls do nothing.
func (tm *Terminal) Stop() {
	tm.stop.Do(func() {
		_ = syscall.Kill(-tm.cmd.Process.Pid, syscall.SIGKILL)
		_ = tm.cmd.Wait()
		tm.m.Close()
		<-tm.read
	})
}

// Output is what the terminal has shown so far.
func (tm *Terminal) Output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// WaitFor reports whether sub shows on the terminal within d (a bound for
// a failing test, not a timing requirement).
func (tm *Terminal) WaitFor(sub string, d time.Duration) bool {
	for end := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(tm.Output(), sub) {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// Type writes s to the terminal as if typed.
func (tm *Terminal) Type(s string) { _, _ = tm.m.Write([]byte(s)) }
