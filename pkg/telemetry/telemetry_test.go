package telemetry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHandler(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "t", Name: "things_total", Help: "x"})
	reg.MustRegister(c)
	c.Add(3)
	var healthErr error
	srv := httptest.NewServer(Handler(reg, func() error { return healthErr }))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "berth_t_things_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics %d: %s", code, body)
	}
	if code, body := get("/health"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/health %d %q", code, body)
	}
	healthErr = errors.New("waiting for Consul")
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "waiting for Consul") {
		t.Fatalf("/healthz when unhealthy: %d %q", code, body)
	}
	healthErr = fmt.Errorf("watch: %w", Degraded("Consul unreachable for %s; serving the last good state", "5s"))
	if code, body := get("/health"); code != 200 || strings.TrimSpace(body) != "degraded: watch: Consul unreachable for 5s; serving the last good state" {
		t.Fatalf("/health when degraded: %d %q", code, body)
	}
	if _, err := Listen("127.0.0.1:99999"); err == nil || !strings.Contains(err.Error(), "-metrics-addr") {
		t.Fatalf("bad address: %v", err)
	}
}

// TestSubsystemNames: every kind is named berth_SUBSYSTEM_NAME with its help
// text and labels.
func TestSubsystemNames(t *testing.T) {
	s := Subsystem("prog")
	for _, c := range []prometheus.Collector{
		s.Counter("a_total", "help a"), s.CounterVec("a_total", "help a", "l"),
		s.Gauge("a_total", "help a"), s.GaugeVec("a_total", "help a", "l"),
		s.GaugeFunc("a_total", "help a", func() float64 { return 1 }),
		s.Histogram("a_total", "help a", []float64{1}), s.HistogramVec("a_total", "help a", []float64{1}, "l"),
	} {
		ch := make(chan *prometheus.Desc, 1)
		c.Describe(ch)
		if d := (<-ch).String(); !strings.Contains(d, `fqName: "berth_prog_a_total", help: "help a"`) {
			t.Errorf("%T: %s", c, d)
		}
	}
}

func TestHealthcheck(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "waiting for Consul\nsince 3s", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	goneAddr := gone.Listener.Addr().String()
	gone.Close()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-healthcheck", up.Listener.Addr().String()}, 0, ""},
		{[]string{"--healthcheck", down.Listener.Addr().String()}, 1, "lockrun: healthcheck " + down.Listener.Addr().String() + ": 503 Service Unavailable: waiting for Consul since 3s\n"},
		{[]string{"-healthcheck", goneAddr}, 1, "lockrun: healthcheck: "},
	} {
		var stderr strings.Builder
		code, ok := Healthcheck("lockrun", c.args, "", &stderr)
		if !ok || code != c.code || !strings.HasPrefix(stderr.String(), c.want) || strings.Count(stderr.String(), "\n") > 1 {
			t.Errorf("%v: ok %v, exit %d, stderr %q; want exit %d and one line starting %q", c.args, ok, code, stderr.String(), c.code, c.want)
		}
	}
	if _, ok := Healthcheck("lockrun", []string{"-prefix", "x"}, "", io.Discard); ok {
		t.Error("Healthcheck took arguments that do not ask for it")
	}
	// Without an address it asks the program's metrics address (its
	// PROGRAM_METRICS_ADDR, which the images set) when given; an address on
	// the command line wins.
	var stderr strings.Builder
	if code, _ := Healthcheck("lockrun", []string{"-healthcheck"}, up.Listener.Addr().String(), &stderr); code != 0 {
		t.Errorf("-healthcheck with the metrics address of a healthy server: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code, _ := Healthcheck("lockrun", []string{"-healthcheck", down.Listener.Addr().String()}, up.Listener.Addr().String(), &stderr); code != 1 {
		t.Errorf("-healthcheck ADDR beside a metrics address: exit %d, want 1 (ADDR, unhealthy, asked)", code)
	}
}
