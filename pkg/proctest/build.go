package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Build is the program of the package under test, built with go build the
// first time it is asked for. The zero value builds with no extra flags.
// Tests of one package share one Build (a package variable), and TestMain
// removes it after the run.
type Build struct {
	// Flags are extra go build flags (e.g. -race), read at the build.
	Flags []string
	// Env is the build's extra environment (e.g. CGO_ENABLED=0).
	Env []string

	once sync.Once
	dir  string
	path string
	err  error
}

// Path returns the program, building it on first use: go build -o
// TEMPDIR/NAME . in the working directory, which go test sets to the
// package's folder; NAME is that folder's name. A failed build fails t
// (and every later Path).
func (b *Build) Path(t testing.TB) string {
	t.Helper()
	p, err := b.Make()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Make is Path for TestMain (no t): it returns the program or why it could
// not be built.
func (b *Build) Make() (string, error) {
	b.once.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			b.err = err
			return
		}
		name := filepath.Base(wd)
		if b.dir, b.err = os.MkdirTemp("", name+"-test-bin"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, name)
		args := append(append([]string{"build", "-o", b.path}, b.Flags...), ".")
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), b.Env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	return b.path, b.err
}

// Remove deletes what Make built (nothing when it never ran).
func (b *Build) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}
