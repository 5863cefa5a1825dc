package main

import (
	"context"
	"sync"
)

// flights joins identical work in flight (a question to an upstream or to
// the agent): the first caller of do for a key runs the work, callers that
// come while it runs wait for its result instead of repeating it. The zero
// value is ready to use.
type flights[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*flight[V]
}

type flight[V any] struct {
	done chan struct{}
	v    V
	err  error
}

// do returns work's result for key k: its own run's, or that of the run in
// flight for k, shared (treat it as read-only). A caller that joins a run
// calls joined (when not nil) first, and gives up with ctx.Err() when ctx
// ends before the run does; the run itself goes on for the others.
func (g *flights[K, V]) do(ctx context.Context, k K, joined func(), work func() (V, error)) (V, error) {
	g.mu.Lock()
	if fl, ok := g.m[k]; ok {
		g.mu.Unlock()
		if joined != nil {
			joined()
		}
		select {
		case <-fl.done:
			return fl.v, fl.err
		case <-ctx.Done():
			var zero V
			return zero, ctx.Err()
		}
	}
	if g.m == nil {
		g.m = map[K]*flight[V]{}
	}
	fl := &flight[V]{done: make(chan struct{})}
	g.m[k] = fl
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.m, k)
		g.mu.Unlock()
		close(fl.done)
	}()
	fl.v, fl.err = work()
	return fl.v, fl.err
}
