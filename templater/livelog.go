package main

import (
	"context"
	"log/slog"
)

// liveHandler writes every record through the handler current returns at
// that moment: the logger of the session running now. The parts of
// templater that outlive a reload (the -metrics-addr server, the reaper)
// log through it, so that a reload's log_level and syslog settings apply
// to them as to the rest (consul-template sets its logging up again on
// the reload signal, cli.go Run: cli.setup).
type liveHandler struct {
	current func() slog.Handler
	// with are the WithAttrs and WithGroup calls made on this handler,
	// replayed on the current handler for each record.
	with []func(slog.Handler) slog.Handler
}

func (h liveHandler) handler() slog.Handler {
	out := h.current()
	for _, f := range h.with {
		out = f(out)
	}
	return out
}

func (h liveHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.handler().Enabled(ctx, l)
}

func (h liveHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.handler().Handle(ctx, r)
}

func (h liveHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.plus(func(x slog.Handler) slog.Handler { return x.WithAttrs(as) })
}

func (h liveHandler) WithGroup(name string) slog.Handler {
	return h.plus(func(x slog.Handler) slog.Handler { return x.WithGroup(name) })
}

func (h liveHandler) plus(f func(slog.Handler) slog.Handler) liveHandler {
	with := append(append([]func(slog.Handler) slog.Handler(nil), h.with...), f)
	return liveHandler{current: h.current, with: with}
}
