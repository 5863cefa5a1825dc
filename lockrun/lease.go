package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// The lease.
//
// Consul refuses a lock to every session for the lock-delay after the
// session holding it is invalidated (Consul's documented lock-delay; the
// semaphore gets the same rule from lockrun's own waiters, see semaphore.go).
// If Consul's leader confirmed, with a consistent read, that our session
// holds the lock at some moment after we sent the request at time T, our
// session was valid after T, so nobody can hold the lock before
// T + lock-delay. lockrun therefore has the child's process group stopped by
//
//	T + lock-delay − leaseMargin
//
// whatever the network or the agent does: it starts stopping it (SIGTERM,
// -kill-timeout, SIGKILL) at T + lock-delay − leaseMargin − kill-timeout. T is
// read from the holder's monotonic clock; leaseMargin covers the SIGKILL
// taking effect, scheduling, and the difference in clock rate between this
// host and the servers.
const leaseMargin = time.Second

// confirmEvery is the pace of the consistent reads that extend the lease:
// one request a second while holding, besides the renewal every 5s.
const confirmEvery = time.Second

// inFlightFor bounds the confirmations waiting for an answer at once (they
// hang while the host is cut off, or while the agent's connection to a
// server that died abruptly has not yet failed): one per confirmEvery over
// the whole lease, plus one, so requests hung on a dead route never stop a
// fresh one, sent after the agent moved to a live server, from extending
// the lease in time.
func inFlightFor(validFor time.Duration) int {
	return int(validFor/confirmEvery) + 1
}

// leaseFor is how long after a confirmation's send time lockrun may let the
// child run before it starts stopping it; an error names both flags when
// they leave no room for at least two confirmations.
func leaseFor(lockDelay, killTimeout time.Duration) (time.Duration, error) {
	d := lockDelay - leaseMargin - killTimeout
	if d < 2*confirmEvery {
		return 0, fmt.Errorf("-kill-timeout %s with -lock-delay %s: the child could outlive the lock (kill-timeout must be at most lock-delay − %s)",
			killTimeout, lockDelay, leaseMargin+2*confirmEvery)
	}
	return d, nil
}

// confirmFunc asks Consul's leader whether the session still holds the lock:
// (true, nil) it does, (false, nil) Consul says it does not, an error: no
// answer.
type confirmFunc func(ctx context.Context) (bool, error)

// leaseKeeper extends the lease with confirmations and reports, once, why the
// lock must be considered lost.
type leaseKeeper struct {
	confirm  confirmFunc
	validFor time.Duration
	// maxErrors, when at least 0, also ends the hold after more than that
	// many failed confirmations in a row (-monitor-retry as given).
	maxErrors int
	log       *slog.Logger
	metrics   *metrics
	// hint, when set, returns what may explain confirmations that hang
	// (checkAgent's finding about the agent), or "": it is added to the
	// messages of a lease that runs short.
	hint func() string
	// expires is the lease's end as run last set it (nil before run).
	expires atomic.Pointer[time.Time]
}

// ranOut reports whether the lease has run out: the child must not run on
// (its stop is run's, which reports it at once).
func (k *leaseKeeper) ranOut() bool {
	e := k.expires.Load()
	return e != nil && !time.Now().Before(*e)
}

// withHint is msg followed by the hint, when there is one.
func (k *leaseKeeper) withHint(msg string) string {
	if k.hint != nil {
		if h := k.hint(); h != "" {
			return msg + "; " + h
		}
	}
	return msg
}

type confirmation struct {
	sent time.Time
	held bool
	err  error
}

// run keeps the lease from sent (the acquiring request's send time) until
// ctx is done, and returns the reason the lock counts as lost.
func (k *leaseKeeper) run(ctx context.Context, sent time.Time) string {
	expires := sent.Add(k.validFor)
	k.expires.Store(&expires)
	timer := time.NewTimer(time.Until(expires))
	defer timer.Stop()
	inFlight := inFlightFor(k.validFor)
	results := make(chan confirmation, inFlight)
	slots := make(chan struct{}, inFlight)
	tick := time.NewTicker(confirmEvery)
	defer tick.Stop()
	errorsInRow := 0
	var failingSince time.Time
	for {
		k.metrics.leaseRemaining.Set(time.Until(expires).Seconds())
		select {
		case <-ctx.Done():
			return ""
		case <-timer.C:
			return k.withHint(fmt.Sprintf("no confirmation from Consul's leader since %s (lease of %s ran out): stopping the child before anyone else can take the lock",
				expires.Add(-k.validFor).Format(time.RFC3339Nano), k.validFor))
		case <-tick.C:
			select {
			case slots <- struct{}{}:
				go func() {
					defer func() { <-slots }()
					c := confirmation{sent: time.Now()}
					cctx, cancel := context.WithTimeout(ctx, k.validFor)
					c.held, c.err = k.confirm(cctx)
					cancel()
					results <- c
				}()
			default:
				// Every slot waits for an answer already; the timer decides.
			}
		case c := <-results:
			if ctx.Err() != nil {
				return ""
			}
			if c.err != nil {
				k.metrics.confirmErrors.Inc()
				errorsInRow++
				if failingSince.IsZero() {
					failingSince = c.sent
				}
				k.log.Warn("waiting for Consul's leader to confirm we hold the lock", "failing_since", failingSince.Format(time.RFC3339Nano),
					"lease_left", time.Until(expires).Round(time.Millisecond), "err", c.err)
				if k.maxErrors >= 0 && errorsInRow > k.maxErrors {
					return fmt.Sprintf("%d Consul errors in a row while holding (-monitor-retry %d)", errorsInRow, k.maxErrors)
				}
				continue
			}
			if !c.held {
				return "Consul's leader says our session no longer holds the lock"
			}
			k.metrics.confirmations.Inc()
			if !failingSince.IsZero() {
				k.log.Info("Consul's leader confirms we hold the lock again", "failing_for", time.Since(failingSince).Round(time.Millisecond))
			}
			errorsInRow, failingSince = 0, time.Time{}
			if e := c.sent.Add(k.validFor); e.After(expires) {
				if gap := e.Sub(expires); gap > 3*confirmEvery {
					// Confirmations hung (an election, a dead server on the
					// agent's route): say how close the lease came to
					// running out.
					k.log.Info(k.withHint("Consul's leader confirms we hold the lock after a gap"), "gap", gap.Round(time.Millisecond),
						"lease_left_before", time.Until(expires).Round(time.Millisecond))
				}
				expires = e
				k.expires.Store(&e)
				timer.Reset(time.Until(expires))
			}
		}
	}
}

// agentTimeoutWarning reads the agent's limits.rpc_client_timeout from
// GET /v1/agent/self (DebugConfig.RPCClientTimeout, a Go duration string)
// and returns a warning when it leaves less than half the lease: a consistent
// read sent to a server that hangs (its host frozen or powered off: no reset
// comes) waits that long before the agent gives up on that server and moves
// to another, and until then no confirmation can extend the lease (Consul's
// agent/consul/client.go: a failed RPC calls NotifyFailedServer; Consul's
// default is 60 s). "" when the setting is short enough or not readable.
func agentTimeoutWarning(self map[string]map[string]any, lease time.Duration) string {
	v, _ := self["DebugConfig"]["RPCClientTimeout"].(string)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d <= lease/2 {
		return ""
	}
	return fmt.Sprintf("the Consul agent's limits.rpc_client_timeout is %s: a server that hangs can hold every confirmation that long, longer than half the lease (%s), so a leader election may cost the lock needlessly; set it to at most %s on this host's agent (lockrun README, assumptions)",
		d, lease, (lease / 2).Truncate(time.Second))
}
