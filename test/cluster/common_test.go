package cluster

import (
	"strings"
	"testing"
	"time"
)

// Helpers shared by the program fault tests (lockrun, templater, envexec,
// dnsforward, registrator).

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
func writeShared(t *testing.T, c *Cluster, rel, content string) {
	t.Helper()
	if _, err := c.WriteShared(rel, content); err != nil {
		t.Fatal(err)
	}
}

// mustStart runs args on host h and kills the command, if still running,
// when the test ends.
func mustStart(t *testing.T, c *Cluster, h *Node, args ...string) *Proc {
	t.Helper()
	p, err := c.Start(h, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// startLogged runs argv on host h with its output appended to
// /shared/logs/NAME.log (printed by Close when the test fails; readable with
// c.LogText meanwhile).
func startLogged(t *testing.T, c *Cluster, h *Node, name string, argv ...string) *Proc {
	t.Helper()
	return mustStart(t, c, h, loggedArgv(name, argv...)...)
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
