package cluster

import (
	"fmt"
	"time"

	"github.com/berth/berth/pkg/eventually"
)

// waitUntil asks cond until it returns nil or timeout passes (polling as
// eventually.Poll does: 10 ms doubling to 100 ms). It returns when cond
// first held, or cond's last error after timeout. The harness's waits
// (WaitHealthy, WaitLeader, FirstTick) and the fault tests use it.
func waitUntil(timeout time.Duration, cond func() error) (time.Time, error) {
	var err error
	if _, ok := eventually.Poll(timeout, func() (bool, string) {
		err = cond()
		return err == nil, ""
	}); !ok {
		return time.Time{}, fmt.Errorf("after %s: %w", timeout, err)
	}
	return time.Now(), nil
}
