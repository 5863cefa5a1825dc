package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

// backends starts n HTTP servers on loopback answering with their name.
func backends(t *testing.T, n int) ([]string, []int) {
	t.Helper()
	var names []string
	var ports []int
	for i := 1; i <= n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("backend-%d", i)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		names = append(names, name)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return names, ports
}

// hits makes n requests, each on a new connection, and counts answers per body.
func hits(addr string, n int) (map[string]int, error) {
	cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	out := map[string]int{}
	for i := 0; i < n; i++ {
		resp, err := cl.Get("http://" + addr + "/")
		if err != nil {
			return out, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return out, fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		out[string(b)]++
	}
	return out, nil
}

type proxyCase struct {
	kind     string // nginx | haproxy
	tmpl     string // example template
	badKey   string // KV key whose bad value makes the config invalid
	goodVal  string
	badVal   string
	check    func(dir string) string
	reload   func(dir string) string
	run      func(dir, conf string) *exec.Cmd
	listenEV string
}

func TestNginxEndToEnd(t *testing.T) {
	proctest.Tool(t, "nginx", "")
	proxyEndToEnd(t, proxyCase{
		kind: "nginx", tmpl: "../examples/nginx/nginx.conf.ctmpl", badKey: "max_fails", goodVal: "2", badVal: "not-a-number",
		check: func(dir string) string {
			return fmt.Sprintf("nginx -t -q -p %s -e %s/error.log -c {{path}}", dir, dir)
		},
		reload: func(dir string) string {
			return fmt.Sprintf("if [ -s %[1]s/nginx.pid ]; then kill -HUP $(cat %[1]s/nginx.pid); fi", dir)
		},
		run: func(dir, conf string) *exec.Cmd {
			return exec.Command("nginx", "-p", dir, "-e", dir+"/error.log", "-c", conf, "-g", "daemon off;")
		},
		listenEV: "NGINX_LISTEN",
	})
}

func TestHAProxyEndToEnd(t *testing.T) {
	proctest.Tool(t, "haproxy", "")
	proxyEndToEnd(t, proxyCase{
		kind: "haproxy", tmpl: "../examples/haproxy/haproxy.cfg.ctmpl", badKey: "weight", goodVal: "20", badVal: "9999", // haproxy accepts 0..256
		check: func(string) string { return "haproxy -c -q -f {{path}}" },
		reload: func(dir string) string {
			return fmt.Sprintf("if [ -s %[1]s/haproxy.pid ]; then kill -USR2 $(cat %[1]s/haproxy.pid); fi", dir)
		},
		run: func(dir, conf string) *exec.Cmd {
			return exec.Command("haproxy", "-W", "-db", "-q", "-p", dir+"/haproxy.pid", "-f", conf)
		},
		listenEV: "HAPROXY_LISTEN",
	})
}

func proxyEndToEnd(t *testing.T, pc proxyCase) {
	c := seed(t)
	svc := "e2e-" + pc.kind
	names, ports := backends(t, 3)
	for i := range names {
		reg := &api.AgentServiceRegistration{ID: names[i] + "-" + pc.kind, Name: svc, Address: "127.0.0.1", Port: ports[i]}
		if err := c.Agent().ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
		id := reg.ID
		t.Cleanup(func() { c.Agent().ServiceDeregister(id) })
	}
	kvKey := fmt.Sprintf("config/%s/%s", svc, pc.badKey)
	put(t, c, kvKey, pc.goodVal)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o777)
	conf := filepath.Join(dir, pc.kind+".conf")
	src, _ := filepath.Abs(pc.tmpl)
	listen := proctest.FreeAddr(t)
	hcl := fmt.Sprintf(`template {
  source          = %q
  destination     = %q
  check           = %q
  command         = %q
  command_timeout = "10s"
}
`, src, conf, pc.check(dir), pc.reload(dir))
	cfg := filepath.Join(dir, "templater.hcl")
	os.WriteFile(cfg, []byte(hcl), 0o644)
	t.Setenv("SERVICE", svc)
	t.Setenv(pc.listenEV, listen)
	p := start(t, agent.HTTPAddr(), "-config", cfg)
	eventually.True(t, 15*time.Second, "first render", func() bool {
		s := readFile(conf)
		return strings.Count(s, "127.0.0.1:") >= 4
	})

	srv := pc.run(dir, conf)
	srv.Stdout, srv.Stderr = p.Stdout, p.Stdout
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan struct{})
	go func() { srv.Wait(); close(srvDone) }()
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-srvDone:
		case <-time.After(5 * time.Second):
			srv.Process.Kill()
			<-srvDone
		}
	})
	eventually.True(t, 15*time.Second, pc.kind+" serving", func() bool { _, err := hits(listen, 1); return err == nil })
	seen, err := hits(listen, 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if seen[n] == 0 {
			t.Fatalf("%s never reached through %s: %v", n, pc.kind, seen)
		}
	}

	// deregister one: it receives no more traffic
	gone := names[2]
	if err := c.Agent().ServiceDeregister(gone + "-" + pc.kind); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 15*time.Second, "re-render without "+gone, func() bool {
		return !strings.Contains(readFile(conf), fmt.Sprintf(":%d ", ports[2]))
	})
	// Right after a reload the old workers accept for a moment beside the
	// new ones: wait until two batches in a row avoid the removed backend.
	clean := 0
	eventually.True(t, 15*time.Second, "reload without "+gone, func() bool {
		s, err := hits(listen, 30)
		if err == nil && s[gone] == 0 {
			clean++
		} else {
			clean = 0
		}
		return clean >= 2
	})
	seen, err = hits(listen, 30)
	if err != nil {
		t.Fatal(err)
	}
	if seen[gone] != 0 || seen[names[0]] == 0 || seen[names[1]] == 0 {
		t.Fatalf("after deregistering %s: %v", gone, seen)
	}

	// a bad KV value makes the config invalid: the check fails, the live file
	// stays, no reload, and the proxy keeps serving
	before := readFile(conf)
	reloadsBefore := p.metric("berth_templater_commands_total")
	put(t, c, kvKey, pc.badVal)
	eventually.True(t, 15*time.Second, "check failure counted", func() bool {
		return p.metric("berth_templater_check_failures_total") >= 1
	})
	if readFile(conf) != before {
		t.Fatal("the live file changed although the check failed")
	}
	if !strings.Contains(p.Stdout.String(), "check rejected the new file") {
		t.Fatal("check failure not logged")
	}
	if got := p.metric("berth_templater_commands_total"); got != reloadsBefore {
		t.Fatalf("a reload ran after a failed check (%v -> %v)", reloadsBefore, got)
	}
	if s, err := hits(listen, 10); err != nil || s[names[0]]+s[names[1]] != 10 {
		t.Fatalf("%s stopped serving with the old config: %v %v", pc.kind, s, err)
	}
	select {
	case <-srvDone:
		t.Fatalf("%s exited", pc.kind)
	default:
	}

	// the next change tries again
	put(t, c, kvKey, pc.goodVal+"1")
	eventually.True(t, 15*time.Second, "render after the fix", func() bool { return strings.Contains(readFile(conf), pc.goodVal+"1") })
}
