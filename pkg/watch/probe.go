package watch

import (
	"context"
	"sync"
	"time"
)

// Probe tells whether the local Consul agent reaches its servers. A blocking
// query sent before a host lost its servers hangs on the dead connection
// and returns no error until TCP gives up, so the watches alone cannot see
// that outage; a short local question at a steady pace can. Programs use it
// for /health: "degraded" while they serve their last good state.
type Probe struct {
	// Check returns nil while the agent reaches its servers
	// (consulclient.ServersReachable asks the agent's own state, no server
	// RPC: a probe per host must not cost the servers anything).
	Check func(ctx context.Context) error
	// Interval between probes (default 1s) and Timeout of one (1.5s).
	Interval, Timeout time.Duration
	// OnChange, if set, is called from Run when the state flips: down with
	// the first error of an outage, up (err nil) at the first success after
	// one.
	OnChange func(down bool, err error)

	mu      sync.Mutex
	since   time.Time // first failure of the current outage; zero while up
	lastErr error
}

// Run probes until ctx is done.
func (p *Probe) Run(ctx context.Context) {
	interval, timeout := p.Interval, p.Timeout
	if interval <= 0 {
		interval = time.Second
	}
	if timeout <= 0 {
		timeout = 1500 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := p.Check(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		wasDown := !p.since.IsZero()
		switch {
		case err == nil:
			p.since, p.lastErr = time.Time{}, nil
		case p.since.IsZero():
			p.since, p.lastErr = time.Now(), err
		default:
			p.lastErr = err
		}
		p.mu.Unlock()
		if p.OnChange != nil && wasDown != (err != nil) {
			p.OnChange(err != nil, err)
		}
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
