package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
)

// TestMappingRules starts containers covering the gliderlabs conventions and
// checks what lands in the agent's /v1/agent/services and /v1/health/service.
func TestMappingRules(t *testing.T) {
	a, c := requireDocker(t)
	// -service-tags-template for the SERVICE_TAGS template cases below.
	r := startReg(t, a, func(cfg *Config) { cfg.Resync = 0; cfg.Map.ServiceTagsTemplate = true })
	h := r.cfg.Map.Hostname

	// Named service, labels over env, meta, invalid meta key, HTTP check.
	runC(t, "map-web", []string{"-p", "127.0.0.1::8080",
		"-e", "SERVICE_NAME=berth-test-web", "-e", "SERVICE_TAGS=fromenv", "-l", "SERVICE_TAGS=fromlabel,two",
		"-e", "SERVICE_VERSION=2.1", "-l", "SERVICE_OWNER=team-a", "-l", "SERVICE_bad.key=x",
		// A signed port key (strconv.Atoi reads it): gliderlabs master
		// bridge/util.go serviceMetaData matches it to no port, so no meta.
		"-e", "SERVICE_-1_VERSION=neg",
		// The blank key gliderlabs sends (the agent refuses the service).
		"-e", "SERVICE_=blank",
		"-e", "SERVICE_CHECK_HTTP=/health", "-e", "SERVICE_CHECK_INTERVAL=1s", "-e", "SERVICE_CHECK_TIMEOUT=1s"},
		"-listen", ":8080")
	// Two published ports: default names get -<port>, except a per-port name.
	runC(t, "map-two", []string{"-p", "127.0.0.1::8080", "-p", "127.0.0.1::9090",
		"-e", "SERVICE_9090_NAME=berth-test-admin", "-e", "SERVICE_9090_TAGS=admin",
		"-e", "SERVICE_TAGS=generic", "-e", "SERVICE_99999_NAME=nope"},
		"-listen", ":8080,:9090")
	// UDP: ID suffix and tag; forced tags from -tags do not apply here (none set).
	runC(t, "map-udp", []string{"-p", "127.0.0.1::5353/udp", "-e", "SERVICE_NAME=berth-test-dns"}, "-udp", ":5353")
	// Ignored containers and ports.
	runC(t, "map-ignored", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_IGNORE=true"}, "-listen", ":8080")
	// Any value ignores, as in gliderlabs (bridge.go newService).
	runC(t, "map-badignore", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_IGNORE=perhaps"}, "-listen", ":8080")
	runC(t, "map-portignore", []string{"-p", "127.0.0.1::8080", "-p", "127.0.0.1::9090",
		"-e", "SERVICE_8080_IGNORE=1", "-e", "SERVICE_NAME=berth-test-pi"}, "-listen", ":8080,:9090")
	// Exposed but not published: not registered without -internal.
	runC(t, "map-exposed", []string{"--expose", "7070", "-e", "SERVICE_NAME=berth-test-exposed"})
	// Host networking: exposed ports on the host address.
	runC(t, "map-hostnet", []string{"--network", "host", "--expose", "18555", "-e", "SERVICE_NAME=berth-test-hostnet"})
	// Network none: gliderlabs master (bridge.go add, util.go servicePort)
	// registers the exposed ports, on -ip (no address without it).
	runC(t, "map-nonet", []string{"--network", "none", "--expose", "18556", "--expose", "18557/udp", "-e", "SERVICE_NAME=berth-test-nonet"})
	// Name and ID as written, spaces kept (bridge.go newService).
	runC(t, "map-spaced", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME= berth-test-spaced ", "-e", "SERVICE_ID= berth-test-spaced-id "}, "-listen", ":8080")
	// Custom ID, TCP check with a deregister-after and initial status.
	runC(t, "map-tcp", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=berth-test-tcp", "-e", "SERVICE_ID=berth-test-custom-id",
		"-e", "SERVICE_CHECK_TCP=true", "-e", "SERVICE_CHECK_INTERVAL=1s", "-e", "SERVICE_CHECK_DEREGISTER_AFTER=5m",
		"-e", "SERVICE_CHECK_INITIAL_STATUS=warning"}, "-listen", ":8080")
	// Invalid check spec: this service is skipped, with a log line naming the key.
	runC(t, "map-badcheck", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=berth-test-badcheck",
		"-e", "SERVICE_CHECK_HTTP=/health", "-e", "SERVICE_CHECK_INTERVAL=often"}, "-listen", ":8080")
	// Unparsable tags template (-service-tags-template): the service registers without those tags.
	runC(t, "map-badtags", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=berth-test-badtags",
		"-e", "SERVICE_TAGS={{.Nope"}, "-listen", ":8080")
	// Tags template over the inspect data.
	runC(t, "map-tmpl", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=berth-test-tmpl",
		"-e", `SERVICE_TAGS=name-{{.Config.Labels.tier}}`, "-l", "tier=gold"}, "-listen", ":8080")

	want := []string{
		h + ":" + cn("map-web") + ":8080",
		h + ":" + cn("map-two") + ":8080", h + ":" + cn("map-two") + ":9090",
		h + ":" + cn("map-udp") + ":5353:udp",
		h + ":" + cn("map-portignore") + ":9090",
		h + ":" + cn("map-hostnet") + ":18555",
		h + ":" + cn("map-nonet") + ":18556", h + ":" + cn("map-nonet") + ":18557:udp",
		" berth-test-spaced-id ",
		"berth-test-custom-id",
		h + ":" + cn("map-badtags") + ":8080",
		h + ":" + cn("map-tmpl") + ":8080",
	}
	got := waitIDs(t, c, h, 30*time.Second, want...)

	web := got[h+":"+cn("map-web")+":8080"]
	if web.Service != "berth-test-web" || web.Address != "127.0.0.1" || strconv.Itoa(web.Port) != hostPort(t, "map-web", "8080") {
		t.Errorf("web: got name %q address %q port %d", web.Service, web.Address, web.Port)
	}
	// Reversed, as gliderlabs master bridge/util.go recParseEscapedComma splits.
	if !slices.Equal(web.Tags, []string{"two", "fromlabel"}) {
		t.Errorf("web tags %v: labels must override env", web.Tags)
	}
	if web.Meta["version"] != "2.1" || web.Meta["owner"] != "team-a" || web.Meta[metaContainerID] == "" {
		t.Errorf("web meta %v: want version, owner and the container ID", web.Meta)
	}
	if _, ok := web.Meta["bad.key"]; ok {
		t.Errorf("web meta has the invalid key bad.key: %v", web.Meta)
	}
	if _, ok := web.Meta["-1_version"]; ok {
		t.Errorf("web meta has -1_version from SERVICE_-1_VERSION, a port key no port matches: %v", web.Meta)
	}
	two8080, two9090 := got[h+":"+cn("map-two")+":8080"], got[h+":"+cn("map-two")+":9090"]
	if two8080.Service != "berth-test-registrator-8080" || !slices.Equal(two8080.Tags, []string{"generic"}) {
		t.Errorf("two/8080: name %q tags %v; want the image base name with -8080 and the generic tags", two8080.Service, two8080.Tags)
	}
	if two9090.Service != "berth-test-admin" || !slices.Equal(two9090.Tags, []string{"admin"}) {
		t.Errorf("two/9090: name %q tags %v; want the per-port name without suffix and per-port tags", two9090.Service, two9090.Tags)
	}
	udp := got[h+":"+cn("map-udp")+":5353:udp"]
	if udp.Service != "berth-test-dns" || !slices.Contains(udp.Tags, "udp") || strconv.Itoa(udp.Port) != hostPort(t, "map-udp", "5353/udp") {
		t.Errorf("udp: %q tags %v port %d", udp.Service, udp.Tags, udp.Port)
	}
	if hn := got[h+":"+cn("map-hostnet")+":18555"]; hn.Port != 18555 || hn.Address != "127.0.0.1" {
		t.Errorf("host networking: port %d address %q; want the exposed port on -ip", hn.Port, hn.Address)
	}
	for _, id := range []string{h + ":" + cn("map-nonet") + ":18556", h + ":" + cn("map-nonet") + ":18557:udp"} {
		nn := got[id]
		if nn.Service != "berth-test-nonet-"+strconv.Itoa(nn.Port) || nn.Address != "127.0.0.1" || !strings.Contains(id, ":"+strconv.Itoa(nn.Port)) {
			t.Errorf("network none %s: %q on %q port %d; want berth-test-nonet-<port>, the exposed port on -ip", id, nn.Service, nn.Address, nn.Port)
		}
	}
	if sp := got[" berth-test-spaced-id "]; sp.Service != " berth-test-spaced " {
		t.Errorf("spaced SERVICE_NAME: %q, want it as written", sp.Service)
	}
	if bt := got[h+":"+cn("map-badtags")+":8080"]; len(bt.Tags) != 0 {
		t.Errorf("bad tags template: tags %v, want none", bt.Tags)
	}
	if tm := got[h+":"+cn("map-tmpl")+":8080"]; !slices.Equal(tm.Tags, []string{"name-gold"}) {
		t.Errorf("tags template: %v, want [name-gold]", tm.Tags)
	}

	// Checks, as the agent runs them (Consul does not hand definitions
	// back; the output names what was probed). The exact definitions are
	// checked in TestBuildCheck.
	checkOutput(t, c, "berth-test-web", "service:"+h+":"+cn("map-web")+":8080", "http", "GET http://127.0.0.1:"+hostPort(t, "map-web", "8080")+"/health: 200")
	checkOutput(t, c, "berth-test-tcp", "service:berth-test-custom-id", "tcp", "TCP connect 127.0.0.1:"+hostPort(t, "map-tcp", "8080")+": Success")
	// The HTTP check really passes through the published port, so the
	// instance is in /v1/health/service's passing list.
	eventually.Holds(t, 20*time.Second, "web passing", func() (bool, string) {
		p := passing(t, c, "berth-test-web")
		return slices.Equal(p, []string{h + ":" + cn("map-web") + ":8080"}), strings.Join(p, ",")
	})
	eventually.Holds(t, 20*time.Second, "tcp passing", func() (bool, string) {
		p := passing(t, c, "berth-test-tcp")
		return slices.Equal(p, []string{"berth-test-custom-id"}), strings.Join(p, ",")
	})

	logs := r.logs.String()
	for _, want := range []string{
		"container=" + cn("map-web") + ` key="label SERVICE_bad.key"`,
		"container=" + cn("map-two") + ` key="env SERVICE_99999_NAME"`,
		"container=" + cn("map-web") + ` key="env SERVICE_-1_VERSION"`,
		"container=" + cn("map-web") + ` key="env SERVICE_"`,
		"container=" + cn("map-badcheck") + ` key="env SERVICE_CHECK_INTERVAL"`,
		"container=" + cn("map-badtags") + ` key="env SERVICE_TAGS"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log has no line with %s", want)
		}
	}
}

// TestInternalNetworksExplicit covers -internal (container address and
// exposed port), the network label, the deterministic choice among several
// networks, -explicit, and -useIpFromLabel with an IPv6 address.
func TestInternalNetworksExplicit(t *testing.T) {
	a, c := requireDocker(t)
	n1 := dockerNetwork(t, "reg-net1")
	n2 := dockerNetwork(t, "reg-net2", "--ipv6", "--subnet", "fd00:b0b:2::/64")
	r := startReg(t, a, func(cfg *Config) {
		cfg.Map.Internal = true
		cfg.Map.Explicit = true
		cfg.Map.UseIPFromLabel = "berth.test.ip"
	})
	h := r.cfg.Map.Hostname

	// Attached to both networks; the label picks net2.
	runC(t, "int-label", []string{"--network", n1, "--expose", "8080", "-e", "SERVICE_NAME=berth-test-int-label", "-l", "SERVICE_NETWORK=" + n2}, "-listen", ":8080")
	docker(t, "network", "connect", n2, cn("int-label"))
	// Attached to both; no label: its own network (the one it was started on).
	runC(t, "int-mode", []string{"--network", n2, "--expose", "8080", "-e", "SERVICE_NAME=berth-test-int-mode"}, "-listen", ":8080")
	docker(t, "network", "connect", n1, cn("int-mode"))
	// The label names a network the container is not on: skipped, logged.
	runC(t, "int-wrongnet", []string{"--network", n1, "--expose", "8080", "-e", "SERVICE_NAME=berth-test-int-wrong", "-l", "SERVICE_NETWORK=berth-test-nosuch"})
	// Address from a label, IPv6 with a /cidr suffix.
	runC(t, "int-v6label", []string{"--network", n2, "--ip6", "fd00:b0b:2::99", "--expose", "8080", "-e", "SERVICE_NAME=berth-test-int-v6",
		"-l", "berth.test.ip=fd00:b0b:2::99/64", "-e", "SERVICE_CHECK_TCP=true", "-e", "SERVICE_CHECK_INTERVAL=1s"}, "-listen", ":8080")
	// -explicit: no SERVICE_NAME, not registered.
	runC(t, "int-unnamed", []string{"--network", n1, "--expose", "8080"})
	// Host networking under -internal: no address, the agent's node
	// address (gliderlabs master bridge.go newService takes the empty
	// container address); -ip (127.0.0.1 here) is not used.
	runC(t, "int-hostnet", []string{"--network", "host", "--expose", "18559", "-e", "SERVICE_NAME=berth-test-int-hostnet"})

	// docker network connect happens after start: the reconcile after the
	// connect event (or the address read then) must pick it up; force a
	// resync-like pass by restarting nothing: the label case needs net2.
	want := []string{h + ":" + cn("int-label") + ":8080", h + ":" + cn("int-mode") + ":8080", h + ":" + cn("int-v6label") + ":8080",
		h + ":" + cn("int-hostnet") + ":18559"}
	ipOn := func(name, net string) string {
		return docker(t, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+net+"\").IPAddress}}", cn(name))
	}
	var got map[string]*api.AgentService
	eventually.Holds(t, 30*time.Second, "internal addresses", func() (bool, string) {
		got = ownedServices(t, c, h)
		l, m := got[want[0]], got[want[1]]
		if l == nil || m == nil || got[want[2]] == nil || got[want[3]] == nil || len(got) != 4 {
			return false, strings.Join(ids(got), ",")
		}
		return l.Address == ipOn("int-label", n2) && m.Address == ipOn("int-mode", n2),
			"label " + l.Address + " mode " + m.Address
	})
	if s := got[want[0]]; s.Port != 8080 {
		t.Errorf("-internal port %d, want the exposed 8080", s.Port)
	}
	// The label that picks the network is also the meta key network, as
	// gliderlabs master sends every SERVICE_* key but id, tags and name
	// (bridge/util.go serviceMetaData, consul/consul.go Register).
	if s := got[want[0]]; s.Meta["network"] != n2 {
		t.Errorf("meta %v: want network=%s from SERVICE_NETWORK, as gliderlabs", s.Meta, n2)
	}
	if s := got[want[3]]; s.Address != "" || s.Port != 18559 {
		t.Errorf("host networking under -internal: %q port %d; want no address and the exposed port", s.Address, s.Port)
	}
	v6 := got[want[2]]
	if v6.Address != "fd00:b0b:2::99" {
		t.Errorf("IPv6 from label: address %q", v6.Address)
	}
	checkOutput(t, c, "berth-test-int-v6", "service:"+want[2], "tcp", "TCP connect [fd00:b0b:2::99]:8080: Success")
	if !strings.Contains(r.logs.String(), "berth-test-nosuch") || !strings.Contains(r.logs.String(), "container="+cn("int-wrongnet")) {
		t.Errorf("no log line about the unknown network of berth-test-int-wrongnet")
	}
}

// checkOutput waits until the agent ran the check and its output holds want.
func checkOutput(t *testing.T, c *api.Client, service, id, typ, want string) {
	t.Helper()
	eventually.Holds(t, 20*time.Second, "check "+id+" output", func() (bool, string) {
		checks, _, err := c.Health().Checks(service, nil)
		if err != nil {
			return false, err.Error()
		}
		for _, ch := range checks {
			if ch.CheckID == id {
				return ch.Type == typ && strings.Contains(ch.Output, want), ch.Type + " " + ch.Output
			}
		}
		return false, fmt.Sprint(len(checks), " checks, none with that ID")
	})
}

// TestIgnoredLoggedAsGliderlabs: what a container leaves out on purpose is
// logged at info, naming the container (and port), as gliderlabs master
// bridge/bridge.go add logs it when a container starts: "ignored: ... no
// published ports" (no port at all), "ignored: ... port P not published on
// host" (without -internal), "ignored: ... service on port P" (newService
// gives none: SERVICE_IGNORE, or -explicit without a name). A resync logs
// nothing again (Sync calls add with quiet set).
func TestIgnoredLoggedAsGliderlabs(t *testing.T) {
	a, c := requireDocker(t)
	r := startReg(t, a, func(cfg *Config) { cfg.Resync = time.Second; cfg.Map.Explicit = true })
	h := r.cfg.Map.Hostname
	runC(t, "ign-noports", nil, "-listen", ":8080")
	runC(t, "ign-exposed", []string{"--expose", "7070", "-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=berth-test-ign"}, "-listen", ":8080")
	runC(t, "ign-ignored", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=berth-test-ign2", "-e", "SERVICE_IGNORE=true"}, "-listen", ":8080")
	runC(t, "ign-unnamed", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	waitIDs(t, c, h, 30*time.Second, h+":"+cn("ign-exposed")+":8080")
	want := []string{
		`msg="ignored: no published ports" container=` + cn("ign-noports"),
		`msg="ignored: port not published on host" container=` + cn("ign-exposed") + " port=7070",
		`msg="ignored: service on port" container=` + cn("ign-ignored") + " port=8080",
		`msg="ignored: service on port" container=` + cn("ign-unnamed") + " port=8080",
	}
	lines := func() []string {
		var out []string
		for _, l := range strings.Split(r.logs.String(), "\n") {
			if strings.Contains(l, "ignored:") {
				out = append(out, l)
			}
		}
		return out
	}
	eventually.True(t, 30*time.Second, "ignored lines", func() bool {
		for _, w := range want {
			if !slices.ContainsFunc(lines(), func(l string) bool { return strings.Contains(l, "level=INFO") && strings.Contains(l, w) }) {
				return false
			}
		}
		return true
	})
	passes := func() float64 { return metricValue(r.m.passes.WithLabelValues("resync")) }
	before := passes()
	eventually.True(t, 30*time.Second, "two resyncs", func() bool { return passes() >= before+2 })
	if got := lines(); len(got) != len(want) {
		t.Errorf("ignored lines after resyncs:\n%s\nwant each of these once:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
