package main

import (
	"testing"
	"time"

	"github.com/berth/berth/pkg/cliapp/clitest"
)

// TestPeerInvocations replays gliderlabs/registrator command lines as its
// documentation writes them (registrator [options] <registry uri>, e.g.
// "registrator -ip x consul://host:8500", options before the URI, numbers
// in seconds and milliseconds), plus the REGISTRATOR_* variables.
func TestPeerInvocations(t *testing.T) {
	clitest.Replay(t, "registrator", parse,
		[]clitest.Case[*options]{
			{Args: []string{"-ip", "10.0.0.5", "consul://10.0.0.1:8500"}, Check: func(o *options) bool {
				cfg, err := o.cli.Consul.Config()
				return err == nil && o.cfg.Map.HostIP == "10.0.0.5" && cfg.Address == "10.0.0.1:8500" && cfg.Scheme == "http"
			}},
			{Args: []string{"-internal", "consul://localhost:8500"}, Check: func(o *options) bool { return o.cfg.Map.Internal }},
			{Args: []string{"-resync", "30", "-retry-attempts", "-1", "-retry-interval", "2000", "-cleanup", "-deregister=on-success", "consul://"}, Check: func(o *options) bool {
				return o.cfg.Resync == 30*time.Second && o.retryAttempts == -1 && o.retryInterval == 2*time.Second && o.cleanup && o.cfg.DeregisterOnSuccess
			}},
			{Args: []string{"-tags", "prod,web", "-useIpFromLabel", "IP", "-explicit=true", "-ttl", "30", "-ttl-refresh", "15", "consul-tls://consul.example:8501"}, Check: func(o *options) bool {
				cfg, err := o.cli.Consul.Config()
				return err == nil && cfg.Address == "consul.example:8501" && cfg.Scheme == "https" && o.cfg.Map.Tags != nil && o.tags == "prod,web" &&
					o.cfg.Map.UseIPFromLabel == "IP" && o.cfg.Map.Explicit && o.ttl == 30
			}},
			{Args: []string{"consul-unix:///tmp/consul.sock"}, Check: func(o *options) bool {
				cfg, err := o.cli.Consul.Config()
				return err == nil && cfg.Address == "unix:///tmp/consul.sock"
			}},
			{Args: []string{"consul-tls:"}, Check: func(o *options) bool { return o.forceHTTPS }},
			{Args: []string{"-resync", "45"}, Env: map[string]string{"REGISTRATOR_RESYNC": "10", "REGISTRATOR_INTERNAL": "true", "CONSUL_HTTP_ADDR": "10.9.9.9:8500"}, Check: func(o *options) bool {
				cfg, err := o.cli.Consul.Config()
				return o.cfg.Resync == 45*time.Second && o.cfg.Map.Internal && err == nil && cfg.Address == "10.9.9.9:8500"
			}},
		}...)
}
