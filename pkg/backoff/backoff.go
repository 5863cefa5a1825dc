// Package backoff gives capped exponential delays with jitter for retry loops.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields Min, about 2×Min, 4×Min … up to Max, each with ±20% jitter
// (exactly Min, 2×Min, 4×Min … when Exact is set). The zero value is not
// useful: use New.
type Backoff struct {
	Min, Max time.Duration
	// Exact leaves the jitter out: the delays of consul-template's
	// config/retry.go RetryFunc, which envconsul and consul-template wait.
	Exact bool
	cur   time.Duration
}

// New returns a Backoff between min and max.
func New(min, max time.Duration) *Backoff { return &Backoff{Min: min, Max: max} }

// Next returns the next delay and advances.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	} else {
		b.cur *= 2
	}
	if b.cur > b.Max {
		b.cur = b.Max
	}
	if b.Exact {
		return b.cur
	}
	j := time.Duration(float64(b.cur) * (0.8 + 0.4*rand.Float64()))
	return j
}

// Reset starts again from Min.
func (b *Backoff) Reset() { b.cur = 0 }

// Active reports whether a delay was handed out since the last Reset.
func (b *Backoff) Active() bool { return b.cur != 0 }

// Sleep waits for the next delay or until ctx is done, returning ctx.Err() then.
func (b *Backoff) Sleep(ctx context.Context) error {
	return SleepCtx(ctx, b.Next())
}

// SleepCtx sleeps d or until ctx is done, returning ctx.Err() then.
func SleepCtx(ctx context.Context, d time.Duration) error {
	return SleepOrWake(ctx, d, nil)
}

// SleepOrWake sleeps d, or less when wake is closed (or sent on) first; it
// returns ctx.Err() when ctx is done first, else nil. A nil wake never fires.
func SleepOrWake(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	case <-wake:
	}
	return nil
}
