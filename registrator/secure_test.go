package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
)

// The registrator binary against a real agent with default-deny ACLs serving
// HTTPS with its own CA: consul-tls:// URI, -ca-file, -tls-server-name and
// -token-file; the container's service is registered and owned, and the
// token never shows in the log.
func TestACLTokenAndTLS(t *testing.T) {
	requireDocker(t)
	const token = "c4e1b2a3-9d8f-4e7a-b6c5-1d2e3f4a5b6c"
	a, tokenFile := consultest.StartSecureT(t, "registrator-secure", token)
	c := a.Client() // one client: each a.Client() opens its own connections
	runC(t, "secure-web", []string{"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=secure-web"})
	// With a host, and without one: consul-tls:// alone is the default agent
	// (CONSUL_HTTP_ADDR) over HTTPS (gliderlabs master consul/consul.go
	// Factory.New: scheme https, address from api.DefaultConfig()).
	for i, uri := range []string{"consul-tls://" + a.HTTPSAddr(), "consul-tls://"} {
		host := fmt.Sprintf("%s-%d", hostFor(t), i)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		var logs eventually.Buffer
		args := append([]string{"-hostname", host, "-ip", "127.0.0.1", "-log-level", "debug", "-only-label", onlyLabel(t)}, a.TLSFlags()...)
		cmd := exec.CommandContext(ctx, binPath, append(args, "-token-file", tokenFile, uri)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CONSUL_HTTP_ADDR=" + a.HTTPSAddr()}
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		eventually.Holds(t, 30*time.Second, "secure-web registered over HTTPS with the token, "+uri, func() (bool, string) {
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
		if strings.Contains(logs.String(), token) {
			t.Fatalf("the ACL token appears in registrator's log:\n%s", logs.String())
		}
	}
}
