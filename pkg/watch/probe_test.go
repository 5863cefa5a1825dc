package watch

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// The probe's own logic: down from the first failure, the outage's start
// kept across failures, up again at the first success.
func TestProbe(t *testing.T) {
	var mode atomic.Int32 // 0 up, 1 refused, 2 no server
	p := &Probe{Interval: 5 * time.Millisecond, Check: func(ctx context.Context) error {
		switch mode.Load() {
		case 1:
			return errors.New("connection refused")
		case 2:
			return errors.New("no server")
		}
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	wait := func(want bool) time.Time {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if down, since, _ := p.Down(); down == want {
				return since
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("probe never reported down=%v", want)
		return time.Time{}
	}
	wait(false)
	mode.Store(1)
	first := wait(true)
	mode.Store(2)
	time.Sleep(30 * time.Millisecond)
	if down, since, err := p.Down(); !down || !since.Equal(first) || err == nil || err.Error() != "no server" {
		t.Fatalf("down=%v since=%v (want %v) err=%v", down, since, first, err)
	}
	mode.Store(0)
	wait(false)
}
