package proctest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/berth/berth/pkg/consultest"
)

// FreeAddr returns "127.0.0.1:PORT" with a port that was free for both TCP
// and UDP a moment ago, for a program under test to listen on (or, never
// listened on, for an address that refuses connections). No free port
// fails t.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := consultest.FreePort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// Need handles a missing requirement of a test: when err is not nil, it
// fails t if the environment has CI=true (CI installs every tool, so a
// missing one is a broken set-up) and skips t otherwise. what names what is
// needed and where it comes from, e.g. "dig (Debian package bind9-dnsutils)".
func Need(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s needed (CI=true): %v", what, err)
	}
	t.Skipf("needs %s: %v", what, err)
}

// Tool returns the path of the program name found on PATH; a missing one is
// handled by Need, with from (e.g. "Debian package bind9-dnsutils"; may be
// empty) saying where it comes from.
func Tool(t testing.TB, name, from string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	what := name
	if from != "" {
		what += " (" + from + ")"
	}
	Need(t, what, err)
	return p
}

// WriteFile writes content to path (mode 0644), creating its folder (0755):
// a file the program under test reads, such as a template or a
// configuration. An error fails t.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
