package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
)

// TestFlightsJoin: callers that come while a run is in flight get its
// result without running the work again; a joiner whose context ends gives
// up with its error while the run goes on; the next call runs anew.
func TestFlightsJoin(t *testing.T) {
	var g flights[string, int, struct{}]
	var runs atomic.Int32
	release := make(chan struct{})
	var joinedWG sync.WaitGroup
	const joiners = 5
	joinedWG.Add(joiners + 1)
	work := func(struct{}) (int, error) {
		runs.Add(1)
		<-release
		return 42, nil
	}
	results := make(chan int, joiners+1)
	go func() {
		v, _ := g.do(context.Background(), "k", nil, nil, work)
		results <- v
	}()
	eventually.True(t, 10*time.Second, "the first run in flight", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		_, ok := g.m["k"]
		return ok
	})
	for i := 0; i < joiners; i++ {
		go func() {
			v, _ := g.do(context.Background(), "k", nil, func(struct{}) { joinedWG.Done() }, work)
			results <- v
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := g.do(ctx, "k", nil, func(struct{}) { joinedWG.Done() }, work)
		gaveUp <- err
	}()
	joinedWG.Wait()
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("a joiner whose context ended: %v, want context.Canceled", err)
	}
	close(release)
	for i := 0; i < joiners+1; i++ {
		if v := <-results; v != 42 {
			t.Fatalf("result %d, want 42", v)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("work ran %d times, want once", n)
	}
	if v, err := g.do(context.Background(), "k", nil, nil, func(struct{}) (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Fatalf("a call after the run: %d, %v; want a run of its own", v, err)
	}
}

// TestFlightsStateSeenByJoiners: a run's state is made once, when the run
// starts, and the run and every caller that joins it see that same state.
func TestFlightsStateSeenByJoiners(t *testing.T) {
	var g flights[string, int, *atomic.Int32]
	var starts atomic.Int32
	start := func() *atomic.Int32 { starts.Add(1); return new(atomic.Int32) }
	release := make(chan struct{})
	var seen *atomic.Int32
	go func() {
		_, _ = g.do(context.Background(), "k", start, nil, func(st *atomic.Int32) (int, error) {
			seen = st
			<-release
			return int(st.Load()), nil
		})
	}()
	eventually.True(t, 10*time.Second, "the first run in flight", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		_, ok := g.m["k"]
		return ok
	})
	done := make(chan int, 3)
	var joined sync.WaitGroup
	joined.Add(3)
	for i := 0; i < 3; i++ {
		go func() {
			v, _ := g.do(context.Background(), "k", start, func(st *atomic.Int32) { st.Add(1); joined.Done() }, func(*atomic.Int32) (int, error) { return -1, nil })
			done <- v
		}()
	}
	joined.Wait()
	close(release)
	for i := 0; i < 3; i++ {
		if v := <-done; v != 3 {
			t.Fatalf("the run saw %d joiners through its state, want 3", v)
		}
	}
	if n := starts.Load(); n != 1 || seen == nil {
		t.Fatalf("state made %d times, want once", n)
	}
}
