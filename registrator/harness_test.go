package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

// Test fixtures shared by the package's tests, set up once in TestMain.
var (
	agent *consultest.Agent
	// dockerSkip says why Docker tests cannot run ("" when they can).
	dockerSkip string
	// binPath is the registrator binary built for the CLI tests.
	binPath string
)

// Every Docker object a run creates is its own: names and image tags carry
// runID, so two runs of this package (two worktrees, CI) on one daemon
// never touch each other's containers, and each test's registrator sees only
// the containers that test started (labelled caseLabelKey=caseLabel(t), the
// label the test passes as -only-label).
var (
	runID           = newRunID()
	testImage       = "berth-test-registrator:" + runID
	testImageHealth = "berth-test-registrator:health-" + runID
	// testImageExpose has EXPOSE 9090 (the only way to expose a port of a
	// container that shares another's network).
	testImageExpose = "berth-test-registrator:expose-" + runID
)

const (
	// caseLabelKey marks each test container with the test that owns it.
	caseLabelKey = "berth-test-case"
	// runLabelKey marks every Docker object of one package run.
	runLabelKey = "berth-test-run"
)

func newRunID() string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// cn is the Docker name of the test container (or network) called name in
// this run: berth-test-<runID>-<name>.
func cn(name string) string { return "berth-test-" + runID + "-" + name }

// caseLabel is the value of caseLabelKey on the containers test t starts.
func caseLabel(t *testing.T) string { return runID + "-" + hostFor(t) }

// onlyLabel is the -only-label value that limits a registrator to t's containers.
func onlyLabel(t *testing.T) string { return caseLabelKey + "=" + caseLabel(t) }

// labelArgs are the docker run/create options that mark a container as t's.
func labelArgs(t *testing.T) []string {
	return []string{"--label", caseLabelKey + "=" + caseLabel(t), "--label", runLabelKey + "=" + runID}
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		// The fast tier: unit tests only; requireDocker skips the rest.
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "berth-test-registrator-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setupDocker(dir); err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "FAIL: Docker needed (CI=true): %v\n", err)
			return 1
		}
		dockerSkip = err.Error()
		fmt.Fprintf(os.Stderr, "registrator tests that need Docker will skip: %v\n", err)
	} else {
		defer func() {
			_ = exec.Command("docker", "rmi", "-f", testImage, testImageHealth, testImageExpose).Run()
		}()
		// A bystander: a container no test owns (no case label), with a
		// published port and a service name, running through the whole
		// run, as other people's containers do on a shared daemon. Tests
		// that wait for an exact set of services fail if any registrator
		// of theirs picks it up.
		bystander := cn("bystander")
		if out, err := exec.Command("docker", "run", "-d", "--name", bystander, "--label", runLabelKey+"="+runID,
			"-p", "127.0.0.1::8080", "-e", "SERVICE_NAME=berth-test-bystander", testImage, "-listen", ":8080").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: start the bystander container: %v: %s\n", err, out)
			return 1
		}
		defer func() { _ = exec.Command("docker", "rm", "-f", bystander).Run() }()
	}
	binPath = filepath.Join(dir, "registrator")
	if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build registrator: %v\n%s", err, out)
		return 1
	}
	return consultest.Main(m, &agent)
}

// setupDocker checks the daemon and builds the test images FROM scratch
// with a static Go server (nothing is pulled).
func setupDocker(dir string) error {
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.APIVersion}}").CombinedOutput(); err != nil {
		return fmt.Errorf("no Docker daemon: %v: %s", err, bytes.TrimSpace(out))
	}
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "testdata", "server")
	ctxDir := filepath.Join(dir, "image")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		return err
	}
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(ctxDir, "server"), ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build test server: %v: %s", err, out)
	}
	files := map[string]string{
		"Dockerfile":        "FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n",
		"Dockerfile.expose": "FROM scratch\nCOPY server /server\nEXPOSE 9090\nENTRYPOINT [\"/server\"]\n",
		"Dockerfile.health": "FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\nHEALTHCHECK --interval=1s --timeout=2s --retries=1 CMD [\"/server\",\"-check\"]\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(ctxDir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	for tag, df := range map[string]string{testImage: "Dockerfile", testImageHealth: "Dockerfile.health", testImageExpose: "Dockerfile.expose"} {
		if out, err := exec.Command("docker", "build", "-q", "--label", runLabelKey+"="+runID, "-t", tag, "-f", filepath.Join(ctxDir, df), ctxDir).CombinedOutput(); err != nil {
			return fmt.Errorf("docker build %s: %v: %s", tag, err, out)
		}
	}
	return nil
}

// requireDocker skips the test under -short or without Docker, and returns
// the package's agent (consultest.Require) and one client of it: each
// a.Client() opens its own connections.
func requireDocker(t *testing.T) (*consultest.Agent, *api.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Docker and Consul: skipped under -short")
	}
	if dockerSkip != "" {
		t.Skipf("needs Docker: %s", dockerSkip)
	}
	a := consultest.Require(t, agent)
	return a, a.Client()
}

// docker runs the docker CLI and returns its trimmed output.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// runC starts a container named cn(name) from the test image, labelled as
// t's, and removes it (by that run-unique name) at the end of the test. opts go before the image, cmd after.
func runC(t *testing.T, name string, opts []string, cmd ...string) string {
	t.Helper()
	return runImage(t, testImage, name, opts, cmd...)
}

func runImage(t *testing.T, image, name string, opts []string, cmd ...string) string {
	t.Helper()
	full := cn(name)
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", full).Run() })
	args := append(append([]string{"run", "-d", "--name", full}, labelArgs(t)...), opts...)
	args = append(args, image)
	args = append(args, cmd...)
	return docker(t, args...)
}

// dockerNetwork creates a Docker network cn(name), removed at the end.
func dockerNetwork(t *testing.T, name string, opts ...string) string {
	t.Helper()
	full := cn(name)
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", full).Run() })
	docker(t, append(append([]string{"network", "create"}, labelArgs(t)...), append(opts, full)...)...)
	return full
}

type testReg struct {
	*Registrator
	cfg  Config
	logs *eventually.Buffer
	stop func() error
}

// hostFor gives each test its own owner identity, so tests never see each
// other's registrations.
func hostFor(t *testing.T) string {
	return "berth-test-" + strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
}

// startReg runs a Registrator against the agent until the test ends (or
// stop is called).
func startReg(t *testing.T, a *consultest.Agent, mod func(*Config)) *testReg {
	t.Helper()
	logs := &eventually.Buffer{}
	var w io.Writer = logs
	if testing.Verbose() {
		w = io.MultiWriter(logs, os.Stderr)
	}
	cfg := Config{
		Map: mapConfig{
			Hostname:     hostFor(t),
			HostIP:       "127.0.0.1",
			NetworkLabel: "SERVICE_NETWORK",
			// Only this test's containers: the Docker daemon is shared.
			OnlyLabel:     caseLabelKey,
			OnlyValue:     caseLabel(t),
			HealthTTL:     time.Minute,
			LivenessDereg: time.Minute,
		},
		Consul: a.Client(),
		Log:    slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	cfg.Metrics = newMetrics()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := proctest.Go(t, "registrator", r.Run).Stop
	tr := &testReg{Registrator: r, cfg: cfg, logs: logs, stop: stop}
	t.Cleanup(func() {
		if t.Failed() && !testing.Verbose() {
			t.Logf("registrator log:\n%s", logs.String())
		}
	})
	return tr
}

// owned returns the agent's services owned by host.
func ownedServices(t *testing.T, c *api.Client, host string) map[string]*api.AgentService {
	t.Helper()
	all, err := c.Agent().Services()
	if err != nil {
		t.Fatalf("agent services: %v", err)
	}
	out := map[string]*api.AgentService{}
	for id, s := range all {
		if s.Meta[metaSource] == metaSourceValue && s.Meta[metaHost] == host {
			out[id] = s
		}
	}
	return out
}

func ids(m map[string]*api.AgentService) []string {
	out := make([]string, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// waitIDs waits until the services owned by host are exactly want.
func waitIDs(t *testing.T, c *api.Client, host string, timeout time.Duration, want ...string) map[string]*api.AgentService {
	t.Helper()
	sort.Strings(want)
	var got map[string]*api.AgentService
	eventually.Holds(t, timeout, fmt.Sprintf("owned services = %v", want), func() (bool, string) {
		got = ownedServices(t, c, host)
		g := ids(got)
		return strings.Join(g, ",") == strings.Join(want, ","), fmt.Sprint(g)
	})
	return got
}

// hostPort reads the host port Docker published for a container port.
func hostPort(t *testing.T, name, port string) string {
	t.Helper()
	out := docker(t, "port", cn(name), port)
	line := strings.Split(out, "\n")[0]
	_, p, err := net.SplitHostPort(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("docker port %s %s: %q: %v", name, port, out, err)
	}
	return p
}

// passing lists the IDs of the service's instances that pass all checks.
func passing(t *testing.T, c *api.Client, name string) []string {
	t.Helper()
	entries, _, err := c.Health().Service(name, "", true, nil)
	if err != nil {
		t.Fatalf("health service %s: %v", name, err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Service.ID)
	}
	sort.Strings(out)
	return out
}

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

// mustTags parses a -tags value as main does.
func mustTags(t *testing.T, s string) *template.Template {
	t.Helper()
	o, err := parse([]string{"-tags", s}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return o.cfg.Map.Tags
}
