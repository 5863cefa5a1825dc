package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// ServerIP and ClientIPs are the loopback addresses of the Consul server and
// its four client agents; each agent uses Consul's default ports on its own
// address, as on a real host (the whole 127.0.0.0/8 routes to lo on Linux).
const ServerIP = "127.0.0.2"

// ClientIPs are the client agents' addresses, one host each.
var ClientIPs = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"}

// defaultPorts are the ports every agent binds on its address: server RPC,
// serf LAN, serf WAN, HTTP, DNS (gRPC is turned off: client agents stream
// from the server over the RPC port).
var defaultPorts = []int{8300, 8301, 8302, 8500, 8600}

// checkAddress fails, naming the culprit, when ip is not a local address or
// one of the default ports on it is already taken (TCP, and UDP for serf and
// DNS): the benchmark starts nothing on an address it cannot own.
func checkAddress(ip string) error {
	for _, p := range defaultPorts {
		addr := net.JoinHostPort(ip, fmt.Sprint(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("address %s is not usable (tcp): %w", addr, err)
		}
		l.Close()
		if p == 8301 || p == 8302 || p == 8600 {
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				return fmt.Errorf("address %s is not usable (udp): %w", addr, err)
			}
			u.Close()
		}
	}
	return nil
}

// agentHCL is one agent's configuration. The server keeps Prometheus
// metrics (cumulative counters, unlike the 10-second in-memory intervals of
// /v1/agent/metrics) so a phase's RPCs are the difference of two readings;
// clients keep them too for their per-endpoint HTTP counts.
func agentHCL(name, ip, dataDir string, server bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = %q\ndatacenter = \"dc1\"\ndata_dir = %q\n", name, dataDir)
	fmt.Fprintf(&b, "bind_addr = %q\nclient_addr = %q\nadvertise_addr = %q\n", ip, ip, ip)
	b.WriteString("log_level = \"warn\"\ndisable_update_check = true\nleave_on_terminate = true\n")
	b.WriteString("ports {\n  grpc = -1\n  grpc_tls = -1\n}\n")
	b.WriteString("telemetry {\n  prometheus_retention_time = \"1h\"\n  disable_hostname = true\n}\n")
	if server {
		b.WriteString("server = true\nbootstrap_expect = 1\n")
	} else {
		fmt.Fprintf(&b, "retry_join = [%q]\n", ServerIP)
	}
	return b.String()
}

// cluster is the running server and clients; their processes belong to
// the procs that started them.
type cluster struct {
	serverPID int
	serverAPI *api.Client
	clients   []*api.Client
}

// startCluster starts the server and the four clients and waits until the
// server has a leader and all five nodes are in the catalog.
// The agents' data directories go under data.
func startCluster(ctx context.Context, p *procs, consul, work, data string) (*cluster, error) {
	c := &cluster{}
	// start starts an agent and returns its process ID.
	start := func(name, ip string, server bool) (int, error) {
		dir := filepath.Join(data, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return 0, err
		}
		cfg := filepath.Join(work, name+".hcl")
		if err := os.WriteFile(cfg, []byte(agentHCL(name, ip, dir, server)), 0o600); err != nil {
			return 0, err
		}
		cmd, err := p.start(name, consul, "agent", "-config-file", cfg)
		if err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	}
	var err error
	if c.serverPID, err = start("fleet-server", ServerIP, true); err != nil {
		return nil, err
	}
	for i, ip := range ClientIPs {
		if _, err := start(fmt.Sprintf("fleet-client-%d", i+1), ip, false); err != nil {
			return nil, err
		}
	}
	c.serverAPI = newAPI(ServerIP)
	for _, ip := range ClientIPs {
		c.clients = append(c.clients, newAPI(ip))
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		nodes, _, err := c.serverAPI.Catalog().Nodes(nil)
		if err == nil && len(nodes) == 1+len(ClientIPs) {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cluster not up after 90 s (catalog: %d nodes, err %v); see %s/fleet-*.log", len(nodes), err, work)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func newAPI(ip string) *api.Client {
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = ip + ":8500"
	cfg.Scheme = "http"
	cfg.Token, cfg.TokenFile = "", ""
	cfg.HttpClient = &http.Client{Timeout: 60 * time.Second}
	c, err := api.NewClient(cfg)
	if err != nil {
		panic(err) // only fails on TLS settings, which are not set
	}
	return c
}
