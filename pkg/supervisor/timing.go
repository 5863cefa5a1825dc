package supervisor

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/berth/berth/pkg/backoff"
)

// SplayDelay is a uniformly random duration in [0, max): how long to wait
// before reloading or restarting a child, so that many hosts seeing the same
// change do not all act at once (consul-template child/child.go
// randomSplay). It is 0 when max is 0 or negative.
func SplayDelay(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(max)))
}

// Splay waits SplayDelay(max). It returns ctx.Err() if ctx is done first,
// else nil.
func Splay(ctx context.Context, max time.Duration) error {
	d := SplayDelay(max)
	if d == 0 {
		return ctx.Err()
	}
	return backoff.SleepCtx(ctx, d)
}

// Quiescence is the -wait min:max rule: a change is acted on once no further
// change came for Min, and no later than Max after the first change of the
// burst (consul-template manager/runner.go quiescence; envconsul's -wait).
// A Max of 0 or below Min bounds nothing beyond Min. The zero value has
// nothing pending. It is not safe for concurrent use.
type Quiescence struct {
	// Min is the quiet time wanted after the last change.
	Min time.Duration
	// Max is the longest wait after the first change.
	Max time.Duration

	first, last time.Time
}

// Change records a change at now.
func (q *Quiescence) Change(now time.Time) {
	if q.first.IsZero() {
		q.first = now
	}
	q.last = now
}

// Pending reports whether a change waits.
func (q *Quiescence) Pending() bool { return !q.first.IsZero() }

// Due is when the waiting change is to be acted on: the last change plus
// Min, or the first plus Max if that is earlier. It is the zero time when
// nothing waits.
func (q *Quiescence) Due() time.Time {
	if q.first.IsZero() {
		return time.Time{}
	}
	due := q.last.Add(q.Min)
	if q.Max >= q.Min && q.Max > 0 {
		if hard := q.first.Add(q.Max); hard.Before(due) {
			due = hard
		}
	}
	return due
}

// Ready reports whether a change waits and its Due time has come at now.
func (q *Quiescence) Ready(now time.Time) bool {
	return q.Pending() && !now.Before(q.Due())
}

// Reset forgets the waiting change (it was acted on, or undone).
func (q *Quiescence) Reset() { q.first, q.last = time.Time{}, time.Time{} }
