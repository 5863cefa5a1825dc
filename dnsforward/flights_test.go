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
	var g flights[string, int]
	var runs atomic.Int32
	release := make(chan struct{})
	var joinedWG sync.WaitGroup
	const joiners = 5
	joinedWG.Add(joiners + 1)
	work := func() (int, error) {
		runs.Add(1)
		<-release
		return 42, nil
	}
	results := make(chan int, joiners+1)
	go func() {
		v, _ := g.do(context.Background(), "k", nil, work)
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
			v, _ := g.do(context.Background(), "k", joinedWG.Done, work)
			results <- v
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := g.do(ctx, "k", joinedWG.Done, work)
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
	if v, err := g.do(context.Background(), "k", nil, func() (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Fatalf("a call after the run: %d, %v; want a run of its own", v, err)
	}
}
