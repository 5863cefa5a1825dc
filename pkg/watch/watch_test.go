package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// script is a fake fetch answering from a fixed list of results: the index
// edge cases are what Consul sends, but cannot be provoked on demand from a
// real agent (a timeout with the same index, an index going backwards).
type step struct {
	data  string
	index uint64
	err   error
}

func TestLoopEdgeCases(t *testing.T) {
	steps := []step{
		{"a", 5, nil},
		{"a", 5, nil},                      // blocking timeout: same index, not delivered
		{"", 0, errors.New("unreachable")}, // retried
		{"b", 7, nil},                      // after an error: delivered even if new
		{"c", 3, nil},                      // backwards: delivered, reset
		{"c", 3, nil},                      // same again: not delivered
		{"d", 9, nil},
	}
	var mu sync.Mutex
	var waits []uint64
	i := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fetch := func(ctx context.Context, wait uint64) (string, uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, wait)
		if i >= len(steps) {
			cancel()
			return "", 0, ctx.Err()
		}
		s := steps[i]
		i++
		return s.data, s.index, s.err
	}
	var got []string
	err := Loop(ctx, fetch, func(d string, idx uint64) { got = append(got, d) }, Options{RetryMin: time.Millisecond, RetryMax: time.Millisecond})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Loop returned %v, want context.Canceled", err)
	}
	want := []string{"a", "b", "c", "d"}
	if len(got) != len(want) {
		t.Fatalf("delivered %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivered %q, want %q", got, want)
		}
	}
	wantWaits := []uint64{0, 5, 5, 0, 7, 3, 3, 9}
	for i := range wantWaits {
		if waits[i] != wantWaits[i] {
			t.Fatalf("wait indexes %v, want %v", waits, wantWaits)
		}
	}
}

// TestLoopGivesUp: GiveUp is asked with the failures in a row, which any
// successful call (here one without new data) starts again; when it says
// stop, Loop returns a *GaveUpError after logging that it gives up, and
// logs no retry for that last failure.
func TestLoopGivesUp(t *testing.T) {
	down := errors.New("unreachable")
	steps := []step{
		{"a", 5, nil},
		{"", 0, down},
		{"", 0, down},
		{"a", 5, nil}, // a sign of life: the count starts again
		{"", 0, down},
		{"", 0, down},
		{"", 0, down}, // the third in a row: give up
		{"b", 6, nil}, // never asked
	}
	calls := 0
	fetch := func(ctx context.Context, wait uint64) (string, uint64, error) {
		s := steps[calls]
		calls++
		return s.data, s.index, s.err
	}
	var logs bytes.Buffer
	var asked []int
	var errs []time.Duration
	err := Loop(context.Background(), fetch, func(string, uint64) {}, Options{
		Name: "kv a", RetryMin: time.Millisecond, RetryMax: time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		GiveUp:  func(n int) bool { asked = append(asked, n); return n >= 3 },
		OnError: func(_ error, d time.Duration) { errs = append(errs, d) },
	})
	var gave *GaveUpError
	if !errors.As(err, &gave) || gave.Failures != 3 || !errors.Is(err, down) || gave.Name != "kv a" {
		t.Fatalf("Loop returned %v, want a GaveUpError after 3 failures", err)
	}
	if calls != 7 {
		t.Errorf("%d calls, want 7", calls)
	}
	if fmt.Sprint(asked) != "[1 2 1 2 3]" {
		t.Errorf("GiveUp asked with %v, want [1 2 1 2 3]", asked)
	}
	if len(errs) != 5 || errs[4] != 0 || errs[3] == 0 {
		t.Errorf("OnError retry delays %v, want 5 with the last 0", errs)
	}
	out := logs.String()
	if n := strings.Count(out, "retrying"); n != 4 {
		t.Errorf("%d retry lines, want 4 (none for the last failure):\n%s", n, out)
	}
	if i, j := strings.LastIndex(out, "level=WARN"), strings.Index(out, `level=ERROR msg="Consul retries exhausted; giving up" watch="kv a" failures=3`); j < 0 || j < i {
		t.Errorf("no give-up line after the retries:\n%s", out)
	}
}

// TestLoopExactRetry: with ExactRetry the delays told to OnError are
// RetryMin doubling to RetryMax, without jitter.
func TestLoopExactRetry(t *testing.T) {
	calls := 0
	fetch := func(ctx context.Context, wait uint64) (string, uint64, error) {
		calls++
		return "", 0, errors.New("unreachable")
	}
	var got []time.Duration
	_ = Loop(context.Background(), fetch, func(string, uint64) {}, Options{
		RetryMin: time.Millisecond, RetryMax: 8 * time.Millisecond, ExactRetry: true,
		GiveUp:  func(n int) bool { return n > 6 },
		OnError: func(_ error, d time.Duration) { got = append(got, d) },
	})
	want := []time.Duration{1, 2, 4, 8, 8, 8, 0}
	if len(got) != len(want) {
		t.Fatalf("delays %v, want %v ms", got, want)
	}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
}
