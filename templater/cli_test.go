package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/cliapp/clitest"
)

// TestPeerInvocations replays consul-template command lines as its README
// writes them (-template "IN:OUT[:COMMAND]" repeated, a command with commas
// and spaces kept whole, -consul-addr, -wait MIN:MAX, -once, -dry, -exec and
// its -exec-* flags, -consul-ssl-verify=false, -log-level=trace), plus the
// TEMPLATER_* variables, which win over a config file as flags do.
func TestPeerInvocations(t *testing.T) {
	clitest.Replay(t, "templater", parseAll, []clitest.Case[*parsed]{
		{Args: []string{"-template", "/tmp/template.ctmpl:/tmp/result"}, Check: func(p *parsed) bool {
			rc := p.rc
			return len(rc.Templates) == 1 && rc.Templates[0].Source == "/tmp/template.ctmpl" && rc.Templates[0].Destination == "/tmp/result"
		}},
		{Args: []string{"-consul-addr", "10.4.4.6:8500", "-template", "/tmp/nginx.ctmpl:/var/nginx/nginx.conf:nginx -s reload", "-template=in2:out2:sh -c 'a,b; c'"}, Check: func(p *parsed) bool {
			o, rc := p.o, p.rc
			cfg, err := o.cli.Consul.Config()
			return err == nil && cfg.Address == "10.4.4.6:8500" && o.set["consul-addr"] && o.set["http-addr"] && len(rc.Templates) == 2 &&
				rc.Templates[0].Command == "nginx -s reload" && rc.Templates[1].Command == "sh -c 'a,b; c'"
		}},
		{Args: []string{"-wait", "5s:10s", "-once", "-dry", "-template", "in:out"}, Check: func(p *parsed) bool {
			rc := p.rc
			return rc.Wait != nil && rc.Wait.Min == 5*time.Second && rc.Wait.Max == 10*time.Second && rc.Once && rc.Dry
		}},
		{Args: []string{"-exec", "app -port 80", "-exec-reload-signal", "SIGHUP", "-exec-kill-signal=SIGTERM", "-exec-splay=5s", "-exec-env-custom", "A=1,2", "-template", "in:out"}, Check: func(p *parsed) bool {
			rc := p.rc
			e := rc.Exec
			return e != nil && e.Command == "app -port 80" && e.ReloadSignal == "SIGHUP" && e.KillSignal == "SIGTERM" && e.Splay == 5*time.Second &&
				slices.Equal(e.Env.Custom, []string{"A=1,2"})
		}},
		{Args: []string{"-consul-token=x", "-consul-ssl", "-consul-ssl-verify=false", "-log-level=trace", "-template", "in:out"}, Check: func(p *parsed) bool {
			o := p.o
			cfg, err := o.cli.Consul.Config()
			return err == nil && cfg.Token == "x" && o.consulSSL && !o.consulSSLVerify && o.cli.Log.Level == "trace"
		}},
		{Args: []string{"-template", "b:c"}, Env: map[string]string{"TEMPLATER_TEMPLATE": "a:b:cmd x,y", "TEMPLATER_WAIT": "2s"}, Check: func(p *parsed) bool {
			o, rc := p.o, p.rc
			return len(rc.Templates) == 2 && rc.Templates[0].Command == "cmd x,y" && rc.Wait != nil && rc.Wait.Min == 2*time.Second && o.set["wait"]
		}},
	}...)
}

// parsed is a command line read as run reads it: the flags, then the
// configuration built from them.
type parsed struct {
	o  *options
	rc *runConfig
}

func parseAll(args []string, stdout, stderr io.Writer) (*parsed, error) {
	o, err := parseFlags(args, stdout, stderr)
	if err != nil {
		return nil, err
	}
	rc, _, err := buildConfig(o)
	return &parsed{o, rc}, err
}

// TestTransportFlagsWinOverFile: consul { transport { } } sets the
// transport; a -consul-transport-* flag given wins over the file; a bad
// number names the key.
func TestTransportFlagsWinOverFile(t *testing.T) {
	o := &options{set: map[string]bool{"consul-transport-dial-timeout": true, "consul-transport-max-idle-conns-per-host": true},
		transport: transportFlags{dialTimeout: 2 * time.Second, maxIdleConnsPerHost: 9, tlsHandshakeTimeout: time.Hour}}
	tr, err := transport(o, map[string]string{"dial_timeout": "10s", "max_idle_conns_per_host": "4", "max_conns_per_host": "5",
		"idle_conn_timeout": "1m", "tls_handshake_timeout": "3s", "disable_keep_alives": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if tr.MaxIdleConnsPerHost != 9 || tr.MaxConnsPerHost != 5 || tr.IdleConnTimeout != time.Minute || tr.TLSHandshakeTimeout != 3*time.Second || !tr.DisableKeepAlives || tr.MaxIdleConns != 256 {
		t.Fatalf("transport: %+v", tr)
	}
	if _, err := transport(o, map[string]string{"max_conns_per_host": "many"}); err == nil || !strings.Contains(err.Error(), "consul.transport.max_conns_per_host") {
		t.Fatalf("bad number: %v", err)
	}
}
