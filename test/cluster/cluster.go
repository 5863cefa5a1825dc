// Package cluster is berth's fault harness: a real 3-server Consul cluster
// and N hosts, each a container of one FROM scratch image (the pinned static
// Consul, berth's static binaries, Debian's static busybox), on a Docker
// network of its own with fixed addresses. Each host runs its own client
// agent; programs under test run on a host and talk to that agent, as they
// would in production.
//
// Fault verbs (faults.go): Cut and Heal a host's network, KillLeader or
// FreezeLeader and RestartServer, Pause and Unpause a host, RestartAgent
// with its state wiped. Children log to a shared folder with the kernel
// clock (shared.go; Analyse reads it). The image is built in image.go, the
// containers run in docker.go, the agents are asked in agent.go, and
// commands run on hosts in proc.go.
//
// Everything it creates (containers, network, image) carries one name
// prefix and the label berth.cluster=<prefix>, and is removed by Close, also
// when a test fails.
package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options shape a cluster.
type Options struct {
	// Hosts is the number of host containers (client agents); default 2.
	Hosts int
	// Programs are berth program folders (relative to the module root) built
	// static into the image's /bin, e.g. "lockrun".
	Programs []string
	// Extra maps a file name in /bin to a Go package path (relative to the
	// module root) built static into it, e.g. {"tick": "test/cluster/tick"}.
	Extra map[string]string
	// Files maps a file name in /bin to a static binary on this machine
	// copied into the image, e.g. {"consul-template": "/path/to/it"}. A
	// dynamically linked binary is refused (the image has no libc).
	Files map[string]string
	// HostMounts are extra `docker run -v` arguments for the host containers
	// (not the servers), e.g. "/var/run/docker.sock:/var/run/docker.sock".
	HostMounts []string
	// HostHCL are extra -hcl settings for the hosts' client agents (not the
	// servers), e.g. `limits { rpc_client_timeout = "3s" }`.
	HostHCL []string
}

// Node is one container: a server or a host.
type Node struct {
	Name   string
	IP     string
	Server bool
	c      *Cluster
}

// Cluster is a running harness.
type Cluster struct {
	Prefix  string
	Net     string
	Subnet  string
	Image   string
	Shared  string // host folder mounted at /shared in every host
	Servers []*Node
	Hosts   []*Node

	t          testing.TB
	docker     string
	hostMounts []string
	hostHCL    []string
	mu         sync.Mutex
	closed     bool
}

// New builds the image, starts the network, 3 servers and the hosts, and
// waits until the cluster has a leader, 3 voters and every host alive. It
// fails the test (under CI=true) or skips it when Docker or a binary is
// missing. Close is registered with t.Cleanup.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	docker := requireDocker(t)
	consul, busybox := imageBinaries(t)
	if opts.Hosts == 0 {
		opts.Hosts = 2
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	c := &Cluster{Prefix: "berth-cluster-" + hex.EncodeToString(rnd[:]), t: t, docker: docker, hostMounts: opts.HostMounts, hostHCL: opts.HostHCL}
	c.Net = c.Prefix + "-net"
	c.Image = c.Prefix + ":test"
	// The shared folder outlives the containers: cleanups run last first.
	c.Shared = t.TempDir()
	t.Cleanup(c.Close)
	if err := c.makeShared(); err != nil {
		t.Fatal(err)
	}
	if err := c.buildImage(consul, busybox, opts); err != nil {
		t.Fatalf("cluster image: %v", err)
	}
	if err := c.createNetwork(); err != nil {
		t.Fatalf("cluster network: %v", err)
	}
	base := c.Subnet[:strings.LastIndex(c.Subnet, ".")+1]
	for i := 1; i <= 3; i++ {
		c.Servers = append(c.Servers, &Node{Name: fmt.Sprintf("%s-s%d", c.Prefix, i), IP: fmt.Sprintf("%s%d", base, 10+i), Server: true, c: c})
	}
	for i := 1; i <= opts.Hosts; i++ {
		c.Hosts = append(c.Hosts, &Node{Name: fmt.Sprintf("%s-h%d", c.Prefix, i), IP: fmt.Sprintf("%s%d", base, 20+i), c: c})
	}
	for _, s := range c.Servers {
		if err := c.runServer(s); err != nil {
			t.Fatalf("start %s: %v", s.Name, err)
		}
	}
	for _, h := range c.Hosts {
		if err := c.runHost(h); err != nil {
			t.Fatalf("start %s: %v", h.Name, err)
		}
	}
	if err := c.WaitHealthy(3 * time.Minute); err != nil {
		t.Fatalf("cluster never became healthy: %v", err)
	}
	return c
}

func (n *Node) short() string { return n.Name[len(n.c.Prefix)+1:] }

// Short is the node's name without the cluster prefix (s1, h2, …): its
// Consul node name.
func (n *Node) Short() string { return n.short() }

// HTTPAddr is the node's agent HTTP address as seen from the test process.
func (n *Node) HTTPAddr() string { return n.IP + ":8500" }

// Close removes every container, the network and the image, and prints the
// agents' and programs' logs of a failed test.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	if c.t.Failed() {
		c.logTails(6000)
	}
	ids, _ := c.dockerOut("ps", "-aq", "--filter", "label=berth.cluster="+c.Prefix)
	if ids != "" {
		_, _ = c.dockerOut(append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...)
	}
	_, _ = c.dockerOut("network", "rm", c.Net)
	_, _ = c.dockerOut("rmi", "-f", c.Image)
}
