package main

import (
	"context"
	"sync"
)

// flights joins identical work in flight (a question to an upstream or to
// the agent): the first caller of do for a key runs the work, callers that
// come while it runs wait for its result instead of repeating it. Each run
// may carry state of type S that its joiners see (the forwarder's: who
// asked, so that a client's repeat can be sent upstream again). The zero
// value is ready to use.
type flights[K comparable, V, S any] struct {
	mu sync.Mutex
	m  map[K]*flight[V, S]
}

type flight[V, S any] struct {
	done  chan struct{}
	state S
	v     V
	err   error
}

// do returns work's result for key k: its own run's, or that of the run in
// flight for k, shared (treat it as read-only). A run's state is made by
// start (the zero S when start is nil) before any caller can join it, and
// passed to work. A caller that joins a run calls joined (when not nil)
// with the run's state first, and gives up with ctx.Err() when ctx ends
// before the run does; the run itself goes on for the others.
func (g *flights[K, V, S]) do(ctx context.Context, k K, start func() S, joined func(S), work func(S) (V, error)) (V, error) {
	g.mu.Lock()
	if fl, ok := g.m[k]; ok {
		g.mu.Unlock()
		if joined != nil {
			joined(fl.state)
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
		g.m = map[K]*flight[V, S]{}
	}
	fl := &flight[V, S]{done: make(chan struct{})}
	if start != nil {
		fl.state = start()
	}
	g.m[k] = fl
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.m, k)
		g.mu.Unlock()
		close(fl.done)
	}()
	fl.v, fl.err = work(fl.state)
	return fl.v, fl.err
}
