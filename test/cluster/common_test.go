package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Helpers shared by the program fault tests (templater, envexec,
// dnsforward, registrator).

// peerBinary finds a static build of a peer program (consul-template): the
// variable env, else the static build `make peers` keeps in berth's tools
// folder. Missing:
// fail under CI=true, skip otherwise.
func peerBinary(t *testing.T, env, name string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		home, _ := os.UserHomeDir()
		gopath := os.Getenv("GOPATH")
		if gopath == "" {
			gopath = filepath.Join(home, "go")
		}
		p = filepath.Join(strings.Split(gopath, ":")[0], "berth-tools", "peers-static", name+"-v0.41.1")
	}
	if _, err := os.Stat(p); err != nil {
		need(t, fmt.Sprintf("a static %s (%s, or make peers)", name, env), err)
	}
	return p
}

// eventually polls cond every 50ms until it returns nil or timeout passes;
// it returns the time cond first held.
func eventually(timeout time.Duration, cond func() error) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// electLeader kills the leader, waits for the others to elect one, starts
// the old leader again and waits for a healthy cluster. It returns the time
// of the kill and of the new leader.
func electLeader(t *testing.T, c *Cluster) (killedAt, electedAt time.Time) {
	t.Helper()
	killedAt = time.Now()
	killed, err := c.KillLeader()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(killed, long); err != nil {
		t.Fatal(err)
	}
	electedAt = time.Now()
	if err := c.RestartServer(killed); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(long); err != nil {
		t.Fatal(err)
	}
	return killedAt, electedAt
}

// writeShared writes a file below the shared folder (/shared in hosts).
func writeShared(t *testing.T, c *Cluster, rel, content string) string {
	t.Helper()
	p := filepath.Join(c.Shared, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o666); err != nil {
		t.Fatal(err)
	}
	return p
}

// startLogged runs argv on host h with its output appended to
// /shared/logs/NAME.log (printed by Close when the test fails; readable with
// logText meanwhile).
func startLogged(t *testing.T, c *Cluster, h *Node, name string, argv ...string) *Proc {
	t.Helper()
	return mustStart(t, c, h, "/bin/sh", "-c", "exec "+strings.Join(quoteAll(argv), " ")+" >>/shared/logs/"+name+".log 2>&1")
}

// logText is what a program started with startLogged wrote so far.
func logText(c *Cluster, name string) string {
	b, _ := os.ReadFile(filepath.Join(c.Shared, "logs", name+".log"))
	return string(b)
}

// checkDegraded asks a program's /health on a host (from inside the host,
// which may be cut off) and wants 200 "degraded: ..." naming since when.
func checkDegraded(t *testing.T, c *Cluster, h *Node, name, url string) {
	t.Helper()
	body, err := c.Exec(h, "wget", "-qO-", url)
	if err != nil || !strings.HasPrefix(body, "degraded: ") || !strings.Contains(body, "since ") {
		t.Errorf("%s /health during the cut-off: %q %v, want 200 \"degraded: ... since ...\"", name, body, err)
		return
	}
	t.Logf("%s /health during the cut-off: %s", name, strings.TrimSpace(body))
}
