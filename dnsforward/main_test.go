package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/miekg/dns"
)

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-policy", "fastest"}, `-policy "fastest"`},
		{[]string{"-listen", "nope"}, `-listen: "nope"`},
		{[]string{"-listen", "localhost:53"}, `-listen: "localhost:53": want an IP address`},
		{[]string{"-upstream", "dns.example.com"}, `-upstream: "dns.example.com": want an IP address with an optional port (IP[:port]); host names are not resolved`},
		{[]string{"-upstream", "127.0.0.1:99999"}, `bad port`},
		{[]string{"-consul-dns", "x:y"}, `-consul-dns`},
		{[]string{"-domain", "."}, `-domain: domain "."`},
		{[]string{"-alt-domain", "bad..name"}, `-alt-domain: domain "bad..name"`},
		{[]string{"-upstream", ""}, `flag -upstream: "": empty`},
		{[]string{"-alt-domain", " , "}, `flag -alt-domain: " , ": empty`},
		{[]string{"-cache-size", "-1"}, `-cache-size -1`},
		{[]string{"-upstream-timeout", "0s"}, `-upstream-timeout 0s`},
		{[]string{"-max-stale", "-1s"}, `-max-stale -1s`},
		{[]string{"-udp-readers", "-1"}, `-udp-readers -1: want 0 (one per CPU) to 256`},
		{[]string{"-udp-readers", "257"}, `-udp-readers 257: want 0 (one per CPU) to 256`},
		{[]string{"-idle-timeout", "soon"}, `-idle-timeout`},
		{[]string{"-log-level", "loud"}, `-log-level "loud"`},
		{[]string{"-local-ttl", "-1s"}, `-local-ttl -1s: must not be negative`},
		{[]string{"-addn-hosts", ""}, `flag -addn-hosts: empty path`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), c.args, io.Discard, &stderr, nil)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", c.args, code, exitUsage)
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: stderr %q does not name %q", c.args, stderr.String(), c.want)
		}
	}
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"-version"}, &stdout, io.Discard, nil); code != 0 || !strings.Contains(stdout.String(), "dnsforward") {
		t.Errorf("-version: exit %d, %q", code, stdout.String())
	}
	// A port in use.
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-listen", l.LocalAddr().String(), "-upstream", "127.0.0.1:1"}, io.Discard, &stderr, nil); code != exitListen || !strings.Contains(stderr.String(), "-listen") {
		t.Errorf("busy port: exit %d, %q", code, stderr.String())
	}
}

// TestRunWithMetrics drives the whole program through its flags: resolv.conf
// naming ourselves (never forwarded to), metrics and health.
func TestRunWithMetrics(t *testing.T) {
	a := consultest.Require(t, agent)
	up := startUpstream(t, zoneHandler)
	// Pick a free port for us, and write a resolv.conf naming us and the upstream.
	// Free for both UDP and TCP: dnsforward binds both on it.
	self, maddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	_, upPort, _ := net.SplitHostPort(up.addr)
	_, selfPort, _ := net.SplitHostPort(self)
	if upPort == selfPort {
		t.Skip("port clash")
	}
	// resolv.conf has one port for all servers: ours, so only "self" is
	// listed there and the upstream comes from -upstream as well; the
	// loop check must drop the -upstream naming ourselves.
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr eventually.Buffer
	addr, stop := runReady(t, []string{"-listen", self, "-upstream", self, "-upstream", up.addr, "-resolv-conf", rc,
		"-http-addr", a.HTTPAddr(), "-consul-dns", a.DNSAddr(), "-metrics-addr", maddr, "-udp-readers", "2"}, &stderr)
	defer func() {
		if code := stop(); code != 0 {
			t.Errorf("exit %d on cancel", code)
		}
	}()
	if !strings.Contains(stderr.String(), "not forwarding to this upstream") {
		t.Errorf("no warning about the upstream naming ourselves: %s", stderr.String())
	}
	if r := exchange(t, addr, "a.example.", dns.TypeA, "udp"); len(r.Answer) != 1 {
		t.Fatalf("a.example.: %v", r)
	}
	exchange(t, addr, "a.example.", dns.TypeA, "udp")
	exchange(t, addr, "nosuch.service.consul.", dns.TypeA, "udp")
	exchange(t, addr, "consul.", dns.TypeSOA, "udp")
	proctest.WantMetrics(t, maddr,
		proctest.Sample{Name: "berth_dnsforward_queries_total", Labels: []string{"rcode", "NOERROR", "type", "A", "zone", "upstream"}, Value: 2},
		proctest.Sample{Name: "berth_dnsforward_queries_total", Labels: []string{"rcode", "NXDOMAIN", "type", "A", "zone", "consul"}, Value: 1},
		proctest.Sample{Name: "berth_dnsforward_queries_total", Labels: []string{"rcode", "NOERROR", "type", "SOA", "zone", "consul_agent"}, Value: 1},
		proctest.Sample{Name: "berth_dnsforward_cache_hits_total", Labels: []string{"cache", "upstream"}, Value: 1},
		proctest.Sample{Name: "berth_dnsforward_cache_misses_total", Labels: []string{"cache", "upstream"}, Value: 1},
		proctest.Sample{Name: "berth_dnsforward_stale_answers_total", Labels: []string{"cache", "consul"}, Value: 0},
		proctest.Sample{Name: "berth_dnsforward_upstream_duration_seconds_count", Labels: []string{"upstream", up.addr}, Value: 1},
		proctest.Sample{Name: "berth_dnsforward_watches_open", Value: 1})
	if code, _ := proctest.Get(t, maddr, "/health"); code != 200 {
		t.Errorf("/health: %d", code)
	}
}

// TestNeverForwardsToItself: an upstream (flag or resolv.conf) that is our
// own address is dropped, so a name is refused instead of looping.
func TestNeverForwardsToItself(t *testing.T) {
	a := consultest.Require(t, agent)
	self := proctest.FreeAddr(t)
	addr, stop := runReady(t, []string{"-listen", self, "-upstream", self, "-http-addr", a.HTTPAddr(), "-consul-dns", a.DNSAddr()}, nil)
	if r := exchange(t, addr, "loop.example.", dns.TypeA, "udp"); r.Rcode != dns.RcodeRefused {
		t.Errorf("with only ourselves as upstream: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	stop()
	ups, err := upstreamsFromResolvConf(writeFile(t, "nameserver 127.0.0.1\nnameserver 192.0.2.53\n"))
	if err != nil || len(ups) != 2 || ups[1] != "192.0.2.53:53" {
		t.Errorf("resolv.conf upstreams: %v %v", ups, err)
	}
}

func writeFile(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestListenForms: a bare IP takes port 53 (as -upstream and -consul-dns
// their default ports); an empty host is the IPv6 wildcard, dual-stack.
func TestListenForms(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1": "127.0.0.1:53", "::1": "[::1]:53", "[::1]": "[::1]:53", ":53": "[::]:53", ":5353": "[::]:5353",
		"0.0.0.0:53": "0.0.0.0:53", "10.0.0.1:1053": "10.0.0.1:1053",
	} {
		o, err := parse([]string{"-listen", in}, io.Discard, io.Discard)
		if err != nil {
			t.Errorf("-listen %s: %v", in, err)
			continue
		}
		if o.cfg.Listen != want {
			t.Errorf("-listen %s: listens on %s, want %s", in, o.cfg.Listen, want)
		}
	}
	o, err := parse([]string{"-upstream", "192.0.2.1,2001:db8::1", "-consul-dns", "127.0.0.1"}, io.Discard, io.Discard)
	if err != nil || strings.Join(o.cfg.Upstreams, " ") != "192.0.2.1:53 [2001:db8::1]:53" || o.cfg.ConsulDNS != "127.0.0.1:8600" {
		t.Errorf("default ports: %v %v", o, err)
	}
}

// TestListenBothFamilies: "-listen :PORT" answers on IPv4 and IPv6, over
// UDP and TCP.
func TestListenBothFamilies(t *testing.T) {
	a := consultest.Require(t, agent)
	_, port, _ := net.SplitHostPort(proctest.FreeAddr(t))
	_, stop := runReady(t, []string{"-listen", ":" + port, "-upstream", "127.0.0.1:1", "-http-addr", a.HTTPAddr(), "-consul-dns", a.DNSAddr()}, nil)
	for _, host := range []string{"127.0.0.1", "::1"} {
		for _, network := range []string{"udp", "tcp"} {
			addr := net.JoinHostPort(host, port)
			r := exchange(t, addr, "0a000001.addr.consul.", dns.TypeA, network)
			if len(r.Answer) != 1 {
				t.Errorf("%s over %s: %v", addr, network, r)
			}
		}
	}
	stop()
}

// TestListenPermissionDenied: binding port 53 as an unprivileged user (real:
// the test binary runs itself as nobody) fails with exit 2 and a message
// that says what is missing.
func TestListenPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a copy of itself as nobody")
	}
	dir, err := os.MkdirTemp("", "dnsforward-perm-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dnsforward.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"-listen", "127.0.0.1:53", "-upstream", "127.0.0.1:1"}, "-listen 127.0.0.1:53"},
		{[]string{"-listen", proctest.FreeAddr(t), "-metrics-addr", "127.0.0.1:80", "-upstream", "127.0.0.1:1"}, "-metrics-addr 127.0.0.1:80"},
	} {
		cmd := exec.Command(bin, c.args...)
		cmd.Env = append(os.Environ(), runMainEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitListen {
			t.Fatalf("%v as nobody: %v, want exit %d\n%s", c.args, err, exitListen, out)
		}
		for _, want := range []string{c.flag, "permission denied", "root or the CAP_NET_BIND_SERVICE capability", "AmbientCapabilities=CAP_NET_BIND_SERVICE"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("message %q does not say %q", out, want)
			}
		}
	}
}

// Left out, -domain, -alt-domain, -service-ttl, -node-ttl and -only-passing
// follow the agent's configuration: -h says so rather than showing the
// value used only until the agent answers.
func TestHelpAgentDefaults(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, io.Discard, &stderr, nil); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	h := stderr.String()
	for _, want := range []string{
		`(default the agent's domain, else "consul.")`,
		`(default the agent's alt_domain)`,
		`(default the agent's dns_config.service_ttl, else 0)`,
		`(default the agent's dns_config.node_ttl, else 0)`,
		`(default the agent's dns_config.only_passing, else false)`,
	} {
		if !strings.Contains(h, want) {
			t.Errorf("help lacks %q:\n%s", want, h)
		}
	}
	if strings.Contains(h, `(default "consul.")`) {
		t.Errorf("help gives -domain the fixed default consul.:\n%s", h)
	}
}
