package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestLifecycle: start, stop, kill, restart (new host port), remove, and a
// quick die-and-start, each reflected in the agent.
func TestLifecycle(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, nil)
	h := r.cfg.Map.Hostname
	id := func(n string) string { return h + ":" + cn(n) + ":8080" }

	runC(t, "lc-a", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	runC(t, "lc-b", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, id("lc-a"), id("lc-b"))

	docker(t, "stop", "-t", "5", cn("lc-a"))
	waitIDs(t, c, h, 20*time.Second, id("lc-b"))
	docker(t, "kill", cn("lc-b"))
	waitIDs(t, c, h, 20*time.Second)

	docker(t, "start", cn("lc-a"))
	got := waitIDs(t, c, h, 20*time.Second, id("lc-a"))
	if p := strconv.Itoa(got[id("lc-a")].Port); p != hostPort(t, "lc-a", "8080") {
		t.Errorf("after start: port %s, Docker published %s", p, hostPort(t, "lc-a", "8080"))
	}

	// Quick die-and-start: restart and kill+start back to back; the final
	// registration must match the final container.
	docker(t, "restart", "-t", "0", cn("lc-a"))
	docker(t, "kill", cn("lc-a"))
	docker(t, "start", cn("lc-a"))
	eventually.Holds(t, 20*time.Second, "registration follows the restarted container", func() (bool, string) {
		s := ownedServices(t, c, h)[id("lc-a")]
		if s == nil {
			return false, "missing"
		}
		return strconv.Itoa(s.Port) == hostPort(t, "lc-a", "8080"), fmt.Sprint("port ", s.Port)
	})

	docker(t, "rm", "-f", cn("lc-a"))
	waitIDs(t, c, h, 20*time.Second)
}

// TestDeregisterOnSuccess: with -deregister on-success only a crash keeps
// the service. Rule of gliderlabs registrator master, bridge/bridge.go
// (*Bridge).shouldRemove: the service goes when the exit code is 0 or has
// the 128 "signalled" bit (docker stop: 143 here, under --init; docker kill:
// 137), and when the container is removed. Both paths are covered: the die
// event, and the full listing at start (a container killed while
// registrator was down).
func TestDeregisterOnSuccess(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) { cfg.DeregisterOnSuccess = true })
	h := r.cfg.Map.Hostname
	id := func(n string) string { return h + ":" + cn(n) + ":8080" }
	pub := []string{"-p", "127.0.0.1::8080"}

	// These two exit with 3 and 0 when the test sends SIGUSR1.
	runC(t, "os-fail", pub, "-listen", ":8080", "-exit", "3", "-exit-on-usr1")
	runC(t, "os-ok", pub, "-listen", ":8080", "-exit", "0", "-exit-on-usr1")
	// Under tini (--init) a process that dies of SIGTERM gives exit 143.
	runC(t, "os-stop", append([]string{"--init"}, pub...), "-listen", ":8080", "-default-signals")
	runC(t, "os-kill", pub, "-listen", ":8080")
	runC(t, "os-downkill", pub, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, id("os-fail"), id("os-ok"), id("os-stop"), id("os-kill"), id("os-downkill"))
	docker(t, "kill", "-s", "USR1", cn("os-fail"))
	docker(t, "kill", "-s", "USR1", cn("os-ok"))
	docker(t, "stop", "-t", "20", cn("os-stop"))
	docker(t, "kill", cn("os-kill"))
	eventually.Holds(t, 20*time.Second, "all four exited", func() (bool, string) {
		st := docker(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cn("os-fail"), cn("os-ok"), cn("os-stop"), cn("os-kill"))
		return st == "exited 3\nexited 0\nexited 143\nexited 137", st
	})
	waitIDs(t, c, h, 20*time.Second, id("os-fail"), id("os-downkill"))

	// Killed while registrator is down: the full listing at start sees
	// "Exited (137)" and removes it; the crashed one stays.
	r.stop()
	docker(t, "kill", cn("os-downkill"))
	r2 := startReg(t, a, func(cfg *Config) { cfg.DeregisterOnSuccess = true })
	eventually.Holds(t, 10*time.Second, "second registrator reconciled", func() (bool, string) {
		return r2.passes.Load() > 0, "no pass yet"
	})
	waitIDs(t, c, h, 20*time.Second, id("os-fail"))
	docker(t, "rm", cn("os-fail"))
	waitIDs(t, c, h, 20*time.Second)
}

// TestRestartingContainer: a container its restart policy is about to
// restart (Docker says Running and Restarting while it waits) has no
// services, as in gliderlabs registrator master, which deregisters at the
// die event (registrator.go main, bridge/bridge.go (*Bridge).shouldRemove
// under "always"): here a host-networked one, whose exposed port would
// otherwise stay registered. Under -deregister on-success its services are
// kept: shouldRemove finds the container still running at its die event.
func TestRestartingContainer(t *testing.T) {
	requireDocker(t)
	t.Run("always", func(t *testing.T) {
		t.Parallel()
		a, c := requireDocker(t)
		// No resync: the die event alone must deregister.
		r := startReg(t, a, func(cfg *Config) { cfg.Resync = 0 })
		h := r.cfg.Map.Hostname
		// A marker renamed after each look: once its new name is
		// registered, every event before the rename (the die) was applied.
		mark := runC(t, "rs-mark", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
		t.Cleanup(func() { _ = execCommand("docker", "rm", "-f", mark).Run() })
		markPrefix := h + ":" + cn("rs-mark")
		waitIDs(t, c, h, 20*time.Second, markPrefix+":8080")
		n := 0
		settle := func() error {
			n++
			name := cn(fmt.Sprintf("rs-mark-%d", n))
			docker(t, "rename", mark, name)
			for deadline := time.Now().Add(30 * time.Second); ownedServices(t, c, h)[h+":"+name+":8080"] == nil; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					return fmt.Errorf("marker %s not registered", name)
				}
			}
			return nil
		}
		// Exits at once with 3; Docker's restart delay doubles each time.
		runC(t, "rs-hostnet", []string{"--network", "host", "--expose", "18557", "--restart", "always",
			"-e", "SERVICE_NAME=berth-test-rs-hostnet"}, "-exit", "3")
		whileRestarting(t, r, c, "rs-hostnet", "no service", settle, func(got []string) bool {
			return !slices.ContainsFunc(got, func(id string) bool { return !strings.HasPrefix(id, markPrefix) })
		})
	})
	t.Run("on-success", func(t *testing.T) {
		t.Parallel()
		a, c := requireDocker(t)
		r := startReg(t, a, func(cfg *Config) { cfg.Resync = time.Second; cfg.DeregisterOnSuccess = true })
		id := r.cfg.Map.Hostname + ":" + cn("rs-crash") + ":8080"
		// Three resync passes: the third begins after the second, which
		// listed after the first look, has written its plan.
		resyncs := func() float64 { return metricValue(r.m.passes.WithLabelValues("resync")) }
		settle := func() error {
			start := resyncs()
			for deadline := time.Now().Add(30 * time.Second); resyncs() < start+3; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					return errors.New("no resync passes")
				}
			}
			return nil
		}
		// Serves 3 s, then exits with 3; Docker's restart delay doubles each time.
		runC(t, "rs-crash", []string{"-p", "127.0.0.1::8080", "--restart", "always"}, "-listen", ":8080", "-exit", "3", "-after", "3s")
		waitIDs(t, c, r.cfg.Map.Hostname, 20*time.Second, id)
		whileRestarting(t, r, c, "rs-crash", "its service kept", settle, func(got []string) bool { return slices.Equal(got, []string{id}) })
	})
}

// whileRestarting waits until the services r owns are as ok says while
// container name waits to be restarted, after r applied that wait (settle
// returns once it has): the container's restart count and finish time are
// the same before and after settle.
func whileRestarting(t *testing.T, r *testReg, c *api.Client, name, what string, settle func() error, ok func(ids []string) bool) {
	t.Helper()
	state := func() string {
		return docker(t, "inspect", "-f", "{{.State.Restarting}} {{.RestartCount}} {{.State.FinishedAt}}", cn(name))
	}
	eventually.Holds(t, 3*time.Minute, what+" while "+name+" waits to be restarted", func() (bool, string) {
		before := state()
		if !strings.HasPrefix(before, "true ") {
			return false, "not waiting to be restarted: " + before
		}
		if err := settle(); err != nil {
			return false, err.Error()
		}
		got := ids(ownedServices(t, c, r.cfg.Map.Hostname))
		if after := state(); after != before {
			return false, "restarted meanwhile: " + before + " → " + after
		}
		return ok(got), fmt.Sprint("services ", got, " in restart wait ", before)
	})
}

// TestStartupReconcileAndOwnership: services of containers removed while
// registrator was down disappear when it starts; services it does not own
// (by hand, or another host's) are never touched.
func TestStartupReconcileAndOwnership(t *testing.T) {
	a, c := requireDocker(t)
	foreign := &api.AgentServiceRegistration{ID: "berth-test-by-hand", Name: "berth-test-by-hand", Port: 1234,
		Tags: []string{"manual"}}
	otherHost := &api.AgentServiceRegistration{ID: "berth-test-other-host:x:80", Name: "berth-test-other", Port: 80,
		Meta: map[string]string{metaSource: metaSourceValue, metaHost: "berth-test-other-host"}}
	for _, s := range []*api.AgentServiceRegistration{foreign, otherHost} {
		if err := c.Agent().ServiceRegister(s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Agent().ServiceDeregister(s.ID) })
	}

	h := hostFor(t)
	// An ID collision with a service we do not own: left alone, logged.
	collide := &api.AgentServiceRegistration{ID: "berth-test-collide", Name: "berth-test-hand", Port: 4321}
	// A service gliderlabs/registrator left for this host (default ID shape,
	// no ownership meta): adopted when the container claims it.
	legacy := &api.AgentServiceRegistration{ID: h + ":" + cn("own-keep") + ":8080", Name: "berth-test-legacy", Port: 1}
	for _, s := range []*api.AgentServiceRegistration{collide, legacy} {
		if err := c.Agent().ServiceRegister(s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Agent().ServiceDeregister(s.ID) })
	}
	r := startReg(t, a, nil)
	runC(t, "own-collide", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_ID=berth-test-collide"}, "-listen", ":8080")
	runC(t, "own-keep", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	runC(t, "own-gone", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	runC(t, "own-stopped", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	keep, gone, stopped := h+":"+cn("own-keep")+":8080", h+":"+cn("own-gone")+":8080", h+":"+cn("own-stopped")+":8080"
	waitIDs(t, c, h, 20*time.Second, keep, gone, stopped)
	r.stop()

	// While registrator is down: one container removed, one killed.
	docker(t, "rm", "-f", cn("own-gone"))
	docker(t, "kill", cn("own-stopped"))
	if len(ownedServices(t, c, h)) != 3 {
		t.Fatalf("registrator stopped: its registrations must stay in place")
	}
	startReg(t, a, nil)
	waitIDs(t, c, h, 20*time.Second, keep)

	all, err := c.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if s := all[foreign.ID]; s == nil || s.Port != 1234 || len(s.Tags) != 1 || len(s.Meta) != 0 {
		t.Errorf("hand-registered service changed or removed: %+v", s)
	}
	if s := all[otherHost.ID]; s == nil {
		t.Errorf("another host's service was removed")
	}
	if s := all[collide.ID]; s == nil || s.Service != "berth-test-hand" || s.Port != 4321 {
		t.Errorf("a service with a colliding ID that we do not own was changed: %+v", s)
	}
	if !strings.Contains(r.logs.String(), "already registered by someone else") {
		t.Errorf("no log line about the colliding ID")
	}
	if s := all[legacy.ID]; s == nil || s.Service != "berth-test-registrator" || s.Meta[metaHost] != h {
		t.Errorf("the gliderlabs-shaped registration was not adopted: %+v", s)
	}
}

// TestDockerAwayAtStart: registrator started while Docker is unreachable
// waits (unhealthy, registering nothing, removing nothing) and catches up
// when Docker answers.
func TestDockerAwayAtStart(t *testing.T) {
	a, c := requireDocker(t)
	p := newSockProxy(t)
	p.cut()
	h := hostFor(t)
	// A registration from an earlier run must survive while Docker is away.
	runC(t, "da-a", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	earlier := &api.AgentServiceRegistration{ID: h + ":" + cn("da-a") + ":8080", Name: "berth-test-registrator",
		Port: 9, Meta: map[string]string{metaSource: metaSourceValue, metaHost: h}}
	if err := c.Agent().ServiceRegister(earlier); err != nil {
		t.Fatal(err)
	}
	r := startReg(t, a, func(cfg *Config) { cfg.DockerHost = p.addr() })
	time.Sleep(2 * time.Second)
	if err := r.Health(); err == nil || !strings.Contains(err.Error(), "Docker") {
		t.Errorf("health while Docker is away: %v", err)
	}
	if s := ownedServices(t, c, h)[earlier.ID]; s == nil || s.Port != 9 {
		t.Fatalf("registration changed while Docker was away: %+v", s)
	}
	p.restore()
	eventually.Holds(t, 20*time.Second, "registration corrected once Docker answers", func() (bool, string) {
		s := ownedServices(t, c, h)[earlier.ID]
		return s != nil && strconv.Itoa(s.Port) == hostPort(t, "da-a", "8080"), fmt.Sprintf("%+v", s)
	})
}

// TestConsulAgentRestart: a dev agent restarted loses every registration;
// all come back within the resync interval, and nothing is lost meanwhile.
func TestConsulAgentRestart(t *testing.T) {
	requireDocker(t)
	a := consultest.StartT(t, consultest.Options{NodeName: "berth-test-restart"})
	c := a.Client()
	r := startReg(t, a, func(cfg *Config) { cfg.Resync = 5 * time.Second })
	h := r.cfg.Map.Hostname
	var want []string
	for i := 0; i < 3; i++ {
		n := fmt.Sprintf("ar-%d", i)
		runC(t, n, []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_CHECK_TTL=30s"}, "-listen", ":8080")
		want = append(want, h+":"+cn(n)+":8080")
	}
	waitIDs(t, c, h, 20*time.Second, want...)
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	// Right after the restart the agent has nothing of ours.
	if n := len(ownedServices(t, c, h)); n == len(want) {
		t.Logf("registrations already back (%d) right after the restart", n)
	}
	waitIDs(t, c, h, r.cfg.Resync+5*time.Second, want...)
	t.Logf("registrations back %s after the agent restarted", time.Since(restarted).Round(10*time.Millisecond))
	checks, err := c.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range want {
		if checks["service:"+id] == nil {
			t.Errorf("check of %s not restored", id)
		}
	}
}

// sockProxy is a loopback TCP proxy to the Docker socket that the test can
// cut: every open connection (the event stream among them) is closed and new
// ones are refused until it is restored. This is a real stream closing, as a
// dockerd restart or a broken TCP path would cause; restarting the shared
// dockerd is not an option on this machine.
type sockProxy struct {
	ln    net.Listener
	sock  string
	mu    sync.Mutex
	open  bool
	conns map[net.Conn]bool
}

func newSockProxy(t *testing.T) *sockProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &sockProxy{ln: ln, sock: "/var/run/docker.sock", open: true, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *sockProxy) addr() string { return "tcp://" + p.ln.Addr().String() }

func (p *sockProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if !p.open {
			p.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("unix", p.sock)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close(); in.Close() }()
		go func() { _, _ = io.Copy(in, out); out.Close(); in.Close() }()
	}
}

func (p *sockProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open = false
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *sockProxy) restore() {
	p.mu.Lock()
	p.open = true
	p.mu.Unlock()
}

// TestEventStreamInterrupted: the Docker connection is cut; containers
// change meanwhile; registrator reconnects, resumes and catches up.
func TestEventStreamInterrupted(t *testing.T) {
	a, c := requireDocker(t)
	p := newSockProxy(t)
	r := startReg(t, a, func(cfg *Config) { cfg.DockerHost = p.addr(); cfg.Resync = 0 })
	h := r.cfg.Map.Hostname
	runC(t, "es-a", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, h+":"+cn("es-a")+":8080")

	p.cut()
	eventually.Holds(t, 10*time.Second, "registrator notices the stream closed", func() (bool, string) {
		return r.Health() != nil, "healthy"
	})
	docker(t, "stop", "-t", "1", cn("es-a"))
	runC(t, "es-b", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	time.Sleep(time.Second)
	if got := ids(ownedServices(t, c, h)); strings.Join(got, ",") != h+":"+cn("es-a")+":8080" {
		t.Fatalf("while cut, registrations changed: %v", got)
	}
	p.restore()
	waitIDs(t, c, h, 30*time.Second, h+":"+cn("es-b")+":8080")
	// The re-list retried after the failed calls may catch up before the
	// stream itself reconnects (its backoff runs separately): wait for both.
	eventually.Holds(t, 15*time.Second, "event stream reconnected", func() (bool, string) {
		n := metricValue(r.m.reconnects)
		return n >= 1, fmt.Sprint("event_stream_reconnects_total ", n)
	})
	eventually.Holds(t, 10*time.Second, "healthy again", func() (bool, string) {
		err := r.Health()
		return err == nil, fmt.Sprint(err)
	})
	// And it keeps following events after the reconnect.
	docker(t, "stop", "-t", "1", cn("es-b"))
	waitIDs(t, c, h, 20*time.Second)
}

// TestConsulAway: with the agent paused (hung) and stopped, registrator
// keeps its desired state and catches up when the agent answers again.
func TestConsulAway(t *testing.T) {
	requireDocker(t)
	a := consultest.StartT(t, consultest.Options{NodeName: "berth-test-away"})
	c := a.Client()
	r := startReg(t, a, func(cfg *Config) { cfg.ConsulRetryMax = time.Second; cfg.Resync = 0 })
	h := r.cfg.Map.Hostname
	runC(t, "ca-a", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, h+":"+cn("ca-a")+":8080")
	a.Stop()
	runC(t, "ca-b", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	eventually.Holds(t, 10*time.Second, "unhealthy while Consul is away", func() (bool, string) {
		return r.Health() != nil, "healthy"
	})
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	waitIDs(t, c, h, 20*time.Second, h+":"+cn("ca-a")+":8080", h+":"+cn("ca-b")+":8080")

	// A hung agent (SIGSTOP): calls stall, nothing is lost, and the change
	// made meanwhile lands once it answers.
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	docker(t, "stop", "-t", "1", cn("ca-a"))
	time.Sleep(2 * time.Second)
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	waitIDs(t, c, h, 20*time.Second, h+":"+cn("ca-b")+":8080")
}

// TestUnchangedResyncWritesNothing: 50 containers registered; resync passes
// with nothing changed make zero register/deregister calls.
func TestUnchangedResyncWritesNothing(t *testing.T) {
	a, c := requireDocker(t)
	const n = 50
	r := startReg(t, a, func(cfg *Config) {
		cfg.Resync = time.Second
		cfg.Map.Tags = mustTags(t, "fleet,{{.Config.Labels.team}}")
		cfg.Map.DockerHealth = true
	})
	h := r.cfg.Map.Hostname
	var want []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	sem := make(chan struct{}, 4)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("zw-%02d", i)
		port := strconv.Itoa(19000 + i)
		opts := []string{"--network", "host", "--expose", port, "-l", "team=t" + strconv.Itoa(i%3),
			"-e", "SERVICE_VERSION=" + strconv.Itoa(i), "-e", "SERVICE_TAGS=a,b"}
		switch i % 3 {
		case 0:
			opts = append(opts, "-e", "SERVICE_CHECK_TTL=1m")
		case 1:
			opts = append(opts, "-e", "SERVICE_CHECK_TCP=true", "-e", "SERVICE_CHECK_INTERVAL=30s")
		}
		image := testImage
		if i%5 == 0 {
			image = testImageHealth
		}
		t.Cleanup(func() { _ = runQuiet("docker", "rm", "-f", cn(name)) })
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			args := append(append([]string{"run", "-d", "--name", cn(name)}, labelArgs(t)...), opts...)
			if err := runQuiet("docker", append(args, image)...); err != nil {
				t.Errorf("docker run %s: %v", name, err)
			}
		}()
		mu.Lock()
		want = append(want, h+":"+cn(name)+":"+port)
		mu.Unlock()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	waitIDs(t, c, h, 60*time.Second, want...)
	// Let health checks settle (Docker HEALTHCHECK starting → healthy is a
	// TTL status update, never a re-registration).
	waitResyncs := func(k int) {
		start := metricValue(r.m.passes.WithLabelValues("resync"))
		eventually.Holds(t, time.Duration(k+10)*time.Second, fmt.Sprintf("%d resync passes", k), func() (bool, string) {
			got := metricValue(r.m.passes.WithLabelValues("resync"))
			return got >= start+float64(k), fmt.Sprint(got - start)
		})
	}
	waitResyncs(1)
	regs, deregs := metricValue(r.m.registrations), metricValue(r.m.deregistrations)
	waitResyncs(3)
	if d := metricValue(r.m.registrations) - regs; d != 0 {
		t.Errorf("unchanged resyncs made %v registrations, want 0", d)
	}
	if d := metricValue(r.m.deregistrations) - deregs; d != 0 {
		t.Errorf("unchanged resyncs made %v deregistrations, want 0", d)
	}
	if regs != n {
		t.Errorf("registrations total %v for %d containers, want exactly one each", regs, n)
	}
}

func runQuiet(name string, args ...string) error {
	out, err := execCommand(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// TestDockerHealth: -docker-health mirrors HEALTHCHECK into a TTL check; an
// unhealthy container leaves the passing list and comes back when healthy.
func TestDockerHealth(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) { cfg.Map.DockerHealth = true; cfg.Map.HealthTTL = 30 * time.Second })
	h := r.cfg.Map.Hostname
	id := h + ":" + cn("dh") + ":8080"
	runImage(t, testImageHealth, "dh", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=berth-test-dh"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, id)
	eventually.Holds(t, 20*time.Second, "healthy container passing", func() (bool, string) {
		p := passing(t, c, "berth-test-dh")
		return strings.Join(p, ",") == id, fmt.Sprint(p)
	})
	docker(t, "exec", cn("dh"), "/server", "-sick")
	eventually.Holds(t, 20*time.Second, "unhealthy container out of the passing list", func() (bool, string) {
		p := passing(t, c, "berth-test-dh")
		return len(p) == 0, fmt.Sprint(p)
	})
	checks, err := c.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if ch := checks[id+":docker-health"]; ch == nil || ch.Status != api.HealthCritical || !strings.Contains(ch.Output, "unhealthy") {
		t.Errorf("docker-health check: %+v", ch)
	}
	if n := metricValue(r.m.registrations); n != 1 {
		t.Errorf("health changes caused re-registrations: %v registrations", n)
	}
}

// TestLivenessTTL: the liveness check is kept passing while registrator
// runs and goes critical once it stops heartbeating (Consul then reaps the
// service after deregister-critical-after, at least a minute: not waited for).
func TestLivenessTTL(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) { cfg.Map.LivenessTTL = 2 * time.Second })
	h := r.cfg.Map.Hostname
	id := h + ":" + cn("lv") + ":8080"
	runC(t, "lv", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, id)
	status := func() string {
		checks, err := c.Agent().Checks()
		if err != nil {
			t.Fatal(err)
		}
		if ch := checks[id+":liveness"]; ch != nil {
			return ch.Status
		}
		return "missing"
	}
	time.Sleep(5 * time.Second) // over two TTLs: only heartbeats keep it passing
	if s := status(); s != api.HealthPassing {
		t.Fatalf("liveness check %s while registrator runs", s)
	}
	r.stop()
	eventually.Holds(t, 15*time.Second, "liveness critical after registrator stopped", func() (bool, string) {
		s := status()
		return s == api.HealthCritical, s
	})
}

// TestAgentRefusal: a registration the agent refuses (a script check on an
// agent without enable_script_checks) is logged with the container, skipped
// until it changes, and does not hold up the other services.
func TestAgentRefusal(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) { cfg.Resync = time.Second })
	h := r.cfg.Map.Hostname
	runC(t, "rf-script", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_CHECK_SCRIPT=/server -check"}, "-listen", ":8080")
	runC(t, "rf-ok", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, h+":"+cn("rf-ok")+":8080")
	eventually.Holds(t, 10*time.Second, "refusal logged", func() (bool, string) {
		l := r.logs.String()
		return strings.Contains(l, "Consul refused the service") && strings.Contains(l, "container="+cn("rf-script")), ""
	})
	before := metricValue(r.m.refused)
	if before != 1 {
		t.Errorf("registrations_refused_total = %v, want 1", before)
	}
	start := metricValue(r.m.passes.WithLabelValues("resync"))
	eventually.Holds(t, 15*time.Second, "two resyncs", func() (bool, string) {
		return metricValue(r.m.passes.WithLabelValues("resync")) >= start+2, ""
	})
	if d := metricValue(r.m.refused) - before; d != 0 {
		t.Errorf("refused registration retried on every resync: %v writes", d)
	}
}

// metricValue reads a counter or gauge.
func metricValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// TestRepairsAgentChanges: with no periodic resync, an owned service
// deregistered or altered by hand in the agent is put back as it should be
// (the agent change shows in the catalog watch), and nothing else is written.
func TestRepairsAgentChanges(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) { cfg.Resync = 0 })
	h := r.cfg.Map.Hostname
	id := h + ":" + cn("rp") + ":8080"
	runC(t, "rp", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_TAGS=x"}, "-listen", ":8080")
	want := waitIDs(t, c, h, 20*time.Second, id)[id]
	if err := c.Agent().ServiceDeregister(id); err != nil {
		t.Fatal(err)
	}
	waitIDs(t, c, h, 15*time.Second, id)
	altered := &api.AgentServiceRegistration{ID: id, Name: want.Service, Port: 1, Tags: []string{"tampered"}, Meta: want.Meta}
	if err := c.Agent().ServiceRegister(altered); err != nil {
		t.Fatal(err)
	}
	eventually.Holds(t, 15*time.Second, "altered service restored", func() (bool, string) {
		s := ownedServices(t, c, h)[id]
		return s != nil && s.Port == want.Port && strings.Join(s.Tags, ",") == "x", fmt.Sprintf("%+v", s)
	})
	// The agent has the restored service once registrator's write is
	// answered; the counter follows that answer.
	eventually.Holds(t, 15*time.Second, "three registrations counted (initial + two repairs)", func() (bool, string) {
		n := metricValue(r.m.registrations)
		return n >= 3, fmt.Sprintf("registrations %v", n)
	})
	if n := metricValue(r.m.registrations); n != 3 {
		t.Errorf("registrations %v, want 3 (initial + two repairs)", n)
	}
}

// TestForeignChecksKept: maintenance mode (Consul's _service_maintenance
// check) and a check added by hand to an owned service survive resyncs and
// a restart of registrator, which neither rewrite the unchanged service:
// gliderlabs master consul/consul.go Register re-registers without
// replacing a service's other checks.
func TestForeignChecksKept(t *testing.T) {
	a, c := requireDocker(t)
	mod := func(cfg *Config) { cfg.Resync = time.Second }
	r := startReg(t, a, mod)
	h := r.cfg.Map.Hostname
	id := h + ":" + cn("mm") + ":8080"
	runC(t, "mm", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, id)
	if err := c.Agent().EnableServiceMaintenance(id, "drain"); err != nil {
		t.Fatal(err)
	}
	byHand := "by-hand:" + id
	if err := c.Agent().CheckRegister(&api.AgentCheckRegistration{ID: byHand, Name: "by hand", ServiceID: id,
		AgentServiceCheck: api.AgentServiceCheck{TTL: "10m"}}); err != nil {
		t.Fatal(err)
	}
	kept := func(what string) {
		t.Helper()
		checks, err := c.Agent().Checks()
		if err != nil {
			t.Fatal(err)
		}
		for _, cid := range []string{"_service_maintenance:" + id, byHand} {
			if checks[cid] == nil {
				t.Errorf("%s: check %s is gone", what, cid)
			}
		}
	}
	// A repair rewrites the service, and leaves the other checks.
	svc := ownedServices(t, c, h)[id]
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: svc.Service, Port: 1, Meta: svc.Meta}); err != nil {
		t.Fatal(err)
	}
	eventually.Holds(t, 15*time.Second, "altered service restored", func() (bool, string) {
		s := ownedServices(t, c, h)[id]
		return s != nil && s.Port == svc.Port, fmt.Sprintf("%+v", s)
	})
	kept("after a repair")
	regs := metricValue(r.m.registrations)
	from := r.passes.Load()
	eventually.Holds(t, 30*time.Second, "three resync passes", func() (bool, string) {
		n := r.passes.Load() - from
		return n >= 4, fmt.Sprintf("%d passes", n)
	})
	kept("after resyncs")
	if n := metricValue(r.m.registrations); n != regs {
		t.Errorf("registrations %v after resyncs, %v before: the unchanged service was written again", n, regs)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r2 := startReg(t, a, mod)
	eventually.Holds(t, 30*time.Second, "the new registrator's start and a resync pass", func() (bool, string) {
		n := r2.passes.Load()
		return n >= 2, fmt.Sprintf("%d passes", n)
	})
	kept("after a restart")
	if n := metricValue(r2.m.registrations); n != 0 {
		t.Errorf("the restarted registrator wrote %v registrations for an unchanged service", n)
	}
}

// TestReapedServiceStaysGone: a service whose TTL check stays critical
// longer than SERVICE_CHECK_DEREGISTER_AFTER is removed by Consul itself
// (its reaper: at least 1 minute, checked every 30 s, values a user cannot
// change); registrator leaves it removed, as gliderlabs (which writes only
// at start events and syncs) does, until the container starts again.
func TestReapedServiceStaysGone(t *testing.T) {
	t.Parallel()
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) { cfg.Resync = 0 })
	h := r.cfg.Map.Hostname
	id := h + ":" + cn("reap") + ":8080"
	runC(t, "reap", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_CHECK_TTL=5s", "-e", "SERVICE_CHECK_DEREGISTER_AFTER=1m"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, id)
	eventually.True(t, 3*time.Minute, "registrator saw Consul reap the service", func() bool {
		return strings.Contains(r.logs.String(), "not registering it again until its container restarts")
	})
	// A later pass (for another container's start) has finished once that
	// container's service is there: the pass that saw the reaping is over.
	other := h + ":" + cn("reap-other") + ":8080"
	runC(t, "reap-other", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	eventually.Holds(t, 20*time.Second, "the other container's service", func() (bool, string) {
		got := ownedServices(t, c, h)
		return got[other] != nil, fmt.Sprint(ids(got))
	})
	if s := ownedServices(t, c, h)[id]; s != nil {
		t.Fatalf("the reaped service was registered again: %+v", s)
	}
	docker(t, "restart", "-t", "1", cn("reap"))
	waitIDs(t, c, h, 30*time.Second, id, other)
}
