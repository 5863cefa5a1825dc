package cluster

import (
	"errors"
	"strings"
	"time"
)

// Fault verbs: each changes the cluster the way a real failure would, through
// Docker, and returns once Docker has done it.

// Cut disconnects a host from the cluster network: its agent and programs
// keep running and keep talking to each other over the container's
// loopback, but nothing reaches the servers.
func (c *Cluster) Cut(h *Node) error {
	_, err := c.dockerOut("network", "disconnect", c.Net, h.Name)
	return err
}

// Heal reconnects a cut host at its address and asks its agent to join the
// servers again at once (serf would retry on its own within 30s).
func (c *Cluster) Heal(h *Node) error {
	if _, err := c.dockerOut("network", "connect", "--ip", h.IP, c.Net, h.Name); err != nil {
		return err
	}
	var last error
	for i := 0; i < 20; i++ {
		if _, last = c.dockerOut("exec", h.Name, "/bin/consul", "join", c.Servers[0].IP, c.Servers[1].IP, c.Servers[2].IP); last == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return last
}

// KillLeader SIGKILLs the leader's container and returns it; the others
// elect a new leader. Start it again with RestartServer.
func (c *Cluster) KillLeader() (*Node, error) {
	l, err := c.Leader()
	if err != nil {
		return nil, err
	}
	_, err = c.dockerOut("kill", "-s", "KILL", l.Name)
	return l, err
}

// WaitLeader waits until the servers other than skip agree on a leader.
func (c *Cluster) WaitLeader(skip *Node, timeout time.Duration) (*Node, error) {
	var leader *Node
	_, err := waitUntil(timeout, func() error {
		for _, s := range c.Servers {
			if s == skip {
				continue
			}
			var addr string
			if httpGet(s.HTTPAddr(), "/v1/status/leader", &addr) == nil && addr != "" {
				for _, n := range c.Servers {
					if n != skip && strings.HasPrefix(addr, n.IP+":") {
						leader = n
						return nil
					}
				}
			}
		}
		return errors.New("no new leader")
	})
	return leader, err
}

// FreezeLeader freezes the Raft leader's container (docker pause): its
// connections get neither answers nor resets until Unpause.
func (c *Cluster) FreezeLeader() (*Node, error) {
	l, err := c.Leader()
	if err != nil {
		return nil, err
	}
	return l, c.Pause(l)
}

// RestartServer starts a killed server's container again, with its data.
func (c *Cluster) RestartServer(s *Node) error {
	_, err := c.dockerOut("start", s.Name)
	return err
}

// Pause freezes every process of a host (docker pause: the cgroup freezer).
func (c *Cluster) Pause(h *Node) error { _, err := c.dockerOut("pause", h.Name); return err }

// Unpause thaws a paused host.
func (c *Cluster) Unpause(h *Node) error { _, err := c.dockerOut("unpause", h.Name); return err }

// RestartAgent stops a host's client agent, wipes its data folder (its node
// ID stays, derived from the host), and starts it again.
func (c *Cluster) RestartAgent(h *Node) error {
	if _, err := c.dockerOut("exec", h.Name, "/bin/sh", "-c", "kill -TERM $(cat /run/consul.pid); while kill -0 $(cat /run/consul.pid) 2>/dev/null; do sleep 0.1; done; rm -rf /data/*"); err != nil {
		return err
	}
	return c.startAgent(h)
}
