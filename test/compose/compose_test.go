// Package compose brings up examples/host/compose with Debian's
// docker-compose and checks the whole host works: registrator registers the
// two web containers, templater renders nginx's upstream, dnsforward answers
// their name, and stopping one removes it from all three.
package compose

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
)

// long bounds every wait: it fails a stuck test and measures nothing.
const long = 3 * time.Minute

func need(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs %s (CI=true): %v", what, err)
	}
	t.Skipf("needs %s: %v", what, err)
}

// freePort is a loopback port free for TCP and UDP (the DNS port is
// published for both).
func freePort(t *testing.T) int {
	t.Helper()
	port, err := consultest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func TestHostCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images and runs Compose: not in the -short tier")
	}
	for _, tool := range []string{"docker", "docker-compose", "dig", "nginx"} {
		if _, err := exec.LookPath(tool); err != nil {
			need(t, tool, err)
		}
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		need(t, "a Docker daemon", err)
	}
	root, _ := filepath.Abs("../..")
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	tag := "test-" + hex.EncodeToString(rnd[:])
	project := "berthhost" + hex.EncodeToString(rnd[:])
	base := append(os.Environ(), "CGO_ENABLED=0")

	// Images, tagged for this test only and removed at the end.
	images := []string{"registrator", "templater", "envexec", "lockrun", "dnsforward", "consul", "nginx-base", "demo-web"}
	t.Cleanup(func() {
		for _, im := range images {
			_ = exec.Command("docker", "rmi", "-f", "berth/"+im+":"+tag).Run()
		}
	})
	run(t, root, append(base, "VERSION="+tag, "NO_LATEST=1", "CONSUL_TAG="+tag), "scripts/images.sh", "registrator", "templater", "dnsforward")
	run(t, root, base, "scripts/nginx-base.sh", tag)
	webCtx := t.TempDir()
	run(t, root, base, "go", "build", "-o", filepath.Join(webCtx, "webapp"), "./examples/host/webapp")
	df, _ := os.ReadFile(filepath.Join(root, "examples/host/compose/web/Dockerfile"))
	if err := os.WriteFile(filepath.Join(webCtx, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, root, base, "docker", "build", "-q", "-t", "berth/demo-web:"+tag, webCtx)

	httpPort, dnsPort, consulPort := freePort(t), freePort(t), freePort(t)
	env := append(os.Environ(), "BERTH_TAG="+tag, "BERTH_CONSUL_TAG="+tag, "NGINX_BASE=berth/nginx-base:"+tag,
		fmt.Sprintf("HTTP_PORT=%d", httpPort), fmt.Sprintf("DNS_PORT=%d", dnsPort), fmt.Sprintf("CONSUL_PORT=%d", consulPort))
	dir := filepath.Join(root, "examples/host/compose")
	compose := func(args ...string) string {
		return run(t, dir, env, "docker-compose", append([]string{"-p", project}, args...)...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs := exec.Command("docker-compose", "-p", project, "logs", "--no-color", "--tail", "60")
			logs.Dir, logs.Env = dir, env
			out, _ := logs.CombinedOutput()
			t.Logf("compose logs:\n%s", out)
		}
		cmd := exec.Command("docker-compose", "-p", project, "down", "-v", "--rmi", "local", "--remove-orphans")
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
		// Nothing of the project is left behind.
		for _, what := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}, {"volume", "ls", "-q"}} {
			out, _ := exec.Command("docker", append(what, "--filter", "label=com.docker.compose.project="+project)...).Output()
			if strings.TrimSpace(string(out)) != "" {
				t.Errorf("left behind after down: docker %v: %s", what, out)
			}
		}
	})
	compose("up", "-d", "--build")

	webIP := map[string]string{} // container IP → its host name (the container ID prefix)
	for _, svc := range []string{"web1", "web2"} {
		id := strings.TrimSpace(compose("ps", "-q", svc))
		out := run(t, root, env, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", id)
		webIP[strings.TrimSpace(out)] = id[:12]
	}

	catalog := func() []string {
		var entries []struct{ ServiceAddress string }
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/catalog/service/web", consulPort))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&entries)
		var ips []string
		for _, e := range entries {
			ips = append(ips, e.ServiceAddress)
		}
		sort.Strings(ips)
		return ips
	}
	served := func(n int) map[string]bool {
		seen := map[string]bool{}
		for i := 0; i < n; i++ {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", httpPort))
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				seen[strings.TrimSpace(strings.TrimPrefix(string(b), "hello from "))] = true
			}
		}
		return seen
	}
	dig := func() []string {
		out, _ := exec.Command("dig", "+short", "+time=2", "+tries=1", "-p", fmt.Sprint(dnsPort), "@127.0.0.1", "web.service.consul", "A").Output()
		ips := strings.Fields(string(out))
		sort.Strings(ips)
		return ips
	}
	want := func(ips ...string) string { sort.Strings(ips); return strings.Join(ips, " ") }
	var all []string
	for ip := range webIP {
		all = append(all, ip)
	}

	eventually.Holds(t, long, "both web containers in the catalog", func() (bool, string) {
		got := catalog()
		return strings.Join(got, " ") == want(all...), fmt.Sprint(got)
	})
	eventually.Holds(t, long, "nginx serving both web containers through the rendered upstream", func() (bool, string) {
		seen := served(20)
		return len(seen) == 2 && seen[webIP[all[0]]] && seen[webIP[all[1]]], fmt.Sprint(seen)
	})
	eventually.Holds(t, long, "dnsforward answering both", func() (bool, string) {
		got := dig()
		return strings.Join(got, " ") == want(all...), fmt.Sprint(got)
	})

	// Stop web2: it leaves the catalog, the upstream and the DNS answer.
	id2 := strings.TrimSpace(compose("ps", "-q", "web2"))[:12]
	var left string
	for ip, id := range webIP {
		if id != id2 {
			left = ip
		}
	}
	compose("stop", "web2")
	eventually.Holds(t, long, "web2 gone from the catalog", func() (bool, string) {
		got := catalog()
		return strings.Join(got, " ") == left, fmt.Sprint(got)
	})
	eventually.Holds(t, long, "nginx serving only web1", func() (bool, string) {
		seen := served(10)
		return len(seen) == 1 && seen[webIP[left]], fmt.Sprint(seen)
	})
	eventually.Holds(t, long, "dnsforward answering only web1", func() (bool, string) {
		got := dig()
		return strings.Join(got, " ") == left, fmt.Sprint(got)
	})
	t.Logf("host in Compose: 2 web containers registered, served by nginx and answered by dnsforward; after stopping one: 1")
}
