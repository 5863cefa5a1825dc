package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/cliapp/clitest"
)

// TestOwnInvocations replays the command lines dnsforward's README and
// examples/dnsforward write (repeated and comma-listed -upstream, -bool,
// -flag=value), plus the DNSFORWARD_* variables, which count as given (they
// win over the agent's DNS configuration as flags do).
func TestOwnInvocations(t *testing.T) {
	clitest.Replay(t, "dnsforward", parse,
		[]clitest.Case[*options]{
			{Args: []string{"-listen", "127.0.0.1:53", "-upstream", "10.0.0.2", "-upstream", "10.0.0.3", "-serve-stale"}, Check: func(o *options) bool {
				return o.cfg.Listen == "127.0.0.1:53" && slices.Equal(o.cfg.Upstreams, []string{"10.0.0.2:53", "10.0.0.3:53"}) && o.cfg.ServeStale
			}},
			{Args: []string{"-listen=127.0.0.53", "-upstream=1.1.1.1,8.8.8.8:5353", "-alt-domain", "example.internal", "-only-passing=true"}, Check: func(o *options) bool {
				return o.cfg.Listen == "127.0.0.53:53" && slices.Equal(o.cfg.Upstreams, []string{"1.1.1.1:53", "8.8.8.8:5353"}) &&
					slices.Equal(o.cfg.Domains, []string{"consul.", "example.internal."}) && o.cfg.OnlyPassing && o.cfg.Explicit["alt-domain"]
			}},
			{Args: []string{"-http-addr", "127.0.0.1:8500", "-datacenter", "dc2", "-service-ttl", "10s"}, Check: func(o *options) bool {
				return o.cfg.Datacenter == "dc2" && o.cfg.ServiceTTL == 10*time.Second && o.cfg.Explicit["service-ttl"] && !o.cfg.Explicit["node-ttl"]
			}},
			{Env: map[string]string{"DNSFORWARD_SERVICE_TTL": "5s", "DNSFORWARD_UPSTREAM": "10.0.0.9"}, Check: func(o *options) bool {
				return o.cfg.ServiceTTL == 5*time.Second && o.cfg.Explicit["service-ttl"] && slices.Equal(o.cfg.Upstreams, []string{"10.0.0.9:53"})
			}},
		}...)
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
