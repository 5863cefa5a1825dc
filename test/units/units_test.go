// Package units checks the systemd units in examples/ with
// `systemd-analyze verify`, with berth's binaries at the paths they name.
package units

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSystemdUnitsVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the programs: not in the -short tier")
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("systemd-analyze needed (CI=true; Debian package systemd): %v", err)
		}
		t.Skipf("needs systemd-analyze: %v", err)
	}
	root, _ := filepath.Abs("../..")
	units, _ := filepath.Glob(filepath.Join(root, "examples", "*", "*.service"))
	timers, _ := filepath.Glob(filepath.Join(root, "examples", "*", "*.timer"))
	units = append(units, timers...)
	if len(units) < 6 {
		t.Fatalf("found only %d units in examples/: %v", len(units), units)
	}
	bin := t.TempDir()
	for _, p := range []string{"registrator", "templater", "envexec", "lockrun", "dnsforward"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, p), "./"+p)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", p, err, out)
		}
	}
	// The examples' own programs (the app, the report) stand in as true.
	for _, p := range []string{"app", "report"} {
		if err := os.Symlink("/bin/true", filepath.Join(bin, p)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	var names []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/local/bin/", bin+"/")
		name := filepath.Base(u)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, "./"+name)
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, names...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	// systemd-analyze exits 0 on unknown keys and bad values: any word it
	// says is a finding.
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify %v: %v\n%s", names, err, out)
	}
	t.Logf("verified %d units: %v", len(names), names)
}
