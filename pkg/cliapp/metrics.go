package cliapp

import (
	"context"
	"log/slog"
	"net"

	"github.com/berth/berth/pkg/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the bound -metrics-addr; a nil *Metrics (no -metrics-addr)
// serves nothing.
type Metrics struct{ ln net.Listener }

// ListenMetrics binds -metrics-addr now, so that a busy or bad address is
// an error at start ("-metrics-addr ADDR: ..."); nil when it is empty.
func (p *Program) ListenMetrics() (*Metrics, error) {
	if p.MetricsAddr == "" {
		return nil, nil
	}
	ln, err := telemetry.Listen(p.MetricsAddr)
	if err != nil {
		return nil, err
	}
	return &Metrics{ln: ln}, nil
}

// Addr is the bound address (useful with port 0), nil when off.
func (m *Metrics) Addr() net.Addr {
	if m == nil {
		return nil
	}
	return m.ln.Addr()
}

// Serve serves /metrics from reg and /health from health in a goroutine
// until ctx is done; the returned channel is closed once the server has
// stopped (at once when m is nil). A server that fails later is logged.
func (m *Metrics) Serve(ctx context.Context, reg *prometheus.Registry, health telemetry.HealthFunc, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	if m == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if err := telemetry.ServeOn(ctx, m.ln, reg, health, log); err != nil {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return done
}

// Close releases the address when the program exits before Serve.
func (m *Metrics) Close() {
	if m != nil {
		_ = m.ln.Close()
	}
}
