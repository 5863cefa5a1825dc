package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Containers: the Docker network, one container per node, and the Consul
// agent each runs.

// requireDocker finds the docker client and checks that the daemon answers;
// missing, it fails or skips the test (need).
func requireDocker(t testing.TB) string {
	t.Helper()
	docker, err := exec.LookPath("docker")
	if err == nil {
		err = exec.Command(docker, "info").Run()
	}
	if err != nil {
		need(t, "a Docker daemon", err)
	}
	return docker
}

// createNetwork makes a bridge network with a /24 of its own, trying a few
// subnets in 172.28.0.0/14 that other networks may already use.
func (c *Cluster) createNetwork() error {
	var last error
	for i := 0; i < 20; i++ {
		var b [2]byte
		_, _ = rand.Read(b[:])
		subnet := fmt.Sprintf("172.%d.%d.0/24", 28+int(b[0])%4, b[1])
		_, err := c.dockerOut("network", "create", "--driver", "bridge", "--subnet", subnet,
			"--label", "berth.cluster="+c.Prefix, c.Net)
		if err == nil {
			c.Subnet = strings.TrimSuffix(subnet, "/24")
			return nil
		}
		last = err
	}
	return last
}

// runArgs are the `docker run` arguments of a node's container, up to the
// image name.
func (c *Cluster) runArgs(n *Node) []string {
	args := []string{"run", "-d", "--init", "--name", n.Name, "--hostname", n.short(),
		"--label", "berth.cluster=" + c.Prefix, "--network", c.Net, "--ip", n.IP,
		"-v", c.Shared + ":/shared"}
	if !n.Server {
		for _, m := range c.hostMounts {
			args = append(args, "-v", m)
		}
	}
	return append(args, c.Image)
}

// agentArgs are the consul agent flags for a node: the servers use the
// production recommendation raft_multiplier = 1 (elections in about 1-3s).
func (c *Cluster) agentArgs(n *Node) []string {
	args := []string{"/bin/consul", "agent", "-node=" + n.short(), "-bind=" + n.IP, "-client=0.0.0.0",
		"-data-dir=/data", "-pid-file=/run/consul.pid", "-log-level=info",
		"-hcl=disable_update_check = true", "-hcl=performance { raft_multiplier = 1 }"}
	if n.Server {
		args = append(args, "-server", "-bootstrap-expect=3")
	} else {
		for _, h := range c.hostHCL {
			args = append(args, "-hcl="+h)
		}
	}
	for _, s := range c.Servers {
		args = append(args, "-retry-join="+s.IP)
	}
	return args
}

// runServer starts a server's container with its agent as the main process.
func (c *Cluster) runServer(n *Node) error {
	_, err := c.dockerOut(append(c.runArgs(n), loggedArgv(n.short(), c.agentArgs(n)...)...)...)
	return err
}

// runHost starts a host's container, idle, and its agent in it.
func (c *Cluster) runHost(n *Node) error {
	args := append(c.runArgs(n), "/bin/sleep", "2147483647")
	if _, err := c.dockerOut(args...); err != nil {
		return err
	}
	return c.startAgent(n)
}

// startAgent starts a host's agent in its running container.
func (c *Cluster) startAgent(n *Node) error {
	_, err := c.dockerOut(append([]string{"exec", "-d", n.Name}, loggedArgv(n.short(), c.agentArgs(n)...)...)...)
	return err
}

// dockerOut runs the docker client with args (bounded by 3 minutes) and
// returns its standard output, trimmed; an error carries its standard error.
func (c *Cluster) dockerOut(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.docker, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args[:min(len(args), 3)], " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}
