package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// The agents' HTTP API: what the cluster's state is, and requests a test
// sends a node's agent.

// httpGet decodes the JSON answer of the agent at addr to GET path (3 s at
// most); any answer but 200 is an error.
func httpGet(addr, path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Leader returns the server that is Raft leader now, as the reachable
// servers agree on it.
func (c *Cluster) Leader() (*Node, error) {
	var last error
	for _, s := range c.Servers {
		var addr string
		if err := httpGet(s.HTTPAddr(), "/v1/status/leader", &addr); err != nil {
			last = err
			continue
		}
		for _, n := range c.Servers {
			if strings.HasPrefix(addr, n.IP+":") {
				return n, nil
			}
		}
		last = fmt.Errorf("no leader (server %s says %q)", s.short(), addr)
	}
	return nil, last
}

// healthy says whether every server agrees on one leader, Raft has 3 voters,
// and every server and host is an alive member.
func (c *Cluster) healthy() error {
	leader, err := c.Leader()
	if err != nil {
		return err
	}
	for _, s := range c.Servers {
		var addr string
		if err := httpGet(s.HTTPAddr(), "/v1/status/leader", &addr); err != nil {
			return err
		}
		if !strings.HasPrefix(addr, leader.IP+":") {
			return fmt.Errorf("server %s sees leader %q, not %s", s.short(), addr, leader.short())
		}
	}
	var cfg struct {
		Servers []struct {
			Node  string
			Voter bool
		}
	}
	if err := httpGet(leader.HTTPAddr(), "/v1/operator/raft/configuration", &cfg); err != nil {
		return err
	}
	voters := 0
	for _, s := range cfg.Servers {
		if s.Voter {
			voters++
		}
	}
	if voters != 3 {
		return fmt.Errorf("%d Raft voters, want 3", voters)
	}
	var members []struct {
		Name   string
		Status int
	}
	if err := httpGet(leader.HTTPAddr(), "/v1/agent/members", &members); err != nil {
		return err
	}
	status := map[string]int{}
	for _, m := range members {
		status[m.Name] = m.Status
	}
	for _, n := range append(append([]*Node{}, c.Servers...), c.Hosts...) {
		if st, ok := status[n.short()]; !ok || st != serfAlive {
			return &notAliveError{node: n, leader: leader, status: st, listed: ok}
		}
	}
	// Every host's agent is in sync with the servers: it has a leader.
	for _, h := range c.Hosts {
		var addr string
		if err := httpGet(h.HTTPAddr(), "/v1/status/leader", &addr); err != nil || addr == "" {
			return fmt.Errorf("host %s has no leader yet (%v)", h.short(), err)
		}
	}
	return nil
}

// serfAlive is the Status /v1/agent/members gives an alive member (serf's
// StatusAlive; 3 is left, 4 failed).
const serfAlive = 1

// notAliveError: the leader's gossip view lists node as not alive.
type notAliveError struct {
	node, leader *Node
	status       int
	listed       bool
}

func (e *notAliveError) Error() string {
	if !e.listed {
		return fmt.Sprintf("%s is not a member in %s's view", e.node.short(), e.leader.short())
	}
	return fmt.Sprintf("%s is not an alive member in %s's view (serf status %d)", e.node.short(), e.leader.short(), e.status)
}

// rejoinAfter is how long WaitHealthy lets gossip converge by itself before
// it asks a node the leader does not see alive to join the leader again.
const rejoinAfter = 30 * time.Second

// WaitHealthy waits until the cluster has a leader, 3 voters and every node
// alive.
//
// A server that autopilot removed while it was frozen (its dead-server
// cleanup force-leaves it) normally refutes the leave and rejoins by
// itself; in one CI run a node stayed out of the leader's view for minutes
// after a later election. So once a node has been seen not alive for
// rejoinAfter, WaitHealthy runs `consul join LEADER` on it once (what an
// operator would do) and logs that it did. This restores the precondition
// of the next fault round; it is not part of what any test checks.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	start := time.Now()
	rejoined := map[*Node]bool{}
	_, err := waitUntil(timeout, func() error {
		err := c.healthy()
		var na *notAliveError
		if errors.As(err, &na) && time.Since(start) > rejoinAfter && !rejoined[na.node] {
			rejoined[na.node] = true
			out, jerr := c.Exec(na.node, "/bin/consul", "join", na.leader.IP)
			c.t.Logf("harness: %v after %s; ran `consul join %s` on %s: %s %v", err, time.Since(start).Round(time.Second), na.leader.IP, na.node.short(), out, jerr)
		}
		return err
	})
	return err
}

// quickClient gives up connecting after 1 s: a killed container's address
// does not refuse, it stays silent.
var quickClient = &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: time.Second}).DialContext}}

// Put sends an HTTP PUT to a node's agent (for example a session destroy).
func (n *Node) Put(path string) error { return n.Do(http.MethodPut, path, "") }

// Do sends method path with body to a node's agent and fails on any answer
// but 200 (for example PUT /v1/kv/KEY with the value as body).
func (n *Node) Do(method, path, body string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, "http://"+n.HTTPAddr()+path, strings.NewReader(body))
	resp, err := quickClient.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// Get decodes the JSON answer of a node's agent to GET path.
func (n *Node) Get(path string, out any) error { return httpGet(n.HTTPAddr(), path, out) }

// PutKV writes key=value through the first server that accepts it (the
// servers' agents, so a cut host does not matter); during an election it
// fails until a leader is there.
func (c *Cluster) PutKV(key, value string) error {
	var last error
	for _, s := range c.Servers {
		if last = s.Do(http.MethodPut, "/v1/kv/"+key, value); last == nil {
			return nil
		}
	}
	return last
}

// KVEverywhere reports nil once every server answers a stale read of key
// with value: a program that reads with stale consistency (envexec's
// default -max-stale) then sees the write whichever server it asks.
func (c *Cluster) KVEverywhere(key, value string) error {
	for _, s := range c.Servers {
		var pairs []struct{ Value []byte }
		if err := s.Get("/v1/kv/"+key+"?stale", &pairs); err != nil {
			return fmt.Errorf("%s: %w", s.short(), err)
		}
		if len(pairs) != 1 || string(pairs[0].Value) != value {
			return fmt.Errorf("%s does not have %s=%q yet", s.short(), key, value)
		}
	}
	return nil
}
