package main

import (
	"io"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/proctest"
)

// TestPrepareReadsFilesOverCommandLine: each session (at start and on
// every reload) reads the files over the command line as it was given, not
// over the last session's settings, as consul-template merges its files
// over its saved flag config on reload (cli.go Run: loadConfigs(paths,
// cliConfig)). A file's consul address, max_stale and reload_signal go
// away with the file; the -kill-signal flag wins over either file.
func TestPrepareReadsFilesOverCommandLine(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "")
	dir := t.TempDir()
	cfg, tmpl := filepath.Join(dir, "c.hcl"), filepath.Join(dir, "in.tmpl")
	proctest.WriteFile(t, tmpl, "x")
	block := "template {\n source = \"" + tmpl + "\"\n destination = \"" + filepath.Join(dir, "out") + "\"\n}\n"
	proctest.WriteFile(t, cfg, "consul {\n address = \"10.0.0.1:8500\"\n}\nmax_stale = \"5s\"\nkill_signal = \"SIGUSR2\"\nreload_signal = \"SIGUSR1\"\n"+block)
	o, err := parseFlags([]string{"-config", cfg, "-kill-signal", "SIGQUIT", "-log-level", "err"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	base := o.clone()
	type view struct {
		addr      string
		maxStale  time.Duration
		kill, rel syscall.Signal
	}
	get := func() view {
		t.Helper()
		s, code, err := prepare(base, io.Discard)
		if err != nil {
			t.Fatalf("prepare: exit %d: %v", code, err)
		}
		return view{s.ccfg.Address, s.o.maxStale, s.killSig, s.reloadSig}
	}
	if got, want := get(), (view{"10.0.0.1:8500", 5 * time.Second, syscall.SIGQUIT, syscall.SIGUSR1}); got != want {
		t.Fatalf("first session %+v, want %+v", got, want)
	}
	proctest.WriteFile(t, cfg, block)
	// The address the command line alone gives, read by a fresh start.
	fresh, err := parseFlags([]string{"-config", cfg, "-kill-signal", "SIGQUIT", "-log-level", "err"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := prepare(fresh, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.ccfg.Address == "10.0.0.1:8500" {
		t.Fatalf("a fresh start without the consul block has the address of the file before")
	}
	if got, want := get(), (view{s.ccfg.Address, 2 * time.Second, syscall.SIGQUIT, syscall.SIGHUP}); got != want {
		t.Fatalf("session after the file lost its settings %+v, want %+v", got, want)
	}
}
