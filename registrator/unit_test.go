package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/syncbuffer"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	"github.com/hashicorp/consul/api"
)

// TestParseURI: the registry URI forms. consul:// and consul-tls:// without
// a host mean the default agent (gliderlabs master consul/consul.go
// Factory.New sets the address only when uri.Host is not empty): no address
// override, HTTPS for consul-tls.
func TestParseURI(t *testing.T) {
	type res struct {
		addr  string
		https bool
	}
	for in, want := range map[string]res{
		"consul://127.0.0.1:8500":             {"127.0.0.1:8500", false},
		"consul-tls://consul.example:8501":    {"https://consul.example:8501", true},
		"consul-unix:///var/run/consul.sock":  {"unix:///var/run/consul.sock", false},
		"consul-unix://var/run/consul.sock":   {"unix://var/run/consul.sock", false},
		"consul://[::1]:8500":                 {"[::1]:8500", false},
		"consul-tls://[fd00::1]:8501/ignored": {"https://[fd00::1]:8501", true},
		"consul://":                           {"", false},
		"consul-tls://":                       {"", true},
		"consul://h:65535/path?q=1":           {"h:65535", false},
		"consul://h":                          {"h", false},
	} {
		addr, https, err := parseURI(in)
		if err != nil || addr != want.addr || https != want.https {
			t.Errorf("parseURI(%q) = %q, %v, %v; want %q, %v", in, addr, https, err, want.addr, want.https)
		}
	}
	// A port no agent can listen on: refused naming the URI (the address
	// it gives would be refused naming -http-addr).
	for _, bad := range []string{"etcd://127.0.0.1:2379", "127.0.0.1:8500", "consul-unix://",
		"consul://127.0.0.1:99999", "consul-tls://consul.example:0/x", "consul://[::1]:65536", "consul://h:"} {
		if _, _, err := parseURI(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("parseURI(%q): error %v should name the URI", bad, err)
		}
	}
}

// -h shows -resync and -retry-interval's defaults in the units the flags
// take (SECONDS, MILLISECONDS), as gliderlabs master's flag.Int flags show
// theirs (registrator.go: "retry-interval" 2000), not as Go durations.
func TestHelpDefaultsInFlagUnits(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parse([]string{"-h"}, io.Discard, &stderr); err == nil {
		t.Fatal("-h: no ErrExit")
	}
	h := stderr.String()
	for _, want := range []string{"-resync SECONDS\n", "(default 60)", "-retry-interval MILLISECONDS\n", "(default 2000)"} {
		if !strings.Contains(h, want) {
			t.Errorf("help lacks %q:\n%s", want, h)
		}
	}
	if strings.Contains(h, `(default "1m0s")`) || strings.Contains(h, `(default "2s")`) {
		t.Errorf("help shows a duration for a flag in SECONDS or MILLISECONDS:\n%s", h)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parse([]string{"-ip", "10.0.0.5", "-internal", "-explicit", "-useIpFromLabel", "ip", "-tags", "a,{{.Name}}",
		"-resync", "30", "-cleanup", "-deregister", "on-success", "-retry-attempts", "3", "-retry-interval", "500",
		"-hostname", "h1", "-network-label", "net", "-service-tags-template", "consul://127.0.0.1:8500"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := o.cfg.Map
	if m.HostIP != "10.0.0.5" || !m.Internal || !m.Explicit || m.UseIPFromLabel != "ip" || m.Tags == nil ||
		o.cfg.Resync != 30*time.Second || !o.cfg.DeregisterOnSuccess || o.retryAttempts != 3 ||
		o.retryInterval != 500*time.Millisecond || m.Hostname != "h1" || m.NetworkLabel != "net" || !m.ServiceTagsTemplate {
		t.Errorf("parsed %+v / %+v", o, m)
	}
	// A host name is taken as -ip, as gliderlabs master takes any value
	// (bridge.go newService registers it as written).
	for _, h := range []string{"docker-host.example.net", "host1", "node-2.local."} {
		if o, err := parse([]string{"-ip", h, "-hostname", "h1", "consul://127.0.0.1:8500"}, io.Discard, io.Discard); err != nil || o.cfg.Map.HostIP != h {
			t.Errorf("-ip %s: %v", h, err)
		}
	}
	cfg, err := o.cli.Consul.Config()
	if err != nil || cfg.Address != "127.0.0.1:8500" || cfg.Scheme != "http" {
		t.Errorf("consul address from URI: %+v %v", cfg, err)
	}
	// consul://HOST:PORT sets the address only (gliderlabs master
	// consul/consul.go Factory.New on api.DefaultConfig()): CONSUL_HTTP_SSL
	// still makes it HTTPS.
	t.Setenv("CONSUL_HTTP_SSL", "true")
	o, err = parse([]string{"consul://127.0.0.1:8501"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := o.cli.Consul.Config(); err != nil || cfg.Address != "127.0.0.1:8501" || cfg.Scheme != "https" {
		t.Errorf("consul:// with CONSUL_HTTP_SSL=true: %+v %v; want https to 127.0.0.1:8501", cfg, err)
	}
	t.Setenv("CONSUL_HTTP_SSL", "")
	if o, err := parse([]string{"-resync", "1m30s"}, io.Discard, io.Discard); err != nil || o.cfg.Resync != 90*time.Second {
		t.Errorf("-resync as a duration: %v %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-deregister", "sometimes"}, "-deregister"},
		{[]string{"-tags", "ok,{{.Broken"}, "-tags"},
		{[]string{"-ip", "not an ip"}, "-ip"},
		{[]string{"-ip", "-bad.example"}, "-ip"},
		{[]string{"-ip", "10.0.0.5/24"}, "-ip"},
		{[]string{"-resync", "soon"}, "-resync"},
		// Too large for a duration: gliderlabs master registrator.go
		// main multiplies it by time.Second and wraps around.
		{[]string{"-resync", "9223372037"}, `-resync: "9223372037": out of range`},
		{[]string{"-retry-interval", "0x7fffffffffffffff"}, `-retry-interval: "0x7fffffffffffffff": out of range`},
		{[]string{"-hostname", ""}, "-hostname"},
		{[]string{"-liveness-ttl", "5s", "-liveness-deregister-after", "10s"}, "-liveness-deregister-after"},
		{[]string{"a://x", "b://y"}, "one registry URI"},
		{[]string{"etcd://x:1"}, "not supported"},
		{[]string{"-only-label", "=x"}, "-only-label"},
		// gliderlabs master registrator.go main: -retry-interval must be
		// > 0; -ttl and -ttl-refresh together, -ttl the greater.
		{[]string{"-retry-interval", "0"}, "-retry-interval"},
		{[]string{"-retry-interval", "-5"}, "-retry-interval -5ms: must be greater than 0"},
		{[]string{"-ttl", "30"}, "-ttl-refresh"},
		{[]string{"-ttl-refresh", "10"}, "-ttl"},
		{[]string{"-ttl", "10", "-ttl-refresh", "10"}, "-ttl 10: must be greater"},
	} {
		_, err := parse(tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse(%q): error %v, want one naming %q", tc.args, err, tc.want)
		}
	}
}

// TestIntervalsGliderlabsCannotGive: gliderlabs master registrator.go
// main reads -resync as flag.Int seconds and -retry-interval as flag.Int
// milliseconds, so the shortest interval it can be given is 1s and 1ms. A
// positive duration below that (berth's form) is a value refused (exit 1,
// one line naming the flag and the value), as -liveness-ttl refuses one
// below 1s; 0 or less stays off for -resync, and 1s, 1500ms, 1ms pass.
func TestIntervalsGliderlabsCannotGive(t *testing.T) {
	least := map[string]string{"-resync": "want 0 or less (off) or at least 1s", "-retry-interval": "want at least 1ms"}
	for _, args := range [][]string{{"-resync", "1ns"}, {"-resync", "999ms"}, {"-retry-interval", "1ns"}, {"-retry-interval", "999us"}} {
		// A value refused, not a syntax error: run exits exitUsage (1).
		d, _ := time.ParseDuration(args[1])
		want := fmt.Sprintf("%s %s: %s", args[0], d, least[args[0]])
		_, err := parse(append(args, "consul://127.0.0.1:1"), io.Discard, io.Discard)
		if err == nil || errors.As(err, new(syntaxError)) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v; want a refused value (exit %d), one line saying %q", args, err, exitUsage, want)
		}
	}
	for _, tc := range []struct {
		args          []string
		resync, retry time.Duration
	}{
		{[]string{"-resync", "1s", "-retry-interval", "1ms"}, time.Second, time.Millisecond},
		{[]string{"-resync", "1500ms", "-retry-interval", "1"}, 1500 * time.Millisecond, time.Millisecond},
		{[]string{"-resync", "1", "-retry-interval", "1.5ms"}, time.Second, 1500 * time.Microsecond},
		{[]string{"-resync", "0s"}, 0, 2 * time.Second},
		{[]string{"-resync", "-1ns"}, 0, 2 * time.Second},
	} {
		o, err := parse(append(tc.args, "consul://127.0.0.1:1"), io.Discard, io.Discard)
		if err != nil || o.cfg.Resync != tc.resync || o.retryInterval != tc.retry {
			t.Errorf("%q: %v; want -resync %s, -retry-interval %s", tc.args, err, tc.resync, tc.retry)
		}
	}
}

func TestBuildCheck(t *testing.T) {
	all := checkOpts{PathSlash: true, ScriptTimeout: true, HTTPSSkipVerify: true}
	for _, tc := range []struct {
		md   map[string]string
		addr string
		opts checkOpts
		want api.AgentServiceCheck
	}{
		{map[string]string{"check_http": "/health", "check_timeout": "2s"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{HTTP: "http://10.0.0.1:80/health", Interval: "10s", Timeout: "2s"}},
		// gliderlabs master consul/consul.go buildCheck: the path appended
		// as written ("http://%s:%d%s"); -check-path-slash adds the "/".
		{map[string]string{"check_http": "health"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{HTTP: "http://10.0.0.1:80health", Interval: "10s"}},
		{map[string]string{"check_http": "health"}, "10.0.0.1", checkOpts{PathSlash: true},
			api.AgentServiceCheck{HTTP: "http://10.0.0.1:80/health", Interval: "10s"}},
		{map[string]string{"check_https": "/ok"}, "10.0.0.1", checkOpts{PathSlash: true},
			api.AgentServiceCheck{HTTP: "https://10.0.0.1:80/ok", Interval: "10s"}},
		// buildCheck reads check_tls_skip_verify for gRPC only: an HTTPS
		// check keeps verification whatever it holds (an invalid boolean
		// too); -check-tls-skip-verify-https reads it as a boolean.
		{map[string]string{"check_https": "status", "check_interval": "5s", "check_tls_skip_verify": "true"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{HTTP: "https://10.0.0.1:80status", Interval: "5s"}},
		{map[string]string{"check_https": "/s", "check_tls_skip_verify": "maybe"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{HTTP: "https://10.0.0.1:80/s", Interval: "10s"}},
		{map[string]string{"check_https": "status", "check_interval": "5s", "check_tls_skip_verify": "true"}, "10.0.0.1", all,
			api.AgentServiceCheck{HTTP: "https://10.0.0.1:80/status", Interval: "5s", TLSSkipVerify: true}},
		{map[string]string{"check_https": "/s", "check_tls_skip_verify": "false"}, "10.0.0.1", checkOpts{HTTPSSkipVerify: true},
			api.AgentServiceCheck{HTTP: "https://10.0.0.1:80/s", Interval: "10s"}},
		{map[string]string{"check_tcp": "true", "check_deregister_after": "1m", "check_initial_status": "passing"}, "fd00::1", checkOpts{},
			api.AgentServiceCheck{TCP: "[fd00::1]:80", Interval: "10s", DeregisterCriticalServiceAfter: "1m", Status: "passing"}},
		{map[string]string{"check_ttl": "30s"}, "10.0.0.1", checkOpts{}, api.AgentServiceCheck{TTL: "30s"}},
		{map[string]string{"check_ttl": "30s", "check_timeout": "5s"}, "10.0.0.1", all, api.AgentServiceCheck{TTL: "30s"}},
		{map[string]string{"check_script": "check $SERVICE_IP $SERVICE_PORT"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{Args: []string{"sh", "-c", "check 10.0.0.1 80"}, Interval: "10s"}},
		// buildCheck sets the timeout on HTTP, HTTPS, TCP and gRPC checks
		// only: a script or cmd check gets none (an invalid one is not
		// read); -check-timeout-script sends it.
		{map[string]string{"check_script": "true", "check_timeout": "1s"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{Args: []string{"sh", "-c", "true"}, Interval: "10s"}},
		{map[string]string{"check_cmd": "/check", "check_timeout": "soon"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{DockerContainerID: "cid", Shell: "/bin/sh", Args: []string{"/bin/sh", "-c", "/check"}, Interval: "10s"}},
		{map[string]string{"check_script": "true", "check_timeout": "1s"}, "10.0.0.1", checkOpts{ScriptTimeout: true},
			api.AgentServiceCheck{Args: []string{"sh", "-c", "true"}, Interval: "10s", Timeout: "1s"}},
		{map[string]string{"check_cmd": "/check", "check_timeout": "3s"}, "10.0.0.1", all,
			api.AgentServiceCheck{DockerContainerID: "cid", Shell: "/bin/sh", Args: []string{"/bin/sh", "-c", "/check"}, Interval: "10s", Timeout: "3s"}},
		{map[string]string{"check_grpc": "true", "check_grpc_use_tls": "1"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{GRPC: "10.0.0.1:80", GRPCUseTLS: true, Interval: "10s"}},
		{map[string]string{"check_cmd": "/check"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{DockerContainerID: "cid", Shell: "/bin/sh", Args: []string{"/bin/sh", "-c", "/check"}, Interval: "10s"}},
		{map[string]string{"check_tcp": "yes please"}, "10.0.0.1", checkOpts{}, api.AgentServiceCheck{TCP: "10.0.0.1:80", Interval: "10s"}},
		// gliderlabs master consul/consul.go buildCheck: any value turns
		// the TCP check, gRPC TLS and (with TLS) gRPC skip-verify on,
		// "false" included; skip-verify without TLS is not read.
		{map[string]string{"check_tcp": "false"}, "10.0.0.1", checkOpts{}, api.AgentServiceCheck{TCP: "10.0.0.1:80", Interval: "10s"}},
		{map[string]string{"check_grpc": "yes", "check_grpc_use_tls": "false"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{GRPC: "10.0.0.1:80", GRPCUseTLS: true, Interval: "10s"}},
		{map[string]string{"check_grpc": "yes", "check_grpc_use_tls": "true", "check_tls_skip_verify": "false"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{GRPC: "10.0.0.1:80", GRPCUseTLS: true, TLSSkipVerify: true, Interval: "10s"}},
		{map[string]string{"check_grpc": "yes", "check_grpc_use_tls": "on", "check_tls_skip_verify": "please"}, "10.0.0.1", all,
			api.AgentServiceCheck{GRPC: "10.0.0.1:80", GRPCUseTLS: true, TLSSkipVerify: true, Interval: "10s"}},
		{map[string]string{"check_grpc": "yes", "check_tls_skip_verify": "true"}, "10.0.0.1", checkOpts{},
			api.AgentServiceCheck{GRPC: "10.0.0.1:80", Interval: "10s"}},
		{map[string]string{"check_grpc": "my.Service"}, "10.0.0.1", checkOpts{}, api.AgentServiceCheck{GRPC: "10.0.0.1:80/my.Service", Interval: "10s"}},
	} {
		got, err := buildCheck(tc.md, tc.addr, 80, "cid", tc.opts)
		if err != nil {
			t.Errorf("%v %+v: %v", tc.md, tc.opts, err)
			continue
		}
		if got == nil || fingerprintCheck(got) != fingerprintCheck(&tc.want) {
			t.Errorf("%v %+v:\n got %+v\nwant %+v", tc.md, tc.opts, got, tc.want)
		}
	}
	if ch, err := buildCheck(map[string]string{"name": "x"}, "1.2.3.4", 80, "cid", all); ch != nil || err != nil {
		t.Errorf("no check keys: %v %v", ch, err)
	}
	for key, md := range map[string]map[string]string{
		"check_interval":         {"check_http": "/", "check_interval": "often"},
		"check_timeout":          {"check_tcp": "true", "check_timeout": "soon"},
		"check_ttl":              {"check_ttl": "forever"},
		"check_initial_status":   {"check_ttl": "5s", "check_initial_status": "fine"},
		"check_deregister_after": {"check_ttl": "5s", "check_deregister_after": "x"},
	} {
		if _, err := buildCheck(md, "1.2.3.4", 80, "cid", checkOpts{}); err == nil || err.key != key {
			t.Errorf("%v: error %v, want one for %s", md, err, key)
		}
	}
	// What the opt-in flags read is checked only with them.
	for key, md := range map[string]map[string]string{
		"check_timeout":         {"check_script": "true", "check_timeout": "soon"},
		"check_tls_skip_verify": {"check_https": "/", "check_tls_skip_verify": "maybe"},
	} {
		if _, err := buildCheck(md, "1.2.3.4", 80, "cid", all); err == nil || err.key != key {
			t.Errorf("%v: error %v, want one for %s", md, err, key)
		}
	}
}

// TestCheckDurationsConsulTakes: a zero or negative check timeout or
// deregister-after is passed on as written, as gliderlabs master
// consul/consul.go buildCheck passes it and the agent takes it (its
// default timeout; never deregistered); an interval or TTL must be
// positive, which the agent requires.
func TestCheckDurationsConsulTakes(t *testing.T) {
	for _, md := range []map[string]string{
		{"check_tcp": "true", "check_timeout": "0s"},
		{"check_tcp": "true", "check_timeout": "-1s"},
		{"check_http": "/", "check_deregister_after": "0"},
		{"check_ttl": "30s", "check_deregister_after": "-1m"},
	} {
		ch, err := buildCheck(md, "1.2.3.4", 80, "cid", checkOpts{})
		if err != nil || ch == nil {
			t.Errorf("%v: %v", md, err)
			continue
		}
		if got, want := ch.Timeout+ch.DeregisterCriticalServiceAfter, md["check_timeout"]+md["check_deregister_after"]; got != want {
			t.Errorf("%v: sent %q", md, got)
		}
	}
	for _, md := range []map[string]string{{"check_http": "/", "check_interval": "0s"}, {"check_ttl": "0s"}} {
		if _, err := buildCheck(md, "1.2.3.4", 80, "cid", checkOpts{}); err == nil {
			t.Errorf("%v: taken", md)
		}
	}
}

func fingerprintCheck(c *api.AgentServiceCheck) string { return checkNotes(c) + "|" + c.Status }

func inspectFixture() *container.InspectResponse {
	return &container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			ID: "abc", Name: "/web1",
			State:      &container.State{Running: true},
			HostConfig: &container.HostConfig{NetworkMode: "bridge"},
		},
		Config:          &container.Config{Image: "registry.example:5000/team/web:1.2@sha256:0123", Labels: map[string]string{}},
		NetworkSettings: withPorts(&container.NetworkSettings{Networks: map[string]*network.EndpointSettings{}}),
	}
}

func TestMapContainerPure(t *testing.T) {
	cfg := &mapConfig{Hostname: "h", HostIP: "192.0.2.1", NetworkLabel: "SERVICE_NETWORK"}
	c := inspectFixture()
	c.NetworkSettings.Ports["80/tcp"] = []nat.PortBinding{{HostIP: "::", HostPort: "8081"}, {HostIP: "0.0.0.0", HostPort: "8080"}}
	m := mapContainer(c, cfg)
	if len(m.Services) != 1 {
		t.Fatalf("services %v warnings %v", m.Services, m.Warnings)
	}
	s := m.Services[0].Reg
	if s.Name != "web" || s.ID != "h:web1:80" || s.Port != 8080 || s.Address != "192.0.2.1" {
		t.Errorf("image base name, ID, IPv4 binding first: %+v", s)
	}

	// -internal: several networks, no label: the network mode's; then by name.
	cfg = &mapConfig{Hostname: "h", Internal: true, NetworkLabel: "SERVICE_NETWORK"}
	c = inspectFixture()
	c.Config.ExposedPorts = nat.PortSet{"80/tcp": {}}
	c.NetworkSettings.Networks["zeta"] = &network.EndpointSettings{IPAddress: "10.9.0.2"}
	c.NetworkSettings.Networks["alpha"] = &network.EndpointSettings{IPAddress: "10.1.0.2"}
	c.NetworkSettings.Networks["v6only"] = &network.EndpointSettings{GlobalIPv6Address: "fd00::7"}
	c.HostConfig.NetworkMode = "zeta"
	if s := mapContainer(c, cfg).Services[0].Reg; s.Address != "10.9.0.2" || s.Port != 80 {
		t.Errorf("network mode's address: %+v", s)
	}
	c.HostConfig.NetworkMode = "default"
	for i := 0; i < 20; i++ { // map order must not matter
		if s := mapContainer(c, cfg).Services[0].Reg; s.Address != "10.1.0.2" {
			t.Fatalf("first network by name: %+v", s)
		}
	}
	c.Config.Labels["SERVICE_NETWORK"] = "v6only"
	if s := mapContainer(c, cfg).Services[0].Reg; s.Address != "fd00::7" {
		t.Errorf("label picks the IPv6-only network: %+v", s)
	}
	c.Config.Labels["SERVICE_NETWORK"] = "nope"
	if m := mapContainer(c, cfg); len(m.Services) != 0 || len(m.Warnings) != 1 {
		t.Errorf("unknown network: %+v", m)
	}

	// Meta key rules and the port-key parsing.
	cfg = &mapConfig{Hostname: "h", HostIP: "192.0.2.1", NetworkLabel: "SERVICE_NETWORK"}
	c = inspectFixture()
	c.NetworkSettings.Ports["80/tcp"] = []nat.PortBinding{{HostIP: "0.0.0.0", HostPort: "8080"}}
	c.Config.Env = []string{"SERVICE_GOOD_KEY=1", "SERVICE_consul-x=2", "SERVICE_0_NAME=x", "SERVICE_80_REGION=eu", "SERVICE_REGION=us",
		"SERVICE_" + strings.Repeat("k", 130) + "=v", "SERVICE_LONG=" + strings.Repeat("v", 600), "SERVICE_81_NAME=other",
		// Port keys are what strconv.Atoi reads (gliderlabs master
		// bridge/util.go serviceMetaData): signed ones match no port; a
		// number past int is no port key, so meta.
		"SERVICE_+80_NAME=plus", "SERVICE_-1_VERSION=neg", "SERVICE_99999999999999999999_X=big", "SERVICE_=blank"}
	m = mapContainer(c, cfg)
	meta := m.Services[0].Reg.Meta
	if meta["good_key"] != "1" || meta["region"] != "eu" || meta["consul-x"] != "" || meta["long"] != "" ||
		meta["-1_version"] != "" || meta["99999999999999999999_x"] != "big" {
		t.Errorf("meta %v", meta)
	}
	var keys []string
	for _, w := range m.Warnings {
		for i := 0; i+1 < len(w.Args); i += 2 {
			if w.Args[i] == "key" {
				keys = append(keys, w.Args[i+1].(string))
			}
		}
	}
	for _, k := range []string{"env SERVICE_consul-x", "env SERVICE_0_NAME", "env SERVICE_LONG", "env SERVICE_+80_NAME", "env SERVICE_-1_VERSION", "env SERVICE_"} {
		if !slices.Contains(keys, k) {
			t.Errorf("no warning naming %s (got %v)", k, keys)
		}
	}
	if m.Services[0].Reg.Name != "web" { // nor SERVICE_+80_NAME
		t.Errorf("SERVICE_81_NAME must not apply to port 80: %q", m.Services[0].Reg.Name)
	}
	cfg.OnlyLabel, cfg.OnlyValue = "team", "a"
	if m := mapContainer(c, cfg); len(m.Services) != 0 {
		t.Errorf("-only-label team=a: a container without the label registered")
	}
	c.Config.Labels["team"] = "b"
	if m := mapContainer(c, cfg); len(m.Services) != 0 {
		t.Errorf("-only-label team=a: a container with team=b registered")
	}
	c.Config.Labels["team"] = "a"
	if m := mapContainer(c, cfg); len(m.Services) != 1 {
		t.Errorf("-only-label team=a: the labelled container did not register")
	}
	if imageBaseName("nginx") != "nginx" || imageBaseName("localhost:5000/a/b:tag") != "b" {
		t.Errorf("imageBaseName")
	}
}

// TestCLI runs the built binary: bad input exits 1 with a line naming the
// culprit; a running registrator serves /metrics and /health.
func TestCLI(t *testing.T) {
	a, _ := requireDocker(t)
	// gliderlabs master registrator.go main: a value it refuses exits 1
	// (log.Fatal); a command line that does not parse exits 2 (flag.Parse
	// with ExitOnError; two arguments: its own os.Exit(2)).
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"-deregister", "never"}, "-deregister", 1},
		{[]string{"zk://127.0.0.1:2181"}, "zk", 1},
		{[]string{"-tags", "{{"}, "-tags", 1},
		{[]string{"-retry-interval", "0"}, "-retry-interval", 1},
		{[]string{"consul://127.0.0.1:99999"}, `registry URI "consul://127.0.0.1:99999": bad port`, 1},
		{[]string{"-no-such-flag", "consul://"}, "no-such-flag", 2},
		{[]string{"-retry-attempts", "many", "consul://"}, "retry-attempts", 2},
		{[]string{"consul://", "-ip", "10.0.0.5"}, "one registry URI", 2},
	} {
		out, err := exec.Command(binPath, tc.args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != tc.code || !strings.Contains(string(out), tc.want) || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Errorf("%v: exit %v output %q; want exit %d and one line naming %s", tc.args, err, out, tc.code, tc.want)
		}
	}
	// gliderlabs master registrator.go main: -retry-attempts defaults to
	// 0, one try, then log.Fatal: without the flag an unreachable agent
	// ends it (berth: exit 10); -1 keeps trying.
	for _, args := range [][]string{{"consul://127.0.0.1:1"}, {"-retry-attempts", "0", "consul://127.0.0.1:1"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, binPath, args...).CombinedOutput()
		cancel()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitConsul || !strings.Contains(string(out), "after 1 try") {
			t.Errorf("unreachable Consul, %q: %v %s; want exit %d after 1 try", args, err, out, exitConsul)
		}
	}
	func() {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, binPath, "-retry-attempts", "-1", "-retry-interval", "10", "consul://127.0.0.1:1")
		stderr := &syncbuffer.Buffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() { cancel(); <-exited }()
		eventually.Holds(t, time.Minute, "-retry-attempts -1 still trying after three waits", func() (bool, string) {
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("-retry-attempts -1 exited: %v %s", err, stderr.String())
			default:
			}
			n := strings.Count(stderr.String(), "waiting for the Consul agent")
			return n >= 3, fmt.Sprintf("%d waits logged", n)
		})
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// -resync as gliderlabs' flag.Int reads it (0x3c: 60).
	cmd := exec.CommandContext(ctx, binPath, "-hostname", hostFor(t), "-ip", "127.0.0.1", "-metrics-addr", "127.0.0.1:0",
		"-only-label", onlyLabel(t), "-resync", "0x3c",
		"consul://"+a.HTTPAddr())
	var stderr bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(&stderr, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	addrc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`serving metrics and health.* addr=(\S+)`)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(20 * time.Second):
		t.Fatalf("no metrics address logged: %s", stderr.String())
	}
	runC(t, "cli", []string{"-p", "127.0.0.1::8080"}, "-listen", ":8080")
	waitIDs(t, a.Client(), hostFor(t), 20*time.Second, hostFor(t)+":"+cn("cli")+":8080")
	eventually.Holds(t, 10*time.Second, "/health ok", func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/health")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"berth_registrator_registrations_total 1", "berth_registrator_deregistrations_total",
		"berth_registrator_reconcile_passes_total", "berth_registrator_reconcile_writes_total", "berth_registrator_event_stream_reconnects_total"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	_ = cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGINT: %v\n%s", err, stderr.String())
	}
	// Stopping registrator leaves its registrations in place.
	if n := len(ownedServices(t, a.Client(), hostFor(t))); n != 1 {
		t.Errorf("%d services after registrator stopped, want 1 (kept)", n)
	}
	_ = a.Client().Agent().ServiceDeregister(hostFor(t) + ":" + cn("cli") + ":8080")
}

// gliderlabs users mount the socket at /tmp/docker.sock (their image sets
// DOCKER_HOST to it); the usual socket and DOCKER_HOST still win.
func TestDockerHostFallback(t *testing.T) {
	has := func(paths ...string) func(string) bool {
		return func(p string) bool {
			for _, x := range paths {
				if p == x {
					return true
				}
			}
			return false
		}
	}
	env := func(v string) func(string) string { return func(string) string { return v } }
	cases := []struct {
		env    string
		exists []string
		want   string
	}{
		{"", []string{"/tmp/docker.sock"}, "unix:///tmp/docker.sock"},
		// gliderlabs master registrator.go main sets DOCKER_HOST to
		// unix:///tmp/docker.sock whenever it is unset: that socket wins.
		{"", []string{"/var/run/docker.sock", "/tmp/docker.sock"}, "unix:///tmp/docker.sock"},
		{"", []string{"/var/run/docker.sock"}, ""},
		{"tcp://10.0.0.1:2375", []string{"/tmp/docker.sock"}, ""},
		{"", nil, ""},
	}
	for _, c := range cases {
		if got := dockerHostFallback(env(c.env), has(c.exists...)); got != c.want {
			t.Errorf("DOCKER_HOST=%q, sockets %v: %q, want %q", c.env, c.exists, got, c.want)
		}
	}
}

// TestRetryAttemptsBelowMinusOne: gliderlabs master registrator.go main
// tries the backend while attempts == -1 || attempt <= -retry-attempts, so
// below -1 it never tries and starts at once; berth starts too (its
// reconcile passes wait for the agent) instead of refusing the flag.
func TestRetryAttemptsBelowMinusOne(t *testing.T) {
	if testing.Short() || binPath == "" {
		t.Skip("needs the built binary")
	}
	cmd := exec.Command(binPath, "-retry-attempts", "-5", "-retry-interval", "10",
		"-docker-host", "unix:///nonexistent/docker.sock", "consul://127.0.0.1:1")
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	started := make(chan bool, 1)
	var lines []string
	go func() {
		sc := bufio.NewScanner(pr)
		ok := false
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if !ok && strings.Contains(sc.Text(), "msg=starting") {
				ok = true
				started <- true
			}
		}
		if !ok {
			started <- false
		}
	}()
	if !<-started {
		t.Fatalf("-retry-attempts -5 with Consul unreachable did not start: %v\n%s", <-exited, strings.Join(lines, "\n"))
	}
	_ = cmd.Process.Kill()
	<-exited
}
