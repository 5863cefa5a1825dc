package proctest

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TaskGrace is how long a Task has to return after its cancel.
const TaskGrace = 15 * time.Second

// Task is a program's serve loop run in the test's own process (a Server's
// Serve, a Registrator's Run, a command's run function) until Stop or the
// end of the test: the in-process counterpart of Proc.
type Task[T any] struct {
	cancel context.CancelFunc
	done   chan struct{}
	result T
	stop   sync.Once
	t      testing.TB
	what   string
}

// Go starts fn in a goroutine with a context that Stop (or the end of the
// test) cancels; what names it in a failure. fn must return once its
// context is done.
func Go[T any](t testing.TB, what string, fn func(ctx context.Context) T) *Task[T] {
	ctx, cancel := context.WithCancel(context.Background())
	k := &Task[T]{cancel: cancel, done: make(chan struct{}), t: t, what: what}
	go func() {
		defer close(k.done)
		k.result = fn(ctx)
	}()
	t.Cleanup(func() { k.Stop() })
	return k
}

// Done is closed once fn has returned; Result is then what it returned.
func (k *Task[T]) Done() <-chan struct{} { return k.done }

// Result is what fn returned; only read it after Done is closed.
func (k *Task[T]) Result() T { return k.result }

// Stop cancels fn's context and waits TaskGrace for it to return, failing
// the test (not stopping it) when it does not. It returns fn's result (the
// zero value when fn did not return). Calls after the first only return the
// result.
func (k *Task[T]) Stop() T {
	k.stop.Do(func() {
		k.cancel()
		select {
		case <-k.done:
		case <-time.After(TaskGrace):
			k.t.Errorf("%s did not return within %s of its cancel", k.what, TaskGrace)
		}
	})
	select {
	case <-k.done:
		return k.result
	default:
		var zero T
		return zero
	}
}
