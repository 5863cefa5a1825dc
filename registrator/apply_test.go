package main

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/docker/docker/api/types/container"
)

// requireConsul gives the package's shared agent; skipped under -short.
func requireConsul(t *testing.T) *consultest.Agent {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Consul: skipped under -short")
	}
	return consultest.Require(t, agent)
}

// TestApplyPlan drives the applier against the real agent, without Docker:
// a plan from fixture containers is written; planned again from what the
// agent returns it is empty (the comparison holds for the agent's own
// representation); a definition the agent refuses (a script check, scripts
// being disabled) is skipped without failing the pass and its TTL checks
// are not heartbeated; a container gone deregisters its service.
func TestApplyPlan(t *testing.T) {
	a := requireConsul(t)
	host := hostFor(t)
	cfg := baseMap()
	cfg.Hostname = host
	cfg.LivenessTTL = time.Minute
	cfg.Tags, _ = parseForceTags(`x,{{.Config.Labels.team}}`, nil)
	r, err := New(Config{Map: *cfg, Consul: a.Client(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cs := running(
		ctr("ap-web", publish("80/tcp", "0.0.0.0", "32768"), env("SERVICE_CHECK_HTTP=/h", "SERVICE_CHECK_INTERVAL=1h", `SERVICE_TAGS=a\,b`), label("team", "t")),
		ctr("ap-ttl", publish("53/udp", "0.0.0.0", "5353"), env("SERVICE_CHECK_TTL=1m", "SERVICE_VERSION=3")),
		ctr("ap-script", publish("80/tcp", "0.0.0.0", "32769"), env("SERVICE_CHECK_SCRIPT=/bin/true")),
	)
	pass := func(cs map[string]*container.InspectResponse) *plan {
		t.Helper()
		v, err := readAgent(ctx, r.agent)
		if err != nil {
			t.Fatal(err)
		}
		r.view = v
		return planFor(planInput{Running: cs, Agent: v, Map: &r.cfg.Map, Refused: r.rejected, Now: time.Now()})
	}
	p := pass(cs)
	writes, err := r.applyPlan(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	web, ttl, script := host+":ap-web:80", host+":ap-ttl:53:udp", host+":ap-script:80"
	if writes != 2 || r.rejected[script].def == "" {
		t.Errorf("writes %d (want 2), refused %v (want the script check's service)", writes, r.rejected)
	}
	if _, ok := r.ttl[livenessCheckID(script)]; ok || len(r.ttl) != 2 {
		t.Errorf("heartbeated checks %v: want the two written services' liveness only", r.ttl)
	}
	got := ownedServices(t, a.Client(), host)
	// Tags: SERVICE_TAGS, then -tags, each part reversed (gliderlabs master
	// bridge/util.go combineTags, recParseEscapedComma).
	if s := got[web]; s == nil || s.Port != 32768 || !slices.Equal(s.Tags, []string{"a,b", "t", "x"}) {
		t.Errorf("web as registered: %+v", s)
	}
	checks, err := a.Client().Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if ch := checks["service:"+ttl]; ch == nil || ch.Type != "ttl" {
		t.Errorf("check service:%s: %+v", ttl, ch)
	}

	if again := pass(cs); len(again.Ops) != 0 {
		t.Errorf("planned again from the agent: %q, want nothing", summaries(again))
	}

	delete(cs, "id-ap-ttl")
	p = pass(cs)
	if got := summaries(p); len(got) != 1 || got[0] != "deregister "+ttl {
		t.Fatalf("container gone: %q", got)
	}
	if _, err := r.applyPlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got := ownedServices(t, a.Client(), host); got[ttl] != nil || got[web] == nil {
		t.Errorf("after the deregistration: %v", ids(got))
	}
	_ = a.Client().Agent().ServiceDeregister(web)
}
