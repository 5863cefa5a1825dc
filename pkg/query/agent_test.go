package query

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
)

// agent is the package's dev agent (nil-safe: Require skips without one).
var agent *consultest.Agent

func TestMain(m *testing.M) { os.Exit(consultest.Main(m, &agent)) }

// latest collects what a watch delivers.
type latest[T any] struct {
	mu  sync.Mutex
	all []T
}

func (l *latest[T]) add(v T) { l.mu.Lock(); l.all = append(l.all, v); l.mu.Unlock() }

func (l *latest[T]) last() (T, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var zero T
	if len(l.all) == 0 {
		return zero, 0
	}
	return l.all[len(l.all)-1], len(l.all)
}

func kvFetch(c *Client, key string) Fetch[string] {
	return func(o *api.QueryOptions) (string, *api.QueryMeta, error) {
		p, meta, err := c.API().KV().Get(key, o)
		if err != nil || p == nil {
			return "", meta, err
		}
		return string(p.Value), meta, nil
	}
}

// A KV watch answers at once, then blocks and delivers each change; the
// metrics and Waiting follow.
func TestWatchKV(t *testing.T) {
	a := consultest.Require(t, agent)
	c, ctx, cancel := startClient(t, Config{Client: a.Client(), MaxStale: 2 * time.Second})
	consultest.Put(t, a.Client(), "query/kv", "one")
	var got latest[string]
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = Watch(ctx, c, Query{Name: "kv.get(query/kv)"}, kvFetch(c, "query/kv"), got.add)
	}()
	eventually.True(t, patience, "the first answer", func() bool { v, _ := got.last(); return v == "one" })
	if w := c.Waiting(); len(w) != 0 {
		t.Fatalf("answered, yet Waiting() = %+v", w)
	}
	consultest.Put(t, a.Client(), "query/kv", "two")
	eventually.True(t, patience, "the change", func() bool { v, _ := got.last(); return v == "two" })
	if got := queryGauges(t, c); got != "failing=0 ok=1 waiting=0" {
		t.Fatalf("berth_test_consul_queries: %s, want failing=0 ok=1 waiting=0", got)
	}
	cancel()
	<-done
	if got := queryGauges(t, c); got != "failing=0 ok=0 waiting=0" {
		t.Fatalf("stopped: berth_test_consul_queries: %s, want all 0", got)
	}
	if w := c.Waiting(); len(w) != 0 {
		t.Fatalf("stopped, yet Waiting() = %+v", w)
	}
}

// A health service query with ?cached (Consul's streaming backend) sees an
// instance registered and its check going critical.
func TestWatchHealthCached(t *testing.T) {
	a := consultest.Require(t, agent)
	c, ctx, _ := startClient(t, Config{Client: a.Client(), MaxStale: 2 * time.Second})
	var got latest[[]string]
	go func() {
		_ = Watch(ctx, c, Query{Name: "health.service(qweb)", Cached: true}, func(o *api.QueryOptions) ([]string, *api.QueryMeta, error) {
			es, meta, err := c.API().Health().Service("qweb", "", false, o)
			var out []string
			for _, e := range es {
				out = append(out, e.Service.ID+"="+e.Checks.AggregatedStatus())
			}
			return out, meta, err
		}, got.add)
	}()
	eventually.True(t, patience, "the first (empty) answer", func() bool { _, n := got.last(); return n > 0 })
	ag := a.Client().Agent()
	if err := ag.ServiceRegister(&api.AgentServiceRegistration{ID: "qweb1", Name: "qweb", Port: 80,
		Check: &api.AgentServiceCheck{TTL: "1h", Status: api.HealthPassing}}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ag.ServiceDeregister("qweb1") }()
	eventually.True(t, patience, "the instance, passing", func() bool { v, _ := got.last(); return len(v) == 1 && v[0] == "qweb1=passing" })
	if err := ag.UpdateTTL("service:qweb1", "down", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, patience, "the instance, critical", func() bool { v, _ := got.last(); return len(v) == 1 && v[0] == "qweb1=critical" })
}

// A datacenter that does not exist fails, and Waiting and Failing say so
// with Consul's error.
func TestUnknownDatacenter(t *testing.T) {
	a := consultest.Require(t, agent)
	c := New(Config{Client: a.Client(), RetryMin: 50 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = Watch(ctx, c, Query{Name: "kv.get(x@nowhere)", Datacenter: "nowhere"}, kvFetch(c, "x"), func(string) {
			t.Error("delivered an answer from a datacenter that does not exist")
		})
	}()
	eventually.True(t, patience, "the failure", func() bool { f, _ := c.Failing(); return f["kv.get(x@nowhere)"] != "" })
	w := c.Waiting()
	if len(w) != 1 || w[0].Answered || w[0].Err == nil || !strings.Contains(w[0].Err.Error(), "No path to datacenter") {
		t.Fatalf("Waiting() = %+v; want kv.get(x@nowhere) with Consul's \"No path to datacenter\"", w)
	}
}

// The agent restarts (a dev agent: its data is gone): the watch fails
// while it is away and, with an hour of backoff, only the probe can bring
// it back; it then delivers what was written after the restart.
func TestAgentRestartRecovers(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{NodeName: "query-restart"})
	c, ctx, _ := startClient(t, Config{Client: a.Client(), MaxStale: 2 * time.Second, RetryMin: time.Hour, RetryMax: time.Hour})
	consultest.Put(t, a.Client(), "k", "before")
	var got latest[string]
	var errs latest[error]
	go func() {
		_ = Watch(ctx, c, Query{Name: "kv.get(k)", OnError: func(err error, _ time.Duration) { errs.add(err) }}, kvFetch(c, "k"), got.add)
	}()
	eventually.True(t, patience, "the first answer", func() bool { v, _ := got.last(); return v == "before" })
	a.Stop()
	eventually.True(t, patience, "the watch to fail", func() bool { _, n := errs.last(); return n > 0 })
	eventually.True(t, patience, "the probe to see the agent gone", func() bool { d, _, _ := c.Down(); return d })
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	consultest.Put(t, a.Client(), "k", "after")
	eventually.True(t, patience, "the answer after the restart", func() bool { v, _ := got.last(); return v == "after" })
	if f, _ := c.Failing(); len(f) != 0 {
		t.Fatalf("recovered, yet Failing() = %v", f)
	}
}

// queryGauges gathers berth_test_consul_queries from c's collector as
// "failing=N ok=N waiting=N".
func queryGauges(t *testing.T, c *Client) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.Collector("test"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, mf := range mfs {
		if mf.GetName() != "berth_test_consul_queries" {
			continue
		}
		for _, m := range mf.GetMetric() {
			parts = append(parts, fmt.Sprintf("%s=%g", m.GetLabel()[0].GetValue(), m.GetGauge().GetValue()))
		}
	}
	return strings.Join(parts, " ")
}
