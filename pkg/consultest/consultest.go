// Package consultest starts a real Consul agent for tests, the demo and the
// benchmarks: a dev-mode agent on free loopback ports.
//
// The binary is $CONSUL_BIN if set, else the pinned build made by
// `make consul` (see BuiltPath), else `consul` on PATH.
package consultest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulVersion returns the pinned Consul release: the version of
// github.com/hashicorp/consul required by tools/consul/go.mod (its one
// place), found from the working directory upwards; "unknown" outside the
// repository (then set CONSUL_BIN).
func ConsulVersion() string {
	dir, err := os.Getwd()
	for err == nil {
		b, rerr := os.ReadFile(filepath.Join(dir, "tools", "consul", "go.mod"))
		if rerr == nil {
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) >= 2 && f[0] == "github.com/hashicorp/consul" && strings.HasPrefix(f[1], "v") {
					return f[1]
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "unknown"
}

// BuiltPath is where `make consul` puts the pinned build:
// $(go env GOPATH)/berth-tools/consul-<version>/consul.
func BuiltPath() string {
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	gopath = filepath.SplitList(gopath)[0]
	return filepath.Join(gopath, "berth-tools", "consul-"+ConsulVersion(), "consul")
}

// Binary finds the consul binary to run.
func Binary() (string, error) {
	if p := os.Getenv("CONSUL_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CONSUL_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	if p := BuiltPath(); fileExists(p) {
		return p, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no consul binary: set CONSUL_BIN, run `make consul` (builds %s into %s), or put consul on PATH", ConsulVersion(), BuiltPath())
}

func fileExists(p string) bool { st, err := os.Stat(p); return err == nil && !st.IsDir() }

// Options tune the agent.
type Options struct {
	// NodeName defaults to "berth-test".
	NodeName string
	// Datacenter defaults to "dc1".
	Datacenter string
	// ExtraHCL is appended to the agent's configuration.
	ExtraHCL string
	// ACLToken, when set, enables ACLs with default policy deny and this
	// token as the initial management (and agent) token.
	ACLToken string
	// TLS, when set, also serves the HTTP API over HTTPS (HTTPSPort) with a
	// throw-away CA (Agent.TLS).
	TLS bool
	// Log receives the agent's output; nil discards it.
	Log *os.File
}

// Agent is a running dev-mode Consul agent.
type Agent struct {
	Bin        string
	NodeName   string
	Datacenter string
	HTTPPort   int
	HTTPSPort  int
	DNSPort    int
	// TLS holds the CA and server certificate when Options.TLS was set.
	TLS   *TLSFiles
	ports map[string]int
	opts  Options
	dir   string
	// unavailable says why no agent could be started (tests then skip).
	unavailable string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// HTTPAddr is host:port of the HTTP API.
func (a *Agent) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(a.HTTPPort) }

// DNSAddr is host:port of the agent's DNS interface.
func (a *Agent) DNSAddr() string { return "127.0.0.1:" + strconv.Itoa(a.DNSPort) }

// Config returns a client configuration for this agent.
func (a *Agent) Config() *api.Config {
	cfg := api.DefaultConfig()
	cfg.Address = a.HTTPAddr()
	cfg.Scheme = "http"
	cfg.Token = a.opts.ACLToken
	cfg.TokenFile = ""
	return cfg
}

// Client returns an API client for this agent.
func (a *Agent) Client() *api.Client {
	c, err := api.NewClient(a.Config())
	if err != nil {
		panic(err) // only fails on bad TLS config, which Config never sets
	}
	return c
}

// Env is the environment a program needs to reach this agent.
func (a *Agent) Env() []string {
	return []string{"CONSUL_HTTP_ADDR=" + a.HTTPAddr(), "CONSUL_HTTP_TOKEN=" + a.opts.ACLToken, "CONSUL_HTTP_TOKEN_FILE=",
		"CONSUL_CACERT=", "CONSUL_CLIENT_CERT=", "CONSUL_CLIENT_KEY=", "CONSUL_HTTP_SSL=", "CONSUL_TLS_SERVER_NAME="}
}

// Start starts an agent and waits until it has a leader and its own node is
// in the catalog.
func Start(opts Options) (*Agent, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if opts.NodeName == "" {
		opts.NodeName = "berth-test"
	}
	if opts.Datacenter == "" {
		opts.Datacenter = "dc1"
	}
	dir, err := os.MkdirTemp("", "berth-consul-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := freePorts("http", "https", "dns", "server", "serf_lan", "serf_wan", "grpc")
		if err != nil {
			return nil, err
		}
		a := &Agent{Bin: bin, NodeName: opts.NodeName, Datacenter: opts.Datacenter,
			HTTPPort: ports["http"], DNSPort: ports["dns"], ports: ports, opts: opts, dir: dir}
		a.HTTPSPort = -1
		if opts.TLS {
			a.HTTPSPort = ports["https"]
			if a.TLS, err = MakeTLS(dir, opts.Datacenter); err != nil {
				return nil, err
			}
		}
		if lastErr = a.start(); lastErr == nil {
			return a, nil
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// configFile writes the agent's configuration file and returns its path.
func (a *Agent) configFile() (string, error) {
	hcl := fmt.Sprintf(`
node_name = %q
datacenter = %q
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
advertise_addr = "127.0.0.1"
ports {
  http = %d
  dns = %d
  server = %d
  serf_lan = %d
  serf_wan = %d
  grpc = %d
  grpc_tls = -1
  https = %d
}
log_level = "warn"
disable_update_check = true
%s
`, a.NodeName, a.Datacenter, a.ports["http"], a.ports["dns"], a.ports["server"], a.ports["serf_lan"], a.ports["serf_wan"], a.ports["grpc"], a.HTTPSPort, a.extraHCL())
	cfgFile := filepath.Join(a.dir, "agent.hcl")
	return cfgFile, os.WriteFile(cfgFile, []byte(hcl), 0o600)
}

// Reload makes extraHCL the agent's Options.ExtraHCL, rewrites its
// configuration file and has the running agent reload it (PUT
// /v1/agent/reload, what `consul reload` does). Only settings Consul
// reloads take effect (dns_config among them).
func (a *Agent) Reload(extraHCL string) error {
	a.opts.ExtraHCL = extraHCL
	if _, err := a.configFile(); err != nil {
		return err
	}
	return a.Client().Agent().Reload()
}

func (a *Agent) start() error {
	cfgFile, err := a.configFile()
	if err != nil {
		return err
	}
	cmd := exec.Command(a.Bin, "agent", "-dev", "-config-file", cfgFile)
	logPath := filepath.Join(a.dir, "agent.log")
	if a.opts.Log != nil {
		cmd.Stdout, cmd.Stderr = a.opts.Log, a.opts.Log
	} else if lf, err := os.Create(logPath); err == nil {
		defer lf.Close()
		cmd.Stdout, cmd.Stderr = lf, lf
	}
	// Own process group, so a test interrupted by Ctrl-C stops the agent via Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start consul agent %s: %w", a.Bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	a.mu.Lock()
	a.cmd = cmd
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.waitReady(ctx, exited); err != nil {
		_ = cmd.Process.Kill()
		if b, rerr := os.ReadFile(logPath); rerr == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "[ERROR]") || strings.Contains(l, "==> ") && strings.Contains(strings.ToLower(l), "error") {
					err = fmt.Errorf("%w: %s", err, strings.TrimSpace(l))
					break
				}
			}
		}
		return err
	}
	go func() { <-exited }()
	return nil
}

func (a *Agent) extraHCL() string {
	h := a.opts.ExtraHCL
	if a.opts.ACLToken != "" {
		h += fmt.Sprintf(`
acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = false
  tokens {
    initial_management = %q
    agent = %q
  }
}
`, a.opts.ACLToken, a.opts.ACLToken)
	}
	if a.TLS != nil {
		h += fmt.Sprintf(`
tls {
  defaults {
    ca_file = %q
    cert_file = %q
    key_file = %q
    verify_incoming = false
    verify_outgoing = false
  }
}
`, a.TLS.CAFile, a.TLS.CertFile, a.TLS.KeyFile)
	}
	return h
}

// HTTPSAddr is host:port of the HTTPS API (Options.TLS).
func (a *Agent) HTTPSAddr() string { return "127.0.0.1:" + strconv.Itoa(a.HTTPSPort) }

func (a *Agent) waitReady(ctx context.Context, exited chan error) error {
	c := a.Client()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("consul agent exited while starting: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("consul agent on %s: no leader within 60s", a.HTTPAddr())
		case <-time.After(50 * time.Millisecond):
		}
		leader, err := c.Status().Leader()
		if err != nil || leader == "" {
			continue
		}
		node, _, err := c.Catalog().Node(a.NodeName, nil)
		if err != nil || node == nil {
			continue
		}
		return nil
	}
}

// Stop stops the agent (SIGINT, then SIGKILL after 10s). A dev agent loses
// its data.
func (a *Agent) Stop() {
	a.mu.Lock()
	cmd := a.cmd
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(cmd.Process.Pid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
}

// Restart stops the agent and starts it again on the same ports.
func (a *Agent) Restart() error {
	a.Stop()
	var err error
	for i := 0; i < 20; i++ {
		if err = a.start(); err == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return err
}

// Pause freezes the agent (SIGSTOP): it stops answering without closing
// connections, as a hung or partitioned server would.
func (a *Agent) Pause() error { return a.sig(syscall.SIGSTOP) }

// Resume undoes Pause.
func (a *Agent) Resume() error { return a.sig(syscall.SIGCONT) }

func (a *Agent) sig(s syscall.Signal) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return errors.New("consul agent not running")
	}
	return a.cmd.Process.Signal(s)
}

// Close stops the agent and removes its files.
func (a *Agent) Close() {
	a.Stop()
	os.RemoveAll(a.dir)
}

// FreePort returns a loopback port that is free for both TCP and UDP.
func FreePort() (int, error) {
	m, err := freePorts("p")
	if err != nil {
		return 0, err
	}
	return m["p"], nil
}

func freePorts(names ...string) (map[string]int, error) {
	out := map[string]int{}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, n := range names {
		// Each port must be free for both TCP and UDP (DNS, serf).
		for {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			port := l.Addr().(*net.TCPAddr).Port
			u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				l.Close()
				continue
			}
			u.Close()
			ls = append(ls, l)
			out[n] = port
			break
		}
	}
	return out, nil
}

// Main runs a test package's tests against one shared agent, stored in
// *agent. Use it from TestMain: os.Exit(consultest.Main(m, &agent)).
// Without a consul binary it fails when CI=true and otherwise lets the tests
// run with an unavailable agent, so that Require skips them with a message.
// An agent that fails to start always fails the run.
//
// With -short (the fast tier: `go test -short ./...`) no agent starts and
// every test that needs one skips.
func Main(m *testing.M, agent **Agent) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() {
		*agent = &Agent{unavailable: "-short: no Consul agent in the fast tier"}
		return m.Run()
	}
	if _, err := Binary(); err != nil && os.Getenv("CI") != "true" {
		fmt.Fprintf(os.Stderr, "consultest: tests that need Consul will skip: %v\n", err)
		*agent = &Agent{unavailable: err.Error()}
		return m.Run()
	}
	a, err := Start(Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: consul agent: %v\n", err)
		return 1
	}
	*agent = a
	code := m.Run()
	a.Close()
	return code
}

// Require skips t when the agent could not be started (never with CI=true,
// where Main has already failed).
func Require(t testing.TB, a *Agent) *Agent {
	t.Helper()
	if a == nil {
		t.Fatal("consultest.Require: no agent; call consultest.Main from TestMain")
	}
	if a.unavailable != "" {
		t.Skipf("needs a Consul agent: %s", a.unavailable)
	}
	return a
}

// StartT starts an agent of the test's own (for tests that restart or stop it)
// and closes it at the end of the test.
func StartT(t testing.TB, opts Options) *Agent {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Consul agent: not in the -short tier")
	}
	if _, err := Binary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("consul agent needed (CI=true): %v", err)
		}
		t.Skipf("needs a consul binary: %v", err)
	}
	a, err := Start(opts)
	if err != nil {
		t.Fatalf("start consul agent: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}
