package main

import (
	"io"
	"testing"

	"github.com/berth/berth/pkg/cliapp/clitest"
)

// TestPeerInvocations replays consul-template command lines as its README
// writes them (-template "IN:OUT[:COMMAND]" repeated, a command with commas
// and spaces kept whole, -consul-addr, -wait MIN:MAX, -once, -dry, -exec and
// its -exec-* flags, -consul-ssl-verify=false, -log-level=trace), plus the
// TEMPLATER_* variables, which win over a config file as flags do.
func TestPeerInvocations(t *testing.T) {
	clitest.Replay(t, "templater", parseAll, cliView, []clitest.Case{
		{Args: []string{"-template", "/tmp/template.ctmpl:/tmp/result"},
			Want: clitest.View{"sources": []string{"/tmp/template.ctmpl"}, "destinations": []string{"/tmp/result"}}},
		{Args: []string{"-consul-addr", "10.4.4.6:8500", "-template", "/tmp/nginx.ctmpl:/var/nginx/nginx.conf:nginx -s reload", "-template=in2:out2:sh -c 'a,b; c'"},
			Want: clitest.View{"consul-address": "10.4.4.6:8500", "set": []string{"consul-addr", "http-addr", "template"}, "commands": []string{"nginx -s reload", "sh -c 'a,b; c'"}}},
		{Args: []string{"-wait", "5s:10s", "-once", "-dry", "-template", "in:out"},
			Want: clitest.View{"wait": "5s:10s", "once": true, "dry": true}},
		{Args: []string{"-exec", "app -port 80", "-exec-reload-signal", "SIGHUP", "-exec-kill-signal=SIGTERM", "-exec-splay=5s", "-exec-env-custom", "A=1,2", "-template", "in:out"},
			Want: clitest.View{"exec": "app -port 80", "exec-reload-signal": "SIGHUP", "exec-kill-signal": "SIGTERM", "exec-splay": "5s", "exec-env-custom": []string{"A=1,2"}}},
		{Args: []string{"-consul-token=x", "-consul-ssl", "-consul-ssl-verify=false", "-log-level=trace", "-template", "in:out"},
			Want: clitest.View{"consul-token": "x", "consul-ssl": true, "consul-ssl-verify": false, "log-level": "trace"}},
		{Args: []string{"-template", "bb:c"}, Env: map[string]string{"TEMPLATER_TEMPLATE": "aa:bb:cmd x,y", "TEMPLATER_WAIT": "2s"},
			Want: clitest.View{"commands": []string{"cmd x,y", ""}, "wait": "2s:8s", "set": []string{"template", "wait"}}},
	})
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

// cliView is a parsed command line as the cases name it: "wait" is MIN:MAX
// ("none" without one), "exec" the -exec command ("" without one), "set" the
// flags given on the command line or by their variables.
func cliView(p *parsed) clitest.View {
	o, rc := p.o, p.rc
	var sources, destinations, commands []string
	for _, t := range rc.Templates {
		sources, destinations, commands = append(sources, t.Source), append(destinations, t.Destination), append(commands, t.Command)
	}
	wait := "none"
	if rc.Wait != nil {
		wait = rc.Wait.Min.String() + ":" + rc.Wait.Max.String()
	}
	e := rc.Exec
	if e == nil {
		e = &execConfig{}
	}
	return clitest.View{"sources": sources, "destinations": destinations, "commands": commands, "wait": wait, "once": rc.Once, "dry": rc.Dry,
		"exec": e.Command, "exec-reload-signal": e.ReloadSignal, "exec-kill-signal": e.KillSignal, "exec-splay": e.Splay, "exec-env-custom": e.Env.Custom,
		"consul-ssl": o.consulSSL, "consul-ssl-verify": o.consulSSLVerify, "log-level": o.cli.Log.Level, "set": clitest.Set(o.set)}.WithConsul(&o.cli.Consul)
}
