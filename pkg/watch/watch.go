// Package watch runs Consul blocking-query loops: the one place that knows
// the edge cases of X-Consul-Index (a timeout returning the same index, an
// index going backwards after a snapshot restore or agent restart, zero), the
// minimum gap between calls, and retrying with backoff while Consul is away.
package watch

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/berth/berth/pkg/backoff"
)

// FetchFunc performs one blocking query: it waits for an index above
// waitIndex (0 means answer at once) and returns the data and the new index.
type FetchFunc[T any] func(ctx context.Context, waitIndex uint64) (T, uint64, error)

// Options tune a Loop.
type Options struct {
	// MinGap is the least time between two calls (default 0; a little jitter
	// is added when set) so a hot key cannot make the loop spin.
	MinGap time.Duration
	// RetryMin and RetryMax bound the backoff after errors (100ms, 30s).
	RetryMin, RetryMax time.Duration
	// ExactRetry waits exactly RetryMin, 2×RetryMin … RetryMax between
	// retries, without the ±20% jitter (backoff.Backoff.Exact).
	ExactRetry bool
	// GiveUp, if set, is asked after every failed call with the number of
	// failed calls in a row (a successful call, even one without new data,
	// starts the count again); when it says true, Loop logs that it gives
	// up, without a retry delay, tells OnError (retryIn 0) and returns a
	// *GaveUpError.
	GiveUp func(failures int) bool
	// Name identifies the loop in logs ("key app/db", "service web").
	Name string
	// Log receives retry messages; nil discards them.
	Log *slog.Logger
	// OnError, if set, is told about every failed call and the delay before
	// the next try (for metrics and health).
	OnError func(err error, retryIn time.Duration)
	// Wake, if set, is asked for a channel before every call; when that
	// channel is closed while the loop waits to retry after the call
	// failed, the wait ends at once (pkg/query closes it when its probe sees
	// Consul back, so recovery does not wait for the backoff).
	Wake func() <-chan struct{}
}

// Loop calls fetch until ctx is done and hands every new result to deliver,
// in order, from the loop's own goroutine. A result with an unchanged index
// (a blocking timeout) is not delivered. Errors are retried forever with
// backoff (until opt.GiveUp says stop); deliver is told nothing then, so
// consumers keep the last good data. Loop returns ctx.Err() when ctx is
// done, or a *GaveUpError.
func Loop[T any](ctx context.Context, fetch FetchFunc[T], deliver func(T, uint64), opt Options) error {
	if opt.RetryMin <= 0 {
		opt.RetryMin = 100 * time.Millisecond
	}
	if opt.RetryMax <= 0 {
		opt.RetryMax = 30 * time.Second
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bo := backoff.New(opt.RetryMin, opt.RetryMax)
	bo.Exact = opt.ExactRetry
	failures := 0 // failed calls in a row
	var index uint64
	first := true
	var last time.Time
	var failingSince time.Time // first error of the current outage
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if opt.MinGap > 0 && !last.IsZero() {
			gap := opt.MinGap + time.Duration(rand.Int64N(int64(opt.MinGap)/4+1))
			if wait := gap - time.Since(last); wait > 0 {
				if backoff.SleepCtx(ctx, wait) != nil {
					return ctx.Err()
				}
			}
		}
		last = time.Now()
		var wake <-chan struct{}
		if opt.Wake != nil {
			wake = opt.Wake()
		}
		data, newIndex, err := fetch(ctx, index)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if opt.GiveUp != nil && opt.GiveUp(failures) {
				log.Error("Consul retries exhausted; giving up", "watch", opt.Name, "failures", failures,
					"since", failingSince.UTC().Format(time.RFC3339), "for", time.Since(failingSince).Round(time.Second), "err", err)
				if opt.OnError != nil {
					opt.OnError(err, 0)
				}
				return &GaveUpError{Name: opt.Name, Failures: failures, Err: err}
			}
			d := bo.Next()
			log.Warn("waiting for Consul; retrying", "watch", opt.Name, "since", failingSince.UTC().Format(time.RFC3339),
				"for", time.Since(failingSince).Round(time.Second), "retry_in", d.Round(time.Millisecond), "err", err)
			if opt.OnError != nil {
				opt.OnError(err, d)
			}
			// After an outage the data may have been rebuilt: start afresh.
			index = 0
			first = true
			if backoff.SleepOrWake(ctx, d, wake) != nil {
				return ctx.Err()
			}
			continue
		}
		if bo.Active() {
			log.Info("Consul answering again", "watch", opt.Name, "after", time.Since(failingSince).Round(time.Millisecond))
		}
		failingSince = time.Time{}
		failures = 0
		bo.Reset()
		switch {
		case newIndex == 0:
			// Consul never returns 0 on purpose; treat as 1 so we still block.
			newIndex = 1
		case newIndex < index:
			// The index went backwards (agent restart, snapshot restore):
			// deliver and block from the new one.
		case newIndex == index && !first:
			// A blocking query that timed out: nothing changed.
			continue
		}
		first = false
		index = newIndex
		deliver(data, newIndex)
	}
}

// GaveUpError is Loop's answer when Options.GiveUp said stop: the watch's
// name, its failed calls in a row and the last error.
type GaveUpError struct {
	Name     string
	Failures int
	Err      error
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("%s: %v (%d failed calls in a row; retries exhausted)", e.Name, e.Err, e.Failures)
}

func (e *GaveUpError) Unwrap() error { return e.Err }
