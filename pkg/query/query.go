// Package query is berth's one layer for Consul blocking queries, on top of
// watch.Loop. Every watch of every program goes through it, so they share
// one behaviour; callers say what to ask (a Query and a Fetch that calls the
// Consul API with the *api.QueryOptions it is given) and never build query
// options themselves.
//
// The rules, and where they come from:
//
//   - Wait. A blocking call waits up to DefaultWait, 60 s: consul-template's
//     default (config.DefaultBlockQueryWaitTime, its block_query_wait), so
//     berth costs the servers what its peer costs for an idle watch, and a
//     call stuck on a dead path returns within a minute. templater's
//     block_query_wait still overrides it (Config.Wait).
//   - Staleness (Config.MaxStale). 0: every read asks the leader (Consul's
//     default mode). Above 0: any server may answer, and an answer whose
//     X-Consul-LastContact is older than MaxStale is asked again of the
//     leader at once, as consul-template's view does for every dependency
//     (watch/view.go fetch: allowStale = false; continue). AnyStale: any
//     server, however stale, never asked again (the consul CLI's -stale;
//     dnsforward).
//   - Datacenter and near are taken from the Query; ?cached (Query.Cached)
//     only where Consul streams: health service queries (Health().Service
//     and Health().Connect) without near. Consul's streaming backend then
//     serves the first answer from the agent's materialized view instead of
//     a full server RPC per watcher. The leader re-ask is never cached.
//   - Rate. At most one call per DefaultMinGap (100 ms, consul-template's
//     minDelayBetweenUpdates in watch/view.go) per query, after a burst of
//     DefaultBurst (10) calls: a hot key cannot make a watch spin, and a
//     change after a quiet spell (or a few in a row, as a deploy writes
//     them) is never delayed.
//   - Errors. Retried with capped exponential backoff and jitter
//     (watch.Loop; RetryMin 100 ms doubling to RetryMax 30 s unless a
//     program's flags say otherwise; without jitter under ExactRetry),
//     forever unless Query.GiveUp says stop; callers keep their last good data; the
//     index restarts from 0 after an error, since Consul may have been
//     rebuilt.
//   - Outage recovery, the same everywhere. Client.Run probes every second
//     whether the local agent reaches its servers (consulclient.Reachability:
//     the agent's own view, free, and a status/leader RPC at most every 5 s).
//     When the probe sees Consul back after an outage, every query waiting
//     to retry asks again at once, and every call still in flight (a
//     blocking call sent before or during the outage, which may hang on a
//     dead path and tell nothing) is cancelled and asked again at once. So
//     recovery takes about a second after the agent reaches its servers
//     again, in every program, whatever the backoff had grown to. Those
//     first calls after a recovery skip ?cached: the agent's streamed view
//     reconnects on its own backoff and can serve the pre-outage data for
//     seconds more (12 s seen on the cluster harness after a 15 s cut);
//     once a call has succeeded, the query is streamed again;
//     consul-template instead waits for its next retry (250 ms doubling to
//     1 min), which made recovery take up to the backoff cap (30 s in two
//     berth programs, 5 s in the other two, before this package).
//   - What it waits for. Client.Waiting lists the queries without a first
//     answer or failing now, with since when and the last error; every
//     failed call is logged with the query's name, the outage's start and
//     the retry delay (watch.Loop); the probe's outages and recoveries are
//     logged once each; Run logs every 30 s the queries that waited longer
//     than that (a call hanging without an error says nothing otherwise);
//     Client.Collector exports the counts as metrics.
package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth/berth/pkg/consulclient"
	"github.com/berth/berth/pkg/watch"
	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"
)

// Defaults of a Config; see the package documentation for their sources.
const (
	DefaultWait     = 60 * time.Second
	DefaultMinGap   = 100 * time.Millisecond
	DefaultBurst    = 10
	DefaultRetryMin = 100 * time.Millisecond
	DefaultRetryMax = 30 * time.Second
)

// AnyStale as Config.MaxStale lets any server answer however stale, and
// never asks the leader again.
const AnyStale = time.Duration(math.MaxInt64)

// Config is what every query of a program shares.
type Config struct {
	// Client talks to the local agent.
	Client *api.Client
	// MaxStale bounds the staleness of an answer (see the package doc):
	// 0 leader only, >0 any server if its last contact with the leader is
	// at most this old, AnyStale any server.
	MaxStale time.Duration
	// Wait is the longest a blocking call waits (DefaultWait if 0).
	Wait time.Duration
	// MinGap and Burst limit each query's calls (DefaultMinGap and
	// DefaultBurst if 0). Programs leave them at their defaults.
	MinGap time.Duration
	Burst  int
	// RetryMin and RetryMax bound the backoff after a failed call
	// (DefaultRetryMin and DefaultRetryMax if 0).
	RetryMin, RetryMax time.Duration
	// ExactRetry leaves the jitter out of those delays (watch.Options):
	// for envexec and templater, whose peers wait exactly the backoff
	// doubling to the max (consul-template config/retry.go RetryFunc).
	ExactRetry bool
	// Log receives retry, outage and recovery messages; nil discards them.
	Log *slog.Logger
	// Check tells whether the agent reaches its servers, for Run's probe
	// (nil: consulclient.Reachability on Client).
	Check func(ctx context.Context) error
	// ProbeInterval is the time between two probes (1 s if 0).
	ProbeInterval time.Duration
	// OnProbe, if set, is told when Run's probe sees an outage begin
	// (down, with its error) or end (after the waiting queries were woken
	// and the calls in flight cancelled), from the probe's goroutine: for
	// a program that answers from memory and marks its answers stale.
	OnProbe func(down bool, err error)
}

// Client runs queries with one Config and tracks what they wait for. It is
// safe for concurrent use; make one per program with New.
type Client struct {
	cfg     Config
	log     *slog.Logger
	probe   *watch.Probe
	reached atomic.Bool // a probe has succeeded
	// recoveries counts the probe's recoveries; a query's first call after
	// one skips ?cached (see Watch).
	recoveries atomic.Uint64

	mu     sync.Mutex
	wake   chan struct{}          // closed and replaced when Consul is back
	calls  map[*inflight]struct{} // calls in flight
	states map[*state]struct{}    // queries being watched
	outage time.Time              // first failure while some query fails; zero otherwise
	errs   uint64                 // failed calls, ever
}

type inflight struct{ cancel context.CancelCauseFunc }

// state is one watched query.
type state struct {
	name     string
	since    time.Time // watch start while unanswered; first failure while failing
	answered bool
	failing  bool
	err      error
}

// errRecovered cancels the calls in flight when the probe sees Consul back.
var errRecovered = errors.New("the agent reaches its servers again: asking afresh")

// New returns a Client for cfg with the defaults filled in.
func New(cfg Config) *Client {
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.MinGap <= 0 {
		cfg.MinGap = DefaultMinGap
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = cfg.RetryMin
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: log, wake: make(chan struct{}), calls: map[*inflight]struct{}{},
		states: map[*state]struct{}{}}
	check := cfg.Check
	if check == nil && cfg.Client != nil {
		check = (&consulclient.Reachability{Client: cfg.Client}).Check
	}
	if check != nil {
		inner := check
		check = func(ctx context.Context) error {
			err := inner(ctx)
			if err == nil {
				c.reached.Store(true)
			}
			return err
		}
		c.probe = &watch.Probe{Check: check, Interval: cfg.ProbeInterval, OnChange: c.probeChanged}
	}
	return c
}

// API returns the Consul API client, for calls that are not queries
// (writes, the agent's own endpoints).
func (c *Client) API() *api.Client { return c.cfg.Client }

// summaryEvery is how often Run logs the queries that have waited longer
// than it for an answer.
const summaryEvery = 30 * time.Second

// Run probes the agent (see the package doc) and, every 30 s, logs the
// queries waiting longer than that for an answer, until ctx is done; it
// returns ctx.Err(). Without Run, queries still retry on their backoff.
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if c.probe != nil {
		wg.Add(1)
		go func() { defer wg.Done(); c.probe.Run(ctx) }()
	}
	t := time.NewTicker(summaryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			c.logWaiting(summaryEvery)
		}
	}
}

// logWaiting logs the queries that have waited longer than d.
func (c *Client) logWaiting(d time.Duration) {
	var names []string
	var oldest time.Time
	var lastErr error
	for _, s := range c.Waiting() {
		if time.Since(s.Since) < d {
			continue
		}
		names = append(names, s.Name)
		if oldest.IsZero() || s.Since.Before(oldest) {
			oldest = s.Since
		}
		if s.Err != nil {
			lastErr = s.Err
		}
	}
	if len(names) == 0 {
		return
	}
	c.log.Warn("waiting for Consul", "queries", len(names), "waiting_for", strings.Join(names, ", "),
		"since", oldest.UTC().Format(time.RFC3339), "for", time.Since(oldest).Round(time.Second), "last_err", lastErr)
}

// Down reports what Run's probe last saw: whether the agent reaches no
// server, since when, and why. It is false when Run is not running.
func (c *Client) Down() (bool, time.Time, error) {
	if c.probe == nil {
		return false, time.Time{}, nil
	}
	return c.probe.Down()
}

// Reached tells whether Run's probe has ever seen the agent reach its
// servers (false before the first probe, and while Consul has never been
// reached since Run began): "not reached yet" rather than "lost".
func (c *Client) Reached() bool { return c.reached.Load() }

func (c *Client) probeChanged(down bool, err error) {
	c.mu.Lock()
	n := len(c.states)
	if down {
		c.mu.Unlock()
		c.log.Warn("Consul unreachable; keeping the last answers", "queries", n, "err", err)
	} else {
		c.recoveries.Add(1)
		close(c.wake)
		c.wake = make(chan struct{})
		calls := len(c.calls)
		for f := range c.calls {
			f.cancel(errRecovered)
		}
		c.mu.Unlock()
		c.log.Info("Consul reachable again; asking afresh", "queries", n, "calls_cancelled", calls)
	}
	if c.cfg.OnProbe != nil {
		c.cfg.OnProbe(down, err)
	}
}

func (c *Client) wakeChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wake
}

// Status is what one query waits for.
type Status struct {
	// Name is the Query's name.
	Name string
	// Since is when the watch started (no answer yet) or when the current
	// run of failures began.
	Since time.Time
	// Answered tells whether the query has delivered data.
	Answered bool
	// Err is the last error while failing, nil while only waiting for a
	// first answer.
	Err error
}

// Waiting returns the queries without a first answer or failing now,
// sorted by name.
func (c *Client) Waiting() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Status
	for s := range c.states {
		if !s.answered || s.failing {
			out = append(out, Status{Name: s.name, Since: s.since, Answered: s.answered, Err: s.err})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Failing returns the last error of every query whose last call failed, by
// name, and since when some query has been failing without a break (zero
// when none fails).
func (c *Client) Failing() (map[string]string, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for s := range c.states {
		if s.failing {
			out[s.name] = s.err.Error()
		}
	}
	return out, c.outage
}

func (c *Client) register(name string) *state {
	s := &state{name: name, since: time.Now()}
	c.mu.Lock()
	c.states[s] = struct{}{}
	c.mu.Unlock()
	return s
}

func (c *Client) unregister(s *state) {
	c.mu.Lock()
	delete(c.states, s)
	c.settleOutageLocked()
	c.mu.Unlock()
}

func (c *Client) failed(s *state, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs++
	if !s.failing {
		s.failing, s.since = true, time.Now()
		if c.outage.IsZero() {
			c.outage = s.since
		}
	}
	s.err = err
}

func (c *Client) succeeded(s *state) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.failing {
		s.failing, s.err = false, nil
		c.settleOutageLocked()
	}
}

func (c *Client) delivered(s *state) {
	c.mu.Lock()
	s.answered = true
	c.mu.Unlock()
}

// settleOutageLocked ends the outage when no query fails any more.
func (c *Client) settleOutageLocked() {
	for s := range c.states {
		if s.failing {
			return
		}
	}
	c.outage = time.Time{}
}

// Query says what to ask; its fields other than Name go into every call's
// options.
type Query struct {
	// Name identifies the query in logs, metrics and Waiting
	// ("kv.get(app/db)", "service web").
	Name string
	// Datacenter to ask ("" for the agent's own).
	Datacenter string
	// Near sorts the answer by round-trip time from this node ("_agent":
	// the agent's own).
	Near string
	// Cached asks with ?cached, which Consul serves from its streaming
	// backend: set it for health service queries only. It is not used with
	// Near (Consul does not stream those) nor for the leader re-ask.
	Cached bool
	// Recheck reads once more without blocking after every blocking answer
	// that changed, and takes that answer when it is not behind: a blocking
	// answer can reach a host that was cut off long after the server sent
	// it, when newer data exists (envexec, which restarts its command on a
	// change, sets it).
	Recheck bool
	// OnError, if set, is told about every failed call and the delay before
	// the next try.
	OnError func(err error, retryIn time.Duration)
	// OnOK, if set, is told about every successful call, whether or not it
	// brought a new index (a blocking call that timed out is a sign of
	// life too).
	OnOK func()
	// GiveUp, if set, is asked after every failed call with the failed
	// calls in a row (a successful call starts the count again); true ends
	// the watch with a *watch.GaveUpError (watch.Options.GiveUp).
	GiveUp func(failures int) bool
}

// Fetch calls the Consul API once with opts (which carry the call's
// context) and returns the data and the answer's metadata.
type Fetch[T any] func(opts *api.QueryOptions) (T, *api.QueryMeta, error)

// Watch runs q until ctx is done and hands every answer with a new index to
// deliver, in order, from its own goroutine (see the package doc for waits,
// staleness, limits and retries). It returns ctx.Err(), or the
// *watch.GaveUpError of q.GiveUp.
func Watch[T any](ctx context.Context, c *Client, q Query, fetch Fetch[T], deliver func(T)) error {
	st := c.register(q.Name)
	defer c.unregister(st)
	lim := rate.NewLimiter(rate.Every(c.cfg.MinGap), c.cfg.Burst)
	seen := c.recoveries.Load()
	f := func(ctx context.Context, idx uint64) (T, uint64, error) {
		var zero T
		if err := lim.Wait(ctx); err != nil {
			return zero, 0, err
		}
		// After an outage the agent's streamed view may itself still wait
		// to reconnect (its own backoff, seen at 12 s after a 15 s cut):
		// until one call has succeeded since the recovery, ask the servers.
		// A recovery during the call cancels it and call asks again
		// uncached, so after a success the query is up to date.
		cq := q
		if c.recoveries.Load() != seen {
			cq.Cached = false
		}
		v, meta, err := call(ctx, c, cq, idx, fetch)
		if err != nil {
			return zero, 0, err
		}
		seen = c.recoveries.Load()
		if q.Recheck && idx > 0 && meta.LastIndex != idx {
			if v2, meta2, err2 := call(ctx, c, q, 0, fetch); err2 == nil && meta2.LastIndex >= meta.LastIndex {
				v, meta = v2, meta2
			}
		}
		c.succeeded(st)
		if q.OnOK != nil {
			q.OnOK()
		}
		return v, meta.LastIndex, nil
	}
	return watch.Loop(ctx, f, func(v T, _ uint64) {
		c.delivered(st)
		deliver(v)
	}, watch.Options{
		Name: q.Name, Log: c.log, RetryMin: c.cfg.RetryMin, RetryMax: c.cfg.RetryMax, ExactRetry: c.cfg.ExactRetry,
		Wake: c.wakeChan, GiveUp: q.GiveUp,
		OnError: func(err error, d time.Duration) {
			c.failed(st, err)
			if q.OnError != nil {
				q.OnError(err, d)
			}
		},
	})
}

// Get asks q once without blocking, with the same staleness rules as Watch.
func Get[T any](ctx context.Context, c *Client, q Query, fetch Fetch[T]) (T, *api.QueryMeta, error) {
	return call(ctx, c, q, 0, fetch)
}

// options returns the options of one call of q: blocking on waitIndex
// when it is above 0; stale tells whether any server may answer.
func (c *Client) options(ctx context.Context, q Query, waitIndex uint64, stale bool) *api.QueryOptions {
	o := &api.QueryOptions{Datacenter: q.Datacenter, Near: q.Near, AllowStale: stale, WaitIndex: waitIndex,
		UseCache: q.Cached && q.Near == ""}
	if waitIndex > 0 {
		o.WaitTime = c.cfg.Wait
	}
	return o.WithContext(ctx)
}

// call performs one call of q, asking the leader again when a stale answer
// is too old and asking afresh when the probe cancelled it on recovery.
func call[T any](ctx context.Context, c *Client, q Query, idx uint64, fetch Fetch[T]) (T, *api.QueryMeta, error) {
	stale := c.cfg.MaxStale > 0
	leaderAsk := false
	for {
		cctx, cancel := context.WithCancelCause(ctx)
		f := &inflight{cancel: cancel}
		c.mu.Lock()
		c.calls[f] = struct{}{}
		c.mu.Unlock()
		opts := c.options(cctx, q, idx, stale)
		if leaderAsk {
			opts.UseCache = false
		}
		v, meta, err := fetch(opts)
		c.mu.Lock()
		delete(c.calls, f)
		c.mu.Unlock()
		recovered := errors.Is(context.Cause(cctx), errRecovered)
		cancel(nil)
		switch {
		case err != nil && ctx.Err() == nil && recovered:
			// Cancelled by the probe on recovery: ask again at once, of
			// the servers (see Watch).
			q.Cached = false
			continue
		case err != nil:
			return v, nil, err
		case meta == nil:
			return v, nil, fmt.Errorf("%s: the answer has no query metadata", q.Name)
		case stale && meta.LastContact > c.cfg.MaxStale:
			c.log.Debug("stale answer too old; asking the leader", "query", q.Name,
				"last_contact", meta.LastContact, "max_stale", c.cfg.MaxStale)
			stale, leaderAsk = false, true
			continue
		}
		return v, meta, nil
	}
}

// RetryBounds turns consul-template's retry { backoff max_backoff } (as
// envconsul and consul-template take them, any durations) into RetryMin
// and RetryMax with the delays of consul-template v0.41.1 config/retry.go
// RetryFunc for retry n: backoff*2^n, but max_backoff once n is above
// int(log2(max_backoff/backoff)) when max_backoff is above 0. So a
// max_backoff below the backoff is every delay; a backoff of 0 or less
// with a max_backoff above 0 makes that log2 +Inf or NaN, whose conversion
// to int on amd64 is the smallest int: every delay is max_backoff; with
// neither above 0 every delay is 0 or less: retried at once (1ns, as
// Config takes 0 for its default; the rate limit still paces the calls);
// a max_backoff of 0 or less is no limit, capped here at an hour.
func RetryBounds(backoff, maxBackoff time.Duration) (time.Duration, time.Duration) {
	const atOnce, noLimit = time.Nanosecond, time.Hour
	switch {
	case maxBackoff > 0 && (backoff <= 0 || backoff > maxBackoff):
		return maxBackoff, maxBackoff
	case maxBackoff > 0:
		return backoff, maxBackoff
	case backoff <= 0:
		return atOnce, atOnce
	}
	return backoff, max(backoff, noLimit)
}

// FailuresToGiveUp is how many failed calls in a row of one query end the
// program under consul-template's retry settings (config/retry.go
// RetryFunc, called by watch/view.go poll after each failure, which resets
// its count on every successful call): with retries disabled the first
// failure; with attempts N > 0, N retries follow the first failure, so the
// N+1th in a row; with attempts 0 (unlimited) never, returned as 0.
func FailuresToGiveUp(enabled bool, attempts int) int {
	switch {
	case !enabled:
		return 1
	case attempts <= 0:
		return 0
	}
	return attempts + 1
}
