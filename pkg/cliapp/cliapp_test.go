package cliapp

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// list is a repeatable flag value, as the programs define them.
type list []string

func (l *list) String() string     { return strings.Join(*l, "|") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

type testFlags struct {
	p        *Program
	name     string
	n        int
	on       bool
	wait     time.Duration
	tmpl     list
	out, err bytes.Buffer
}

func newTest() *testFlags {
	f := &testFlags{}
	f.p = New("prog", &f.out, &f.err)
	f.p.Usage = []string{"prog [flags] PREFIX COMMAND [ARGS...]"}
	f.p.String(&f.name, "name", "", "a `NAME`")
	f.p.Int(&f.n, "n", 1, "a number")
	f.p.Bool(&f.on, "on", true, "a switch")
	f.p.Duration(&f.wait, "wait", time.Second, "a duration")
	f.p.Alias("try", "wait")
	f.p.Var(&f.tmpl, "template", "repeatable")
	f.p.Alias("tmpl", "template")
	f.p.Alias("consul-addr", "http-addr")
	return f
}

func clearEnv(t *testing.T) {
	for _, k := range []string{"CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY"} {
		t.Setenv(k, "")
	}
}

// The forms the peers' users write: -flag value, -flag=value, --flag,
// -bool=false, repeatable flags with commas kept, positional arguments after
// the flags, "--" before a command.
func TestParseForms(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		args []string
		rest []string
		chk  func(f *testFlags) bool
	}{
		{[]string{"-name", "a", "-n=3", "p", "cmd"}, []string{"p", "cmd"}, func(f *testFlags) bool { return f.name == "a" && f.n == 3 }},
		{[]string{"--name=b", "--n", "4"}, nil, func(f *testFlags) bool { return f.name == "b" && f.n == 4 }},
		{[]string{"-on=false", "-wait", "2s"}, nil, func(f *testFlags) bool { return !f.on && f.wait == 2*time.Second }},
		{[]string{"-try", "3s"}, nil, func(f *testFlags) bool { return f.wait == 3*time.Second }},
		{[]string{"-template", "in:out:cmd a,b", "-tmpl", "x:y"}, nil, func(f *testFlags) bool {
			return slices.Equal(f.tmpl, list{"in:out:cmd a,b", "x:y"})
		}},
		{[]string{"-n", "2", "--", "cmd", "-n", "5"}, []string{"cmd", "-n", "5"}, func(f *testFlags) bool { return f.n == 2 }},
		{[]string{"p", "-n", "5"}, []string{"p", "-n", "5"}, func(f *testFlags) bool { return f.n == 1 }},
		{[]string{"p", "--", "cmd"}, []string{"p", "--", "cmd"}, func(f *testFlags) bool { return true }},
	} {
		f := newTest()
		res, err := f.p.Parse(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !slices.Equal(res.Args, tc.rest) || !tc.chk(f) {
			t.Errorf("%q: args %q, flags %+v", tc.args, res.Args, f)
		}
	}
}

func TestEnvironment(t *testing.T) {
	clearEnv(t)
	t.Setenv("PROG_N", "7")
	t.Setenv("PROG_WAIT", "5s")
	t.Setenv("PROG_TEMPLATE", "a:b,c")
	t.Setenv("PROG_LOG_LEVEL", "debug")
	t.Setenv("CONSUL_HTTP_ADDR", "10.0.0.1:8500")
	f := newTest()
	res, err := f.p.Parse([]string{"-wait", "9s"})
	if err != nil {
		t.Fatal(err)
	}
	if f.n != 7 || f.wait != 9*time.Second || !slices.Equal(f.tmpl, list{"a:b,c"}) || f.p.Log.Level != "debug" {
		t.Errorf("env: n %d wait %s template %q log %s", f.n, f.wait, f.tmpl, f.p.Log.Level)
	}
	set := f.p.Explicit(res)
	if !set["n"] || !set["wait"] || !set["try"] || set["name"] || set["http-addr"] {
		t.Errorf("explicit: %v", set)
	}
	// CONSUL_* is api.DefaultConfig's, applied under the flags.
	cfg, err := f.p.Consul.Config()
	if err != nil || cfg.Address != "10.0.0.1:8500" {
		t.Fatalf("CONSUL_HTTP_ADDR: %+v %v", cfg, err)
	}
	f = newTest()
	if _, err := f.p.Parse([]string{"-consul-addr", "127.0.0.2:8500"}); err != nil {
		t.Fatal(err)
	}
	if cfg, _ := f.p.Consul.Config(); cfg.Address != "127.0.0.2:8500" {
		t.Fatalf("flag over CONSUL_HTTP_ADDR: %s", cfg.Address)
	}
	// An empty variable is unset, whatever the kind of flag.
	t.Setenv("PROG_ON", "")
	t.Setenv("PROG_NAME", "")
	t.Setenv("PROG_N", "")
	f = newTest()
	res, err = f.p.Parse(nil)
	if set := f.p.Explicit(res); err != nil || !f.on || f.n != 1 || set["on"] || set["name"] || set["n"] {
		t.Fatalf("empty variables: %v on %v n %d set %v", err, f.on, f.n, set)
	}
	t.Setenv("PROG_N", "many")
	f = newTest()
	if _, err := f.p.Parse(nil); err == nil || !strings.Contains(err.Error(), "PROG_N") {
		t.Fatalf("bad variable: %v", err)
	}
}

func TestHelpVersionErrors(t *testing.T) {
	clearEnv(t)
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help", "p", "cmd"}, {"-n", "2", "-h", "p"}} {
		f := newTest()
		if _, err := f.p.Parse(args); !errors.Is(err, ErrExit) {
			t.Fatalf("%q: %v", args, err)
		}
		h := f.err.String()
		for _, want := range []string{"Usage: prog [flags] PREFIX", "-name NAME\n", "a NAME [$PROG_NAME]", "-wait, -try DURATION", "(default 1s)",
			"-http-addr, -consul-addr", "[$CONSUL_HTTP_ADDR]", "-metrics-addr ADDRESS", "[$PROG_METRICS_ADDR]", "-version\n"} {
			if !strings.Contains(h, want) {
				t.Errorf("%q: help lacks %q:\n%s", args, want, h)
			}
		}
		if f.out.Len() != 0 || f.p.Fail(ErrExit, 9) != 0 {
			t.Errorf("help on stdout, or not exit 0")
		}
	}
	f := newTest()
	if _, err := f.p.Parse([]string{"-version"}); !errors.Is(err, ErrExit) || !strings.HasPrefix(f.out.String(), "prog ") {
		t.Fatalf("-version: %v %q", err, f.out.String())
	}
	f = newTest()
	_, err := f.p.Parse([]string{"-no-such", "p"})
	if code := f.p.Fail(err, 13); code != 13 || f.err.String() != "prog: flag provided but not defined: -no-such\n" {
		t.Fatalf("bad flag: exit %d, %q", code, f.err.String())
	}
	f = newTest()
	if _, err := f.p.Parse([]string{"-n", "x"}); err == nil || !strings.Contains(err.Error(), "-n") {
		t.Fatalf("bad value: %v", err)
	}
	// A bad duration says why, not only Go's "parse error"; by its alias too.
	for _, args := range [][]string{{"-wait", "5x"}, {"--try=5x"}} {
		f = newTest()
		_, err = f.p.Parse(args)
		if want := `time: unknown unit "x" in duration "5x"`; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `"5x"`) {
			t.Errorf("%q: %v, want the reason %q", args, err, want)
		}
	}
}

// HelpAnyValue: -h/-help with any value is help, and the flags after it
// are not looked at (the flag package's rule for an undefined -h/-help);
// without it the value is a bool and -help=false is no help.
func TestHelpAnyValue(t *testing.T) {
	clearEnv(t)
	for _, args := range [][]string{{"-help=tRuE"}, {"-h=false"}, {"--help="}, {"-n", "2", "-help=yes", "-no-such"}} {
		f := newTest()
		f.p.HelpAnyValue = true
		if _, err := f.p.Parse(args); !errors.Is(err, ErrExit) || !strings.Contains(f.err.String(), "Usage: prog") {
			t.Errorf("%q with HelpAnyValue: %v, help %d bytes", args, err, f.err.Len())
		}
	}
	f := newTest()
	f.p.HelpAnyValue = true
	if _, err := f.p.Parse([]string{"-no-such", "-help=tRuE"}); err == nil || errors.Is(err, ErrExit) || f.err.Len() != 0 {
		t.Errorf("a bad flag before -help: %v, help %d bytes; want the flag's error", err, f.err.Len())
	}
	f = newTest()
	if _, err := f.p.Parse([]string{"-help=tRuE"}); err == nil || errors.Is(err, ErrExit) {
		t.Errorf("-help=tRuE without HelpAnyValue: %v, want a bad value", err)
	}
	f = newTest()
	if res, err := f.p.Parse([]string{"-help=false", "p"}); err != nil || len(res.Args) != 1 {
		t.Errorf("-help=false without HelpAnyValue: %v, want no help", err)
	}
}

// An address that cannot be bound is an error at start, naming the flag.
func TestMetricsAddress(t *testing.T) {
	clearEnv(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	f := newTest()
	if _, err := f.p.Parse([]string{"-metrics-addr", busy.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	if m, err := f.p.ListenMetrics(); err == nil || !strings.Contains(err.Error(), "-metrics-addr "+busy.Addr().String()) {
		m.Close()
		t.Fatalf("busy -metrics-addr: %v", err)
	}
	f = newTest()
	if _, err := f.p.Parse(nil); err != nil {
		t.Fatal(err)
	}
	m, err := f.p.ListenMetrics()
	if m != nil || err != nil || m.Addr() != nil {
		t.Fatalf("no -metrics-addr: %v %v", m, err)
	}
	<-m.Serve(t.Context(), nil, nil, nil) // nil: closed at once
}

// TestFlagUsageReplacesHelp: a program's own help text for a shared flag
// replaces the shared one in -h.
func TestFlagUsageReplacesHelp(t *testing.T) {
	var out strings.Builder
	p := New("x", &out, &out)
	p.FlagUsage("stale", "accepted and ignored here")
	p.Help(&out)
	if h := out.String(); !strings.Contains(h, "accepted and ignored here") || strings.Contains(h, "not only the leader") {
		t.Errorf("help of -stale not replaced:\n%s", h)
	}
}
