package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
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

// TestReloadSyslog: a syslog block added to the config file sends the log
// to syslog after the reload signal, as consul-template sets its logging up
// again from the new configuration (cli.go Run: cli.setup, logging.Setup
// with the Syslog settings). templater alone: consul-template cannot be
// pointed at a syslog socket of the test's own.
func TestReloadSyslog(t *testing.T) {
	seed(t)
	sock := filepath.Join(t.TempDir(), "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conf := "consul {\n address = \"" + agent.HTTPAddr() + "\"\n}\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n"
	dir := toolDir(t, "templater", map[string]string{"in.tmpl": `{{ key "app/name" }}`, "c.hcl": conf})
	d := startDaemon(t, binary(t), dir, "-config", "c.hcl", "-log-level", "info", "-syslog-socket", sock)
	eventually.True(t, 30*time.Second, "first render", func() bool { return readFile(filepath.Join(dir, "out")) == "hello" })
	proctest.WriteFile(t, filepath.Join(dir, "c.hcl"), conf+"syslog {\n enabled = true\n facility = \"LOCAL3\"\n name = \"reloaded\"\n}\n")
	d.Signal(t, syscall.SIGHUP)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("nothing reached the syslog socket after the reload: %v\n%s", err, d.Stdout.String())
	}
	// <PRI> with LOCAL3 (19) and NOTICE (5): 19*8+5 = 157.
	if msg := string(buf[:n]); !strings.HasPrefix(msg, "<157>") || !strings.Contains(msg, "reloaded") {
		t.Fatalf("syslog message %q", msg)
	}
}

// TestSIGTERMWhileAReloadWaitsForAPass: the reload signal arriving while
// a template's command runs (a long pass) is taken after that pass; a
// SIGTERM meanwhile still stops templater at once, exit 0, as it does
// outside a reload (the signal loop does not wait for the reload first).
func TestSIGTERMWhileAReloadWaitsForAPass(t *testing.T) {
	c := seed(t)
	dir := t.TempDir()
	put(t, c, "longpass/k", "one")
	src, out, running := filepath.Join(dir, "in.tmpl"), filepath.Join(dir, "out"), filepath.Join(dir, "running")
	proctest.WriteFile(t, src, `{{ key "longpass/k" }}`)
	// A command that outlasts the test, with a timeout longer still (the
	// default, 30 s, would end the pass before the deadline below).
	cfg := filepath.Join(dir, "c.hcl")
	proctest.WriteFile(t, cfg, fmt.Sprintf("template {\n source = %q\n destination = %q\n command = %q\n command_timeout = \"1h\"\n}\n", src, out, "touch "+running+"; exec sleep 3600"))
	p := start(t, agent.HTTPAddr(), "-config", cfg)
	eventually.True(t, 30*time.Second, "the command running", func() bool { _, err := os.Stat(running); return err == nil })
	p.Signal(t, syscall.SIGHUP)
	code := p.Stop(syscall.SIGTERM, 60*time.Second)
	if code == -1 {
		t.Fatalf("SIGTERM after a reload signal did not stop templater while a command ran\n%s", p.Stdout.String())
	}
	if code != 0 {
		t.Fatalf("exit after SIGTERM: %d", code)
	}
}

// syslogSink is a unix datagram socket of the test's own that templater's
// -syslog-socket can name; every message that reaches it is kept, one a
// line.
func syslogSink(t *testing.T) (sock string, got *eventually.Buffer) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	got = &eventually.Buffer{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = got.Write(append(buf[:n:n], '\n'))
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return sock, got
}

// TestReloadMetricsServerLog: the -metrics-addr server, which outlives a
// reload on its first listener, logs through the reload's logger: after a
// reload that turns syslog on, the server's error lines go to syslog and
// not to stderr. templater alone (consul-template has no metrics server).
// The error is net/http's "Accept error", which the server meets when
// templater runs out of file descriptors: it runs under `ulimit -n 64`
// and the test holds many connections to the server open.
func TestReloadMetricsServerLog(t *testing.T) {
	seed(t)
	sock, sys := syslogSink(t)
	conf := "consul {\n address = \"" + agent.HTTPAddr() + "\"\n}\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n"
	dir := toolDir(t, "templater", map[string]string{"in.tmpl": `{{ key "app/name" }}`, "c.hcl": conf})
	maddr := proctest.FreeAddr(t)
	cmd := exec.Command("sh", "-c", `ulimit -n 64 && exec "$0" "$@"`, binary(t), "-config", "c.hcl", "-log-level", "info",
		"-syslog-socket", sock, "-metrics-addr", maddr)
	cmd.Dir, cmd.Env = dir, ctEnv
	d := proctest.Start(t, cmd, proctest.Options{Combined: true})
	eventually.True(t, 30*time.Second, "first render", func() bool { return readFile(filepath.Join(dir, "out")) == "hello" })
	proctest.WriteFile(t, filepath.Join(dir, "c.hcl"), conf+"syslog {\n enabled = true\n name = \"reloaded\"\n}\n")
	d.Signal(t, syscall.SIGHUP)
	eventually.True(t, 30*time.Second, "the reload's log in syslog", func() bool { return strings.Contains(sys.String(), "reloaded configuration") })
	mark := len(d.Stdout.String())
	// More connections than templater has descriptors; the server
	// closes each after its ReadHeaderTimeout, so they stay open until
	// the error is seen.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 100 {
		c, err := net.Dial("tcp", maddr)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	eventually.Holds(t, 30*time.Second, "the metrics server's accept error in syslog", func() (bool, string) {
		return strings.Contains(sys.String(), "Accept error"), "stderr since the reload: " + d.Stdout.String()[mark:]
	})
	if after := d.Stdout.String()[mark:]; strings.Contains(after, "Accept error") {
		t.Fatalf("the metrics server's error reached stderr after the reload to syslog:\n%s", after)
	}
}
