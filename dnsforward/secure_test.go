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
// its own CA: with -token-file and the TLS flags it answers a service; with
// no token the catalog is hidden and the name is NXDOMAIN; the token never
// shows in the log.
func TestACLTokenAndTLS(t *testing.T) {
	const token = "e5f6a7b8-1c2d-4e3f-9a0b-c1d2e3f4a5b6"
	a, tokenFile := consultest.StartSecureT(t, "dnsforward-secure", token)
	if err := a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "secure-1", Name: "secure-web", Address: "10.9.8.7", Port: 80}); err != nil {
		t.Fatal(err)
	}
	for _, withToken := range []bool{true, false} {
		port, err := consultest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "-upstream", "127.0.0.1:1",
			"-http-addr", "https://" + a.HTTPSAddr()}, a.TLSFlags()...)
		args = append(args, "-consul-dns", a.DNSAddr(), "-log-level", "debug")
		if withToken {
			args = append(args, "-token-file", tokenFile)
		}
		var stderr eventually.Buffer
		addr, stop := runReady(t, args, &stderr)
		r := exchange(t, addr, "secure-web.service.consul.", dns.TypeA, "udp")
		stop()
		if withToken {
			if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "10.9.8.7") {
				t.Fatalf("with the token: %v", r)
			}
		} else if r.Rcode != dns.RcodeNameError {
			t.Fatalf("without a token the service is visible: %v", r)
		}
		if strings.Contains(stderr.String(), token) {
			t.Fatalf("the ACL token appears in dnsforward's log:\n%s", stderr.String())
		}
	}
}
