package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLiveHandlerFollowsTheSession: a logger over liveHandler writes each
// record through the handler of the moment, with that handler's level;
// one derived with With and WithGroup keeps following it.
func TestLiveHandlerFollowsTheSession(t *testing.T) {
	var first, second bytes.Buffer
	cur := slog.NewTextHandler(&first, &slog.HandlerOptions{Level: slog.LevelInfo})
	log := slog.New(liveHandler{current: func() slog.Handler { return cur }})
	derived := log.With("k", "v").WithGroup("g")
	log.Info("before")
	cur = slog.NewTextHandler(&second, &slog.HandlerOptions{Level: slog.LevelError})
	log.Info("dropped by the new level")
	log.Error("after")
	derived.Error("derived", "x", 1)
	if got := first.String(); !strings.Contains(got, "msg=before") || strings.Contains(got, "after") || strings.Contains(got, "dropped") {
		t.Errorf("the first handler got %q", got)
	}
	got := second.String()
	if strings.Contains(got, "before") || strings.Contains(got, "dropped") || !strings.Contains(got, "msg=after") {
		t.Errorf("the second handler got %q", got)
	}
	if !strings.Contains(got, "msg=derived k=v g.x=1") {
		t.Errorf("the derived logger's record in the second handler: %q", got)
	}
}
