package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

// TestPeerInvocations replays consul-template command lines as its README
// writes them (-template "IN:OUT[:COMMAND]" repeated, a command with commas
// and spaces kept whole, -consul-addr, -wait MIN:MAX, -once, -dry, -exec and
// its -exec-* flags, -consul-ssl-verify=false, -log-level=trace), plus the
// TEMPLATER_* variables, which win over a config file as flags do.
func TestPeerInvocations(t *testing.T) {
	for _, k := range []string{"CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "TEMPLATER_TEMPLATE", "TEMPLATER_WAIT"} {
		t.Setenv(k, "")
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		chk  func(o *options, rc *runConfig) bool
	}{
		{[]string{"-template", "/tmp/template.ctmpl:/tmp/result"}, nil, func(o *options, rc *runConfig) bool {
			return len(rc.Templates) == 1 && rc.Templates[0].Source == "/tmp/template.ctmpl" && rc.Templates[0].Destination == "/tmp/result"
		}},
		{[]string{"-consul-addr", "10.4.4.6:8500", "-template", "/tmp/nginx.ctmpl:/var/nginx/nginx.conf:nginx -s reload", "-template=in2:out2:sh -c 'a,b; c'"}, nil, func(o *options, rc *runConfig) bool {
			cfg, err := o.consul.Config()
			return err == nil && cfg.Address == "10.4.4.6:8500" && o.set["consul-addr"] && o.set["http-addr"] && len(rc.Templates) == 2 &&
				rc.Templates[0].Command == "nginx -s reload" && rc.Templates[1].Command == "sh -c 'a,b; c'"
		}},
		{[]string{"-wait", "5s:10s", "-once", "-dry", "-template", "in:out"}, nil, func(o *options, rc *runConfig) bool {
			return rc.Wait != nil && rc.Wait.Min == 5*time.Second && rc.Wait.Max == 10*time.Second && rc.Once && rc.Dry
		}},
		{[]string{"-exec", "app -port 80", "-exec-reload-signal", "SIGHUP", "-exec-kill-signal=SIGTERM", "-exec-splay=5s", "-exec-env-custom", "A=1,2", "-template", "in:out"}, nil, func(o *options, rc *runConfig) bool {
			e := rc.Exec
			return e != nil && e.Command == "app -port 80" && e.ReloadSignal == "SIGHUP" && e.KillSignal == "SIGTERM" && e.Splay == 5*time.Second &&
				slices.Equal(e.Env.Custom, []string{"A=1,2"})
		}},
		{[]string{"-consul-token=x", "-consul-ssl", "-consul-ssl-verify=false", "-log-level=trace", "-template", "in:out"}, nil, func(o *options, rc *runConfig) bool {
			cfg, err := o.consul.Config()
			return err == nil && cfg.Token == "x" && o.consulSSL && !o.consulSSLVerify && o.logs.Level == "trace"
		}},
		{[]string{"-template", "b:c"}, map[string]string{"TEMPLATER_TEMPLATE": "a:b:cmd x,y", "TEMPLATER_WAIT": "2s"}, func(o *options, rc *runConfig) bool {
			return len(rc.Templates) == 2 && rc.Templates[0].Command == "cmd x,y" && rc.Wait != nil && rc.Wait.Min == 2*time.Second && o.set["wait"]
		}},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		o, err := parseFlags(tc.args, io.Discard, io.Discard)
		var rc *runConfig
		if err == nil {
			rc, _, err = buildConfig(o)
		}
		if err != nil || !tc.chk(o, rc) {
			t.Errorf("templater %q (env %v): %v; options %+v", tc.args, tc.env, err, o)
		}
		for k := range tc.env {
			t.Setenv(k, "")
		}
	}
}
