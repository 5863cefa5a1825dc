package consulclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

// inNamespaceEnv marks the copy of the test binary that runs inside the
// network and mount namespace of TestDefaultAddressWhereLocalhostIsIPv6Only.
const inNamespaceEnv = "BERTH_TEST_LOCALHOST_V6_ONLY"

// TestDefaultAddressWhereLocalhostIsIPv6Only is the fault that made berth's
// default address 127.0.0.1:8500 (TestDefaultAddressIsLoopbackIP), reproduced
// for real: in a new network and mount namespace (unshare, as root) whose
// /etc/hosts names only ::1 as localhost, a dev agent listens on its default
// HTTP address, 127.0.0.1:8500. A client with no address given must reach
// it, as the peers' clients do (consul/api v1.32.1's default). The test first
// shows the set-up has the fault: "localhost" resolves to ::1 alone and
// consul/api v1.34's own default address, localhost:8500, is refused.
func TestDefaultAddressWhereLocalhostIsIPv6Only(t *testing.T) {
	if os.Getenv(inNamespaceEnv) == "1" {
		localhostIPv6OnlyInNamespace(t)
		return
	}
	bin, err := consultest.Binary()
	proctest.Need(t, "a consul binary", err)
	unshare := proctest.Tool(t, "unshare", "Debian package util-linux")
	ip := proctest.Tool(t, "ip", "Debian package iproute2")
	if out, err := exec.Command(unshare, "--net", "--mount", "true").CombinedOutput(); err != nil {
		proctest.Need(t, "network and mount namespaces (run as root)", fmt.Errorf("%v %s", err, out))
	}
	hosts := filepath.Join(t.TempDir(), "hosts")
	proctest.WriteFile(t, hosts, "::1 localhost ip6-localhost\n")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The shell runs inside the new namespaces: loopback up, the hosts file
	// in place (the mount is private to the namespace), then the test again.
	script := `set -e; "$1" link set lo up; mount --bind "$2" /etc/hosts; shift 2; exec "$@"`
	cmd := exec.Command(unshare, "--net", "--mount", "sh", "-c", script, "sh", ip, hosts,
		self, "-test.run=^TestDefaultAddressWhereLocalhostIsIPv6Only$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), inNamespaceEnv+"=1", "CONSUL_BIN="+bin,
		"CONSUL_HTTP_ADDR=", "CONSUL_HTTP_TOKEN=", "CONSUL_HTTP_TOKEN_FILE=", "CONSUL_HTTP_SSL=",
		"CONSUL_CACERT=", "CONSUL_CLIENT_CERT=", "CONSUL_CLIENT_KEY=", "CONSUL_TLS_SERVER_NAME=")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nPASS") {
		t.Fatalf("in the namespace: %v\n%s", err, out)
	}
	t.Logf("in the namespace:\n%s", out)
}

// localhostIPv6OnlyInNamespace is the test's body inside the namespaces.
func localhostIPv6OnlyInNamespace(t *testing.T) {
	addrs, err := net.DefaultResolver.LookupHost(context.Background(), "localhost")
	if err != nil || len(addrs) != 1 || addrs[0] != "::1" {
		t.Fatalf("set-up: localhost resolves to %v (%v); want [::1] alone", addrs, err)
	}
	bin, err := consultest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-node", "berth-netns")
	var agentLog strings.Builder
	agent.Stdout, agent.Stderr = &agentLog, &agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
		if t.Failed() {
			t.Logf("agent:\n%s", agentLog.String())
		}
	})
	// The agent listens on 127.0.0.1:8500: check with an explicit client.
	direct, err := api.NewClient(&api.Config{Address: "127.0.0.1:8500", Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 60*time.Second, "agent answering on 127.0.0.1:8500", func() bool {
		leader, err := direct.Status().Leader()
		return err == nil && leader != ""
	})

	// consul/api's own default (localhost:8500) misses it here.
	apiDefault := &api.Config{Address: "localhost:8500", Scheme: "http"}
	c, err := api.NewClient(apiDefault)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status().Leader(); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("set-up: a client of %s was not refused (err %v): the fault is not reproduced", apiDefault.Address, err)
	}

	// berth's client, no address given.
	f, _ := parse(t)
	cfg, err := f.Config()
	if err != nil {
		t.Fatal(err)
	}
	client, err := f.NewClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	leader, err := client.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("berth's default address %s: leader %q, %v; want the agent on 127.0.0.1:8500", cfg.Address, leader, err)
	}
	t.Logf("berth's default %s reached the agent (leader %s); %s was refused", cfg.Address, leader, apiDefault.Address)
}
