package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/berth/berth/pkg/backoff"
	"github.com/hashicorp/consul/api"
)

// errConflict marks a prefix used by a lock of the other kind or a semaphore
// with another limit: a usage error, not something to wait out.
var errConflict = errors.New("conflict")

// held describes an acquired lock or semaphore slot.
type held struct {
	// token is the fencing token: the Raft index of the lock key written by
	// the acquiring request.
	token uint64
	// session holds the lock.
	session string
	// sent is when the acquiring request was sent: the lease starts there.
	sent time.Time
}

// locker is one code path for the plain lock and the semaphore.
type locker interface {
	// acquire waits for the lock until ctx is done, re-creating the session
	// through the keeper when Consul invalidates it meanwhile. It calls
	// first.over once its first try is over.
	acquire(ctx context.Context, first *attempt) (*held, error)
	// confirm asks Consul's leader, with a consistent read, whether h's
	// session still holds the lock.
	confirm(ctx context.Context, h *held) (bool, error)
	// watch blocks until Consul says the lock is no longer h's (returning
	// why) or ctx is done (returning ""). Errors are retried: the lease,
	// not the watch, bounds how long a silent Consul is trusted.
	watch(ctx context.Context, h *held) string
	// release gives the lock up (the session is destroyed separately).
	release(ctx context.Context, h *held) error
	// cleanup removes the lock key when nobody uses it any more.
	cleanup(ctx context.Context)
}

// waitSession returns the current session, creating a new one when Consul
// invalidated it (with backoff between re-creations, never a spin).
func waitSession(ctx context.Context, k *sessionKeeper, bo *backoff.Backoff, log *slog.Logger, first *attempt) (string, error) {
	id, gone := k.current()
	select {
	case <-gone:
	default:
		return id, nil
	}
	log.Warn("our session was invalidated while waiting for the lock; creating a new one", "old_session", id)
	if err := bo.Sleep(ctx); err != nil {
		return "", err
	}
	return k.create(ctx, first)
}

// plainLock implements the Consul API's Lock layout: key PREFIX/.lock, flags
// api.LockFlagValue, held by our session. It is our own loop so that a
// lock-delay is said in the log and retried at a chosen pace, the fencing
// token comes with the acquisition, and waiting honours a context.
type plainLock struct {
	kv         *api.KV
	txn        *api.Txn
	key        string
	sessions   *sessionKeeper
	delayRetry time.Duration
	log        *slog.Logger
}

func (l *plainLock) acquire(ctx context.Context, first *attempt) (*held, error) {
	var waitIndex uint64
	bo := backoff.New(100*time.Millisecond, 5*time.Second)
	rebo := backoff.New(time.Second, 10*time.Second)
	announced := false
	for try := 0; ; try++ {
		if try > 0 {
			first.over() // the first try read the lock and did not get it
		}
		session, err := waitSession(ctx, l.sessions, rebo, l.log, first)
		if err != nil {
			return nil, err
		}
		q := (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: 5 * time.Minute}).WithContext(ctx)
		pair, meta, err := l.kv.Get(l.key, q)
		if err != nil {
			if err := retryAfter(ctx, bo, l.log, err, "waiting for Consul to read the lock key", "key", l.key); err != nil {
				return nil, err
			}
			waitIndex = 0
			continue
		}
		bo.Reset()
		if pair != nil && pair.Flags != api.LockFlagValue {
			return nil, fmt.Errorf("%w: %s is not a lock key (flags %#x): %s", errConflict, l.key, pair.Flags, keyUse(pair.Flags))
		}
		if pair != nil && pair.Session != "" && pair.Session != session {
			if !announced {
				// Debug: consul lock waits silently unless -verbose (cron mails stderr).
				l.log.Debug("waiting for the lock", "key", l.key, "holder_session", pair.Session)
				announced = true
			}
			waitIndex = meta.LastIndex
			continue
		}
		h, why, err := l.tryLock(ctx, session)
		switch {
		case err != nil:
			if err := retryAfter(ctx, bo, l.log, err, "acquire failed; retrying", "key", l.key); err != nil {
				return nil, err
			}
		case h != nil:
			rebo.Reset()
			return h, nil
		case deniedInTxn(why):
			// An ACL without key:write on the lock key: Consul answers the
			// transaction with 409 and the refusal among its errors, where
			// ?acquire= gives 403, on which consul lock ends at once.
			return nil, fmt.Errorf("%w: acquire %s: %s", errPermanent, l.key, why)
		case strings.Contains(why, "invalid session"):
			// Our session is gone (invalidated while we waited): the keeper's
			// renewal will say so; do not retry with it meanwhile.
			l.log.Warn("Consul refused our session while acquiring; checking it", "key", l.key, "consul", why)
			l.sessions.invalidate(session)
		case strings.Contains(why, "lock delay"):
			l.log.Info("lock-delay in force after the previous holder's session was invalidated; retrying", "key", l.key, "retry_in", l.delayRetry, "consul", why)
			if backoff.SleepCtx(ctx, l.delayRetry) != nil {
				return nil, ctx.Err()
			}
		}
		// Otherwise another contender won the race: read the key again (at
		// once, then blocking on the new holder) without loading Consul while
		// the winner commits and starts its child.
		waitIndex = 0
	}
}

// tryLock acquires with a one-operation transaction: it takes the lock exactly
// as ?acquire= does (same key, flags, session, lock-delay), and its result
// carries the key's ModifyIndex as written by the acquiring Raft entry: the
// fencing token, with no second round trip. A refusal returns Consul's reason.
func (l *plainLock) tryLock(ctx context.Context, session string) (*held, string, error) {
	if !utf8.ValidString(l.key) {
		return l.tryLockByURL(ctx, session)
	}
	sent := time.Now()
	ok, resp, _, err := l.txn.Txn(api.TxnOps{&api.TxnOp{KV: &api.KVTxnOp{
		Verb: api.KVLock, Key: l.key, Session: session, Flags: api.LockFlagValue,
	}}}, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, "", err
	}
	if !ok {
		why := ""
		if resp != nil && len(resp.Errors) > 0 {
			why = resp.Errors[0].What
		}
		return nil, why, nil
	}
	if len(resp.Results) != 1 || resp.Results[0].KV == nil || resp.Results[0].KV.Session != session {
		return nil, "", fmt.Errorf("acquire %s: unexpected transaction result", l.key)
	}
	return &held{token: resp.Results[0].KV.ModifyIndex, session: session, sent: sent}, "", nil
}

// tryLockByURL acquires a key that is not valid UTF-8 (a PREFIX with a
// Latin-1 file name in it) as consul lock does, with ?acquire=, whose URL
// carries the key's bytes: a transaction's JSON cannot (encoding/json, on
// both ends, makes each bad byte U+FFFD: another key). The fencing token is
// then read after the acquisition, consistently, once the key is seen to
// name our session: its ModifyIndex then is that of the acquiring write or
// of a later one made while we hold it, so it is still above every earlier
// holder's token and below every later one's. The lease starts when the
// acquiring request was sent, as for tryLock. Consul answers a refusal
// with a bare false: when the key is then free, a lock-delay refused it
// ("lock delay", as tryLock's reason), else another contender won ("").
func (l *plainLock) tryLockByURL(ctx context.Context, session string) (*held, string, error) {
	sent := time.Now()
	ok, _, err := l.kv.Acquire(&api.KVPair{Key: l.key, Session: session, Flags: api.LockFlagValue}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "invalid session") {
			return nil, "invalid session", nil
		}
		return nil, "", err
	}
	pair, _, err := l.kv.Get(l.key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		// Held perhaps, but without its token: the next try reads the key
		// and takes it again (a second ?acquire= by the holding session
		// keeps the lock).
		return nil, "", fmt.Errorf("read %s after acquiring it: %w", l.key, err)
	}
	switch {
	case ok && pair != nil && pair.Session == session:
		return &held{token: pair.ModifyIndex, session: session, sent: sent}, "", nil
	case !ok && (pair == nil || pair.Session == ""):
		return nil, "lock delay (Consul refused the free key)", nil
	}
	// Taken by another contender (ours lost right after acquiring, or the
	// race lost): wait for it.
	return nil, "", nil
}

func (l *plainLock) confirm(ctx context.Context, h *held) (bool, error) {
	pair, _, err := l.kv.Get(l.key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return false, err
	}
	return pair != nil && pair.Session == h.session, nil
}

func (l *plainLock) watch(ctx context.Context, h *held) string {
	index := h.token
	bo := backoff.New(200*time.Millisecond, 5*time.Second)
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute, RequireConsistent: true}).WithContext(ctx)
		pair, meta, err := l.kv.Get(l.key, q)
		if ctx.Err() != nil {
			return ""
		}
		if err != nil {
			l.log.Debug("error watching the lock key; retrying (the lease bounds how long we trust a silent Consul)", "key", l.key, "err", err)
			if bo.Sleep(ctx) != nil {
				return ""
			}
			continue
		}
		bo.Reset()
		if pair == nil || pair.Session != h.session {
			return "the lock key no longer names our session"
		}
		index = meta.LastIndex
	}
}

func (l *plainLock) release(ctx context.Context, h *held) error {
	_, _, err := l.kv.Release(&api.KVPair{Key: l.key, Session: h.session, Flags: api.LockFlagValue}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("release %s: %w", l.key, err)
	}
	return nil
}

func (l *plainLock) cleanup(ctx context.Context) {
	if !utf8.ValidString(l.key) {
		// consul lock's api.Lock.Destroy deletes the key named in Consul's
		// answer, whose JSON has U+FFFD for each bad byte: another key, so
		// the lock key is left behind. It is left here too, and that other
		// key is never touched.
		return
	}
	// As api.Lock.Destroy: delete the key only if nobody holds it, by CAS.
	pair, _, err := l.kv.Get(l.key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || pair == nil || pair.Session != "" || pair.Flags != api.LockFlagValue {
		return
	}
	_, _, _ = l.kv.DeleteCAS(pair, (&api.WriteOptions{}).WithContext(ctx))
}

// retryAfter logs why a Consul call failed (cause) and waits for the next
// backoff delay; it returns ctx's error when ctx ended first, or cause
// wrapped in errPermanent when waiting cannot help (then the caller stops).
func retryAfter(ctx context.Context, bo *backoff.Backoff, log *slog.Logger, cause error, msg string, args ...any) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if permanent(cause) {
		// A 4xx (a key Consul refuses, an ACL denial) will not pass by
		// waiting; consul lock ends at once on it too. The error names
		// what was asked for (args: the key or prefix), quoted, as
		// Consul's answer may not ("400 ()" for a key with a newline).
		var what strings.Builder
		for i := 0; i+1 < len(args); i += 2 {
			fmt.Fprintf(&what, "%v %q: ", args[i], fmt.Sprint(args[i+1]))
		}
		return fmt.Errorf("%w: %s%v", errPermanent, what.String(), cause)
	}
	log.Warn(msg, append(args, "err", cause)...)
	if bo.Sleep(ctx) != nil {
		return ctx.Err()
	}
	return nil
}

// deniedInTxn reports whether a transaction error (what Consul says of a
// failed operation) is an ACL refusal, which waiting does not change.
func deniedInTxn(why string) bool {
	return strings.Contains(why, "Permission denied") || strings.Contains(why, "ACL not found")
}

// keyUse says what a key found where a lock or semaphore key should be is
// used for, by its flags.
func keyUse(flags uint64) string {
	switch flags {
	case api.LockFlagValue:
		return "the prefix is used by a plain lock (-n 1)"
	case api.SemaphoreFlagValue:
		return "the prefix is used by a semaphore (-n above 1)"
	}
	return "it was written by something else than a lock or semaphore"
}
