package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/berth/berth/pkg/backoff"
	"github.com/hashicorp/consul/api"
)

// errConflict marks a prefix used by a lock of the other kind or a semaphore
// with another limit: a usage error, not something to wait out.
var errConflict = errors.New("conflict")

// held describes an acquired lock or semaphore slot.
type held struct {
	// token is the fencing token: the Raft index of the lock key at acquisition.
	token uint64
	// lost is closed when the lock is lost.
	lost <-chan struct{}
	// watch, when set, starts watching for the loss; it is called once the
	// child has started, to keep the hand-off path short. Nothing is missed:
	// the watch waits from the index of the acquisition.
	watch func()
}

// locker is one code path for the plain lock and the semaphore.
type locker interface {
	// acquire waits for the lock until ctx is done.
	acquire(ctx context.Context) (*held, error)
	// release gives the lock up (the session is destroyed separately).
	release(ctx context.Context) error
	// cleanup removes the lock key when nobody uses it any more.
	cleanup(ctx context.Context)
}

// plainLock implements the Consul API's Lock layout: key PREFIX/.lock, flags
// api.LockFlagValue, held by our session. It is our own loop so that a
// lock-delay is said in the log and retried at a chosen pace, the fencing
// token comes with the acquisition, and waiting honours a context.
type plainLock struct {
	kv           *api.KV
	txn          *api.Txn
	key          string
	session      string
	monitorRetry int
	delayRetry   time.Duration
	log          *slog.Logger

	stopMonitor context.CancelFunc
}

func (l *plainLock) acquire(ctx context.Context) (*held, error) {
	var waitIndex uint64
	bo := backoff.New(100*time.Millisecond, 5*time.Second)
	announced := false
	for {
		q := (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: 5 * time.Minute}).WithContext(ctx)
		pair, meta, err := l.kv.Get(l.key, q)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			l.log.Warn("waiting for Consul to read the lock key", "key", l.key, "err", err)
			if bo.Sleep(ctx) != nil {
				return nil, ctx.Err()
			}
			waitIndex = 0
			continue
		}
		bo.Reset()
		if pair != nil && pair.Flags != api.LockFlagValue {
			return nil, fmt.Errorf("%w: %s is not a lock (flags %#x): the prefix is used by a semaphore (-n above 1)", errConflict, l.key, pair.Flags)
		}
		if pair != nil && pair.Session != "" && pair.Session != l.session {
			if !announced {
				l.log.Info("waiting for the lock", "key", l.key, "holder_session", pair.Session)
				announced = true
			}
			waitIndex = meta.LastIndex
			continue
		}
		// Acquire with a one-operation transaction: it takes the lock exactly
		// as ?acquire= does (same key, flags, session, lock-delay), and its
		// result carries the key's ModifyIndex as written by the acquiring
		// Raft entry: the fencing token, with no second round trip.
		ok, resp, _, err := l.txn.Txn(api.TxnOps{&api.TxnOp{KV: &api.KVTxnOp{
			Verb: api.KVLock, Key: l.key, Session: l.session, Flags: api.LockFlagValue,
		}}}, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			l.log.Warn("acquire failed; retrying", "key", l.key, "err", err)
			if bo.Sleep(ctx) != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if !ok {
			// Refused: either someone else won the race (then the key has a
			// session and we wait on it), or a lock-delay is in force after
			// the previous holder's session was invalidated.
			why := ""
			if resp != nil && len(resp.Errors) > 0 {
				why = resp.Errors[0].What
			}
			if !strings.Contains(why, "lock delay") {
				// Another contender won: read the key again (at once, then
				// blocking on the new holder) without loading Consul while the
				// winner commits and starts its child.
				waitIndex = 0
				continue
			}
			l.log.Info("lock-delay in force after the previous holder's session was invalidated; retrying", "key", l.key, "retry_in", l.delayRetry, "consul", why)
			if backoff.SleepCtx(ctx, l.delayRetry) != nil {
				return nil, ctx.Err()
			}
			waitIndex = 0
			continue
		}
		if len(resp.Results) != 1 || resp.Results[0].KV == nil || resp.Results[0].KV.Session != l.session {
			return nil, fmt.Errorf("acquire %s: unexpected transaction result", l.key)
		}
		token := resp.Results[0].KV.ModifyIndex
		mctx, cancel := context.WithCancel(context.Background())
		l.stopMonitor = cancel
		lost := make(chan struct{})
		watch := func() {
			go l.monitor(mctx, token, lost)
			// The monitor keeps one connection busy; one quick read leaves a
			// second one idle in the pool, so the release need not dial.
			go func() { _, _, _ = l.kv.Get(l.key, (&api.QueryOptions{AllowStale: true}).WithContext(mctx)) }()
		}
		return &held{token: token, lost: lost, watch: watch}, nil
	}
}

// monitor closes lost when the key no longer names our session, or after
// monitorRetry consecutive errors talking to Consul.
func (l *plainLock) monitor(ctx context.Context, index uint64, lost chan struct{}) {
	defer close(lost)
	failures := 0
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute, RequireConsistent: true}).WithContext(ctx)
		pair, meta, err := l.kv.Get(l.key, q)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			if failures > l.monitorRetry {
				l.log.Error("lock lost: too many errors monitoring it", "key", l.key, "errors", failures, "err", err)
				return
			}
			l.log.Warn("error monitoring the lock; retrying", "key", l.key, "attempt", failures, "of", l.monitorRetry, "err", err)
			if backoff.SleepCtx(ctx, time.Second) != nil {
				return
			}
			continue
		}
		failures = 0
		if pair == nil || pair.Session != l.session {
			l.log.Error("lock lost: the key no longer names our session", "key", l.key)
			return
		}
		index = meta.LastIndex
	}
}

func (l *plainLock) release(ctx context.Context) error {
	if l.stopMonitor != nil {
		l.stopMonitor()
	}
	_, _, err := l.kv.Release(&api.KVPair{Key: l.key, Session: l.session, Flags: api.LockFlagValue}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("release %s: %w", l.key, err)
	}
	return nil
}

func (l *plainLock) cleanup(ctx context.Context) {
	// As api.Lock.Destroy: delete the key only if nobody holds it, by CAS.
	pair, _, err := l.kv.Get(l.key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || pair == nil || pair.Session != "" || pair.Flags != api.LockFlagValue {
		return
	}
	_, _, _ = l.kv.DeleteCAS(pair, (&api.WriteOptions{}).WithContext(ctx))
}

// semaphore wraps the Consul API's Semaphore, which implements the contender
// keys and the PREFIX/.lock holder list exactly as consul lock -n does.
type semaphore struct {
	client *api.Client
	sem    *api.Semaphore
	prefix string
	key    string
	sess   string
	log    *slog.Logger
}

func (s *semaphore) acquire(ctx context.Context) (*held, error) {
	bo := backoff.New(100*time.Millisecond, 5*time.Second)
	type result struct {
		lost <-chan struct{}
		err  error
	}
	for {
		// The API's Acquire checks its stop channel only between blocking
		// reads, so it runs aside and an interrupt returns at once; the
		// caller then destroys the session, which deletes our contender key.
		resc := make(chan result, 1)
		go func() {
			lost, err := s.sem.Acquire(ctx.Done())
			resc <- result{lost, err}
		}()
		var r result
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case r = <-resc:
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := r.err; err != nil {
			if errors.Is(err, api.ErrSemaphoreConflict) {
				return nil, fmt.Errorf("%w: %s/.lock is not a semaphore: the prefix is used by a plain lock (-n 1)", errConflict, s.prefix)
			}
			if strings.Contains(err.Error(), "limit conflict") {
				return nil, fmt.Errorf("%w: semaphore %s: %v", errConflict, s.prefix, err)
			}
			s.log.Warn("waiting for Consul to acquire the semaphore", "prefix", s.prefix, "err", err)
			if bo.Sleep(ctx) != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if r.lost == nil {
			continue
		}
		pair, _, err := s.client.KV().Get(s.key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("read %s after acquiring: %w", s.key, err)
		}
		if pair == nil || !strings.Contains(string(pair.Value), `"`+s.sess+`"`) {
			return nil, fmt.Errorf("semaphore %s: our session is not among the holders right after acquiring", s.prefix)
		}
		return &held{token: pair.ModifyIndex, lost: r.lost}, nil
	}
}

func (s *semaphore) release(context.Context) error {
	if err := s.sem.Release(); err != nil && !errors.Is(err, api.ErrSemaphoreNotHeld) {
		return fmt.Errorf("release semaphore %s: %w", s.prefix, err)
	}
	return nil
}

func (s *semaphore) cleanup(context.Context) {
	// Removes the holder list only when no contender is left; "in use" is fine.
	_ = s.sem.Destroy()
}
