package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/proctest"
)

// TestReapsAsPID1 runs envexec as PID 1 of a new PID namespace (unshare, as
// root) with a command that leaves an orphan behind; the orphan must not
// stay a zombie.
func TestReapsAsPID1(t *testing.T) {
	a := consultest.Require(t, agent)
	unshare := proctest.Tool(t, "unshare", "")
	if out, err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		proctest.Need(t, "a PID namespace (run as root)", fmt.Errorf("%v %s", err, out))
	}
	n := ns(t)
	put(t, c(a), n+"/V", "1")
	self, _ := os.Executable()
	// The command starts a subshell that backgrounds a short sleep and exits
	// at once: the sleep is reparented to PID 1 (envexec) and exits later.
	// Then it counts zombies in the namespace.
	script := `( sleep 0.2 & ) ; sleep 1; z=0; for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null || continue; case "${l##*) }" in Z*) z=$((z+1));; esac; done; echo "pid1=$(cat /proc/1/comm) zombies=$z"`
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", self, "__envexec", "-http-addr", a.HTTPAddr(), "-prefix", n, "-once", "--", "/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_TOKEN=", "CONSUL_HTTP_TOKEN_FILE=")
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "zombies=0") {
		t.Errorf("orphan left as a zombie under envexec as PID 1:\n%s", out)
	}
}
