package cluster

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUnitWaitUntil(t *testing.T) {
	calls := 0
	before := time.Now()
	at, err := waitUntil(time.Minute, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 || at.Before(before) || at.After(time.Now()) {
		t.Errorf("a condition holding at the third call: at %v (asked from %v), %d calls, err %v", at, before, calls, err)
	}

	never := errors.New("never")
	at, err = waitUntil(30*time.Millisecond, func() error { return never })
	if !errors.Is(err, never) || !strings.HasPrefix(err.Error(), "after 30ms: ") || !at.IsZero() {
		t.Errorf("a condition that never holds: at %v, err %v; want zero time and %q wrapped", at, err, never)
	}
}

func TestUnitLoggedArgv(t *testing.T) {
	got := loggedArgv("app", "/bin/app", "-msg", "it's")
	want := []string{"/bin/sh", "-c", `exec '/bin/app' '-msg' 'it'\''s' >>/shared/logs/app.log 2>&1`}
	if !slices.Equal(got, want) {
		t.Errorf("loggedArgv = %q, want %q", got, want)
	}
}
