package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
)

var (
	agent      *consultest.Agent
	lockrunBin proctest.Build
	lockrunB   string // the lockrun binary built for these tests
)

func TestMain(m *testing.M) {
	var err error
	if lockrunB, err = lockrunBin.Make(); err != nil {
		fmt.Fprintf(os.Stderr, "build lockrun: %v\n", err)
		os.Exit(1)
	}
	code := consultest.Main(m, &agent)
	lockrunBin.Remove()
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func env(a *consultest.Agent, extra ...string) []string {
	return append(append(append(os.Environ(), a.Env()...), "SHELL=/bin/sh"), extra...)
}

func command(a *consultest.Agent, bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = env(a)
	return cmd
}

// startLR starts lockrun with args against a; it is stopped at the end of
// the test.
func startLR(t *testing.T, a *consultest.Agent, args ...string) *proctest.Proc {
	t.Helper()
	return proctest.Start(t, command(a, lockrunB, args...), proctest.Options{})
}

// runLR runs lockrun with args against a to its end.
func runLR(t *testing.T, a *consultest.Agent, args ...string) result {
	t.Helper()
	p := startLR(t, a, args...)
	return result{p.Code(), p.Stdout.String(), p.Stderr.String()}
}

func sessionsNamed(t *testing.T, a *consultest.Agent, sub string) []string {
	t.Helper()
	ss, _, err := a.Client().Session().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range ss {
		if strings.Contains(s.Name, sub) {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

func readInt(t *testing.T, path string) string {
	t.Helper()
	var s string
	eventually.True(t, 20*time.Second, path, func() bool {
		b, _ := os.ReadFile(path)
		s = strings.TrimSpace(string(b))
		return s != ""
	})
	return s
}
