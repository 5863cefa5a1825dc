// Package cluster is berth's fault harness: a real 3-server Consul cluster
// and N hosts, each a container of one FROM scratch image (the pinned static
// Consul, berth's static binaries, Debian's static busybox), on a Docker
// network of its own with fixed addresses. Each host runs its own client
// agent; programs under test run on a host and talk to that agent, as they
// would in production.
//
// Fault verbs: Cut and Heal a host's network, KillLeader and RestartServer,
// Pause and Unpause a host, RestartAgent with its state wiped. Children log
// to a shared folder with the kernel clock (Analyse reads it).
//
// Everything it creates (containers, network, image) carries one name
// prefix and the label berth.cluster=<prefix>, and is removed by Close, also
// when a test fails.
package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
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
	consul, err := consultest.Binary()
	if err != nil {
		need(t, "the pinned Consul (make consul)", err)
	}
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		need(t, "/bin/busybox (Debian package busybox-static)", err)
	}
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
	for _, d := range []string{"ticks", "logs"} {
		if err := os.MkdirAll(filepath.Join(c.Shared, d), 0o777); err != nil {
			t.Fatal(err)
		}
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

func need(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("the cluster harness needs %s (CI=true): %v", what, err)
	}
	t.Skipf("the cluster harness needs %s: %v", what, err)
}

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

// moduleRoot finds the folder holding go.mod above this package.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func (c *Cluster) buildImage(consul, busybox string, opts Options) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	ctxDir := c.t.TempDir()
	bin := filepath.Join(ctxDir, "bin")
	for _, d := range []string{"bin", "tmp", "data", "run"} {
		if err := os.MkdirAll(filepath.Join(ctxDir, d), 0o777); err != nil {
			return err
		}
	}
	builds := map[string]string{}
	for _, p := range opts.Programs {
		builds[filepath.Base(p)] = p
	}
	for name, pkg := range opts.Extra {
		builds[name] = pkg
	}
	for name, pkg := range builds {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, name), "./"+pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v: %s", pkg, err, out)
		}
	}
	files := map[string]string{consul: "consul", busybox: "busybox"}
	for name, src := range opts.Files {
		if err := requireStatic(src); err != nil {
			return err
		}
		files[src] = name
	}
	for src, dst := range files {
		// A hard link when the file system allows it: the Consul binary is
		// large.
		if err := os.Link(src, filepath.Join(bin, dst)); err != nil {
			b, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(bin, dst), b, 0o755); err != nil {
				return err
			}
		}
	}
	for _, applet := range []string{"sh", "sleep", "kill", "cat", "rm", "mkdir", "ls", "ps", "echo", "date", "grep", "true",
		"wget", "wc", "tail", "head", "cp", "mv", "env", "printenv", "touch", "seq", "md5sum"} {
		if err := os.Symlink("busybox", filepath.Join(bin, applet)); err != nil {
			return err
		}
	}
	df := fmt.Sprintf("FROM scratch\nCOPY . /\nLABEL berth.cluster=%s\nENV PATH=/bin SHELL=/bin/sh\n", c.Prefix)
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	_, err = c.dockerOut("build", "-q", "-t", c.Image, ctxDir)
	return err
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

func (c *Cluster) runArgs(n *Node) []string {
	args := []string{"run", "-d", "--init", "--name", n.Name, "--hostname", n.Name[len(c.Prefix)+1:],
		"--label", "berth.cluster=" + c.Prefix, "--network", c.Net, "--ip", n.IP,
		"-v", c.Shared + ":/shared"}
	if !n.Server {
		for _, m := range c.hostMounts {
			args = append(args, "-v", m)
		}
	}
	return append(args, c.Image)
}

// requireStatic refuses an ELF file that asks for a dynamic loader.
func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("image file %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("image file %s is dynamically linked (build it with CGO_ENABLED=0)", path)
		}
	}
	return nil
}

// agentArgs are the consul agent flags for a node: the servers use the
// production recommendation raft_multiplier = 1 (elections in about 1-3s).
func (c *Cluster) agentArgs(n *Node) []string {
	short := n.Name[len(c.Prefix)+1:]
	args := []string{"/bin/consul", "agent", "-node=" + short, "-bind=" + n.IP, "-client=0.0.0.0",
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

func (c *Cluster) runServer(n *Node) error {
	args := append(c.runArgs(n), "/bin/sh", "-c", "exec "+strings.Join(quoteAll(c.agentArgs(n)), " ")+" >>/shared/logs/"+n.short()+".log 2>&1")
	_, err := c.dockerOut(args...)
	return err
}

func (c *Cluster) runHost(n *Node) error {
	args := append(c.runArgs(n), "/bin/sleep", "2147483647")
	if _, err := c.dockerOut(args...); err != nil {
		return err
	}
	return c.startAgent(n)
}

func (c *Cluster) startAgent(n *Node) error {
	_, err := c.dockerOut("exec", "-d", n.Name, "/bin/sh", "-c",
		"exec "+strings.Join(quoteAll(c.agentArgs(n)), " ")+" >>/shared/logs/"+n.short()+".log 2>&1")
	return err
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}

func (n *Node) short() string { return n.Name[len(n.c.Prefix)+1:] }

// Short is the node's name without the cluster prefix (s1, h2, …): its
// Consul node name.
func (n *Node) Short() string { return n.short() }

// HTTPAddr is the node's agent HTTP address as seen from the test process.
func (n *Node) HTTPAddr() string { return n.IP + ":8500" }

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

// Close removes every container, the network and the image, and prints the
// agents' logs of a failed test.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	if c.t.Failed() {
		logs, _ := filepath.Glob(filepath.Join(c.Shared, "logs", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			c.t.Logf("--- tail of %s ---\n%s", filepath.Base(l), b)
		}
	}
	ids, _ := c.dockerOut("ps", "-aq", "--filter", "label=berth.cluster="+c.Prefix)
	if ids != "" {
		_, _ = c.dockerOut(append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...)
	}
	_, _ = c.dockerOut("network", "rm", c.Net)
	_, _ = c.dockerOut("rmi", "-f", c.Image)
}

// ---- state ----

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
	alive := map[string]bool{}
	for _, m := range members {
		alive[m.Name] = m.Status == 1
	}
	for _, n := range append(append([]*Node{}, c.Servers...), c.Hosts...) {
		if !alive[n.short()] {
			return fmt.Errorf("%s is not an alive member", n.short())
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

// WaitHealthy waits until the cluster has a leader, 3 voters and every node
// alive.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = c.healthy(); err == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("after %s: %w", timeout, err)
}

// ---- fault verbs ----

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
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			if s == skip {
				continue
			}
			var addr string
			if httpGet(s.HTTPAddr(), "/v1/status/leader", &addr) == nil && addr != "" {
				for _, n := range c.Servers {
					if n != skip && strings.HasPrefix(addr, n.IP+":") {
						return n, nil
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("no new leader within %s", timeout)
}

// RestartServer starts a killed server's container again, with its data.
// FreezeLeader freezes the Raft leader's container (docker pause): its
// connections get neither answers nor resets until Unpause.
func (c *Cluster) FreezeLeader() (*Node, error) {
	l, err := c.Leader()
	if err != nil {
		return nil, err
	}
	return l, c.Pause(l)
}

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

// ---- running programs on hosts ----

// Proc is a command running on a host through docker exec.
type Proc struct {
	Host   *Node
	Args   []string
	cmd    *exec.Cmd
	stderr bytes.Buffer
	stdout bytes.Buffer
	done   chan struct{}
	code   int
	err    error
}

// Start runs args on host h (its agent is at 127.0.0.1:8500 there).
func (c *Cluster) Start(h *Node, args ...string) (*Proc, error) {
	p := &Proc{Host: h, Args: args, done: make(chan struct{})}
	p.cmd = exec.Command(c.docker, append([]string{"exec", h.Name}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		default:
			p.err = err
		}
		close(p.done)
	}()
	return p, nil
}

// Wait waits for the command up to timeout and returns its exit code.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.code, p.err
	case <-time.After(timeout):
		return -1, fmt.Errorf("%v on %s still running after %s", p.Args, p.Host.short(), timeout)
	}
}

// Done is closed when the command has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stderr is what the command wrote to its standard error so far (complete
// once Done is closed).
func (p *Proc) Stderr() string {
	select {
	case <-p.done:
		return p.stderr.String()
	default:
		return "(still running)"
	}
}

// Stdout is what the command wrote to its standard output; it waits up to
// timeout for the command to end.
func (p *Proc) Stdout(timeout time.Duration) (string, error) {
	if _, err := p.Wait(timeout); err != nil {
		return "", err
	}
	return p.stdout.String(), nil
}

// TickDir is the host folder where tick children write (/shared/ticks in the
// containers).
func (c *Cluster) TickDir() string { return filepath.Join(c.Shared, "ticks") }

// Ticks reads and analyses the tick files of the given labels (all when
// none) for a lock allowing limit holders.
func (c *Cluster) Ticks(limit int, labels ...string) (Report, error) {
	lines, err := ReadLines(c.TickDir())
	if err != nil {
		return Report{}, err
	}
	if len(labels) > 0 {
		keep := map[string]bool{}
		for _, l := range labels {
			keep[l] = true
		}
		var sel []Line
		for _, l := range lines {
			if keep[l.Label] {
				sel = append(sel, l)
			}
		}
		lines = sel
	}
	return Analyse(lines, limit), nil
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

// Exec runs args on host h and returns its standard output (docker exec;
// bounded by 3 minutes).
func (c *Cluster) Exec(h *Node, args ...string) (string, error) {
	return c.dockerOut(append([]string{"exec", h.Name}, args...)...)
}

// Get decodes the JSON answer of a node's agent to GET path.
func (n *Node) Get(path string, out any) error { return httpGet(n.HTTPAddr(), path, out) }

// FirstTick waits until label's first line is written and returns its time.
func (c *Cluster) FirstTick(label string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		lines, err := ReadLines(c.TickDir())
		if err != nil {
			return time.Time{}, err
		}
		for _, l := range lines {
			if l.Label == label {
				return time.Unix(0, l.At), nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("%s never started within %s", label, timeout)
}

// MarkedFailed reports whether any server logged host h's node as failed
// (serfHealth critical, which invalidates its sessions) at or after since:
// gossip on a loaded machine can do that to a host nobody cut off.
func (c *Cluster) MarkedFailed(h *Node, since time.Time) bool {
	for _, s := range c.Servers {
		b, err := os.ReadFile(filepath.Join(c.Shared, "logs", s.short()+".log"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "member failed, marking health critical: member="+h.short()+" ") {
				continue
			}
			ts, err := time.Parse(time.RFC3339Nano, strings.Fields(line)[0])
			if err == nil && !ts.Before(since.Add(-time.Second)) {
				return true
			}
		}
	}
	return false
}

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
