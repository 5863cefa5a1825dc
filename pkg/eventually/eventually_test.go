package eventually

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that records a Fatalf instead of stopping.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

func TestTrueReturnsOnceCondHolds(t *testing.T) {
	var n atomic.Int32
	r := &recorder{TB: t}
	True(r, 30*time.Second, "third call", func() bool { return n.Add(1) == 3 })
	if r.msg != "" {
		t.Fatalf("failed: %s", r.msg)
	}
	if n.Load() != 3 {
		t.Fatalf("cond asked %d times, want 3", n.Load())
	}
}

func TestHoldsFailsNamingWhatAndLastState(t *testing.T) {
	r := &recorder{TB: t}
	calls := 0
	Holds(r, 50*time.Millisecond, "the impossible", func() (bool, string) { calls++; return false, "still no" })
	if !strings.Contains(r.msg, "the impossible") || !strings.Contains(r.msg, "still no") {
		t.Fatalf("failure %q does not name what it waited for and the last state", r.msg)
	}
	if calls < 1 {
		t.Fatal("cond never asked")
	}
}

func TestPoll(t *testing.T) {
	if s, ok := Poll(0, func() (bool, string) { return true, "x" }); !ok || s != "x" {
		t.Fatalf("Poll with timeout 0 on a true cond = %q, %v", s, ok)
	}
	if _, ok := Poll(20*time.Millisecond, func() (bool, string) { return false, "" }); ok {
		t.Fatal("Poll of a false cond reported ok")
	}
}
