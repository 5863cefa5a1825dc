package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/cliapp/clitest"
)

// TestOwnInvocations replays the command lines dnsforward's README and
// examples/dnsforward write (repeated and comma-listed -upstream, -bool,
// -flag=value), plus the DNSFORWARD_* variables, which count as given (they
// win over the agent's DNS configuration as flags do).
func TestOwnInvocations(t *testing.T) {
	clitest.Replay(t, "dnsforward", parse, cliView, []clitest.Case{
		{Args: []string{"-listen", "127.0.0.1:53", "-upstream", "10.0.0.2", "-upstream", "10.0.0.3", "-serve-stale"},
			Want: clitest.View{"listen": "127.0.0.1:53", "upstreams": []string{"10.0.0.2:53", "10.0.0.3:53"}, "serve-stale": true}},
		{Args: []string{"-listen=127.0.0.53", "-upstream=1.1.1.1,8.8.8.8:5353", "-alt-domain", "example.internal", "-only-passing=true"},
			Want: clitest.View{"listen": "127.0.0.53:53", "upstreams": []string{"1.1.1.1:53", "8.8.8.8:5353"}, "domains": []string{"consul.", "example.internal."},
				"only-passing": true, "explicit": []string{"alt-domain", "listen", "only-passing", "upstream"}}},
		{Args: []string{"-http-addr", "127.0.0.1:8500", "-datacenter", "dc2", "-service-ttl", "10s"},
			Want: clitest.View{"datacenter": "dc2", "service-ttl": "10s", "explicit": []string{"datacenter", "http-addr", "service-ttl"}}},
		{Env: map[string]string{"DNSFORWARD_SERVICE_TTL": "5s", "DNSFORWARD_UPSTREAM": "10.0.0.9"},
			Want: clitest.View{"service-ttl": "5s", "explicit": []string{"service-ttl", "upstream"}, "upstreams": []string{"10.0.0.9:53"}}},
	})
}

// cliView is a parsed command line as the cases name it; "explicit" lists the
// flags given on the command line or by their variables, which win over the
// agent's DNS configuration.
func cliView(o *options) clitest.View {
	c := o.cfg
	return clitest.View{"listen": c.Listen, "upstreams": c.Upstreams, "serve-stale": c.ServeStale, "domains": c.Domains, "only-passing": c.OnlyPassing,
		"datacenter": c.Datacenter, "service-ttl": c.ServiceTTL, "explicit": clitest.Set(c.Explicit)}
}

// A -metrics-addr that cannot be bound fails the start with one line naming
// it (dnsforward once ran on without /metrics), and the DNS sockets it had
// bound are released.
func TestMetricsAddrBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr := pc.LocalAddr().String()
	pc.Close()
	var stderr bytes.Buffer
	args := []string{"-listen", dnsAddr, "-upstream", "127.0.0.1:1", "-metrics-addr", busy.Addr().String()}
	if code := run(context.Background(), args, io.Discard, &stderr, nil); code != exitListen ||
		!strings.HasPrefix(stderr.String(), "dnsforward: -metrics-addr "+busy.Addr().String()) || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("busy -metrics-addr: exit %d, %q", code, stderr.String())
	}
	again, err := net.ListenPacket("udp", dnsAddr)
	if err != nil {
		t.Fatalf("-listen %s still bound after the failed start: %v", dnsAddr, err)
	}
	again.Close()
}
