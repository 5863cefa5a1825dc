package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/cliapp/clitest"
	"github.com/berth/berth/pkg/supervisor"
)

// TestPeerInvocations replays envconsul command lines as its README writes
// them (envconsul [options] <command>: -prefix repeated, -upcase, -sanitize,
// -pristine, -once, -no-prefix=false, -consul-addr=, -exec, -kill-signal=,
// "--" before the command, a command's own flags after it), plus the
// ENVEXEC_* variables.
func TestPeerInvocations(t *testing.T) {
	clitest.Replay(t, "envexec", parse, cliView, []clitest.Case{
		{Args: []string{"-prefix", "my-app", "env"},
			Want: clitest.View{"prefixes": []string{"my-app"}, "prefix-no-prefix": []bool{true}, "argv": []string{"env"}}},
		{Args: []string{"-upcase", "-consul-addr=demo.consul.io:80", "-prefix", "redis/config", "redis-server", "--port", "6380"},
			Want: clitest.View{"upcase": true, "consul-address": "demo.consul.io:80", "argv": []string{"redis-server", "--port", "6380"}}},
		{Args: []string{"-sanitize", "-upcase", "-prefix", "global/config", "-prefix", "app/config", "--", "./server", "-listen", ":8080"},
			Want: clitest.View{"prefixes": []string{"global/config", "app/config"}, "sanitize": true, "argv": []string{"./server", "-listen", ":8080"}}},
		{Args: []string{"-pristine", "-once", "-no-prefix=false", "-prefix", "app/config", "env"},
			Want: clitest.View{"pristine": true, "once": true, "prefix-no-prefix": []bool{false}}},
		{Args: []string{"-service=web", "-exec", "env | sort", "-kill-signal=SIGTERM", "-exec-kill-timeout=5s", "-log-level=debug"},
			Want: clitest.View{"services": []string{"web"}, "kill-signal": "SIGTERM", "kill-timeout": "5s", "log-level": "debug",
				"argv": []string{"/bin/sh", "-c", "env | sort"}}},
		{Args: []string{"-env-allow", "PATH,LC_*", "-prefix", "app/config", "-format", "APP_{{ key }}", "./server"},
			Want: clitest.View{"env-allow": []string{"PATH", "LC_*"}, "pristine": true, "prefix-formats": []string{"APP_{{ key }}"}}},
		{Args: []string{"-prefix", "b", "env"}, Env: map[string]string{"ENVEXEC_PREFIX": "a", "ENVEXEC_UPCASE": "true"},
			Want: clitest.View{"prefixes": []string{"a", "b"}, "upcase": true}},
	})
}

// cliView is a parsed command line as the cases name it.
func cliView(o *options) clitest.View {
	var paths, formats, services []string
	var noPrefix []bool
	for _, p := range o.prefixes {
		paths, formats, noPrefix = append(paths, p.path), append(formats, p.fmtSrc), append(noPrefix, p.noPrefix)
	}
	for _, s := range o.services {
		services = append(services, s.name)
	}
	return clitest.View{"prefixes": paths, "prefix-formats": formats, "prefix-no-prefix": noPrefix, "services": services,
		"upcase": o.naming.upcase, "sanitize": o.naming.sanitize, "pristine": o.pristine, "once": o.once, "env-allow": o.envAllow,
		"kill-signal": supervisor.SignalName(o.killSignal), "kill-timeout": o.killTimeout, "log-level": o.cli.Log.Level,
		"argv": o.argv}.WithConsul(&o.cli.Consul)
}

// TestExitCodesAsEnvconsul checks envexec's own exit codes against
// envconsul v0.13.4's (cli.go: ExitCodeError = 10 + iota, so 11 error, 12
// interrupt, 13 ParseFlagsError, 14 RunnerError, 15 ConfigError). Run:
// a flag that does not parse is 13 (ParseFlags); a bad configuration file,
// no command (ErrMissingCommand) and a bad log level (setupLogger) are 15;
// a -prefix path the KV query refuses is 14 (runner.go init,
// dep.NewKVListQuery, inside NewRunner), as is a -pid-file that cannot be
// written (runner.go storePid). Nothing here reaches Consul.
func TestExitCodesAsEnvconsul(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.hcl"
	if err := os.WriteFile(bad, []byte("bogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyLevel := dir + "/level.hcl"
	if err := os.WriteFile(emptyLevel, []byte("log_level = \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fileCmd, emptyFirst := dir+"/cmd.hcl", dir+"/empty-first.hcl"
	if err := os.WriteFile(fileCmd, []byte("exec { command = [\"true\"] }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(emptyFirst, []byte("exec { command = [\"\", \"true\"] }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badPath := dir + "/bad-path.hcl"
	if err := os.WriteFile(badPath, []byte("prefix { path = \"app@\" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dead := "127.0.0.1:1"
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"unknown flag", []string{"-bogus", "-prefix", "app", "true"}, 13},
		{"bad duration", []string{"-exec-kill-timeout", "soon", "-prefix", "app", "true"}, 13},
		{"unknown signal", []string{"-kill-signal", "SIGBOGUS", "-prefix", "app", "true"}, 13},
		{"bad wait", []string{"-wait", "5s:1s", "-prefix", "app", "true"}, 13},
		{"bad config file", []string{"-config", bad, "-prefix", "app", "true"}, 15},
		{"missing config file", []string{"-config", dir + "/none.hcl", "-prefix", "app", "true"}, 15},
		{"no command", []string{"-prefix", "app"}, 15},
		{"bad log level", []string{"-log-level", "loud", "-prefix", "app", "true"}, 15},
		// cli.go setupLogger upper-cases the level as given and accepts
		// TRACE, DEBUG, INFO, WARN, ERROR and ERR only: "" and "warning"
		// are refused, from a flag or a file's log_level.
		{"empty log level", []string{"-log-level", "", "-prefix", "app", "true"}, 15},
		{"empty log_level in a file", []string{"-config", emptyLevel, "-prefix", "app", "true"}, 15},
		{"log level warning", []string{"-log-level", "warning", "-prefix", "app", "true"}, 15},
		{"log level ERR", []string{"-log-level", "ERR", "-prefix", "app", "-wait-timeout", "1ms", "true"}, 11},
		// cli.go ParseFlags: -exec sets the command, "" too, and then the
		// arguments are not read; it wins over a file's exec.command
		// (consul-template ExecConfig.Merge), and Run refuses a command
		// whose first word is empty (commandList.Empty, ErrMissingCommand).
		{"empty -exec", []string{"-exec", "", "-prefix", "app", "-wait-timeout", "1ms", "true"}, 15},
		{"empty -exec over a file's command", []string{"-exec", "", "-config", fileCmd, "-prefix", "app", "-wait-timeout", "1ms"}, 15},
		{"a file's command with an empty first word", []string{"-config", emptyFirst, "-prefix", "app", "-wait-timeout", "1ms"}, 15},
		{"a file's command", []string{"-config", fileCmd, "-prefix", "app", "-wait-timeout", "1ms"}, 11},
		// envconsul's bool flags (flags.go funcBoolVar.Set, and the flag
		// package's BoolVar for -once) read their value with
		// strconv.ParseBool: 1 t T TRUE true True and 0 f F FALSE false
		// False only; any other case is a flag error.
		{"bool flag tRuE", []string{"-consul-ssl=tRuE", "-prefix", "app", "-wait-timeout", "1ms", "true"}, 13},
		{"bool flag fALSE", []string{"-consul-ssl-verify=fALSE", "-prefix", "app", "-wait-timeout", "1ms", "true"}, 13},
		{"bool flag yes", []string{"-consul-transport-disable-keep-alives=yes", "-prefix", "app", "true"}, 13},
		{"-syslog=tRuE", []string{"-syslog=tRuE", "-prefix", "app", "-wait-timeout", "1ms", "true"}, 13},
		{"-once=tRuE", []string{"-once=tRuE", "-prefix", "app", "-wait-timeout", "1ms", "true"}, 13},
		{"bool flags True, FALSE, T, 0", []string{"-consul-ssl=False", "-consul-ssl-verify=FALSE", "-consul-transport-disable-keep-alives=T", "-syslog=0",
			"-once=True", "-upcase=TRUE", "-prefix", "app", "-wait-timeout", "1ms", "true"}, 11},
		// cli.go ParseFlags joins the arguments with spaces and takes no
		// command from "": a lone "" is none (ErrMissingCommand, 15) and
		// leaves a file's exec.command; "" "" (" ") and " " are a command,
		// so envconsul waits for the data (TestBlankCommandAsEnvconsul).
		{"a lone empty argument", []string{"-prefix", "app", "-wait-timeout", "1ms", ""}, 15},
		{"a lone empty argument after --", []string{"-prefix", "app", "-wait-timeout", "1ms", "--", ""}, 15},
		{"a lone empty argument and a file's command", []string{"-config", fileCmd, "-prefix", "app", "-wait-timeout", "1ms", ""}, 11},
		{"two empty arguments", []string{"-prefix", "app", "-wait-timeout", "1ms", "", ""}, 11},
		{"a blank argument", []string{"-prefix", "app", "-wait-timeout", "1ms", " "}, 11},
		{"a blank -exec", []string{"-exec", " ", "-prefix", "app", "-wait-timeout", "1ms"}, 11},
		{"bad prefix", []string{"-prefix", "app@a@b", "true"}, 14},
		// A bad -prefix is refused by NewRunner only (runner.go init), so
		// a flag, file, log level or missing command refused before it
		// decides the exit code.
		{"bad prefix, no command", []string{"-prefix", "app@a@b"}, 15},
		{"bad prefix, then an unknown flag", []string{"-prefix", "app@a@b", "-bogus", "true"}, 13},
		{"bad service, then a bad duration", []string{"-service", "tag.@dc", "-exec-kill-timeout", "soon", "true"}, 13},
		{"bad prefix, then a bad config file", []string{"-prefix", "app@a@b", "-config", bad, "true"}, 15},
		{"bad prefix and a bad log level", []string{"-prefix", "app@a@b", "-log-level", "loud", "true"}, 15},
		{"bad prefix in a file, no command", []string{"-config", badPath, "-prefix", "app"}, 15},
		{"bad prefix in a file", []string{"-config", badPath, "-prefix", "app", "true"}, 14},
		{"pid file", []string{"-pid-file", dir + "/no/such/dir/pid", "-prefix", "app", "true"}, 14},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := runEnvexec(t, dead, nil, tc.args...)
			if p.code != tc.code {
				t.Errorf("exit %d, want %d (envconsul's)\n%s", p.code, tc.code, p.stderr)
			}
		})
	}
}

// TestVersionOrderAsEnvconsul: envconsul's cli.go Run checks the flags
// (ParseFlags: 13), reads the files (loadConfigs: 15) and sets up its
// logger (setupLogger: a bad log level or syslog, 15) before it prints
// its version for -version (exit 0); the command and the sources are
// looked at only after it, so -version alone, or with an empty command,
// prints it. A -prefix or -service is any text to ParseFlags
// (config_prefix.go ParsePrefixConfig, config_service.go
// ParseServiceConfig never fail; a file's path is decoded as is): a bad
// one is refused by NewRunner (runner.go init: dep.NewKVListQuery,
// dep.NewCatalogServiceQuery; 14), after -version, so -version prints
// with it, and a bad flag, file or log level after it still decides.
func TestVersionOrderAsEnvconsul(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.hcl"
	if err := os.WriteFile(bad, []byte("bogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badPath := dir + "/bad-path.hcl"
	if err := os.WriteFile(badPath, []byte("prefix { path = \"app@a@b\" }\nservice { query = \"tag.@dc\" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		version bool
	}{
		{"alone", []string{"-version"}, 0, true},
		{"-v, no source, empty command", []string{"-v", "", ""}, 0, true},
		{"bad log level", []string{"-version", "-log-level", "loud"}, 15, false},
		{"bad log level before it", []string{"-log-level=warning", "-v", "-prefix", "app", "true"}, 15, false},
		{"bad config file", []string{"-version", "-config", bad}, 15, false},
		{"bad syslog facility", []string{"-version", "-syslog", "-syslog-facility", "NOPE"}, 15, false},
		{"unknown flag", []string{"-version", "-bogus"}, 13, false},
		{"bad -prefix", []string{"-version", "-prefix", "app@a@b", "true"}, 0, true},
		{"bad -prefix before it", []string{"-prefix", "app@", "-format", "X_{{ key }}", "-v"}, 0, true},
		{"bad -service", []string{"-service", "tag.@dc", "-service-format-id", "ID", "-version"}, 0, true},
		{"bad path and query in a file", []string{"-version", "-config", badPath}, 0, true},
		{"bad -prefix, then an unknown flag", []string{"-prefix", "app@a@b", "-version", "-bogus"}, 13, false},
		{"bad -prefix, then a bad config file", []string{"-prefix", "app@a@b", "-version", "-config", bad}, 15, false},
		{"bad -prefix, then a bad log level", []string{"-prefix", "app@a@b", "-log-level", "loud", "-version"}, 15, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := runEnvexec(t, "127.0.0.1:1", nil, tc.args...)
			printed := strings.HasPrefix(p.stdout.String(), "envexec ")
			if p.code != tc.code || printed != tc.version || (tc.version && p.stderr.String() != "") {
				t.Errorf("exit %d, version printed %v; want %d, %v (envconsul's)\nstdout %q\nstderr %s", p.code, printed, tc.code, tc.version, p.stdout, p.stderr)
			}
		})
	}
}

// TestBlankCommandAsEnvconsul: a command of empty or blank words that is
// not a lone "" ("" "" joined to " " by envconsul's cli.go ParseFlags, " ",
// -exec " ") passes envconsul's check (consul-template v0.41.1
// config/exec.go commandList.Empty: only a first word "" is none); once
// the data is in, its runner cannot start it (child/command-prep.go
// CommandPrep: exec.ErrNotFound, runner.go Start: ErrCh) and it exits 14
// (cli.go Run: ExitCodeRunnerError), its message saying the executable
// is not found.
func TestBlankCommandAsEnvconsul(t *testing.T) {
	a, _, n := nsWith(t, "V", "1")
	for _, args := range [][]string{{"", ""}, {" "}, {"-exec", " "}, {"--", "", "", ""}} {
		p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-wait-timeout", "20s", "-prefix", n}, args...)...)
		if p.code != 14 || !strings.Contains(p.stderr.String(), "not found") {
			t.Errorf("%q: exit %d, want 14 (envconsul's runner error) and \"not found\"\n%s", args, p.code, p.stderr)
		}
	}
}

// TestHelpOnStdout: envconsul -h prints its usage on standard output and
// exits 0 (cli.go Run: flag.ErrHelp, fmt.Fprintf(cli.outStream, usage)),
// so `envexec -h | less` works as it did. envconsul's ParseFlags defines
// neither -h nor -help, so Go's flag package (flag.go parseOne) answers
// either with flag.ErrHelp before it looks at a value: -help=tRuE,
// -h=yes, -help=false and -help= print the usage too, and parsing stops
// there (a bad flag after it is not seen; one before it is a flag error).
func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help"}, {"-help=tRuE"}, {"-h=yes"}, {"--help=FALSE"},
		{"-help=false"}, {"-h=0"}, {"-help="}, {"-prefix", "app", "-help=tRuE", "-bogus", "true"}, {"-h", "-help"}} {
		p := runEnvexec(t, "127.0.0.1:1", nil, args...)
		if p.code != 0 || !strings.Contains(p.stdout.String(), "-prefix") || p.stderr.String() != "" {
			t.Errorf("%q: exit %d, stdout %d bytes, stderr %q; want the usage on stdout, exit 0", args, p.code, len(p.stdout.String()), p.stderr)
		}
	}
	p := runEnvexec(t, "127.0.0.1:1", nil, "-bogus", "-help=tRuE")
	if p.code != exitFlags || p.stdout.String() != "" {
		t.Errorf("-bogus -help=tRuE: exit %d, stdout %d bytes; want %d (ParseFlags' error comes first)", p.code, len(p.stdout.String()), exitFlags)
	}
}

// TestPrefixesBeforeServices: envconsul watches and merges every prefix
// (files' then flags') before every service (runner.go init appends the
// prefixes' dependencies, then the services'; Run merges in that order), so
// a service variable wins over a key of the same name whatever order the
// flags came in.
func TestPrefixesBeforeServices(t *testing.T) {
	file := t.TempDir() + "/s.hcl"
	if err := os.WriteFile(file, []byte("service { query = \"db\" }\nprefix { path = \"base\" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parse([]string{"-service", "web", "-prefix", "app", "-config", file, "-service", "cache", "-prefix", "more", "true"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range o.order {
		got = append(got, fmt.Sprint(s))
	}
	want := "prefix base|prefix app|prefix more|service db|service web|service cache"
	if strings.Join(got, "|") != want {
		t.Errorf("order %q, want %q", strings.Join(got, "|"), want)
	}
}

// TestMissingPrefixRunsCommand: a prefix with no keys (never written, or
// all deleted) answers with an empty list, and envconsul runs the command
// without variables from it (consul-template v0.41.1
// dependency/kv_list.go Fetch: a 404 is an empty list, not an error;
// envconsul runner.go Run starts the child once every dependency has
// data).
func TestMissingPrefixRunsCommand(t *testing.T) {
	a, _, n := nsWith(t, "present/V", "1")
	dir := childDir(t)
	p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-once", "-wait-timeout", "20s", "-prefix", n + "/nosuch", "-prefix", n + "/present"}, childArgs(dir, "exit", 3)...)...)
	if p.code != 3 || len(starts(dir)) != 1 {
		t.Fatalf("exit %d, starts %v; want the command run once and its exit code 3\n%s", p.code, starts(dir), p.stderr)
	}
	if env := onlyConsul(lastEnv(t, dir)); fmtEnv(env) != fmtEnv(map[string]string{"V": "1"}) {
		t.Errorf("environment %s, want V=1 only", fmtEnv(env))
	}
}

// TestWaitDelaysFirstStart: with -wait, envconsul starts the command only
// once the data has been quiet for MIN (runner.go Start: every arrival of
// data, the first ones too, (re)arms the quiescence timers and skips Run
// until one fires), so the first start comes at least MIN after envexec
// started. Only that lower bound is checked.
func TestWaitDelaysFirstStart(t *testing.T) {
	a, _, n := nsWith(t, "V", "1")
	dir := childDir(t)
	const min = 2 * time.Second
	began := time.Now()
	p := runEnvexec(t, a.HTTPAddr(), nil, append([]string{"-once", "-wait", min.String() + ":10s", "-prefix", n}, childArgs(dir, "exit", 0)...)...)
	took := time.Since(began)
	if p.code != 0 || len(starts(dir)) != 1 || lastEnv(t, dir)["V"] != "1" {
		t.Fatalf("exit %d, starts %v\n%s", p.code, starts(dir), p.stderr)
	}
	if took < min {
		t.Errorf("the command ran and ended %s after envexec started, before -wait's MIN %s", took.Round(time.Millisecond), min)
	}
}

// TestSameQueryLastPrefixText: two -prefix flags naming the same KV query
// ("//app" and "/app" both list app/ once envconsul's two leading-"/"
// trims are done) are named from the last one's PrefixConfig, path text
// included (runner.go init: configPrefixMap[d.String()]; appendPrefixes
// sanitizes that config's Path for no_prefix=false).
func TestSameQueryLastPrefixText(t *testing.T) {
	o, err := parse([]string{"-no-prefix=false", "-prefix", "//app", "-prefix", "/app", "true"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range o.prefixes {
		if name, err := o.naming.kvName(p, "k"); err != nil || name != "app_k" {
			t.Errorf("prefix %d: name %q, %v; want app_k", i, name, err)
		}
	}
}

// -h names the values -on-change and -export take and the query forms of
// -prefix and -service, as the README's flag table does (the placeholder
// was one of the values: "-export dotenv", "-on-change restart").
func TestHelpPlaceholders(t *testing.T) {
	var out bytes.Buffer
	if _, err := parse([]string{"-h"}, &out, io.Discard); err == nil {
		t.Fatal("-h: no ErrExit")
	}
	for _, want := range []string{
		"-on-change restart|signal|none\n",
		"-export dotenv|shell|json\n",
		"-prefix PATH[?ns=NS&partition=P][@DC]\n",
		"-service, -service-query [TAG.]NAME[?ns=NS&partition=P][@DC][~NODE]\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

// TestLogLevelAsEnvconsul: without -log-level (or its ENVEXEC_LOG_LEVEL)
// and without a file's log_level, the level is envconsul's: CT_LOG, else
// ENVCONSUL (the first set and not empty, white space trimmed), else warn
// (envconsul config.go: DefaultLogLevel "WARN"; Finalize reads them with
// stringFromEnv only when neither the flags nor a file, merged before it by
// cli.go loadConfigs, gave a level). ENVEXEC_LOG_LEVEL is envexec's own
// variable of the flag and counts as the flag, over a file, as every
// ENVEXEC_* variable does.
func TestLogLevelAsEnvconsul(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/level.hcl"
	if err := os.WriteFile(file, []byte("log_level = \"info\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	none := map[string]string{"CT_LOG": "", "ENVCONSUL": ""}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"CT_LOG": "", "ENVCONSUL": ""}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	args := []string{"-prefix", "app", "true"}
	clitest.Replay(t, "envexec", parse, cliView, []clitest.Case{
		{Args: args, Env: none, Want: clitest.View{"log-level": "warn"}},
		{Args: args, Env: with("CT_LOG", "debug"), Want: clitest.View{"log-level": "debug"}},
		{Args: args, Env: with("ENVCONSUL", "ERR"), Want: clitest.View{"log-level": "ERR"}},
		{Args: args, Env: with("CT_LOG", " trace\n", "ENVCONSUL", "error"), Want: clitest.View{"log-level": "trace"}},
		{Args: append([]string{"-config", file}, args...), Env: with("CT_LOG", "debug", "ENVCONSUL", "error"), Want: clitest.View{"log-level": "info"}},
		{Args: append([]string{"-log-level", "error"}, args...), Env: with("CT_LOG", "debug"), Want: clitest.View{"log-level": "error"}},
		{Args: append([]string{"-config", file, "-log-level", "debug"}, args...), Env: with("CT_LOG", "trace"), Want: clitest.View{"log-level": "debug"}},
		{Args: append([]string{"-config", file}, args...), Env: with("ENVEXEC_LOG_LEVEL", "error", "CT_LOG", "debug"), Want: clitest.View{"log-level": "error"}},
	})
	// A bad level from CT_LOG or ENVCONSUL ends envexec as a bad -log-level
	// does (setupLogger: invalid log level, ExitCodeConfigError), naming the
	// variable; a blank one is the empty level after trimming.
	for _, tc := range []struct{ env, name string }{
		{"CT_LOG=loud", "CT_LOG"}, {"ENVCONSUL=warning", "ENVCONSUL"}, {"CT_LOG= ", "CT_LOG"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			p := runEnvexec(t, "127.0.0.1:1", []string{"CT_LOG=", "ENVCONSUL=", tc.env}, "-wait-timeout", "1ms", "-prefix", "app", "true")
			if p.code != 15 || !strings.Contains(p.stderr.String(), "envexec: "+tc.name+" ") {
				t.Errorf("exit %d, want 15 naming %s\n%s", p.code, tc.name, p.stderr)
			}
		})
	}
}
