// Package telemetry serves a program's Prometheus metrics and its health
// endpoint on the address given by -metrics-addr.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every berth metric.
const Namespace = "berth"

// NewRegistry returns a registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// HealthFunc reports nil when the program is healthy, or what it waits for.
type HealthFunc func() error

// DegradedError marks a health answer as degraded: the program works from
// its last good state (Consul unreachable) and is not failed.
type DegradedError struct{ Reason string }

func (e *DegradedError) Error() string { return e.Reason }

// Degraded returns the health error for a program that serves its last good
// state; /health answers it with 200 "degraded: REASON".
func Degraded(format string, args ...any) error {
	return &DegradedError{Reason: fmt.Sprintf(format, args...)}
}

// Handler serves /metrics from reg and /health (also /healthz) from health:
// 200 "ok", 200 "degraded: REASON" for a DegradedError (serving last good
// state), or 503 "unhealthy: REASON".
func Handler(reg *prometheus.Registry, health HealthFunc) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	h := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if health != nil {
			if err := health(); err != nil {
				var d *DegradedError
				if errors.As(err, &d) {
					fmt.Fprintf(w, "degraded: %v\n", err)
					return
				}
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "unhealthy: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	}
	mux.HandleFunc("/health", h)
	mux.HandleFunc("/healthz", h)
	return mux
}

// Listen binds addr for ServeOn, so a busy or bad address is reported at
// start-up, before the program does anything else.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics-addr %s: %w", addr, WithBindHint(err))
	}
	return ln, nil
}

// WithBindHint adds to a bind error that is EACCES (a port below 1024
// without the right) what the right is and how to give it; other errors
// are returned as they are.
func WithBindHint(err error) error {
	if !errors.Is(err, syscall.EACCES) {
		return err
	}
	return fmt.Errorf("%w: ports below 1024 need root or the CAP_NET_BIND_SERVICE capability (setcap cap_net_bind_service=+ep on the binary, or AmbientCapabilities=CAP_NET_BIND_SERVICE in its systemd unit)", err)
}

// Serve listens on addr and serves Handler until ctx is done. It returns the
// listening address once bound (useful with port 0) through the ready callback.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, health HealthFunc, log *slog.Logger, ready func(net.Addr)) error {
	ln, err := Listen(addr)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(ln.Addr())
	}
	return ServeOn(ctx, ln, reg, health, log)
}

// ServeOn serves Handler on ln until ctx is done, then closes ln.
func ServeOn(ctx context.Context, ln net.Listener, reg *prometheus.Registry, health HealthFunc, log *slog.Logger) error {
	// net/http's own error lines (an accept that fails, a handler that
	// panics) go to log too, at level error, not to the standard logger.
	srv := &http.Server{Handler: Handler(reg, health), ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}
	log.Info("serving metrics and health", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("metrics server: %w", err)
	}
}

// DefaultHealthAddr is where -healthcheck asks when no address is given and
// the program's metrics variable is unset: the -metrics-addr the container
// images set.
const DefaultHealthAddr = "127.0.0.1:9090"

// Healthcheck implements `PROGRAM -healthcheck [HOST:PORT]`, a probe usable
// as a Docker HEALTHCHECK without a shell: it asks the running program's
// /health (served on its -metrics-addr) and returns exit code 0 when it
// answers 200, 1 otherwise, with one line on stderr that starts with program
// (as every error line of berth's programs) and says why. Without HOST:PORT
// it asks metricsAddr (the program's PROGRAM_METRICS_ADDR, which the
// running program serves on too), else DefaultHealthAddr. ok is false when
// args do not ask for it (then the program parses its flags as usual).
func Healthcheck(program string, args []string, metricsAddr string, stderr io.Writer) (code int, ok bool) {
	if len(args) == 0 || (args[0] != "-healthcheck" && args[0] != "--healthcheck") {
		return 0, false
	}
	addr := DefaultHealthAddr
	if metricsAddr != "" {
		addr = metricsAddr
	}
	if len(args) > 1 {
		addr = args[1]
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + addr + "/health")
	if err != nil {
		fmt.Fprintf(stderr, "%s: healthcheck: %v\n", program, err)
		return 1, true
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "%s: healthcheck %s: %s: %s\n", program, addr, resp.Status, strings.Join(strings.Fields(string(body)), " "))
		return 1, true
	}
	return 0, true
}
