package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
)

// TestServiceCheckTTLID: the SERVICE_CHECK_TTL check has the ID Consul gives
// the single check of a service registered without a check ID,
// "service:<service-id>" (gliderlabs registrator master consul/consul.go
// (*ConsulAdapter).Register sets registration.Check with no CheckID), so an
// application heartbeating that ID is answered 200 and turns it passing, and
// registrator's later passes do not undo it. berth's own checks keep their
// distinct IDs <id>:docker-health and <id>:liveness.
func TestServiceCheckTTLID(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) {
		cfg.Resync = time.Second
		cfg.Map.DockerHealth = true
		cfg.Map.LivenessTTL = 30 * time.Second
	})
	h := r.cfg.Map.Hostname
	id := h + ":" + cn("ttl") + ":8080"
	runImage(t, testImageHealth, "ttl", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_CHECK_TTL=1m"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, id)

	// What an application written for gliderlabs does.
	if err := c.Agent().UpdateTTL("service:"+id, "app alive", api.HealthPassing); err != nil {
		t.Fatalf("heartbeat of check service:%s: %v", id, err)
	}
	checks, err := c.Agent().ChecksWithFilter(fmt.Sprintf("ServiceID == %q", id))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for cid := range checks {
		got = append(got, cid)
	}
	sort.Strings(got)
	want := []string{id + ":docker-health", id + ":liveness", "service:" + id}
	if !slices.Equal(got, want) {
		t.Errorf("check IDs %v, want %v", got, want)
	}
	// Resync passes leave the heartbeated status alone (no re-registration).
	start := metricValue(r.m.passes.WithLabelValues("resync"))
	eventually.Holds(t, 20*time.Second, "two resyncs", func() (bool, string) {
		return metricValue(r.m.passes.WithLabelValues("resync")) >= start+2, ""
	})
	checks, err = c.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if ch := checks["service:"+id]; ch == nil || ch.Status != api.HealthPassing || ch.Output != "app alive" {
		t.Errorf("heartbeated check after resyncs: %+v", ch)
	}
	if n := metricValue(r.m.registrations); n != 1 {
		t.Errorf("%v registrations, want 1", n)
	}
}

// TestDefaultAgentURI: consul:// without a host means the default agent:
// api.DefaultConfig()'s address, from CONSUL_HTTP_ADDR (gliderlabs
// registrator master consul/consul.go (*Factory).New sets the address only
// when the URI has a host).
func TestDefaultAgentURI(t *testing.T) {
	a, _ := requireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var logs eventually.Buffer
	cmd := exec.CommandContext(ctx, binPath, "-hostname", hostFor(t), "-ip", "127.0.0.1", "-only-label", onlyLabel(t), "consul://")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CONSUL_HTTP_ADDR=" + a.HTTPAddr()}
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	runC(t, "default-uri", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	id := hostFor(t) + ":" + cn("default-uri") + ":8080"
	c := a.Client()
	eventually.Holds(t, 30*time.Second, "registered through the default agent", func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("registrator consul:// exited: %v\n%s", err, logs.String())
		default:
		}
		return ownedServices(t, c, hostFor(t))[id] != nil, logs.String()
	})
}

// TestSharedNetworkMode: a container in network mode container:<peer> has
// no ports of its own; its exposed ports are registered on the peer's
// address (gliderlabs registrator master bridge/bridge.go newService,
// "NetworkMode can point to another container"), and the TCP check the
// agent runs there passes.
func TestSharedNetworkMode(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, nil)
	h := r.cfg.Map.Hostname
	runC(t, "netpeer", nil, "-listen", ":8080")
	runImage(t, testImageExpose, "netshare", []string{"--network", "container:" + cn("netpeer"),
		"-e", "SERVICE_NAME=berth-test-netshare", "-e", "SERVICE_CHECK_TCP=true", "-e", "SERVICE_CHECK_INTERVAL=1s"}, "-listen", ":9090")
	id := h + ":" + cn("netshare") + ":9090"
	got := waitIDs(t, c, h, 20*time.Second, id)[id]
	peerIP := docker(t, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", cn("netpeer"))
	if got.Address != peerIP || got.Port != 9090 {
		t.Errorf("registered %s:%d, want the peer's %s:9090", got.Address, got.Port, peerIP)
	}
	checkOutput(t, c, "berth-test-netshare", "service:"+id, "tcp", "TCP connect "+peerIP+":9090: Success")
}

// TestSharedNetworkModeHostPeer: a container sharing the network of a
// container on the host network is registered with no address, so the
// agent's node address, which is where its ports are: gliderlabs master
// bridge/bridge.go newService takes the peer's NetworkSettings.IPAddress,
// empty on the host network.
func TestSharedNetworkModeHostPeer(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, nil)
	h := r.cfg.Map.Hostname
	ports := make([]int, 2)
	for i := range ports {
		p, err := consultest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	runC(t, "hostpeer", []string{"--network", "host", "-e", "SERVICE_IGNORE=true"}, "-listen", fmt.Sprintf("127.0.0.1:%d", ports[0]))
	runImage(t, testImageExpose, "hostshare", []string{"--network", "container:" + cn("hostpeer"), "-e", "SERVICE_NAME=berth-test-hostshare"},
		"-listen", fmt.Sprintf("127.0.0.1:%d", ports[1]))
	id := h + ":" + cn("hostshare") + ":9090"
	got := waitIDs(t, c, h, 20*time.Second, id)[id]
	if got.Address != "" || got.Port != 9090 {
		t.Errorf("registered %q:%d, want no address (the node's) and the exposed port 9090", got.Address, got.Port)
	}
}

// TestPausedContainerKept: a paused container keeps its services, through
// resyncs and a registrator started while it is paused. gliderlabs
// registrator master: bridge/bridge.go (*Bridge).Sync reads Docker's
// default listing, which holds paused containers, and no event removes them
// (registrator.go main acts on start and die only).
func TestPausedContainerKept(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) { cfg.Resync = time.Second })
	h := r.cfg.Map.Hostname
	id := h + ":" + cn("paused") + ":8080"
	runC(t, "paused", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, id)

	docker(t, "pause", cn("paused"))
	t.Cleanup(func() { _ = execCommand("docker", "unpause", cn("paused")).Run() })
	start := metricValue(r.m.passes.WithLabelValues("resync"))
	eventually.Holds(t, 20*time.Second, "two resyncs", func() (bool, string) {
		return metricValue(r.m.passes.WithLabelValues("resync")) >= start+2, ""
	})
	if got := ids(ownedServices(t, c, h)); !slices.Equal(got, []string{id}) {
		t.Errorf("after resyncs with the container paused: services %v, want [%s]", got, id)
	}

	// The full listing at start sees it too.
	r.stop()
	r2 := startReg(t, a, func(cfg *Config) { cfg.Resync = time.Second })
	// Passes run one after another: a resync pass began after the start one ended.
	eventually.Holds(t, 20*time.Second, "second registrator's start pass done", func() (bool, string) {
		return metricValue(r2.m.passes.WithLabelValues("resync")) >= 1, ""
	})
	if got := ids(ownedServices(t, c, h)); !slices.Equal(got, []string{id}) {
		t.Errorf("registrator started while the container is paused: services %v, want [%s]", got, id)
	}
}

// TestServiceIDAsWritten: a SERVICE_ID holding / ? or # is registered as
// written (gliderlabs registrator master bridge/bridge.go newService takes
// SERVICE_ID as it is), its service:<id> check is heartbeated by that ID,
// registrator's own TTL check under it is kept, and it is deregistered with
// its container.
func TestServiceIDAsWritten(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) { cfg.Map.LivenessTTL = 3 * time.Second })
	h := r.cfg.Map.Hostname
	id := "berth-test/" + runID + "/odd?id#1"
	runC(t, "oddid", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_ID=" + id, "-e", "SERVICE_CHECK_TTL=1m"}, "-listen", ":8080")
	waitIDs(t, c, h, 20*time.Second, id)
	if err := c.Agent().UpdateTTL("service:"+id, "app alive", api.HealthPassing); err != nil {
		t.Fatalf("heartbeat of check service:%s: %v", id, err)
	}
	eventually.Holds(t, 20*time.Second, "both checks passing", func() (bool, string) {
		checks, err := c.Agent().ChecksWithFilter(fmt.Sprintf("ServiceID == %q", id))
		if err != nil {
			return false, err.Error()
		}
		main, live := checks["service:"+id], checks[livenessCheckID(id)]
		return main != nil && live != nil && main.Status == api.HealthPassing && live.Status == api.HealthPassing, fmt.Sprint(len(checks), " checks")
	})
	// The liveness check's heartbeat reaches the agent under that ID.
	eventually.Holds(t, 20*time.Second, "a liveness heartbeat accepted", func() (bool, string) {
		return metricValue(r.m.checkUpdates) >= 1, "none yet"
	})
	docker(t, "rm", "-f", cn("oddid"))
	waitIDs(t, c, h, 20*time.Second)
}

// TestHostAddrPerRun: without -ip, gliderlabs master bridge/bridge.go
// newService resolves the host name each time it builds a container's
// services, at the container's start event (or the first sync that sees
// it), and (*Bridge).Sync re-registers those built services as they are. So
// a container keeps the host address it started with over resyncs, a
// container started later gets the address the name resolves to then, and a
// restarted container gets it too.
func TestHostAddrPerRun(t *testing.T) {
	a, c := requireDocker(t)
	var addr atomic.Value
	addr.Store("127.0.0.2")
	r := startReg(t, a, func(cfg *Config) {
		cfg.Resync = 500 * time.Millisecond
		cfg.Map.HostIP = ""
		cfg.ResolveHost = func(string) string { return addr.Load().(string) }
	})
	h := r.cfg.Map.Hostname
	idA, idB := h+":"+cn("addr-a")+":8080", h+":"+cn("addr-b")+":8080"
	runC(t, "addr-a", []string{"-p", "8080"}, "-listen", ":8080")
	if got := waitIDs(t, c, h, 20*time.Second, idA)[idA].Address; got != "127.0.0.2" {
		t.Fatalf("first container: address %q, want 127.0.0.2", got)
	}
	addr.Store("127.0.0.3")
	p := r.passes.Load()
	eventually.Holds(t, 20*time.Second, "two resync passes", func() (bool, string) {
		return r.passes.Load() >= p+2, fmt.Sprint(r.passes.Load()-p, " passes")
	})
	runC(t, "addr-b", []string{"-p", "8080"}, "-listen", ":8080")
	got := waitIDs(t, c, h, 20*time.Second, idA, idB)
	if got[idA].Address != "127.0.0.2" || got[idB].Address != "127.0.0.3" {
		t.Errorf("after the host name changed: first %q, second %q; want 127.0.0.2 (kept) and 127.0.0.3", got[idA].Address, got[idB].Address)
	}
	docker(t, "restart", "-t", "1", cn("addr-a"))
	eventually.Holds(t, 20*time.Second, "restarted container on the new address", func() (bool, string) {
		s := ownedServices(t, c, h)[idA]
		return s != nil && s.Address == "127.0.0.3", fmt.Sprint(s)
	})
}

// TestCleanupLegacy: with -cleanup, gliderlabs master bridge/bridge.go
// (*Bridge).Sync deregisters every agent service whose ID has the default
// shape <host>:<container>:<port>[:udp] with this host's name, unless one of
// the services it registers has the same name and that container name.
// Without -cleanup such services stay (unowned ones are never touched).
func TestCleanupLegacy(t *testing.T) {
	a, c := requireDocker(t)
	h := hostFor(t)
	runC(t, "cl-web", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=berth-test-clweb"}, "-listen", ":8080")
	web := h + ":" + cn("cl-web") + ":8080"
	dangling := &api.AgentServiceRegistration{ID: h + ":" + cn("cl-gone") + ":8080", Name: "berth-test-clgone", Port: 1}
	danglingUDP := &api.AgentServiceRegistration{ID: h + ":" + cn("cl-gone") + ":53:udp", Name: "berth-test-clgone", Port: 2}
	sameName := &api.AgentServiceRegistration{ID: h + ":" + cn("cl-web") + ":9999", Name: "berth-test-clweb", Port: 3}
	kept := []*api.AgentServiceRegistration{
		sameName,
		{ID: "berth-test-other-host:" + cn("cl-gone") + ":8080", Name: "berth-test-clgone", Port: 4},
		{ID: h + ":" + cn("cl-gone") + ":http", Name: "berth-test-clgone", Port: 5},
		{ID: "berth-test-cl-by-hand", Name: "berth-test-clgone", Port: 6},
	}
	for _, s := range append([]*api.AgentServiceRegistration{dangling, danglingUDP}, kept...) {
		if err := c.Agent().ServiceRegister(s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Agent().ServiceDeregister(s.ID) })
	}
	present := func() map[string]bool {
		all, err := c.Agent().Services()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for id := range all {
			m[id] = true
		}
		return m
	}

	r := startReg(t, a, nil)
	waitIDs(t, c, h, 20*time.Second, web)
	if p := present(); !p[dangling.ID] || !p[danglingUDP.ID] {
		t.Fatalf("without -cleanup the unowned gliderlabs-shaped services must stay")
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	startReg(t, a, func(cfg *Config) { cfg.Cleanup = true })
	eventually.Holds(t, 20*time.Second, "dangling services removed", func() (bool, string) {
		p := present()
		return !p[dangling.ID] && !p[danglingUDP.ID], fmt.Sprint(p[dangling.ID], p[danglingUDP.ID])
	})
	p := present()
	for _, s := range kept {
		if !p[s.ID] {
			t.Errorf("-cleanup removed %s", s.ID)
		}
	}
	if !p[web] {
		t.Errorf("-cleanup removed the running container's service")
	}
}

// TestTagsAsGliderlabs: the tag list the agent holds is the one gliderlabs
// registrator master sends. bridge/bridge.go newService passes
// combineTags(SERVICE_TAGS, the -tags template's output, "udp" for UDP),
// and bridge/util.go combineTags splits each part with recParseEscapedComma:
// on commas not escaped as \, (the escape dropped), empty elements dropped,
// spaces and duplicates kept, and each part's elements in reverse order (the
// recursion appends the first element after the rest). The agent keeps the
// list as sent, so resyncs leave the registration alone.
func TestTagsAsGliderlabs(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) {
		cfg.Resync = 500 * time.Millisecond
		cfg.Map.Tags = mustTags(t, `fleet,{{.Config.Labels.team}}, x ,fleet`)
	})
	h := r.cfg.Map.Hostname
	runC(t, "tags", []string{"-p", "127.0.0.1::8080", "-p", "127.0.0.1::5353/udp", "-l", "team=blue",
		"-e", `SERVICE_TAGS=a, b,,a,c\,d, `}, "-listen", ":8080", "-udp", ":5353")
	tcpID, udpID := h+":"+cn("tags")+":8080", h+":"+cn("tags")+":5353:udp"
	got := waitIDs(t, c, h, 20*time.Second, tcpID, udpID)
	want := []string{" ", "c,d", "a", " b", "a", "fleet", " x ", "blue", "fleet"}
	if tags := got[tcpID].Tags; !slices.Equal(tags, want) {
		t.Errorf("tcp tags %q, want %q", tags, want)
	}
	if tags := got[udpID].Tags; !slices.Equal(tags, append(want, "udp")) {
		t.Errorf("udp tags %q, want %q", tags, append(want, "udp"))
	}
	// Unchanged over resyncs: the catalog entry is not rewritten.
	index := func() uint64 {
		ss, _, err := c.Catalog().Service(got[tcpID].Service, "", nil)
		if err != nil || len(ss) != 1 {
			t.Fatalf("catalog: %v %d entries", err, len(ss))
		}
		return ss[0].ModifyIndex
	}
	before := index()
	time.Sleep(2 * time.Second)
	if after := index(); after != before {
		t.Errorf("catalog entry rewritten over resyncs (modify index %d -> %d)", before, after)
	}
}

// TestIPFromLabelHostName: gliderlabs registrator master bridge/bridge.go
// newService registers a -useIpFromLabel value that is set and not empty as
// the service address whatever it holds (a host name too: Consul takes
// one), and an empty value leaves the usual address. The agent's TCP check
// connects to the host name.
func TestIPFromLabelHostName(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) { cfg.Map.UseIPFromLabel = "berth.test.addr" })
	h := r.cfg.Map.Hostname
	runC(t, "lbl-name", []string{"-p", "127.0.0.1::8080", "-l", "berth.test.addr=localhost", "-e", "SERVICE_NAME=berth-test-lbl-name",
		"-e", "SERVICE_CHECK_TCP=true", "-e", "SERVICE_CHECK_INTERVAL=1s"}, "-listen", ":8080")
	runC(t, "lbl-empty", []string{"-p", "127.0.0.1::8080", "-l", "berth.test.addr="}, "-listen", ":8080")
	named, empty := h+":"+cn("lbl-name")+":8080", h+":"+cn("lbl-empty")+":8080"
	got := waitIDs(t, c, h, 20*time.Second, named, empty)
	port := hostPort(t, "lbl-name", "8080")
	if s := got[named]; s.Address != "localhost" || fmt.Sprint(s.Port) != port {
		t.Errorf("host name label: registered %q:%d, want localhost:%s", s.Address, s.Port, port)
	}
	if s := got[empty]; s.Address != r.cfg.Map.HostIP {
		t.Errorf("empty label: registered address %q, want -ip's %q", s.Address, r.cfg.Map.HostIP)
	}
	checkOutput(t, c, "berth-test-lbl-name", "service:"+named, "tcp", "TCP connect localhost:"+port+": Success")
}

// TestTagsTemplateTimesAsGliderlabs: -tags runs, in gliderlabs master, on a
// go-dockerclient Container (bridge/bridge.go newService), whose Created,
// State.StartedAt and State.FinishedAt are time.Time: their methods work
// and they print as time.Time prints. The expected tags come from docker
// inspect's RFC 3339 strings.
func TestTagsTemplateTimesAsGliderlabs(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) {
		cfg.Map.Tags = mustTags(t, `{{.State.StartedAt.Unix}},{{.Created.Year}},{{.State.FinishedAt.IsZero}},{{.State.Running}},{{.Name}}`)
	})
	h := r.cfg.Map.Hostname
	runC(t, "times", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	id := h + ":" + cn("times") + ":8080"
	got := waitIDs(t, c, h, 20*time.Second, id)
	field := func(f string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, docker(t, "inspect", "-f", f, cn("times")))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	want := []string{strconv.FormatInt(field("{{.State.StartedAt}}").Unix(), 10), strconv.Itoa(field("{{.Created}}").Year()), "true", "true", "/" + cn("times")}
	// combineTags reverses each part's elements (TestTagsAsGliderlabs).
	slices.Reverse(want)
	if tags := got[id].Tags; !slices.Equal(tags, want) {
		t.Errorf("tags %q, want %q", tags, want)
	}
}
