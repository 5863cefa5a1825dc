package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/hashicorp/consul/api"
)

// The registrator binary against a real agent with default-deny ACLs serving
// HTTPS with its own CA: a consul-tls:// URI with the token and the TLS
// settings given in each shared way (-token-file, -token, the CONSUL_*
// environment), and a host-less consul-tls:// with -token-file; the
// container's service is registered and owned, and the token never shows in
// the log.
func TestACLTokenAndTLS(t *testing.T) {
	requireDocker(t)
	a := consultest.StartSecure(t, "registrator-secure")
	c := a.Client() // one client: each a.Client() opens its own connections
	runC(t, "secure-web", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=secure-web"})
	type run struct {
		uri  string
		cred consultest.Credential
	}
	var runs []run
	for _, cred := range a.Credentials() {
		runs = append(runs, run{"consul-tls://" + a.HTTPSAddr(), cred})
	}
	// Without a host, consul-tls:// is the default agent (CONSUL_HTTP_ADDR)
	// over HTTPS (gliderlabs master consul/consul.go Factory.New: scheme
	// https, address from api.DefaultConfig()).
	runs = append(runs, run{"consul-tls://", a.Credentials()[0]})
	for i, r := range runs {
		host := fmt.Sprintf("%s-%d", hostFor(t), i)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		var logs eventually.Buffer
		args := append([]string{"-hostname", host, "-ip", "127.0.0.1", "-log-level", "debug", "-only-label", onlyLabel(t)}, r.cred.Args...)
		cmd := exec.CommandContext(ctx, binPath, append(args, r.uri)...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CONSUL_HTTP_ADDR=" + a.HTTPSAddr()}, r.cred.Env...)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("secure-web registered over HTTPS, %s with %s", r.uri, r.cred.Name)
		eventually.Holds(t, 30*time.Second, what, func() (bool, string) {
			got := ownedServices(t, c, host)
			for _, s := range got {
				if s.Service == "secure-web" {
					return true, ""
				}
			}
			return false, logs.String()
		})
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cancel()
		a.RequireNoToken(t, "registrator's log", logs.String())
	}
}

// A token that may only write services (service_prefix "" write), enough
// for gliderlabs registrator (master consul/consul.go: its Ping is
// status/leader, which needs no permission; it registers, deregisters and
// lists agent services), is enough for registrator too: the start-up check
// does not wait for ever on the agent's 403, and the container registers.
// Then, with the same registrator: such a token cannot watch the
// catalog, so a registration the agent lost (gliderlabs/registrator#81,
// closed upstream with "use -resync") comes back by the periodic resync
// (here -resync 1; by default 60 s).
func TestServiceWriteOnlyToken(t *testing.T) {
	requireDocker(t)
	a := consultest.StartSecure(t, "registrator-svc-token")
	c := a.Client()
	pol, _, err := c.ACL().PolicyCreate(&api.ACLPolicy{Name: "registrator-services", Rules: `service_prefix "" { policy = "write" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := c.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	runC(t, "svc-token-web", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=svc-token-web"})
	host := hostFor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var logs eventually.Buffer
	args := append([]string{"-hostname", host, "-ip", "127.0.0.1", "-only-label", onlyLabel(t), "-retry-interval", "200", "-resync", "1"},
		append(a.TLSFlags(), "-token", tok.SecretID, "consul-tls://"+a.HTTPSAddr())...)
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	id := ""
	eventually.Holds(t, 30*time.Second, "svc-token-web registered with a service:write token", func() (bool, string) {
		for _, s := range ownedServices(t, c, host) {
			if s.Service == "svc-token-web" {
				id = s.ID
				return true, ""
			}
		}
		return false, logs.String()
	})
	t.Run("lost registration back by resync", func(t *testing.T) {
		// The agent loses the registration (as one restarted without its
		// data does): only the resync can tell.
		if err := c.Agent().ServiceDeregister(id); err != nil {
			t.Fatal(err)
		}
		eventually.Holds(t, 30*time.Second, "svc-token-web registered again by a resync", func() (bool, string) {
			svcs, err := c.Agent().Services()
			if err != nil {
				return false, err.Error()
			}
			if s := svcs[id]; s != nil && s.Meta[metaHost] == host {
				return true, ""
			}
			return false, logs.String()
		})
	})
}
