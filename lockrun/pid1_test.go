package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/proctest"
)

// requireDocker returns the docker CLI path; Docker not usable is handled by
// proctest.Need (fails with CI=true, skips otherwise).
func requireDocker(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Docker daemon: not in the -short tier")
	}
	docker, err := exec.LookPath("docker")
	if err == nil {
		err = exec.Command(docker, "info").Run()
	}
	proctest.Need(t, "a Docker daemon", err)
	return docker
}

// lockrun as PID 1 in a FROM-scratch container (Debian's static busybox as
// the only other binary): orphans of the child are reaped, not left as
// zombies, and the child's exit code comes through.
func TestPID1ReapsOrphans(t *testing.T) {
	a := consultest.Require(t, agent)
	docker := requireDocker(t)
	busybox := "/bin/busybox"
	_, err := os.Stat(busybox)
	proctest.Need(t, "/bin/busybox (Debian package busybox-static)", err)
	ctx := t.TempDir()
	static := filepath.Join(ctx, "lockrun")
	build := exec.Command("go", "build", "-o", static, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	df := "FROM scratch\nCOPY lockrun /lockrun\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/lockrun\"]\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	image := "berth-test-lockrun-pid1:latest"
	if out, err := exec.Command(docker, "build", "-q", "-t", image, ctx).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", image).Run() })

	// Ten grandchildren orphaned at once (their parent shells exit at once),
	// then the child waits and counts zombies still in the process table.
	script := `for i in 1 2 3 4 5 6 7 8 9 10; do /bin/busybox sh -c '/bin/busybox sleep 0.2 &'; done; ` +
		`/bin/busybox sleep 1.5; ` +
		`echo "zombies: $(/bin/busybox cat /proc/[0-9]*/stat 2>/dev/null | /bin/busybox grep -c ') Z ')"; exit 5`
	name := fmt.Sprintf("berth-test-pid1-%d", os.Getpid())
	cmd := exec.Command(docker, "run", "--rm", "--name", name, "--network", "host",
		"-e", "CONSUL_HTTP_ADDR="+a.HTTPAddr(), image,
		"-exact-exit-code", "test/pid1", "/bin/busybox", "sh", "-c", script)
	t.Cleanup(func() { exec.Command(docker, "rm", "-f", name).Run() })
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 5 {
		t.Fatalf("container exit %v, want the child's 5\n%s", err, out)
	}
	if !strings.Contains(string(out), "zombies: 0") {
		t.Fatalf("orphans left as zombies under lockrun as PID 1:\n%s", out)
	}
}
