package main

import (
	"io"
	"testing"
	"time"
)

// TestPeerInvocations replays gliderlabs/registrator command lines as its
// documentation writes them (registrator [options] <registry uri>, e.g.
// "registrator -ip x consul://host:8500", options before the URI, numbers
// in seconds and milliseconds), plus the REGISTRATOR_* variables.
func TestPeerInvocations(t *testing.T) {
	for _, k := range []string{"CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL", "REGISTRATOR_RESYNC", "REGISTRATOR_INTERNAL"} {
		t.Setenv(k, "")
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		chk  func(o *options) bool
	}{
		{[]string{"-ip", "10.0.0.5", "consul://10.0.0.1:8500"}, nil, func(o *options) bool {
			cfg, err := o.cli.Consul.Config()
			return err == nil && o.cfg.Map.HostIP == "10.0.0.5" && cfg.Address == "10.0.0.1:8500" && cfg.Scheme == "http"
		}},
		{[]string{"-internal", "consul://localhost:8500"}, nil, func(o *options) bool { return o.cfg.Map.Internal }},
		{[]string{"-resync", "30", "-retry-attempts", "-1", "-retry-interval", "2000", "-cleanup", "-deregister=on-success", "consul://"}, nil, func(o *options) bool {
			return o.cfg.Resync == 30*time.Second && o.retryAttempts == -1 && o.retryInterval == 2*time.Second && o.cleanup && o.cfg.DeregisterOnSuccess
		}},
		{[]string{"-tags", "prod,web", "-useIpFromLabel", "IP", "-explicit=true", "-ttl", "30", "-ttl-refresh", "15", "consul-tls://consul.example:8501"}, nil, func(o *options) bool {
			cfg, err := o.cli.Consul.Config()
			return err == nil && cfg.Address == "consul.example:8501" && cfg.Scheme == "https" && o.cfg.Map.Tags != nil && o.tags == "prod,web" &&
				o.cfg.Map.UseIPFromLabel == "IP" && o.cfg.Map.Explicit && o.ttl == 30
		}},
		{[]string{"consul-unix:///tmp/consul.sock"}, nil, func(o *options) bool {
			cfg, err := o.cli.Consul.Config()
			return err == nil && cfg.Address == "unix:///tmp/consul.sock"
		}},
		{[]string{"consul-tls:"}, nil, func(o *options) bool { return o.forceHTTPS }},
		{[]string{"-resync", "45"}, map[string]string{"REGISTRATOR_RESYNC": "10", "REGISTRATOR_INTERNAL": "true", "CONSUL_HTTP_ADDR": "10.9.9.9:8500"}, func(o *options) bool {
			cfg, err := o.cli.Consul.Config()
			return o.cfg.Resync == 45*time.Second && o.cfg.Map.Internal && err == nil && cfg.Address == "10.9.9.9:8500"
		}},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		o, err := parse(tc.args, io.Discard, io.Discard)
		if err != nil || !tc.chk(o) {
			t.Errorf("registrator %q (env %v): %v; options %+v", tc.args, tc.env, err, o)
		}
		for k := range tc.env {
			t.Setenv(k, "")
		}
	}
}
