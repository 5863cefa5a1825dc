package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	"github.com/hashicorp/consul/api"

	"github.com/berth/berth/pkg/syncbuffer"
)

// Unit tests of the planner: no Docker, no Consul; they run under -short.
// Each mapping case names the gliderlabs registrator master rule it follows
// (file and function), or says where berth differs on purpose (README).

type copt func(*container.InspectResponse)

// ctr is a running container as Docker's inspect shows it: on the default
// bridge at 172.17.0.2, image registry.example:5000/team/web:1.2.
func ctr(name string, opts ...copt) *container.InspectResponse {
	c := &container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			ID: "id-" + name, Name: "/" + name,
			State:      &container.State{Running: true},
			HostConfig: &container.HostConfig{NetworkMode: "bridge"},
		},
		Config:          &container.Config{Image: "registry.example:5000/team/web:1.2", Labels: map[string]string{}, ExposedPorts: nat.PortSet{}},
		NetworkSettings: withPorts(&container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"bridge": {IPAddress: "172.17.0.2"}}}),
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func env(kv ...string) copt {
	return func(c *container.InspectResponse) { c.Config.Env = append(c.Config.Env, kv...) }
}

func label(k, v string) copt {
	return func(c *container.InspectResponse) { c.Config.Labels[k] = v }
}

func image(s string) copt { return func(c *container.InspectResponse) { c.Config.Image = s } }

// publish is `-p hostIP:hostPort:port`.
func publish(port, hostIP, hostPort string) copt {
	return func(c *container.InspectResponse) {
		p := nat.Port(port)
		c.Config.ExposedPorts[p] = struct{}{}
		c.NetworkSettings.Ports[p] = append(c.NetworkSettings.Ports[p], nat.PortBinding{HostIP: hostIP, HostPort: hostPort})
	}
}

// expose is `--expose port` on a bridge network: exposed, not published.
func expose(port string) copt {
	return func(c *container.InspectResponse) {
		p := nat.Port(port)
		c.Config.ExposedPorts[p] = struct{}{}
		c.NetworkSettings.Ports[p] = nil
	}
}

// hostNetwork is `--network host --expose port...`.
func hostNetwork(ports ...string) copt {
	return func(c *container.InspectResponse) {
		c.HostConfig.NetworkMode = "host"
		c.NetworkSettings.Networks = map[string]*network.EndpointSettings{"host": {}}
		for _, p := range ports {
			c.Config.ExposedPorts[nat.Port(p)] = struct{}{}
		}
	}
}

// noNetwork is `--network none --expose port...`: Docker lists no ports.
func noNetwork(ports ...string) copt {
	return func(c *container.InspectResponse) {
		c.HostConfig.NetworkMode = "none"
		c.NetworkSettings.Networks = map[string]*network.EndpointSettings{"none": {}}
		c.NetworkSettings.Ports = nat.PortMap{}
		for _, p := range ports {
			c.Config.ExposedPorts[nat.Port(p)] = struct{}{}
		}
	}
}

func onNetwork(name, ip string) copt {
	return func(c *container.InspectResponse) {
		c.NetworkSettings.Networks[name] = &network.EndpointSettings{IPAddress: ip}
	}
}

func health(status container.HealthStatus) copt {
	return func(c *container.InspectResponse) {
		c.Config.Healthcheck = &container.HealthConfig{Test: []string{"CMD", "/check"}}
		c.State.Health = &container.Health{Status: status}
	}
}

func stopped(code int) copt {
	return func(c *container.InspectResponse) { c.State.Running, c.State.ExitCode = false, code }
}

func running(cs ...*container.InspectResponse) map[string]*container.InspectResponse {
	m := map[string]*container.InspectResponse{}
	for _, c := range cs {
		m[c.ID] = c
	}
	return m
}

// agentWith is an agent holding regs (as the applier records its writes).
func agentWith(regs ...*api.AgentServiceRegistration) *agentView {
	v := newAgentView(nil, nil)
	for _, r := range regs {
		v.registered(r)
	}
	return v
}

// ownedBy is a registration carrying host's ownership marks.
func ownedBy(host, id, name, containerID string, port int) *api.AgentServiceRegistration {
	return &api.AgentServiceRegistration{ID: id, Name: name, Port: port, Address: "192.0.2.9",
		Meta: map[string]string{metaSource: metaSourceValue, metaHost: host, metaContainerID: containerID}}
}

// summary is one op as a line: register ID NAME ADDR:PORT tags=a|b checks=x|y.
func summary(o op) string {
	switch o.Kind {
	case opRegister:
		r := o.Service.Reg
		var checks []string
		for _, c := range r.Checks {
			checks = append(checks, c.CheckID)
		}
		return fmt.Sprintf("register %s %s %s:%d tags=%s checks=%s", r.ID, r.Name, r.Address, r.Port,
			strings.Join(r.Tags, "|"), strings.Join(checks, "|"))
	case opUpdateTTL:
		return fmt.Sprintf("update-ttl %s %s", o.CheckID, o.TTL.Status)
	}
	return fmt.Sprintf("%s %s", o.Kind, o.ServiceID)
}

func summaries(p *plan) []string {
	out := []string{}
	for _, o := range p.Ops {
		out = append(out, summary(o))
	}
	return out
}

func baseMap() *mapConfig {
	return &mapConfig{Hostname: "h", DefaultAddr: "192.0.2.9", NetworkLabel: "SERVICE_NETWORK",
		HealthTTL: time.Minute, LivenessDereg: time.Minute}
}

func regOf(p *plan, id string) *api.AgentServiceRegistration {
	for _, o := range p.Ops {
		if o.Kind == opRegister && o.ServiceID == id {
			return o.Service.Reg
		}
	}
	return nil
}

func checkOf(reg *api.AgentServiceRegistration, id string) *api.AgentServiceCheck {
	if reg == nil {
		return nil
	}
	for _, c := range reg.Checks {
		if c.CheckID == id {
			return c
		}
	}
	return nil
}

// withMap gives tc the mapping flags cfg sets.
func withMap(tc planCase, cfg func(*mapConfig)) planCase {
	tc.cfg = cfg
	return tc
}

type planCase struct {
	name string
	cfg  func(*mapConfig)
	in   planInput // Running, Agent, Crashed, Refused, DeregisterOnSuccess; Map and Now are filled in
	want []string
	// more checks the plan beyond the op lines.
	more func(t *testing.T, p *plan)
}

func runPlanCases(t *testing.T, cases []planCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Map = baseMap()
			if tc.cfg != nil {
				tc.cfg(in.Map)
			}
			if in.Agent == nil {
				in.Agent = agentWith()
			}
			if in.Now.IsZero() {
				in.Now = time.Unix(1_700_000_000, 0)
			}
			p := planFor(in)
			if got := summaries(p); !slices.Equal(got, tc.want) {
				t.Errorf("ops:\n got %q\nwant %q\nwarnings %v", got, tc.want, p.Warnings)
			}
			if tc.more != nil {
				tc.more(t, p)
			}
		})
	}
}

// web1 is the input of one running container, web1, publishing 80/tcp on
// 0.0.0.0:32768, with opts.
func web1(opts ...copt) planInput {
	return planInput{Running: running(ctr("web1", append([]copt{publish("80/tcp", "0.0.0.0", "32768")}, opts...)...))}
}

// TestPlanMapping: the gliderlabs mapping rules, one case each.
func TestPlanMapping(t *testing.T) {
	p80 := publish("80/tcp", "0.0.0.0", "32768")
	runPlanCases(t, []planCase{
		{name: "default name is the image base name; ID host:container:port; host address and port (bridge.go newService)",
			in:   web1(),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks="}},
		{name: "image digest dropped from the default name (berth; README differences)",
			in:   web1(image("web@sha256:0123")),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks="}},
		{name: "a binding's own address is registered (util.go servicePort)",
			in:   planInput{Running: running(ctr("web1", publish("80/tcp", "127.0.0.1", "32768")))},
			want: []string{"register h:web1:80 web 127.0.0.1:32768 tags= checks="}},
		{name: "-ip overrides the address (bridge.go newService HostIp)",
			cfg:  func(m *mapConfig) { m.HostIP = "10.0.0.5" },
			in:   planInput{Running: running(ctr("web1", publish("80/tcp", "127.0.0.1", "32768")))},
			want: []string{"register h:web1:80 web 10.0.0.5:32768 tags= checks="}},
		{name: "SERVICE_NAME (util.go serviceMetaData)",
			in:   web1(env("SERVICE_NAME=front")),
			want: []string{"register h:web1:80 front 192.0.2.9:32768 tags= checks="}},
		{name: "labels override env vars (util.go serviceMetaData appends labels last)",
			in:   web1(env("SERVICE_NAME=fromenv"), label("SERVICE_NAME", "fromlabel")),
			want: []string{"register h:web1:80 fromlabel 192.0.2.9:32768 tags= checks="}},
		{name: "SERVICE_<port>_KEY beats SERVICE_KEY; other ports' keys ignored (util.go serviceMetaData)",
			in:   web1(env("SERVICE_80_NAME=perport", "SERVICE_NAME=generic", "SERVICE_81_NAME=other")),
			want: []string{"register h:web1:80 perport 192.0.2.9:32768 tags= checks="}},
		{name: "SERVICE_080_NAME is not port 80's; an env entry without = is no key (util.go serviceMetaData)",
			in:   web1(env("SERVICE_080_NAME=zero", "SERVICE_FLAG")),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks="},
			more: func(t *testing.T, p *plan) {
				if _, ok := regOf(p, "h:web1:80").Meta["flag"]; ok {
					t.Errorf("meta %v has flag", regOf(p, "h:web1:80").Meta)
				}
			}},
		{name: "two registered ports: -<port> suffix (bridge.go add isGroup)",
			in: web1(publish("443/tcp", "0.0.0.0", "32769")),
			want: []string{"register h:web1:80 web-80 192.0.2.9:32768 tags= checks=",
				"register h:web1:443 web-443 192.0.2.9:32769 tags= checks="}},
		{name: "a port named per port gets no suffix (bridge.go newService metadataFromPort)",
			in: web1(publish("443/tcp", "0.0.0.0", "32769"), env("SERVICE_443_NAME=tls")),
			want: []string{"register h:web1:80 web-80 192.0.2.9:32768 tags= checks=",
				"register h:web1:443 tls 192.0.2.9:32769 tags= checks="}},
		{name: "one published and one exposed port: no suffix (master bridge.go add counts registered ports)",
			in:   web1(expose("9000/tcp")),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks="}},
		{name: "an ignored port still counts for the suffix (bridge.go add: isGroup before newService)",
			in:   web1(publish("443/tcp", "0.0.0.0", "32769"), env("SERVICE_80_IGNORE=true")),
			want: []string{"register h:web1:443 web-443 192.0.2.9:32769 tags= checks="}},
		{name: "exposed but not published: not registered (bridge.go add)",
			in:   planInput{Running: running(ctr("web1", expose("9000/tcp")))},
			want: []string{}},
		{name: "-internal: every exposed port, container address, exposed port (bridge.go newService Internal)",
			cfg: func(m *mapConfig) { m.Internal = true },
			in:  web1(expose("9000/tcp")),
			want: []string{"register h:web1:80 web-80 172.17.0.2:80 tags= checks=",
				"register h:web1:9000 web-9000 172.17.0.2:9000 tags= checks="}},
		{name: "-internal on a network named by SERVICE_NETWORK (berth; README)",
			cfg:  func(m *mapConfig) { m.Internal = true },
			in:   planInput{Running: running(ctr("web1", expose("80/tcp"), onNetwork("back", "10.5.0.3"), label("SERVICE_NETWORK", "back")))},
			want: []string{"register h:web1:80 web 10.5.0.3:80 tags= checks="},
			more: func(t *testing.T, p *plan) {
				// gliderlabs master bridge/util.go serviceMetaData reads
				// SERVICE_NETWORK as any other key and consul/consul.go
				// Register sends it as the meta key network.
				if m := regOf(p, "h:web1:80").Meta; m["network"] != "back" {
					t.Errorf("meta %v: want network=back, as gliderlabs sends SERVICE_NETWORK", m)
				}
			}},
		{name: "SERVICE_NETWORK in meta without -internal, env too (util.go serviceMetaData; consul/consul.go Register sends Attrs as Meta)",
			in:   web1(env("SERVICE_NETWORK=front")),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks="},
			more: func(t *testing.T, p *plan) {
				if m := regOf(p, "h:web1:80").Meta; m["network"] != "front" {
					t.Errorf("meta %v: want network=front, as gliderlabs sends SERVICE_NETWORK", m)
				}
			}},
		{name: "an empty SERVICE_<port>_IGNORE label is the meta key ignore (util.go serviceMetaData; bridge.go newService deletes only id, tags and name)",
			in:   web1(label("SERVICE_80_IGNORE", "")),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks="},
			more: func(t *testing.T, p *plan) {
				if v, ok := regOf(p, "h:web1:80").Meta["ignore"]; !ok || v != "" {
					t.Errorf("meta %v: want ignore=\"\", as gliderlabs sends an empty SERVICE_IGNORE", regOf(p, "h:web1:80").Meta)
				}
			}},
		{name: "host networking: exposed ports on the host address (bridge.go add ExposedPorts)",
			in:   planInput{Running: running(ctr("web1", hostNetwork("8080/tcp")))},
			want: []string{"register h:web1:8080 web 192.0.2.9:8080 tags= checks="}},
		{name: "network none: exposed ports, exposed port, no address (bridge.go add ExposedPorts; util.go servicePort: none network's address)",
			in: planInput{Running: running(ctr("web1", noNetwork("8080/tcp", "53/udp")))},
			want: []string{"register h:web1:53:udp web-53 :53 tags=udp checks=",
				"register h:web1:8080 web-8080 :8080 tags= checks="}},
		{name: "network none: -ip is the address (bridge.go newService HostIp)",
			cfg:  func(m *mapConfig) { m.HostIP = "10.0.0.5" },
			in:   planInput{Running: running(ctr("web1", noNetwork("8080/tcp")))},
			want: []string{"register h:web1:8080 web 10.0.0.5:8080 tags= checks="}},
		{name: "network none, -internal: -ip not used, the label's address is (bridge.go newService Internal, UseIpFromLabel)",
			cfg:  func(m *mapConfig) { m.HostIP, m.Internal, m.UseIPFromLabel = "10.0.0.5", true, "ip" },
			in:   planInput{Running: running(ctr("a", noNetwork("8080/tcp")), ctr("b", noNetwork("8080/tcp"), label("ip", "10.1.2.3")))},
			want: []string{"register h:a:8080 web :8080 tags= checks=", "register h:b:8080 web 10.1.2.3:8080 tags= checks="}},
		{name: "host networking, -internal: no address (the node's), -ip not used; the label's address is (bridge.go newService Internal; util.go servicePort ExposedIP)",
			cfg:  func(m *mapConfig) { m.HostIP, m.Internal, m.UseIPFromLabel = "10.0.0.5", true, "ip" },
			in:   planInput{Running: running(ctr("a", hostNetwork("8080/tcp")), ctr("b", hostNetwork("8080/tcp"), label("ip", "10.1.2.3")))},
			want: []string{"register h:a:8080 web :8080 tags= checks=", "register h:b:8080 web 10.1.2.3:8080 tags= checks="}},
		{name: "UDP: :udp ID suffix and udp tag (bridge.go newService PortType)",
			in:   planInput{Running: running(ctr("dns1", publish("53/udp", "0.0.0.0", "5353")))},
			want: []string{"register h:dns1:53:udp web 192.0.2.9:5353 tags=udp checks="}},
		{name: "SERVICE_ID (bridge.go newService)",
			in:   web1(env("SERVICE_ID=custom")),
			want: []string{"register custom web 192.0.2.9:32768 tags= checks="}},
		{name: "SERVICE_NAME and SERVICE_ID taken as written, spaces kept; only empty is unset (bridge.go newService mapDefault)",
			in: planInput{Running: running(ctr("a", p80, env("SERVICE_NAME= front ", "SERVICE_ID= custom ")),
				ctr("b", p80, env("SERVICE_NAME=", "SERVICE_ID=")))},
			want: []string{"register  custom   front  192.0.2.9:32768 tags= checks=",
				"register h:b:80 web 192.0.2.9:32768 tags= checks="}},
		{name: "-explicit: a name of spaces is a name (bridge.go newService: serviceName == \"\")",
			cfg:  func(m *mapConfig) { m.Explicit = true },
			in:   web1(env("SERVICE_NAME= ")),
			want: []string{"register h:web1:80   192.0.2.9:32768 tags= checks="}},
		{name: "SERVICE_TAGS, then -tags (a template), \\, escapes a comma (util.go combineTags, recParseEscapedComma)",
			cfg: func(m *mapConfig) {
				m.Tags, _ = parseForceTags(`x,{{.Config.Labels.team}},{{toUpper "up"}}`, nil)
			},
			in: web1(env(`SERVICE_TAGS=a,b\,c`), label("team", "blue")),
			// Each part split and reversed on its own, the parts in the order
			// SERVICE_TAGS, -tags, udp (combineTags' arguments in newService).
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags=b,c|a|UP|blue|x checks="}},
		{name: "-tags reading a missing label prints <no value>, and the other -tags stay (bridge.go newService: template.New(\"tags\") with text/template's default missingkey)",
			cfg:  func(m *mapConfig) { m.Tags, _ = parseForceTags(`fleet,{{.Config.Labels.team}}`, nil) },
			in:   web1(env("SERVICE_TAGS=own")),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags=own|<no value>|fleet checks="}},
		{name: "SERVICE_TAGS is literal, braces and all (bridge.go newService passes mapDefault(metadata, \"tags\") to combineTags; only -tags is a template)",
			in:   web1(env("SERVICE_TAGS=a{{b}},{{.Name}}")),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags={{.Name}}|a{{b}} checks="}},
		{name: "-service-tags-template: SERVICE_TAGS is a template too (berth, opt-in)",
			cfg:  func(m *mapConfig) { m.ServiceTagsTemplate = true },
			in:   web1(env("SERVICE_TAGS=t-{{.Config.Labels.team}},x"), label("team", "blue")),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags=x|t-blue checks="}},
		{name: "SERVICE_IGNORE with any value, false too (bridge.go newService mapDefault ignore; PR #14)",
			in: planInput{Running: running(ctr("a", p80, env("SERVICE_IGNORE=true")), ctr("b", p80, env("SERVICE_IGNORE=always")),
				ctr("c", p80, label("SERVICE_IGNORE", "false")))},
			want: []string{}},
		{name: "-explicit: only ports with a name (bridge.go newService Explicit)",
			cfg: func(m *mapConfig) { m.Explicit = true },
			in: planInput{Running: running(ctr("named", p80, env("SERVICE_NAME=n")), ctr("unnamed", p80),
				ctr("emptyname", p80, env("SERVICE_NAME=")))},
			want: []string{"register h:named:80 n 192.0.2.9:32768 tags= checks="}},
		{name: "-useIpFromLabel, /cidr dropped (bridge.go newService UseIpFromLabel)",
			cfg:  func(m *mapConfig) { m.UseIPFromLabel = "ip" },
			in:   web1(label("ip", "10.1.2.3/24")),
			want: []string{"register h:web1:80 web 10.1.2.3:32768 tags= checks="}},
		{name: "-useIpFromLabel: any non-empty value is the address, a host name too, from its last / on dropped; an empty one leaves the usual address (bridge.go newService UseIpFromLabel)",
			cfg: func(m *mapConfig) { m.UseIPFromLabel = "ip" },
			in: planInput{Running: running(ctr("a", p80, label("ip", "db.example")), ctr("b", p80, label("ip", "x/y/24")),
				ctr("c", p80, label("ip", "")), ctr("d", p80, label("ip", "/24")))},
			want: []string{"register h:a:80 web db.example:32768 tags= checks=", "register h:b:80 web x/y:32768 tags= checks=",
				"register h:c:80 web 192.0.2.9:32768 tags= checks=", "register h:d:80 web :32768 tags= checks="}},
		{name: "a stopped container has no services",
			in:   web1(stopped(0)),
			want: []string{}},
		{name: "a container waiting for its restart policy has none either (master registrator.go main deregisters at die)",
			in:   planInput{Running: running(ctr("web1", hostNetwork("8080/tcp"), func(c *container.InspectResponse) { c.State.Restarting = true }))},
			want: []string{}},
		{name: "-only-label: other containers count as not running (berth; README)",
			cfg:  func(m *mapConfig) { m.OnlyLabel, m.OnlyValue = "team", "a" },
			in:   planInput{Running: running(ctr("mine", p80, label("team", "a")), ctr("theirs", p80, label("team", "b")), ctr("none", p80))},
			want: []string{"register h:mine:80 web 192.0.2.9:32768 tags= checks="}},
		{name: "other SERVICE_* keys become meta, check_* ones too; ownership marks (bridge.go newService Attrs)",
			in:   web1(env("SERVICE_VERSION=2", "SERVICE_CHECK_TTL=30s", "SERVICE_NAME=n", "SERVICE_TAGS=t")),
			want: []string{"register h:web1:80 n 192.0.2.9:32768 tags=t checks=service:h:web1:80"},
			more: func(t *testing.T, p *plan) {
				m := regOf(p, "h:web1:80").Meta
				want := map[string]string{"version": "2", "check_ttl": "30s", metaSource: metaSourceValue, metaHost: "h", metaContainerID: "id-web1"}
				if fmt.Sprint(m) != fmt.Sprint(want) {
					t.Errorf("meta %v, want %v", m, want)
				}
			}},
	})
}

// TestPlanChecks: the SERVICE_CHECK_* check has ID service:<id> (gliderlabs
// master consul/consul.go Register sends it as the service's one check,
// without an ID); registrator's own checks have their own IDs.
func TestPlanChecks(t *testing.T) {
	p80 := publish("80/tcp", "0.0.0.0", "32768")
	id := "h:web1:80"
	// serviceCheck is a case of web1 with the variables kv, registered with
	// the one check service:<id>, which must be as ok says.
	serviceCheck := func(name string, kv []string, ok func(c *api.AgentServiceCheck) bool) planCase {
		return planCase{name: name,
			in:   web1(env(kv...)),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks=service:h:web1:80"},
			more: func(t *testing.T, p *plan) {
				if c := checkOf(regOf(p, id), "service:"+id); c == nil || !ok(c) {
					t.Errorf("check %+v", c)
				}
			}}
	}
	runPlanCases(t, []planCase{
		serviceCheck("SERVICE_CHECK_TTL (consul.go buildCheck)", []string{"SERVICE_CHECK_TTL=30s"},
			func(c *api.AgentServiceCheck) bool { return c.TTL == "30s" && c.Interval == "" }),
		serviceCheck("SERVICE_CHECK_HTTP, default interval 10s (consul.go buildCheck DefaultInterval)", []string{"SERVICE_CHECK_HTTP=/health", "SERVICE_CHECK_TIMEOUT=2s"},
			func(c *api.AgentServiceCheck) bool {
				return c.HTTP == "http://192.0.2.9:32768/health" && c.Interval == "10s" && c.Timeout == "2s"
			}),
		serviceCheck("SERVICE_CHECK_HTTPS with SERVICE_CHECK_HTTPS_METHOD (consul.go buildCheck)", []string{"SERVICE_CHECK_HTTPS=/s", "SERVICE_CHECK_HTTPS_METHOD=HEAD", "SERVICE_CHECK_INTERVAL=5s"},
			func(c *api.AgentServiceCheck) bool {
				return c.HTTP == "https://192.0.2.9:32768/s" && c.Method == "HEAD" && c.Interval == "5s"
			}),
		serviceCheck("SERVICE_CHECK_GRPC with TLS and skip-verify (consul.go buildCheck)", []string{"SERVICE_CHECK_GRPC=true", "SERVICE_CHECK_GRPC_USE_TLS=true", "SERVICE_CHECK_TLS_SKIP_VERIFY=true"},
			func(c *api.AgentServiceCheck) bool {
				return c.GRPC == "192.0.2.9:32768" && c.GRPCUseTLS && c.TLSSkipVerify
			}),
		// gliderlabs master consul/consul.go buildCheck, by default; each
		// berth departure only with its flag.
		serviceCheck("SERVICE_CHECK_HTTP without a leading / is appended as written (buildCheck: http://%s:%d%s)", []string{"SERVICE_CHECK_HTTP=health"},
			func(c *api.AgentServiceCheck) bool { return c.HTTP == "http://192.0.2.9:32768health" }),
		withMap(serviceCheck("-check-path-slash: a / added", []string{"SERVICE_CHECK_HTTPS=health"},
			func(c *api.AgentServiceCheck) bool { return c.HTTP == "https://192.0.2.9:32768/health" }),
			func(m *mapConfig) { m.Checks.PathSlash = true }),
		serviceCheck("SERVICE_CHECK_TIMEOUT is not sent for a script check (buildCheck: HTTP, HTTPS, TCP, gRPC only)", []string{"SERVICE_CHECK_SCRIPT=true", "SERVICE_CHECK_TIMEOUT=1s"},
			func(c *api.AgentServiceCheck) bool { return len(c.Args) != 0 && c.Timeout == "" }),
		withMap(serviceCheck("-check-timeout-script: sent for a script check", []string{"SERVICE_CHECK_SCRIPT=true", "SERVICE_CHECK_TIMEOUT=1s"},
			func(c *api.AgentServiceCheck) bool { return len(c.Args) != 0 && c.Timeout == "1s" }),
			func(m *mapConfig) { m.Checks.ScriptTimeout = true }),
		serviceCheck("SERVICE_CHECK_TLS_SKIP_VERIFY leaves an HTTPS check verifying (buildCheck: gRPC only)", []string{"SERVICE_CHECK_HTTPS=/s", "SERVICE_CHECK_TLS_SKIP_VERIFY=true"},
			func(c *api.AgentServiceCheck) bool { return c.HTTP == "https://192.0.2.9:32768/s" && !c.TLSSkipVerify }),
		withMap(serviceCheck("-check-tls-skip-verify-https: applied to an HTTPS check", []string{"SERVICE_CHECK_HTTPS=/s", "SERVICE_CHECK_TLS_SKIP_VERIFY=true"},
			func(c *api.AgentServiceCheck) bool { return c.HTTP == "https://192.0.2.9:32768/s" && c.TLSSkipVerify }),
			func(m *mapConfig) { m.Checks.HTTPSSkipVerify = true }),
		serviceCheck("SERVICE_CHECK_TLS_SKIP_VERIFY=false turns gRPC verification off (buildCheck: any value)", []string{"SERVICE_CHECK_GRPC=true", "SERVICE_CHECK_GRPC_USE_TLS=true", "SERVICE_CHECK_TLS_SKIP_VERIFY=false"},
			func(c *api.AgentServiceCheck) bool { return c.GRPCUseTLS && c.TLSSkipVerify }),
		serviceCheck("SERVICE_CHECK_TCP, deregister-after and initial status (consul.go buildCheck)", []string{"SERVICE_CHECK_TCP=true", "SERVICE_CHECK_DEREGISTER_AFTER=5m", "SERVICE_CHECK_INITIAL_STATUS=passing"},
			func(c *api.AgentServiceCheck) bool {
				return c.TCP == "192.0.2.9:32768" && c.DeregisterCriticalServiceAfter == "5m" && c.Status == "passing"
			}),
		{name: "-docker-health and -liveness-ttl: distinct IDs, heartbeated states",
			cfg:  func(m *mapConfig) { m.DockerHealth, m.LivenessTTL = true, 30*time.Second },
			in:   web1(env("SERVICE_CHECK_TTL=30s"), health(container.Unhealthy)),
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks=service:h:web1:80|h:web1:80:docker-health|h:web1:80:liveness"},
			more: func(t *testing.T, p *plan) {
				if p.TTL[id+":docker-health"].Status != api.HealthCritical || p.TTL[id+":liveness"].Status != api.HealthPassing || len(p.TTL) != 2 {
					t.Errorf("heartbeated TTL checks %+v", p.TTL)
				}
			}},
		{name: "an invalid check spec skips that service only, with a warning naming the key",
			in:   planInput{Running: running(ctr("bad", p80, env("SERVICE_CHECK_HTTP=/", "SERVICE_CHECK_INTERVAL=often")), ctr("good", p80))},
			want: []string{"register h:good:80 web 192.0.2.9:32768 tags= checks="},
			more: func(t *testing.T, p *plan) {
				if w := fmt.Sprint(p.Warnings["bad"]); !strings.Contains(w, "env SERVICE_CHECK_INTERVAL") {
					t.Errorf("warnings %s", w)
				}
			}},
	})
}

// TestPlanOwnership: what is written to services already in the agent.
func TestPlanOwnership(t *testing.T) {
	p80 := publish("80/tcp", "0.0.0.0", "32768")
	web := func() *container.InspectResponse { return ctr("web1", p80) }
	mine := func(id string, port int) *api.AgentServiceRegistration {
		return ownedBy("h", id, "web", "id-gone", port)
	}
	runPlanCases(t, []planCase{
		{name: "an owned service no container wants is deregistered",
			in:   planInput{Running: running(web()), Agent: agentWith(mine("h:gone:80", 1))},
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks=", "deregister h:gone:80"}},
		{name: "another host's and hand-registered services are never touched",
			in: planInput{Agent: agentWith(ownedBy("other", "other:x:80", "web", "id-x", 80),
				&api.AgentServiceRegistration{ID: "by-hand", Name: "db", Port: 5432})},
			want: []string{}},
		{name: "a wanted ID held by a service we do not own is left alone and reported",
			in:   planInput{Running: running(ctr("web1", p80, env("SERVICE_ID=taken"))), Agent: agentWith(&api.AgentServiceRegistration{ID: "taken", Name: "x"})},
			want: []string{},
			more: func(t *testing.T, p *plan) {
				if len(p.Foreign) != 1 || p.Foreign[0].ServiceID != "taken" || p.Foreign[0].Container != "web1" {
					t.Errorf("foreign %+v", p.Foreign)
				}
			}},
		{name: "a gliderlabs-shaped registration for this host is adopted (gliderlabs master bridge.go serviceIDPattern)",
			in:   planInput{Running: running(web()), Agent: agentWith(&api.AgentServiceRegistration{ID: "h:web1:80", Name: "web", Port: 32768, Address: "192.0.2.9"})},
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks="}},
		{name: "-cleanup: this host's gliderlabs-shaped services no container wants go, owned or not; others stay (gliderlabs master bridge.go Sync Cleanup, serviceIDPattern)",
			in: planInput{Cleanup: true, Sync: true, Running: running(web(), ctr("api", p80, env("SERVICE_NAME=api"))), Agent: agentWith(
				&api.AgentServiceRegistration{ID: "h:web1:80", Name: "web", Port: 32768, Address: "192.0.2.9"}, // adopted
				&api.AgentServiceRegistration{ID: "h:gone:80", Name: "web"},                                    // dangling
				&api.AgentServiceRegistration{ID: "h:gone:53:udp", Name: "dns"},                                // dangling
				&api.AgentServiceRegistration{ID: "h:api:9000", Name: "api"},                                   // same name and container: kept
				&api.AgentServiceRegistration{ID: "h:api:9001", Name: "other"},                                 // dangling
				&api.AgentServiceRegistration{ID: "other:gone:80", Name: "web"},                                // another host
				&api.AgentServiceRegistration{ID: "h:gone:http", Name: "web"},                                  // not the shape
				&api.AgentServiceRegistration{ID: "by-hand", Name: "db"})},
			want: []string{"register h:api:80 api 192.0.2.9:32768 tags= checks=", "register h:web1:80 web 192.0.2.9:32768 tags= checks=",
				"deregister h:api:9001", "deregister h:gone:53:udp", "deregister h:gone:80"}},
		{name: "without -cleanup only owned services are removed",
			in:   planInput{Sync: true, Agent: agentWith(&api.AgentServiceRegistration{ID: "h:gone:80", Name: "web"})},
			want: []string{}},
		{name: "-cleanup acts at syncs only (start, resync: gliderlabs master registrator.go main calls Sync there)",
			in:   planInput{Cleanup: true, Agent: agentWith(&api.AgentServiceRegistration{ID: "h:gone:80", Name: "web"})},
			want: []string{}},
		{name: "a changed port is re-registered",
			in:   planInput{Running: running(web()), Agent: agentWith(ownedBy("h", "h:web1:80", "web", "id-web1", 1))},
			want: []string{"register h:web1:80 web 192.0.2.9:32768 tags= checks="}},
		{name: "-deregister on-success keeps the services of a crashed container only (gliderlabs master bridge.go shouldRemove)",
			in: planInput{DeregisterOnSuccess: true, Crashed: map[string]bool{"id-crashed": true},
				Agent: agentWith(ownedBy("h", "h:crashed:80", "web", "id-crashed", 1), ownedBy("h", "h:killed:80", "web", "id-killed", 2))},
			want: []string{"deregister h:killed:80"}},
		{name: "-cleanup at a sync (start, resync) removes what on-success kept when its ID has the default shape (gliderlabs master bridge.go remove, Sync Cleanup)",
			in: planInput{DeregisterOnSuccess: true, Cleanup: true, Sync: true, Crashed: map[string]bool{"id-crashed": true, "id-c2": true},
				Agent: agentWith(ownedBy("h", "h:crashed:80", "web", "id-crashed", 1), ownedBy("h", "custom", "web", "id-c2", 2))},
			want: []string{"deregister h:crashed:80"}},
		{name: "-cleanup between syncs keeps what on-success kept",
			in: planInput{DeregisterOnSuccess: true, Cleanup: true, Crashed: map[string]bool{"id-crashed": true},
				Agent: agentWith(ownedBy("h", "h:crashed:80", "web", "id-crashed", 1))},
			want: []string{}},
		{name: "-deregister always removes a crashed container's services",
			in:   planInput{Crashed: map[string]bool{"id-crashed": true}, Agent: agentWith(ownedBy("h", "h:crashed:80", "web", "id-crashed", 1))},
			want: []string{"deregister h:crashed:80"}},
		{name: "two containers claiming one ID: the first by name keeps it",
			in:   planInput{Running: running(ctr("b", p80, env("SERVICE_ID=one")), ctr("a", p80, env("SERVICE_ID=one")))},
			want: []string{"register one web 192.0.2.9:32768 tags= checks="},
			more: func(t *testing.T, p *plan) {
				if regOf(p, "one").Meta[metaContainerID] != "id-a" || len(p.Duplicates) != 1 || p.Duplicates[0].Container != "b" {
					t.Errorf("kept %v duplicates %+v", regOf(p, "one").Meta, p.Duplicates)
				}
			}},
	})
}

// TestPlanUnchangedResyncIsEmpty: once the agent holds what the containers
// want, planning again writes nothing; a Docker health change is a TTL
// status update only; a refused definition is not sent again until it
// changes or refusedRetry passed.
func TestPlanUnchangedResyncIsEmpty(t *testing.T) {
	cfg := baseMap()
	cfg.DockerHealth, cfg.LivenessTTL = true, 30*time.Second
	cfg.Tags, _ = parseForceTags("fleet,{{.Config.Labels.team}}", nil)
	cs := running(
		ctr("a", publish("80/tcp", "0.0.0.0", "32768"), publish("443/tcp", "0.0.0.0", "32769"), env("SERVICE_CHECK_HTTP=/h", "SERVICE_VERSION=1"), label("team", "x")),
		ctr("b", publish("53/udp", "0.0.0.0", "5353"), env("SERVICE_CHECK_TTL=1m", "SERVICE_TAGS=q,r"), health(container.Healthy)),
		ctr("c", hostNetwork("9000/tcp"), env("SERVICE_CHECK_TCP=true", "SERVICE_ID=c-custom")),
	)
	now := time.Unix(1_700_000_000, 0)
	first := planFor(planInput{Running: cs, Agent: agentWith(), Map: cfg, Now: now})
	if n := first.writes(); n != 4 {
		t.Fatalf("first pass: %d writes, want 4: %q", n, summaries(first))
	}
	agent := agentWith()
	for _, o := range first.Ops {
		agent.registered(o.Service.Reg)
	}
	if again := planFor(planInput{Running: cs, Agent: agent, Map: cfg, Now: now}); len(again.Ops) != 0 {
		t.Errorf("unchanged resync: %q, want no ops", summaries(again))
	}

	cs["id-b"].State.Health.Status = container.Unhealthy
	p := planFor(planInput{Running: cs, Agent: agent, Map: cfg, Now: now})
	if got := summaries(p); !slices.Equal(got, []string{"update-ttl h:b:53:udp:docker-health critical"}) {
		t.Errorf("health change: %q", got)
	}

	reg := first.Ops[0].Service.Reg
	refused := map[string]refusal{reg.ID: {def: fingerprint(reg), at: now}}
	empty := agentWith()
	p = planFor(planInput{Running: running(cs["id-a"]), Agent: empty, Map: cfg, Refused: refused, Now: now.Add(time.Minute)})
	if got := summaries(p); len(got) != 1 || strings.Contains(got[0], reg.ID+" ") {
		t.Errorf("refused a minute ago: %q, want only the other port", got)
	}
	p = planFor(planInput{Running: running(cs["id-a"]), Agent: empty, Map: cfg, Refused: refused, Now: now.Add(refusedRetry)})
	if got := summaries(p); len(got) != 2 {
		t.Errorf("refused %s ago: %q, want it sent again", refusedRetry, got)
	}
}

// checkTags parses tmpl as -tags and checks its output for c is want.
func checkTags(t *testing.T, tmpl string, log *slog.Logger, c *container.InspectResponse, want string) {
	t.Helper()
	tt, err := parseForceTags(tmpl, log)
	if err != nil {
		t.Errorf("%s: %v", tmpl, err)
		return
	}
	var b strings.Builder
	if err := tt.Execute(&b, c); err != nil || b.String() != want {
		t.Errorf("%s = %q, %v; want %q", tmpl, b.String(), err, want)
	}
}

// TestTagHTTPFuncs: httpGet and jsonParse as gliderlabs master
// bridge/bridge.go newService defines them: the body of a GET whatever its
// status, the value at a "::" path (buger/jsonparser's text), and "" with a
// log line when either fails. The server is a real one on loopback.
func TestTagHTTPFuncs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/geo": // gliderlabs' documented example document
			fmt.Fprint(w, `{"Additional": {"Country": "United States", "Zones": ["a", "b"]}, "Escaped": "x\"y"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"Additional": {"Country": "from a 404"}}`)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	var logs syncbuffer.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := ctr("web1")
	for tmpl, want := range map[string]string{
		`{{jsonParse (httpGet "` + srv.URL + `/geo") "Additional::Country"}}`:  "United States",
		`{{jsonParse (httpGet "` + srv.URL + `/geo") "Additional::Zones"}}`:    `["a", "b"]`,
		`{{jsonParse (httpGet "` + srv.URL + `/geo") "Escaped"}}`:              `x\"y`,
		`{{jsonParse (httpGet "` + srv.URL + `/gone") "Additional::Country"}}`: "from a 404",
		`a,{{jsonParse (httpGet "` + srv.URL + `/geo") "Nope"}},b`:             "a,,b",
		`a,{{jsonParse (httpGet "` + closedURL + `/x?token=s3cret") "A"}},b`:   "a,,b",
	} {
		checkTags(t, tmpl, log, c, want)
	}
	out := logs.String()
	if !strings.Contains(out, "httpGet failed") || !strings.Contains(out, strings.TrimPrefix(closedURL, "http://")) {
		t.Errorf("no log line naming the unreachable host:\n%s", out)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("the URL's query was logged:\n%s", out)
	}
	if !strings.Contains(out, "jsonParse") || !strings.Contains(out, "path=Nope") {
		t.Errorf("no log line naming the missing path:\n%s", out)
	}
}

// TestCrashed: gliderlabs master bridge/bridge.go shouldRemove keeps the
// service only when the exit code is non-zero without the 128 bit.
func TestCrashed(t *testing.T) {
	for code, want := range map[int]bool{0: false, 1: true, 3: true, 127: true, 137: false, 143: false, 130: false, 255: false} {
		if got := crashed(code); got != want {
			t.Errorf("crashed(%d) = %v, want %v", code, got, want)
		}
	}
}

// TestTagFuncs: the -tags template functions, with gliderlabs' documented
// examples (bridge/bridge.go newService comments).
func TestTagFuncs(t *testing.T) {
	c := ctr("web1", env("ENVIRONMENT=test", "SERVICE_8105_NAME=foo", "HOME=/home/foobar", "SERVICE_9404_NAME=bar"),
		label("com.amazonaws.ecs.task-arn", "arn:aws:ecs:region:xxxxxxxxxxxx:task/368f4403"))
	c.ID = "e20f9c1a76565d62ae24a3bb877b17b862b6eab94f4e95a0e07ccf25087aaf4f"
	for tmpl, want := range map[string]string{
		`{{strSlice .ID 0 12}}`:     "e20f9c1a7656",
		`{{sIndex 0 .Config.Env}}`:  "ENVIRONMENT=test",
		`{{sIndex -1 .Config.Env}}`: "SERVICE_9404_NAME=bar",
		`{{mIndex "com.amazonaws.ecs.task-arn" .Config.Labels | splitIndex -1 "/"}}`: "368f4403",
		`{{toLower "FoO"}}{{toUpper "foo"}}`:                                         "fooFOO",
		`{{replace -1 "=" "" "=foo="}}`:                                              "foo",
		`{{join ";" (split "," "a,b")}}`:                                             "a;b",
		`{{matchFirstElement "^SERVICE_" .Config.Env}}`:                              "SERVICE_8105_NAME=foo",
		`{{join ";" (matchAllElements "^SERVICE_" .Config.Env)}}`:                    "SERVICE_8105_NAME=foo;SERVICE_9404_NAME=bar",
	} {
		checkTags(t, tmpl, nil, c, want)
	}
	// gliderlabs master bridge/util.go recParseEscapedComma: split on commas
	// not escaped as \, (the escape dropped), empty elements dropped, spaces
	// and duplicates kept, the elements in reverse order (its recursion
	// appends the first element after the rest). Each case's peer output
	// was checked by running that function.
	for in, want := range map[string][]string{
		"a,b,c":           {"c", "b", "a"},
		" a, b\\,c ,,d\\": {"d\\", " b,c ", " a"},
		"a,a,b":           {"b", "a", "a"},
		"a, ,b,":          {"b", " ", "a"},
		",a\\,,b":         {"b", "a,"},
		"a\\,b\\,c,d":     {"d", "a,b,c"},
		"a\\\\,b":         {"a\\,b"},
		",":               nil,
		"":                nil,
	} {
		if got := splitTags(in); !slices.Equal(got, want) {
			t.Errorf("splitTags(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkPlanUnchanged200: one pass over 200 containers (checks, a -tags
// template, Docker health) whose services the agent already holds: the
// mapping and comparison every event pass pays.
func BenchmarkPlanUnchanged200(b *testing.B) {
	cfg := baseMap()
	cfg.DockerHealth = true
	cfg.Tags, _ = parseForceTags("fleet,{{.Config.Labels.team}}", nil)
	cs := map[string]*container.InspectResponse{}
	for i := 0; i < 200; i++ {
		c := ctr(fmt.Sprintf("c%03d", i), publish("80/tcp", "0.0.0.0", fmt.Sprint(20000+i)),
			env("SERVICE_CHECK_TCP=true", "SERVICE_VERSION=1", "SERVICE_TAGS=a,b"), label("team", "t"), health(container.Healthy))
		cs[c.ID] = c
	}
	first := planFor(planInput{Running: cs, Agent: agentWith(), Map: cfg})
	agent := agentWith()
	for _, o := range first.Ops {
		agent.registered(o.Service.Reg)
	}
	for _, cached := range []bool{false, true} {
		b.Run(fmt.Sprintf("cache=%v", cached), func(b *testing.B) {
			var cache *mapCache
			if cached {
				cache = newMapCache()
			}
			for i := 0; i < b.N; i++ {
				if p := planFor(planInput{Running: cs, Agent: agent, Map: cfg, Cache: cache}); len(p.Ops) != 0 {
					b.Fatalf("ops %d", len(p.Ops))
				}
			}
		})
	}
}

// TestMapCache: a cached mapping is used while the inspect data is the same
// pointer and the peer address the same; a new inspect maps again.
func TestMapCache(t *testing.T) {
	cfg := baseMap()
	c := ctr("web1", publish("80/tcp", "0.0.0.0", "32768"))
	cache := newMapCache()
	first := planFor(planInput{Running: running(c), Agent: agentWith(), Map: cfg, Cache: cache})
	again := planFor(planInput{Running: running(c), Agent: agentWith(), Map: cfg, Cache: cache})
	if first.Ops[0].Service != again.Ops[0].Service {
		t.Errorf("same inspect data mapped again")
	}
	c2 := ctr("web1", publish("80/tcp", "0.0.0.0", "40000"))
	p := planFor(planInput{Running: running(c2), Agent: agentWith(), Map: cfg, Cache: cache})
	if p.Ops[0].Service.Reg.Port != 40000 {
		t.Errorf("new inspect data: port %d, want 40000", p.Ops[0].Service.Reg.Port)
	}
	planFor(planInput{Running: running(), Agent: agentWith(), Map: cfg, Cache: cache})
	if len(cache.entries) != 0 {
		t.Errorf("entries of gone containers kept: %d", len(cache.entries))
	}
}

// withPorts gives ns an empty port map (set through the promoted field: the
// embedded NetworkSettingsBase is deprecated by name, its Ports field is not).
func withPorts(ns *container.NetworkSettings) *container.NetworkSettings {
	ns.Ports = nat.PortMap{}
	return ns
}
