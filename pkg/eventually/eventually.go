// Package eventually is the tests' one way to wait for a condition: it polls
// until the condition holds and fails the test, naming what it waited for,
// once a deadline passes. Deadlines are generous on purpose (seconds, not
// milliseconds): a test checks that something happens, not how fast; the
// benchmarks measure speed. A test that must check a lower bound (nothing
// before the grace period) measures it itself and checks only from below.
// Buffer holds a process's output while such a condition reads it.
package eventually

import (
	"testing"
	"time"
)

// Polling starts at minPoll and doubles up to maxPoll, so a condition that
// holds at once costs little and a slow one (a Consul or Docker query) is not
// asked more than ten times a second.
const (
	minPoll = 10 * time.Millisecond
	maxPoll = 100 * time.Millisecond
)

// True polls cond until it returns true. After timeout it fails t with
// "timed out after TIMEOUT waiting for WHAT" and stops the test (t.Fatalf).
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Holds(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// Holds polls cond until it reports ok. After timeout it fails t naming
// what and the state cond reported last ("timed out after TIMEOUT waiting
// for WHAT; last state: STATE"), and stops the test (t.Fatalf).
func Holds(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	if last, ok := Poll(timeout, cond); !ok {
		if last != "" {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
			return
		}
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Poll polls cond until it reports ok or timeout passes, and returns the
// last state cond reported and whether it held. It is for waits whose
// failure is not the end of the test. cond is asked at least once.
func Poll(timeout time.Duration, cond func() (ok bool, state string)) (string, bool) {
	deadline := time.Now().Add(timeout)
	wait := minPoll
	for {
		ok, state := cond()
		if ok {
			return state, true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return state, false
		}
		time.Sleep(min(wait, left))
		wait = min(2*wait, maxPoll)
	}
}
