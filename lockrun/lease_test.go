package main

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/logging"
)

func TestLeaseForRefusesImpossibleFlags(t *testing.T) {
	if d, err := leaseFor(15*time.Second, 5*time.Second); err != nil || d != 9*time.Second {
		t.Fatalf("defaults: %s %v, want 9s", d, err)
	}
	for _, c := range []struct{ delay, kill time.Duration }{{15 * time.Second, 13 * time.Second}, {0, 5 * time.Second}, {3 * time.Second, time.Second}} {
		_, err := leaseFor(c.delay, c.kill)
		if err == nil || !strings.Contains(err.Error(), "-kill-timeout "+c.kill.String()) || !strings.Contains(err.Error(), "-lock-delay "+c.delay.String()) {
			t.Errorf("leaseFor(%s, %s) = %v; want an error naming both", c.delay, c.kill, err)
		}
	}
}

// A confirm that never answers (a cut-off host): the lease runs out on its
// own timer, measured from the last confirmed send time. The reason names
// what checkAgent found about the agent (the hint), which may explain it.
func TestLeaseRunsOutWithoutAnswers(t *testing.T) {
	k := &leaseKeeper{validFor: 2500 * time.Millisecond, maxErrors: -1, log: logging.Discard(), metrics: newMetrics(),
		confirm: func(ctx context.Context) (bool, error) { <-ctx.Done(); return false, ctx.Err() },
		hint:    func() string { return "the agent's limits.rpc_client_timeout is 1m0s" }}
	start := time.Now()
	why := k.run(context.Background(), start)
	if !strings.Contains(why, "lease") || !strings.Contains(why, "limits.rpc_client_timeout is 1m0s") {
		t.Fatalf("reason %q", why)
	}
	if el := time.Since(start); el < 2500*time.Millisecond {
		t.Fatalf("lease ended after %s, before it ran out", el)
	}
}

// Errors (an election answering 500) do not end the hold while confirmations
// keep arriving in between; -monitor-retry, when given, bounds errors in a row.
func TestLeaseErrorsAndMonitorRetry(t *testing.T) {
	var n atomic.Int32
	flaky := func(ctx context.Context) (bool, error) {
		if n.Add(1)%2 == 0 {
			return false, errors.New("No cluster leader")
		}
		return true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4500*time.Millisecond)
	defer cancel()
	k := &leaseKeeper{validFor: 2500 * time.Millisecond, maxErrors: -1, log: logging.Discard(), metrics: newMetrics(), confirm: flaky}
	if why := k.run(ctx, time.Now()); why != "" {
		t.Fatalf("hold ended with confirmations arriving: %q", why)
	}
	failing := func(ctx context.Context) (bool, error) { return false, errors.New("No cluster leader") }
	k = &leaseKeeper{validFor: time.Hour, maxErrors: 1, log: logging.Discard(), metrics: newMetrics(), confirm: failing}
	if why := k.run(context.Background(), time.Now()); !strings.Contains(why, "-monitor-retry 1") {
		t.Fatalf("reason %q, want -monitor-retry", why)
	}
	notOurs := func(ctx context.Context) (bool, error) { return false, nil }
	k = &leaseKeeper{validFor: time.Hour, maxErrors: -1, log: logging.Discard(), metrics: newMetrics(), confirm: notOurs}
	if why := k.run(context.Background(), time.Now()); !strings.Contains(why, "no longer holds") {
		t.Fatalf("reason %q", why)
	}
}

// A dead holder keeps its semaphore slot for the lock-delay after a waiter
// first saw its session gone.
func TestSemaphorePruneWaitsForLockDelay(t *testing.T) {
	s := &semaphore{lockDelay: time.Hour, log: logging.Discard(), deadSince: map[string]time.Time{}}
	st := &semState{lock: semaphoreLock{Limit: 2, Holders: map[string]bool{"live": true, "dead": true}}, alive: map[string]bool{"live": true}}
	wake := s.prune(st)
	if !st.lock.Holders["dead"] || wake.IsZero() {
		t.Fatalf("dead holder pruned at once (wake %v)", wake)
	}
	s.deadSince["dead"] = time.Now().Add(-2 * time.Hour)
	if wake := s.prune(st); st.lock.Holders["dead"] || !wake.IsZero() || !st.lock.Holders["live"] {
		t.Fatalf("dead holder kept past the lock-delay: %v", st.lock.Holders)
	}
}

func TestAgentTimeoutWarning(t *testing.T) {
	self := func(v any) map[string]map[string]any {
		return map[string]map[string]any{"DebugConfig": {"RPCClientTimeout": v}}
	}
	for _, c := range []struct {
		self map[string]map[string]any
		warn bool
	}{
		{self("1m0s"), true}, // Consul's default
		{self("5s"), true},
		{self("4.5s"), false},
		{self("3s"), false},
		{self(nil), false},
		{map[string]map[string]any{}, false},
		{self("bogus"), false},
	} {
		w := agentTimeoutWarning(c.self, 9*time.Second)
		if (w != "") != c.warn {
			t.Errorf("%v: warning %q, want one: %v", c.self, w, c.warn)
		}
		if c.warn && !strings.Contains(w, "limits.rpc_client_timeout") {
			t.Errorf("warning does not name the setting: %q", w)
		}
	}
}

// TestAgentTimeoutQuietByDefault: the test agent keeps Consul's default
// limits.rpc_client_timeout (60s, longer than half the default lease). A
// run that goes well says nothing about it (run from cron, a warning on
// every run would be mailed every time); -verbose shows it.
func TestAgentTimeoutQuietByDefault(t *testing.T) {
	a := consultest.Require(t, agent)
	var self map[string]map[string]any
	if _, err := a.Client().Raw().Query("/v1/agent/self", &self, nil); err != nil {
		t.Fatal(err)
	}
	if agentTimeoutWarning(self, 9*time.Second) == "" {
		t.Skipf("the test agent's rpc_client_timeout is short: %v", self["DebugConfig"]["RPCClientTimeout"])
	}
	// The child runs long enough for lockrun's look at the agent to answer.
	if r := runLR(t, a, "test/agent-timeout", "sleep 0.5"); r.code != 0 || strings.Contains(r.stderr, "rpc_client_timeout") {
		t.Errorf("exit %d; stderr mentions rpc_client_timeout on a run that went well: %q", r.code, r.stderr)
	}
	if r := runLR(t, a, "-verbose", "test/agent-timeout", "sleep 0.5"); r.code != 0 || !strings.Contains(r.stderr, "rpc_client_timeout") {
		t.Errorf("exit %d; -verbose does not mention rpc_client_timeout: %q", r.code, r.stderr)
	}
}
