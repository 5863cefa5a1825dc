package cluster

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// registrator under cluster faults, on a host container with the Docker
// socket mounted; its containers run from the cluster's FROM scratch image
// on the shared daemon, labelled for this cluster (registrator -only-label
// keeps it to them). The catalog must equal the running containers after
// the host's agent is restarted wiped, after a leader kill while containers
// start and stop, and after a cut-off during which a container stopped; a
// hand registration on the host and a service of another host are never
// touched.

type regWorld struct {
	c     *Cluster
	label string // berth.app=<prefix>
	n     int    // app containers started
}

// runApp starts the next app container (appN); safe from one goroutine
// at a time.
func (w *regWorld) runApp() error {
	w.n++
	name := fmt.Sprintf("%s-app%d", w.c.Prefix, w.n)
	_, err := w.c.dockerOut("run", "-d", "--name", name, "--label", "berth.cluster="+w.c.Prefix, "--label", w.label,
		"--network", "bridge", "--expose", "8080", "-e", "SERVICE_NAME=app", w.c.Image, "/bin/sleep", "2147483647")
	return err
}

func (w *regWorld) stopApp(n int) error {
	_, err := w.c.dockerOut("stop", "-t", "0", fmt.Sprintf("%s-app%d", w.c.Prefix, n))
	return err
}

// running is the set of running app containers' IDs, as Docker says.
func (w *regWorld) running(t *testing.T) map[string]bool {
	t.Helper()
	out, err := w.c.dockerOut("ps", "-q", "--no-trunc", "--filter", "label="+w.label)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, id := range strings.Fields(out) {
		ids[id] = true
	}
	return ids
}

// regEntry is one service instance in the catalog, as the servers see it.
type regEntry struct {
	Node    struct{ Node string }
	Service struct {
		ID   string
		Meta map[string]string
	}
	Checks []struct{ CheckID, ServiceID, Status string }
}

// catalog reads the instances of service name from the first server that
// answers.
func catalog(c *Cluster, name string) ([]regEntry, error) {
	var last error
	for _, s := range c.Servers {
		var es []regEntry
		if last = s.Get("/v1/health/service/"+name, &es); last == nil {
			return es, nil
		}
	}
	return nil, last
}

// diff compares the catalog's "app" instances with the running containers:
// lost (running, not registered), leaked (registered, not running), twice
// (registered more than once), unchecked (registered without a service
// check).
func (w *regWorld) diff(t *testing.T) (lost, leaked, twice, unchecked []string, err error) {
	t.Helper()
	es, err := catalog(w.c, "app")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	run := w.running(t)
	seen := map[string]int{}
	for _, e := range es {
		id := e.Service.Meta["berth-container-id"]
		full := ""
		for r := range run {
			if id != "" && strings.HasPrefix(r, id) {
				full = r
			}
		}
		if full == "" {
			leaked = append(leaked, e.Service.ID)
			continue
		}
		seen[full]++
		checks := 0
		for _, ch := range e.Checks {
			if ch.ServiceID == e.Service.ID {
				checks++
			}
		}
		if checks == 0 {
			unchecked = append(unchecked, e.Service.ID)
		}
	}
	for r := range run {
		switch {
		case seen[r] == 0:
			lost = append(lost, r[:12])
		case seen[r] > 1:
			twice = append(twice, r[:12])
		}
	}
	return lost, leaked, twice, unchecked, nil
}

// waitEqual waits until the catalog equals the running containers (each
// once, with its check) and returns when.
func (w *regWorld) waitEqual(t *testing.T, what string) time.Time {
	t.Helper()
	at, err := waitUntil(long, func() error {
		lost, leaked, twice, unchecked, err := w.diff(t)
		if err != nil {
			return err
		}
		if len(lost)+len(leaked)+len(twice)+len(unchecked) > 0 {
			return fmt.Errorf("lost %v, leaked %v, twice %v, without a check %v", lost, leaked, twice, unchecked)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, w.c.LogText("registrator"))
	}
	return at
}

// untouched checks that the hand registration on the registrator's host and
// the other host's service are there, once each.
func untouched(t *testing.T, c *Cluster, what string) {
	t.Helper()
	for _, name := range []string{"hand", "other"} {
		es, err := catalog(c, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 {
			t.Errorf("%s: service %s has %d instances, want 1", what, name, len(es))
		}
	}
}

func TestRegistratorFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster fault tests: not with -short")
	}
	c := New(t, Options{Hosts: 2, Programs: []string{"registrator"}, HostMounts: []string{"/var/run/docker.sock:/var/run/docker.sock"}})
	host, other := c.Hosts[0], c.Hosts[1]
	w := &regWorld{c: c, label: "berth.app=" + c.Prefix}
	registerSvc(t, host, "hand-1", "hand", "10.7.0.1")
	registerSvc(t, other, "other-1", "other", "10.7.0.2")
	for i := 0; i < 3; i++ {
		if err := w.runApp(); err != nil {
			t.Fatal(err)
		}
	}
	reg := startLogged(t, c, host, "registrator", "/bin/registrator", "-internal", "-only-label", w.label,
		"-liveness-ttl", "15s", "consul://127.0.0.1:8500")
	w.waitEqual(t, "start")

	// 1. The host's agent restarted with its state wiped.
	restartAt := time.Now()
	if err := c.RestartAgent(host); err != nil {
		t.Fatal(err)
	}
	upAt, err := waitUntil(long, func() error {
		var self map[string]any
		return host.Get("/v1/agent/self", &self)
	})
	if err != nil {
		t.Fatal(err)
	}
	localAt, err := waitUntil(long, func() error {
		var svcs map[string]struct{ Service string }
		if err := host.Get("/v1/agent/services", &svcs); err != nil {
			return err
		}
		n := 0
		for _, s := range svcs {
			if s.Service == "app" {
				n++
			}
		}
		if n != 3 {
			return fmt.Errorf("agent has %d app services", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, c.LogText("registrator"))
	}
	backAt := w.waitEqual(t, "agent restarted wiped")
	t.Logf("agent restarted wiped: agent answering %s after the restart; 3 services back in the agent %s and in the catalog (with checks, once each) %s after it answered",
		upAt.Sub(restartAt).Round(time.Millisecond), localAt.Sub(upAt).Round(time.Millisecond), backAt.Sub(upAt).Round(time.Millisecond))
	// The wipe lost the hand registration, as it would for any service
	// registered over HTTP; registered again, it must be left alone.
	registerSvc(t, host, "hand-1", "hand", "10.7.0.1")
	if err := c.WaitHealthy(long); err != nil {
		t.Fatal(err)
	}

	// 2. The leader is killed while containers start and stop.
	var wg sync.WaitGroup
	var churnErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 3 && churnErr == nil; i++ {
			churnErr = w.runApp()
			time.Sleep(300 * time.Millisecond)
			if i < 2 && churnErr == nil {
				churnErr = w.stopApp(i + 1)
			}
		}
	}()
	killedAt, electedAt := electLeader(t, c)
	wg.Wait()
	if churnErr != nil {
		t.Fatal(churnErr)
	}
	healthyAt := time.Now()
	lost, leaked, twice, unchecked, _ := w.diff(t)
	eqAt := w.waitEqual(t, "leader killed while containers start and stop")
	t.Logf("leader kill: new leader %s after the kill; when the cluster was healthy again: lost %d, leaked %d, twice %d, without a check %d; catalog equal to the %d running containers %s later",
		electedAt.Sub(killedAt).Round(time.Millisecond), len(lost), len(leaked), len(twice), len(unchecked), len(w.running(t)), eqAt.Sub(healthyAt).Round(time.Millisecond))
	untouched(t, c, "leader kill")

	// 3. The host cut off while a container stops, then healed.
	if err := c.Cut(host); err != nil {
		t.Fatal(err)
	}
	if err := w.stopApp(3); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	healAt := time.Now()
	if err := c.Heal(host); err != nil {
		t.Fatal(err)
	}
	goneAt := w.waitEqual(t, "cut off while a container stopped")
	t.Logf("cut: the stopped container's service gone from the catalog %s after the heal", goneAt.Sub(healAt).Round(time.Millisecond))
	untouched(t, c, "cut")
	select {
	case <-reg.Done():
		t.Errorf("registrator exited during the faults\n%s", c.LogText("registrator"))
	default:
	}
	var ids []string
	es, _ := catalog(c, "app")
	for _, e := range es {
		ids = append(ids, e.Service.ID)
	}
	sort.Strings(ids)
	t.Logf("final app instances: %v", ids)
}
