package proctest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartCapturesOutputAndExitCode(t *testing.T) {
	p := Start(t, exec.Command("/bin/sh", "-c", "echo out; echo err >&2; exit 3"), Options{})
	if code := p.Wait(t, 30*time.Second); code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
	if p.Stdout.String() != "out\n" || p.Stderr.String() != "err\n" {
		t.Fatalf("stdout %q stderr %q", p.Stdout, p.Stderr)
	}
	if p.Alive() {
		t.Fatal("Alive after the exit")
	}
	var ee *exec.ExitError
	if err := p.Err(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Err() = %v, want an *exec.ExitError with code 3", err)
	}
	c := Start(t, exec.Command("/bin/sh", "-c", "echo out; echo err >&2"), Options{Combined: true})
	if code := c.Code(); code != 0 || c.Stdout.String() != "out\nerr\n" || c.Stderr != c.Stdout {
		t.Fatalf("combined: exit %d, output %q", code, c.Stdout)
	}
}

func TestSignalAndStop(t *testing.T) {
	p := Start(t, exec.Command("/bin/sh", "-c", "trap 'exit 7' USR1; echo ready; while :; do sleep 0.05; done"), Options{})
	for !strings.Contains(p.Stdout.String(), "ready") {
		if p.Exited(10 * time.Millisecond) {
			t.Fatalf("exited early: %d", p.Code())
		}
	}
	if !p.Alive() {
		t.Fatal("not alive")
	}
	p.Signal(t, syscall.SIGUSR1)
	if code := p.Wait(t, 30*time.Second); code != 7 {
		t.Fatalf("exit %d after the trapped USR1, want 7", code)
	}
	q := Start(t, exec.Command("sleep", "300"), Options{})
	if code := q.Stop(syscall.SIGTERM, 30*time.Second); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("killed by SIGTERM: exit %d, want %d", code, 128+int(syscall.SIGTERM))
	}
}

// A signal sent right after start waits for the program's handler: the
// shell installs its trap only after a pause, and still exits by the trap,
// not by SIGUSR1's default action.
func TestSignalWaitsForHandler(t *testing.T) {
	p := Start(t, exec.Command("/bin/sh", "-c", "sleep 0.5; trap 'exit 7' USR1; while :; do sleep 0.05; done"), Options{})
	if p.Catches(syscall.SIGUSR1) {
		t.Fatal("catches SIGUSR1 before its trap")
	}
	p.Signal(t, syscall.SIGUSR1)
	if code := p.Wait(t, 30*time.Second); code != 7 {
		t.Fatalf("exit %d after USR1 sent before the trap was set, want 7", code)
	}
}

const exposition = `# TYPE req_total counter
req_total{code="200",path="/a"} 3
req_total{code="500",path="/a"} 1
# TYPE up gauge
up 1
# TYPE wait_seconds histogram
wait_seconds_bucket{le="1"} 2
wait_seconds_bucket{le="+Inf"} 4
wait_seconds_sum 7.5
wait_seconds_count 4
`

func TestMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(exposition))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	m, err := Scrape(addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
		ok     bool
	}{
		{"req_total", []string{"code", "500"}, 1, true},
		{"req_total", []string{"path", "/a", "code", "200"}, 3, true},
		{"req_total", nil, 3, true},
		{"req_total", []string{"code", "404"}, 0, false},
		{"up", nil, 1, true},
		{"wait_seconds_count", nil, 4, true},
		{"wait_seconds_sum", nil, 7.5, true},
		{"up_count", nil, 0, false},
		{"nothing", nil, 0, false},
	} {
		if v, ok := m.Value(c.name, c.labels...); v != c.want || ok != c.ok {
			t.Errorf("Value(%s, %q) = %v, %v; want %v, %v", c.name, c.labels, v, ok, c.want, c.ok)
		}
	}
	if v := Metric(addr, "up"); v != 1 {
		t.Errorf("Metric(up) = %v", v)
	}
	if v := Metric(FreeAddr(t), "up"); v != -1 {
		t.Errorf("Metric of an address not answering = %v, want -1", v)
	}
	if code, _ := Get(t, addr, "/health"); code != http.StatusNotFound {
		t.Errorf("GET /health: %d", code)
	}
	if _, err := Scrape(addr + "/nowhere"); err == nil {
		t.Error("Scrape of a 404 gave no error")
	}
}

// A Task runs until Stop cancels its context, and Stop returns its result;
// a task that returns on its own closes Done first.
func TestTask(t *testing.T) {
	k := Go(t, "loop", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	select {
	case <-k.Done():
		t.Fatal("returned before its cancel")
	case <-time.After(50 * time.Millisecond):
	}
	if err := k.Stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop: %v, want context.Canceled", err)
	}
	if err := k.Stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("second Stop: %v", err)
	}
	quick := Go(t, "quick", func(context.Context) int { return 7 })
	<-quick.Done()
	if quick.Result() != 7 || quick.Stop() != 7 {
		t.Fatalf("result %d", quick.Result())
	}
}
