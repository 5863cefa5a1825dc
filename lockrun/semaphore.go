package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/berth/berth/pkg/backoff"
	"github.com/hashicorp/consul/api"
)

// semaphore implements the Consul API's Semaphore layout (the one consul lock
// -n uses, so both exclude each other): each contender holds the key
// PREFIX/<session> (flags api.SemaphoreFlagValue) with its own session of
// behaviour "delete"; the holders are listed in PREFIX/.lock as
// {"Limit":N,"Holders":{"<session>":true}}, changed by check-and-set.
//
// One rule differs from the API, for the lease (lease.go): a holder whose
// session is gone keeps its slot for the lock-delay after this waiter first
// saw it gone, as Consul's lock-delay does for a plain lock. The API prunes it
// at once, which lets a new holder start while a cut-off holder's child still
// runs. A consul lock -n waiter on the same prefix still prunes at once.
type semaphore struct {
	kv        *api.KV
	txn       *api.Txn
	prefix    string
	limit     int
	lockDelay time.Duration
	sessions  *sessionKeeper
	log       *slog.Logger

	// deadSince is when this waiter first saw each holder's session gone.
	deadSince map[string]time.Time
}

// semaphoreLock is the JSON value of PREFIX/.lock, as the Consul API writes it.
type semaphoreLock struct {
	Limit   int
	Holders map[string]bool
}

func (s *semaphore) lockKey() string                    { return path.Join(s.prefix, ".lock") }
func (s *semaphore) contenderKey(session string) string { return path.Join(s.prefix, session) }

// listPrefix lists the semaphore's keys: those under the prefix, or every
// key when the prefix is the KV root ("").
func (s *semaphore) listPrefix() string {
	if s.prefix == "" {
		return ""
	}
	return s.prefix + "/"
}

func (s *semaphore) acquire(ctx context.Context, first *attempt) (*held, error) {
	if s.deadSince == nil {
		s.deadSince = map[string]time.Time{}
	}
	bo := backoff.New(100*time.Millisecond, 5*time.Second)
	rebo := backoff.New(time.Second, 10*time.Second)
	var waitIndex uint64
	contending := ""
	announced := false
	for try := 0; ; try++ {
		if try > 0 {
			first.over() // the first try read the lock and did not get it
		}
		session, err := waitSession(ctx, s.sessions, rebo, s.log, first)
		if err != nil {
			return nil, err
		}
		if contending != session {
			if err := s.contend(ctx, session); err != nil {
				if err := retryAfter(ctx, bo, s.log, err, "waiting for Consul to write our contender key", "key", s.contenderKey(session)); err != nil {
					return nil, err
				}
				continue
			}
			contending, waitIndex = session, 0
		}
		st, meta, err := s.read(ctx, waitIndex, session)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, errConflict) {
				return nil, err
			}
			s.log.Warn("waiting for Consul to read the semaphore", "prefix", s.prefix, "err", err)
			if bo.Sleep(ctx) != nil {
				return nil, ctx.Err()
			}
			waitIndex = 0
			continue
		}
		bo.Reset()
		if !st.contending {
			s.log.Warn("our contender key is gone: our session was invalidated while waiting", "key", s.contenderKey(session))
			s.sessions.invalidate(session)
			contending = ""
			continue
		}
		wake := s.prune(st)
		if len(st.lock.Holders) >= s.limit {
			if !announced {
				// Debug: consul lock waits silently unless -verbose (cron mails stderr).
				s.log.Debug("waiting for a semaphore slot", "prefix", s.prefix, "limit", s.limit, "holders", len(st.lock.Holders))
				announced = true
			}
			waitIndex = meta.LastIndex
			if !wake.IsZero() {
				// Nothing may change in Consul when a dead holder's slot frees:
				// wake then to prune it.
				if err := s.waitChangeUntil(ctx, meta.LastIndex, wake); err != nil {
					return nil, err
				}
				waitIndex = 0
			}
			continue
		}
		h, why, err := s.take(ctx, session, st)
		switch {
		case err != nil:
			if err := retryAfter(ctx, bo, s.log, err, "acquire failed; retrying", "prefix", s.prefix); err != nil {
				return nil, err
			}
		case h != nil:
			rebo.Reset()
			return h, nil
		case deniedInTxn(why):
			return nil, fmt.Errorf("%w: acquire semaphore %s: %s", errPermanent, s.prefix, why)
		case strings.Contains(why, "session"):
			s.log.Warn("Consul refused our session while acquiring; checking it", "prefix", s.prefix, "consul", why)
			s.sessions.invalidate(session)
			contending = ""
		}
		// Otherwise another contender changed .lock first: read again.
		waitIndex = 0
	}
}

// contend writes our contender key, held by our session.
func (s *semaphore) contend(ctx context.Context, session string) error {
	ok, _, err := s.kv.Acquire(&api.KVPair{Key: s.contenderKey(session), Session: session, Flags: api.SemaphoreFlagValue},
		(&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	if !ok {
		// A key named after our own session can only be refused for an
		// invalid session.
		s.sessions.invalidate(session)
		return fmt.Errorf("contender key %s refused: session invalid", s.contenderKey(session))
	}
	return nil
}

// semState is one read of the prefix.
type semState struct {
	lockPair   *api.KVPair
	lock       semaphoreLock
	alive      map[string]bool
	contending bool // our contender key exists with our session
}

func (s *semaphore) read(ctx context.Context, waitIndex uint64, session string) (*semState, *api.QueryMeta, error) {
	q := (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: 5 * time.Minute}).WithContext(ctx)
	pairs, meta, err := s.kv.List(s.listPrefix(), q)
	if err != nil {
		return nil, nil, err
	}
	st := &semState{lockPair: &api.KVPair{Flags: api.SemaphoreFlagValue}, alive: map[string]bool{}}
	for _, p := range pairs {
		switch {
		case p.Key == s.lockKey():
			st.lockPair = p
		case p.Session != "":
			st.alive[p.Session] = true
			if p.Key == s.contenderKey(session) && p.Session == session {
				st.contending = true
			}
		}
	}
	if st.lockPair.Flags != api.SemaphoreFlagValue {
		return nil, nil, fmt.Errorf("%w: %s is not a semaphore key (flags %#x): %s", errConflict, s.lockKey(), st.lockPair.Flags, keyUse(st.lockPair.Flags))
	}
	st.lock = semaphoreLock{Limit: s.limit, Holders: map[string]bool{}}
	if st.lockPair.Value != nil {
		// A stored value is read from scratch, as the Consul API reads it: a
		// value without "Limit" (or "null") has limit 0, a conflict for
		// consul lock, not ours to take over.
		st.lock = semaphoreLock{}
		if err := json.Unmarshal(st.lockPair.Value, &st.lock); err != nil {
			return nil, nil, fmt.Errorf("%w: %s holds no semaphore: %v", errConflict, s.lockKey(), err)
		}
		if st.lock.Holders == nil {
			st.lock.Holders = map[string]bool{}
		}
	}
	if st.lock.Limit != s.limit {
		return nil, nil, fmt.Errorf("%w: semaphore %s: limit conflict: -n %d, but its holders use %d", errConflict, s.prefix, s.limit, st.lock.Limit)
	}
	return st, meta, nil
}

// prune drops holders whose session has been gone for the lock-delay since
// this waiter first saw it gone, and returns when the next one frees (zero
// when none is pending).
func (s *semaphore) prune(st *semState) time.Time {
	now := time.Now()
	var wake time.Time
	for h := range s.deadSince {
		if !st.lock.Holders[h] || st.alive[h] {
			delete(s.deadSince, h)
		}
	}
	for h := range st.lock.Holders {
		if st.alive[h] {
			continue
		}
		since, seen := s.deadSince[h]
		if !seen {
			since = now
			s.deadSince[h] = now
			s.log.Info("a holder's session is gone; its slot frees after the lock-delay", "prefix", s.prefix, "holder_session", h, "lock_delay", s.lockDelay)
		}
		frees := since.Add(s.lockDelay)
		if !now.Before(frees) {
			delete(st.lock.Holders, h)
			continue
		}
		if wake.IsZero() || frees.Before(wake) {
			wake = frees
		}
	}
	return wake
}

// waitChangeUntil blocks until the prefix changes past index or until t.
func (s *semaphore) waitChangeUntil(ctx context.Context, index uint64, t time.Time) error {
	wctx, cancel := context.WithDeadline(ctx, t)
	defer cancel()
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: time.Until(t) + time.Second}).WithContext(wctx)
	_, _, _ = s.kv.List(s.listPrefix(), q)
	return ctx.Err()
}

// take adds our session to the holders with one transaction: check-and-set
// of .lock on the index we read, and a check that our session still holds
// our contender key. The written .lock's ModifyIndex is the fencing token.
func (s *semaphore) take(ctx context.Context, session string, st *semState) (*held, string, error) {
	st.lock.Holders[session] = true
	value, err := json.Marshal(st.lock)
	if err != nil {
		return nil, "", err
	}
	sent := time.Now()
	ok, resp, _, err := s.txn.Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: s.contenderKey(session), Session: session}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.lockKey(), Value: value, Flags: api.SemaphoreFlagValue, Index: st.lockPair.ModifyIndex}},
	}, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, "", err
	}
	if !ok {
		why := ""
		if resp != nil && len(resp.Errors) > 0 {
			why = resp.Errors[0].What
			if resp.Errors[0].OpIndex == 0 {
				why = "check-session: our session no longer holds our contender key: " + why
			}
		}
		return nil, why, nil
	}
	for _, r := range resp.Results {
		if r.KV != nil && r.KV.Key == s.lockKey() {
			return &held{token: r.KV.ModifyIndex, session: session, sent: sent}, "", nil
		}
	}
	return nil, "", fmt.Errorf("acquire %s: unexpected transaction result", s.lockKey())
}

// confirm reads, consistently and in one transaction, that our session holds
// our contender key and is listed among the holders.
func (s *semaphore) confirm(ctx context.Context, h *held) (bool, error) {
	ok, resp, _, err := s.txn.Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: s.contenderKey(h.session), Session: h.session}},
		{KV: &api.KVTxnOp{Verb: api.KVGet, Key: s.lockKey()}},
	}, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return false, err
	}
	if !ok {
		return false, nil
	}
	for _, r := range resp.Results {
		if r.KV != nil && r.KV.Key == s.lockKey() {
			var l semaphoreLock
			if err := json.Unmarshal(r.KV.Value, &l); err != nil {
				return false, nil
			}
			return l.Holders[h.session], nil
		}
	}
	return false, nil
}

func (s *semaphore) watch(ctx context.Context, h *held) string {
	index := h.token
	bo := backoff.New(200*time.Millisecond, 5*time.Second)
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute, RequireConsistent: true}).WithContext(ctx)
		pair, meta, err := s.kv.Get(s.lockKey(), q)
		if ctx.Err() != nil {
			return ""
		}
		if err != nil {
			s.log.Debug("error watching the semaphore; retrying (the lease bounds how long we trust a silent Consul)", "key", s.lockKey(), "err", err)
			if bo.Sleep(ctx) != nil {
				return ""
			}
			continue
		}
		bo.Reset()
		var l semaphoreLock
		if pair == nil || json.Unmarshal(pair.Value, &l) != nil || !l.Holders[h.session] {
			return "our session is no longer among the semaphore's holders"
		}
		index = meta.LastIndex
	}
}

// release removes us from the holders (check-and-set, retried on a race),
// then deletes our contender key, as the Consul API's Semaphore.Release.
func (s *semaphore) release(ctx context.Context, h *held) error {
	for {
		pair, _, err := s.kv.Get(s.lockKey(), (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("release semaphore %s: %w", s.prefix, err)
		}
		var l semaphoreLock
		if pair == nil || json.Unmarshal(pair.Value, &l) != nil || !l.Holders[h.session] {
			break
		}
		delete(l.Holders, h.session)
		value, err := json.Marshal(l)
		if err != nil {
			return err
		}
		ok, _, err := s.kv.CAS(&api.KVPair{Key: s.lockKey(), Value: value, Flags: api.SemaphoreFlagValue, ModifyIndex: pair.ModifyIndex},
			(&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("release semaphore %s: %w", s.prefix, err)
		}
		if ok {
			break
		}
	}
	if _, err := s.kv.Delete(s.contenderKey(h.session), (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("release semaphore %s: delete contender key: %w", s.prefix, err)
	}
	return nil
}

// cleanup deletes .lock when no live holder is left, by check-and-set, as
// the Consul API's Semaphore.Destroy (contenders still waiting do not keep
// it).
func (s *semaphore) cleanup(ctx context.Context) {
	pairs, _, err := s.kv.List(s.listPrefix(), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return
	}
	// As the Consul API's Semaphore.Destroy, which consul lock calls: the
	// holders whose contender key lost its session are dead; with no live
	// holder the lock key goes, whoever still waits (a contender that
	// acquires later writes it again).
	var lockPair *api.KVPair
	live := map[string]bool{}
	for _, p := range pairs {
		if p.Key == s.lockKey() {
			lockPair = p
		} else if p.Session != "" {
			live[p.Session] = true
		}
	}
	if lockPair == nil || lockPair.Flags != api.SemaphoreFlagValue {
		return
	}
	var l semaphoreLock
	if json.Unmarshal(lockPair.Value, &l) != nil {
		return
	}
	for h := range l.Holders {
		if live[h] {
			return
		}
	}
	_, _, _ = s.kv.DeleteCAS(lockPair, (&api.WriteOptions{}).WithContext(ctx))
}
