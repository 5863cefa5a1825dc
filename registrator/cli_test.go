package main

import (
	"testing"

	"github.com/berth/berth/pkg/cliapp/clitest"
)

// TestPeerInvocations replays gliderlabs/registrator command lines as its
// documentation writes them (registrator [options] <registry uri>, e.g.
// "registrator -ip x consul://host:8500", options before the URI, numbers
// in seconds and milliseconds), plus the REGISTRATOR_* variables.
func TestPeerInvocations(t *testing.T) {
	clitest.Replay(t, "registrator", parse, cliView, []clitest.Case{
		{Args: []string{"-ip", "10.0.0.5", "consul://10.0.0.1:8500"},
			Want: clitest.View{"ip": "10.0.0.5", "consul-address": "10.0.0.1:8500", "consul-scheme": "http"}},
		// registrator.go: -retry-attempts defaults to 0 (one try, then
		// log.Fatal); consul/consul.go buildCheck's check rules are the
		// defaults, berth's three departures opt-in.
		{Args: []string{"consul://"}, Want: clitest.View{"retry-attempts": 0, "resync": "1m0s",
			"check-path-slash": false, "check-timeout-script": false, "check-tls-skip-verify-https": false}},
		{Args: []string{"-check-path-slash", "-check-timeout-script", "-check-tls-skip-verify-https", "consul://"},
			Want: clitest.View{"check-path-slash": true, "check-timeout-script": true, "check-tls-skip-verify-https": true}},
		{Args: []string{"consul://"}, Env: map[string]string{"REGISTRATOR_RETRY_ATTEMPTS": "-1", "REGISTRATOR_CHECK_PATH_SLASH": "true"},
			Want: clitest.View{"retry-attempts": -1, "check-path-slash": true}},
		// A compose service or container name as the address: Docker's DNS
		// resolves names with "_", and gliderlabs registers -ip as written.
		{Args: []string{"-ip", "my_host", "consul://"}, Want: clitest.View{"ip": "my_host"}},
		{Args: []string{"-internal", "consul://localhost:8500"}, Want: clitest.View{"internal": true}},
		{Args: []string{"-resync", "30", "-retry-attempts", "-1", "-retry-interval", "2000", "-cleanup", "-deregister=on-success", "consul://"},
			Want: clitest.View{"resync": "30s", "retry-attempts": -1, "retry-interval": "2s", "cleanup": true, "deregister-on-success": true}},
		{Args: []string{"-tags", "prod,web", "-useIpFromLabel", "IP", "-explicit=true", "-ttl", "30", "-ttl-refresh", "15", "consul-tls://consul.example:8501"},
			Want: clitest.View{"consul-address": "consul.example:8501", "consul-scheme": "https", "tags": "prod,web", "tags-template": true,
				"use-ip-from-label": "IP", "explicit": true, "ttl": 30}},
		// registrator.go main: a resync timer only for -resync > 0.
		{Args: []string{"-resync", "-1", "consul://"}, Want: clitest.View{"resync": "0s"}},
		// registrator.go main refuses a lone positive -ttl or -ttl-refresh
		// only: a negative one passes.
		{Args: []string{"-ttl", "-1", "consul://"}, Want: clitest.View{"ttl": -1}},
		{Args: []string{"-ttl-refresh", "-1", "consul://"}, Want: clitest.View{"ttl": 0}},
		// registrator.go main's -resync and -retry-interval are flag.Int:
		// Go's flag package reads them with strconv.ParseInt base 0 (hex,
		// octal, binary, underscores). A negative -resync of any size is
		// off (its timer starts only for > 0).
		{Args: []string{"-resync", "0x3c", "-retry-interval", "1_000", "consul://"}, Want: clitest.View{"resync": "1m0s", "retry-interval": "1s"}},
		{Args: []string{"-resync", "010", "-retry-interval", "0b11", "consul://"}, Want: clitest.View{"resync": "8s", "retry-interval": "3ms"}},
		{Args: []string{"-resync", "-9223372037", "consul://"}, Want: clitest.View{"resync": "0s"}},
		// registrator.go main: below -1 the start-up retry loop never runs.
		{Args: []string{"-retry-attempts", "-5", "consul://"}, Want: clitest.View{"retry-attempts": -5}},
		{Args: []string{"consul-unix:///tmp/consul.sock"}, Want: clitest.View{"consul-address": "unix:///tmp/consul.sock"}},
		{Args: []string{"consul-tls:"}, Want: clitest.View{"force-https": true}},
		{Args: []string{"-resync", "45"}, Env: map[string]string{"REGISTRATOR_RESYNC": "10", "REGISTRATOR_INTERNAL": "true", "CONSUL_HTTP_ADDR": "10.9.9.9:8500"},
			Want: clitest.View{"resync": "45s", "internal": true, "consul-address": "10.9.9.9:8500"}},
	})
}

// cliView is a parsed command line as the cases name it.
func cliView(o *options) clitest.View {
	m := o.cfg.Map
	return clitest.View{"ip": m.HostIP, "internal": m.Internal, "resync": o.cfg.Resync, "retry-attempts": o.retryAttempts,
		"retry-interval": o.retryInterval, "cleanup": o.cfg.Cleanup, "deregister-on-success": o.cfg.DeregisterOnSuccess, "tags": o.tags,
		"tags-template": m.Tags != nil, "use-ip-from-label": m.UseIPFromLabel, "explicit": m.Explicit, "ttl": o.ttl,
		"force-https": o.forceHTTPS, "check-path-slash": m.Checks.PathSlash, "check-timeout-script": m.Checks.ScriptTimeout,
		"check-tls-skip-verify-https": m.Checks.HTTPSSkipVerify}.WithConsul(&o.cli.Consul)
}
