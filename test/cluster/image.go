package cluster

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berth/berth/pkg/consultest"
)

// The image: one FROM scratch image holding the pinned static Consul,
// berth's programs built static, Debian's static busybox and its applets.

// imageBinaries finds the static binaries the image is built from besides
// berth's: the pinned Consul and Debian's static busybox; missing, they fail
// or skip the test (need).
func imageBinaries(t testing.TB) (consul, busybox string) {
	t.Helper()
	consul, err := consultest.Binary()
	if err != nil {
		need(t, "the pinned Consul (make consul)", err)
	}
	busybox = "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		need(t, "/bin/busybox (Debian package busybox-static)", err)
	}
	return consul, busybox
}

// need fails the test when a prerequisite is missing under CI=true, and
// skips it otherwise.
func need(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("the cluster harness needs %s (CI=true): %v", what, err)
	}
	t.Skipf("the cluster harness needs %s: %v", what, err)
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
