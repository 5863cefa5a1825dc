package watch

import (
	"context"
	"errors"
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
