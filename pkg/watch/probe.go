package watch

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Probe tells whether the local Consul agent reaches a leader. A blocking
// query sent before a host lost its servers hangs on the dead connection
// and returns no error until TCP gives up, so the watches alone cannot see
// that outage; a short request at a steady pace can. Programs use it for
// /health: "degraded" while they serve their last good state.
type Probe struct {
	// Leader asks the agent for the Raft leader (api.Status.LeaderWithQueryOptions);
	// an empty answer counts as a failure.
	Leader func(ctx context.Context) (string, error)
	// Interval between probes (default 500ms) and Timeout of one (1.5s).
	Interval, Timeout time.Duration

	mu      sync.Mutex
	since   time.Time // first failure of the current outage; zero while up
	lastErr error
}

// Run probes until ctx is done.
func (p *Probe) Run(ctx context.Context) {
	interval, timeout := p.Interval, p.Timeout
	if interval <= 0 {
		interval = 500 * time.Millisecond
	}
	if timeout <= 0 {
		timeout = 1500 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		leader, err := p.Leader(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil && leader == "" {
			err = errors.New("no leader")
		}
		p.mu.Lock()
		switch {
		case err == nil:
			p.since, p.lastErr = time.Time{}, nil
		case p.since.IsZero():
			p.since, p.lastErr = time.Now(), err
		default:
			p.lastErr = err
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Down reports whether the last probe failed, since when the outage runs,
// and the last error.
func (p *Probe) Down() (bool, time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.since.IsZero(), p.since, p.lastErr
}
