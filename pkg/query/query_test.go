package query

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
)

// The tests in this file are pure (the -short tier): their Fetch functions
// answer what a real agent cannot be made to answer on demand (a stale
// answer from a server that lost the leader, an outage and its end).

// patience is how long a condition polled with eventually.True may take
// to hold: generous (the tests check that something happens, not how fast).
const patience = 20 * time.Second

// downCheck is a probe check that fails while down is set.
func downCheck(down *atomic.Bool) func(context.Context) error {
	return func(context.Context) error {
		if down.Load() {
			return errors.New("the agent reaches no Consul server (known_servers 0)")
		}
		return nil
	}
}

func TestOptions(t *testing.T) {
	c := New(Config{MaxStale: 2 * time.Second, Check: func(context.Context) error { return nil }})
	ctx := context.Background()
	q := Query{Name: "health.service(web@dc2)", Datacenter: "dc2", Cached: true}
	o := c.options(ctx, q, 0, true)
	if o.Datacenter != "dc2" || !o.AllowStale || !o.UseCache || o.WaitIndex != 0 || o.WaitTime != 0 || o.Context() != ctx {
		t.Fatalf("first call: %+v", o)
	}
	o = c.options(ctx, q, 42, true)
	if o.WaitIndex != 42 || o.WaitTime != DefaultWait {
		t.Fatalf("blocking call: wait index %d, wait %s; want 42, %s", o.WaitIndex, o.WaitTime, DefaultWait)
	}
	// Consul does not stream ?near: not cached then.
	o = c.options(ctx, Query{Name: "n", Near: "_agent", Cached: true}, 0, false)
	if o.UseCache || o.Near != "_agent" || o.AllowStale {
		t.Fatalf("near: %+v", o)
	}
	if got := New(Config{Wait: 5 * time.Second}).options(ctx, q, 1, false).WaitTime; got != 5*time.Second {
		t.Fatalf("Config.Wait 5s: wait %s", got)
	}
}

// An answer from a server whose last contact with the leader is older than
// MaxStale is asked again of the leader at once, without ?cached; a fresh
// enough one is taken.
func TestStaleTooOldAsksLeader(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxStale time.Duration
		contact  time.Duration
		want     []string // "stale" / "leader" per call
	}{
		{"fresh enough", 2 * time.Second, time.Second, []string{"stale"}},
		{"too old", 2 * time.Second, 3 * time.Second, []string{"stale", "leader"}},
		{"leader only", 0, time.Hour, []string{"leader"}},
		{"any stale", AnyStale, 100 * time.Hour, []string{"stale"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{MaxStale: tc.maxStale, Check: func(context.Context) error { return nil }})
			var calls []string
			v, meta, err := Get(context.Background(), c, Query{Name: "kv.get(x)", Cached: true}, func(o *api.QueryOptions) (string, *api.QueryMeta, error) {
				if o.AllowStale {
					calls = append(calls, "stale")
					if !o.UseCache {
						t.Errorf("first call not ?cached")
					}
					return "old", &api.QueryMeta{LastIndex: 7, LastContact: tc.contact}, nil
				}
				calls = append(calls, "leader")
				if len(calls) > 1 && o.UseCache {
					t.Errorf("leader re-ask with ?cached")
				}
				return "new", &api.QueryMeta{LastIndex: 8}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(calls) != len(tc.want) {
				t.Fatalf("calls %q, want %q", calls, tc.want)
			}
			for i := range calls {
				if calls[i] != tc.want[i] {
					t.Fatalf("calls %q, want %q", calls, tc.want)
				}
			}
			if want := map[string]string{"stale": "old", "leader": "new"}[calls[len(calls)-1]]; v != want || meta == nil {
				t.Fatalf("got %q %v, want %q", v, meta, want)
			}
		})
	}
}

// A hot query is limited to one call per MinGap after its burst.
func TestRateLimit(t *testing.T) {
	const burst, calls = 3, 8
	gap := 20 * time.Millisecond
	c := New(Config{MinGap: gap, Burst: burst, Check: func(context.Context) error { return nil }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Uint64
	start := time.Now()
	_ = Watch(ctx, c, Query{Name: "hot"}, func(o *api.QueryOptions) (uint64, *api.QueryMeta, error) {
		i := n.Add(1)
		if i == calls {
			cancel()
		}
		return i, &api.QueryMeta{LastIndex: i}, nil // a new index every call: the key is written all the time
	}, func(uint64) {})
	// calls-burst calls had to wait a gap each: a lower bound, which a
	// slow machine cannot break.
	if took, least := time.Since(start), time.Duration(calls-burst)*gap; took < least {
		t.Fatalf("%d calls in %s, want at least %s (burst %d, gap %s)", calls, took, least, burst, gap)
	}
}

// While the agent is away a query fails and retries on its backoff; when
// the probe sees Consul back it asks again at once, whatever the backoff,
// and Waiting/Failing say what it waited for meanwhile.
func TestRecoveryWakesRetries(t *testing.T) {
	var down atomic.Bool
	var pmu sync.Mutex
	var probed []bool
	c := New(Config{RetryMin: time.Hour, RetryMax: time.Hour, ProbeInterval: 5 * time.Millisecond, Check: downCheck(&down),
		OnProbe: func(d bool, _ error) { pmu.Lock(); probed = append(probed, d); pmu.Unlock() }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	var got atomic.Value
	var failed, oks atomic.Int32
	down.Store(true)
	eventually.True(t, patience, "the probe to see the outage", func() bool { d, _, _ := c.Down(); return d })
	go func() {
		_ = Watch(ctx, c, Query{Name: "kv.get(app/db)", OnError: func(error, time.Duration) { failed.Add(1) }, OnOK: func() { oks.Add(1) }},
			func(o *api.QueryOptions) (string, *api.QueryMeta, error) {
				if down.Load() {
					return "", nil, errors.New("connection refused")
				}
				return "v1", &api.QueryMeta{LastIndex: 3}, nil
			}, func(v string) { got.Store(v) })
	}()
	eventually.True(t, patience, "a failed call", func() bool { return failed.Load() > 0 })
	w := c.Waiting()
	if len(w) != 1 || w[0].Name != "kv.get(app/db)" || w[0].Answered || w[0].Err == nil {
		t.Fatalf("Waiting() = %+v", w)
	}
	f, since := c.Failing()
	if f["kv.get(app/db)"] != "connection refused" || since.IsZero() {
		t.Fatalf("Failing() = %v, %v", f, since)
	}
	// The backoff is an hour: only the recovery can bring the answer.
	down.Store(false)
	eventually.True(t, patience, "the answer after recovery", func() bool { return got.Load() == "v1" })
	eventually.True(t, patience, "nothing waited for", func() bool { return len(c.Waiting()) == 0 })
	if f, since := c.Failing(); len(f) != 0 || !since.IsZero() {
		t.Fatalf("after recovery Failing() = %v, %v", f, since)
	}
	pmu.Lock()
	defer pmu.Unlock()
	if len(probed) != 2 || !probed[0] || probed[1] || oks.Load() == 0 {
		t.Fatalf("OnProbe saw %v (want [true false]); OnOK %d times (want some)", probed, oks.Load())
	}
}

// Reached: false while the probe has never succeeded (Down alone looks the
// same as after an outage began), true from the first success on, also
// through a later outage.
func TestReached(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	c := New(Config{ProbeInterval: 5 * time.Millisecond, Check: downCheck(&down)})
	if c.Reached() {
		t.Fatal("Reached before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	eventually.True(t, patience, "the probe to see the outage", func() bool { d, _, _ := c.Down(); return d })
	if c.Reached() {
		t.Fatal("Reached while the probe never succeeded")
	}
	down.Store(false)
	eventually.True(t, patience, "the probe to reach Consul", c.Reached)
	down.Store(true)
	eventually.True(t, patience, "the probe to see the next outage", func() bool { d, _, _ := c.Down(); return d })
	if !c.Reached() {
		t.Fatal("Reached false again during a later outage")
	}
}

// A call in flight when Consul comes back (a blocking call hanging on a
// path the outage broke) is cancelled and asked again at once; that is not
// an error.
func TestRecoveryCancelsCallsInFlight(t *testing.T) {
	c, down, ctx := runProbed(t)
	var mu sync.Mutex
	var got []string
	var calls, errs atomic.Int32
	hanging := make(chan struct{})
	go func() {
		_ = Watch(ctx, c, Query{Name: "hang", OnError: func(error, time.Duration) { errs.Add(1) }},
			func(o *api.QueryOptions) (string, *api.QueryMeta, error) {
				switch calls.Add(1) {
				case 1:
					return "a", &api.QueryMeta{LastIndex: 1}, nil
				case 2:
					close(hanging)
					<-o.Context().Done() // hangs until cancelled
					return "", nil, o.Context().Err()
				}
				return "b", &api.QueryMeta{LastIndex: 2}, nil
			}, func(v string) { mu.Lock(); got = append(got, v); mu.Unlock() })
	}()
	<-hanging
	outageAndBack(t, c, down)
	eventually.True(t, patience, "the answer asked afresh", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	if got[0] != "a" || got[1] != "b" || errs.Load() != 0 {
		t.Fatalf("delivered %q with %d errors; want [a b], none", got, errs.Load())
	}
}

// Recheck: after a blocking answer that changed, one more read without
// blocking; its answer is taken unless it is behind.
func TestRecheck(t *testing.T) {
	c := New(Config{Check: func(context.Context) error { return nil }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []string
	var waits []uint64
	step := 0
	_ = Watch(ctx, c, Query{Name: "r", Recheck: true}, func(o *api.QueryOptions) (string, *api.QueryMeta, error) {
		waits = append(waits, o.WaitIndex)
		step++
		switch step {
		case 1:
			return "first", &api.QueryMeta{LastIndex: 5}, nil
		case 2: // blocking answer, late: newer data exists
			return "late", &api.QueryMeta{LastIndex: 6}, nil
		case 3: // the recheck
			return "current", &api.QueryMeta{LastIndex: 9}, nil
		case 4: // blocking answer
			return "x", &api.QueryMeta{LastIndex: 12}, nil
		case 5: // a recheck that is behind: ignored
			return "behind", &api.QueryMeta{LastIndex: 10}, nil
		}
		cancel()
		return "", nil, ctx.Err()
	}, func(v string) { got = append(got, v) })
	want := []string{"first", "current", "x"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("delivered %q, want %q", got, want)
	}
	wantWaits := []uint64{0, 5, 0, 9, 0, 12}
	for i := range wantWaits {
		if waits[i] != wantWaits[i] {
			t.Fatalf("wait indexes %v, want %v", waits, wantWaits)
		}
	}
}

// The periodic summary names the queries that waited longer than its
// period, and only those.
func TestLogWaiting(t *testing.T) {
	var buf strings.Builder
	c := New(Config{Log: slog.New(slog.NewTextHandler(&buf, nil)), Check: func(context.Context) error { return nil }})
	old := c.register("kv.get(old)")
	old.since = time.Now().Add(-time.Minute)
	c.register("kv.get(new)")
	c.logWaiting(30 * time.Second)
	if out := buf.String(); !strings.Contains(out, "waiting for Consul") || !strings.Contains(out, "kv.get(old)") || strings.Contains(out, "kv.get(new)") {
		t.Fatalf("log %q: want kv.get(old) only", out)
	}
	c.delivered(old)
	buf.Reset()
	c.logWaiting(30 * time.Second)
	if buf.Len() != 0 {
		t.Fatalf("nothing waited long, yet logged %q", buf.String())
	}
}

// After a recovery a streamed (?cached) query asks the servers until one
// call has succeeded (the agent's view may still be reconnecting), then is
// streamed again.
func TestRecoverySkipsCacheOnce(t *testing.T) {
	c, down, ctx := runProbed(t)
	var mu sync.Mutex
	var cached []bool
	var calls atomic.Int32
	hanging := make(chan struct{})
	go func() {
		_ = Watch(ctx, c, Query{Name: "svc", Cached: true},
			func(o *api.QueryOptions) (string, *api.QueryMeta, error) {
				mu.Lock()
				cached = append(cached, o.UseCache)
				mu.Unlock()
				n := calls.Add(1)
				switch {
				case n == 2:
					close(hanging)
					<-o.Context().Done() // hangs until the recovery cancels it
					return "", nil, o.Context().Err()
				case n >= 5:
					<-o.Context().Done()
					return "", nil, o.Context().Err()
				}
				return "v", &api.QueryMeta{LastIndex: uint64(n)}, nil
			}, func(string) {})
	}()
	<-hanging
	outageAndBack(t, c, down)
	eventually.True(t, patience, "two calls after the recovery", func() bool { return calls.Load() >= 5 })
	mu.Lock()
	defer mu.Unlock()
	// 1 cached; 2 cached, cancelled by the recovery; 3 the re-ask: not
	// cached; 4 and 5 after a success since the recovery: cached again.
	want := []bool{true, true, false, true, true}
	for i, w := range want {
		if cached[i] != w {
			t.Fatalf("calls' ?cached = %v, want %v", cached[:len(want)], want)
		}
	}
}

// runProbed starts a Client whose probe fails while the returned flag is
// set; it runs until the test ends.
func runProbed(t *testing.T) (*Client, *atomic.Bool, context.Context) {
	t.Helper()
	down := new(atomic.Bool)
	c, ctx, _ := startClient(t, Config{ProbeInterval: 5 * time.Millisecond, Check: downCheck(down)})
	return c, down, ctx
}

// startClient starts a Client with cfg; it runs until cancel or the end of
// the test.
func startClient(t *testing.T, cfg Config) (*Client, context.Context, context.CancelFunc) {
	t.Helper()
	c := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = c.Run(ctx) }()
	return c, ctx, cancel
}

// outageAndBack makes the probe see an outage, then Consul back.
func outageAndBack(t *testing.T, c *Client, down *atomic.Bool) {
	t.Helper()
	down.Store(true)
	eventually.True(t, patience, "the probe to see the outage", func() bool { d, _, _ := c.Down(); return d })
	down.Store(false)
}
