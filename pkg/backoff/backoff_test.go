package backoff

import (
	"context"
	"testing"
	"time"
)

func TestGrowsToMaxWithJitterAndResets(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		d := b.Next()
		if d < w*8/10 || d > w*12/10 {
			t.Fatalf("delay %d = %s, want %s ±20%%", i, d, w)
		}
	}
	if !b.Active() {
		t.Fatal("not active after delays")
	}
	b.Reset()
	if b.Active() {
		t.Fatal("active after Reset")
	}
	if d := b.Next(); d > 120*time.Millisecond {
		t.Fatalf("after Reset: %s", d)
	}
}

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := SleepCtx(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("SleepCtx on a cancelled context = %v", err)
	}
}

func TestExactDoublesToMaxWithoutJitter(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	b.Exact = true
	for round := 0; round < 2; round++ {
		for i, w := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
			if d := b.Next(); d != w*time.Millisecond {
				t.Fatalf("round %d, delay %d = %s, want exactly %dms", round, i, d, w)
			}
		}
		b.Reset()
	}
}
