package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// envexec under cluster faults: a leader election and a short cut-off of
// the host with no KV change must not restart the app; a change made during
// either fault gives exactly one restart after recovery, with the new value
// (several changes during one cut-off: one restart, with the last value).

// envStarts is the app's start log: one line "start VALUE" per start.
func envStarts(c *Cluster) []string {
	s := strings.TrimSpace(c.ReadShared("env/starts.log"))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// waitStarts waits until the app has started n times and returns when the
// n-th start was first seen.
func waitStarts(t *testing.T, c *Cluster, n int, value string) time.Time {
	t.Helper()
	at, err := waitUntil(long, func() error {
		s := envStarts(c)
		if len(s) < n {
			return fmt.Errorf("%d starts, want %d: %q", len(s), n, s)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, c.LogText("envexec"))
	}
	s := envStarts(c)
	if len(s) != n || s[n-1] != "start "+value {
		t.Fatalf("starts %q, want %d with the last %q\n%s", s, n, "start "+value, c.LogText("envexec"))
	}
	return at
}

// settle waits long enough for a needless restart to show (a blocking query
// that returns after the fault, a retry), then checks the start count.
func settle(t *testing.T, c *Cluster, what string, n int) {
	t.Helper()
	time.Sleep(6 * time.Second)
	if s := envStarts(c); len(s) != n {
		t.Errorf("%s: the app started %d times, want %d: %q\n%s", what, len(s), n, s, c.LogText("envexec"))
	}
}

// putKVUntil writes key=value, retrying through an election.
func putKVUntil(t *testing.T, c *Cluster, key, value string) time.Time {
	t.Helper()
	at, err := waitUntil(long, func() error { return c.PutKV(key, value) })
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func TestEnvexecFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster fault tests: not with -short")
	}
	c := New(t, Options{Hosts: 1, Programs: []string{"envexec"}})
	host := c.Hosts[0]
	putKVUntil(t, c, "faults/env/VALUE", "v1")
	// envexec reads stale: a follower that has not applied the write yet
	// would start the app without VALUE and restart it a moment later.
	if _, err := waitUntil(long, func() error { return c.KVEverywhere("faults/env/VALUE", "v1") }); err != nil {
		t.Fatal(err)
	}
	writeShared(t, c, "env/app.sh", "echo \"start $VALUE\" >> /shared/env/starts.log\nexec sleep 100000\n")
	startLogged(t, c, host, "envexec", "/bin/envexec", "-metrics-addr", "127.0.0.1:9101", "-prefix", "faults/env", "--", "/bin/sh", "/shared/env/app.sh")
	waitStarts(t, c, 1, "v1")

	// 1. Leader election, no KV change: no restart.
	killedAt, electedAt := electLeader(t, c)
	t.Logf("election without a change: new leader after %s", electedAt.Sub(killedAt).Round(time.Millisecond))
	settle(t, c, "election without a change", 1)

	// 2. A 10 s cut-off of the host, no KV change: no restart; /health
	// says degraded meanwhile (the app runs on its last environment).
	if err := c.Cut(host); err != nil {
		t.Fatal(err)
	}
	// Gossip marks the servers failed a few seconds into the cut.
	time.Sleep(8 * time.Second)
	checkDegraded(t, c, host, "envexec", "http://127.0.0.1:9101/health")
	time.Sleep(2 * time.Second)
	if err := c.Heal(host); err != nil {
		t.Fatal(err)
	}
	settle(t, c, "cut-off without a change", 1)

	// 3. A change made during an election: one restart with it.
	killed, err := c.KillLeader()
	if err != nil {
		t.Fatal(err)
	}
	killedAt = time.Now()
	accepted := putKVUntil(t, c, "faults/env/VALUE", "v2")
	if err := c.RestartServer(killed); err != nil {
		t.Fatal(err)
	}
	restarted := waitStarts(t, c, 2, "v2")
	t.Logf("change during an election: accepted %s after the kill, app restarted with it %s later", accepted.Sub(killedAt).Round(time.Millisecond), restarted.Sub(accepted).Round(time.Millisecond))
	if err := c.WaitHealthy(long); err != nil {
		t.Fatal(err)
	}
	settle(t, c, "change during an election", 2)

	// 4. Two changes made while the host is cut off: one restart after the
	// heal, with the last value.
	if err := c.Cut(host); err != nil {
		t.Fatal(err)
	}
	putKVUntil(t, c, "faults/env/VALUE", "v3-intermediate")
	time.Sleep(2 * time.Second)
	putKVUntil(t, c, "faults/env/VALUE", "v3")
	time.Sleep(8 * time.Second)
	if s := envStarts(c); len(s) != 2 {
		t.Errorf("the app restarted while its host was cut off: %q", s)
	}
	if err := c.Heal(host); err != nil {
		t.Fatal(err)
	}
	healAt := time.Now()
	restarted = waitStarts(t, c, 3, "v3")
	t.Logf("two changes during a 10 s cut-off: app restarted once, %s after the heal", restarted.Sub(healAt).Round(time.Millisecond))
	settle(t, c, "changes during a cut-off", 3)
	waits := 0
	for _, l := range strings.Split(c.LogText("envexec"), "\n") {
		if strings.Contains(l, "waiting for Consul") {
			waits++
		}
	}
	t.Logf("envexec logged %d 'waiting for Consul' lines in all", waits)
}
