package main

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// dnsforward against a real agent with default-deny ACLs serving HTTPS with
// its own CA: with the token and the TLS settings given in each shared way
// (flags, token file, environment) it answers a service; with no token the
// catalog is hidden and the name is NXDOMAIN; the token never shows in the
// log.
func TestACLTokenAndTLS(t *testing.T) {
	a := consultest.StartSecure(t, "dnsforward-secure")
	if err := a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "secure-1", Name: "secure-web", Address: "10.9.8.7", Port: 80}); err != nil {
		t.Fatal(err)
	}
	// answer runs dnsforward given c and asks it for the service.
	answer := func(t *testing.T, c consultest.Credential) *dns.Msg {
		for _, kv := range c.Env {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, v)
		}
		port, err := consultest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "-upstream", "127.0.0.1:1",
			"-http-addr", "https://" + a.HTTPSAddr()}, c.Args...)
		args = append(args, "-consul-dns", a.DNSAddr(), "-log-level", "debug")
		var stderr eventually.Buffer
		addr, stop := runReady(t, args, &stderr)
		r := exchange(t, addr, "secure-web.service.consul.", dns.TypeA, "udp")
		stop()
		a.RequireNoToken(t, "dnsforward's log", stderr.String())
		return r
	}
	for _, c := range a.Credentials() {
		t.Run(c.Name, func(t *testing.T) {
			if r := answer(t, c); len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "10.9.8.7") {
				t.Fatalf("with the token: %v", r)
			}
		})
	}
	if r := answer(t, a.NoToken()); r.Rcode != dns.RcodeNameError {
		t.Fatalf("without a token the service is visible: %v", r)
	}
}
