package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
)

// err_on_failed_lookup = true: consul-template fails the run (exit 14) when
// a key read with `key` answers without data after its first blocking query
// (watch/view.go fetch: errLookup), whatever template_error_fatal says; it
// does not touch missing map keys (error_on_missing_key does). Each case
// runs both with -once and compares exit code and bytes.
func TestConformErrOnFailedLookup(t *testing.T) {
	seedConform(t)
	cfg := "err_on_failed_lookup = true\nblock_query_wait = \"1s\"\nlog_level = \"err\"\n"
	files := map[string]string{
		"on.hcl":       cfg,
		"nofatal.hcl":  cfg + "template_error_fatal = false\n",
		"off.hcl":      "err_on_failed_lookup = false\nlog_level = \"err\"\n",
		"missing.tmpl": `a {{ key "ct/never/there" }}`,
		"present.tmpl": `{{ key "ct/name" }}`,
		"mapkey.tmpl":  `[{{ (parseJSON "{}").nokey }}] [{{ (splitToMap "," "=" "a=1").zz }}]`,
		"default.tmpl": `{{ keyOrDefault "ct/never/there" "d" }} {{ keyExists "ct/never/there" }}`,
		"mixed.tmpl":   `{{ key "ct/name" }} {{ key "ct/never/there" }}`,
	}
	cases := [][]string{
		{"-config", "on.hcl", "-template", "missing.tmpl:out"},
		{"-config", "nofatal.hcl", "-template", "missing.tmpl:out"},
		{"-config", "on.hcl", "-template", "present.tmpl:out"},
		{"-config", "on.hcl", "-template", "mapkey.tmpl:out"},
		{"-config", "on.hcl", "-template", "default.tmpl:out"},
		{"-config", "on.hcl", "-template", "mixed.tmpl:out"},
		{"-config", "off.hcl", "-template", "mapkey.tmpl:out"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			t.Parallel()
			res, _ := bothIn(t, files, "out", append([]string{"-once", "-consul-addr", agent.HTTPAddr()}, c...)...)
			if res[0].Code == -1 {
				t.Fatalf("consul-template still running after 30s: the case shows nothing")
			}
			if len(c) > 2 && c[2] == "-template-error-fatal=false" {
				if res[0].Code != -1 || res[1].Code != exitRunner || res[0].Out != res[1].Out {
					t.Errorf("%v: consul-template %s (want still running), templater %s (want exit 14), the same bytes", c, res[0], res[1])
				}
				return
			}
			sameOutcome(t, strings.Join(c, " "), res[0], res[1])
		})
	}
}

// TestConformRefusedFlags: flag values consul-template v0.41.1 takes but
// templater refuses. Flags it does not list in its -h (so
// TestConformEveryFlag cannot find them):
// -log-file and -log-rotate-* (templater refuses them as it refuses the
// log_file block) and -vault-client-user-agent (as every -vault-* flag).
// consul-template must take each (the refusal is a real difference, in the
// README's table); templater must refuse it with one line naming it, exit 13.
func TestConformRefusedFlags(t *testing.T) {
	files := map[string]string{"in.tmpl": "static\n"}
	// -max-stale below 0 is taken by consul-template (as 0); templater
	// refuses it as bad input, naming it (README, differences).
	for _, f := range []string{"-log-file=ct.log", "-log-rotate-bytes=100", "-log-rotate-duration=1h", "-log-rotate-max-files=2", "-vault-client-user-agent=x", "-max-stale=-1s"} {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			for i, tl := range tools(t) {
				res[i] = runTool(t, tl.bin, toolDir(t, tl.name, files), "", 30*time.Second, "-parse-only", "-log-level", "err", "-template", "in.tmpl:out", f)
			}
			if res[0].Code != 0 {
				t.Errorf("consul-template no longer takes %s (exit %d: %s): the difference is gone", f, res[0].Code, lastLines(res[0].Stderr))
			}
			name := strings.TrimPrefix(f[:strings.Index(f, "=")], "-")
			want := "-" + name + " is not supported"
			if name == "max-stale" {
				want = "-max-stale -1s: must not be negative"
			}
			if res[1].Code != exitFlags || !strings.Contains(res[1].Stderr, want) || strings.Count(strings.TrimSpace(res[1].Stderr), "\n") > 0 {
				t.Errorf("templater on %s: exit %d, stderr %q; want exit 13 and one line naming it", f, res[1].Code, res[1].Stderr)
			}
		})
	}
}

// TestConformInertBlocks: a vault or nomad block that does not turn its
// integration on (enabled = false, or no address; config/vault.go and
// config/nomad.go Finalize) asks for nothing: consul-template takes it and
// so does templater; so is a log_file block without a path, and -log-file
// "". A block that turns it on stays refused (TestConformConfigKeys).
func TestConformInertBlocks(t *testing.T) {
	files := map[string]string{"in.tmpl": "static\n"}
	bodies := []string{"vault {}", "vault {\n enabled = false\n address = \"http://x\"\n}", "vault {\n renew_token = false\n}",
		"nomad {}", "nomad {\n enabled = false\n address = \"http://x\"\n}", "vault {\n address = \"\"\n}",
		// log_file without a path writes no file (logging/logging.go
		// Setup); a bad key or value in it is still refused.
		"log_file {}", "log_file {\n path = \"\"\n}", "log_file {\n log_rotate_bytes = 5\n log_rotate_duration = \"1h\"\n log_rotate_max_files = 2\n}",
		"log_file {\n log_rotate_bytes = \"abc\"\n}", "log_file {\n colour = 1\n}", "-log-file="}
	for i, body := range bodies {
		files[fmt.Sprintf("b%d.hcl", i)] = body + "\n"
	}
	for i, body := range bodies {
		t.Run(body, func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			for j, tl := range tools(t) {
				arg := fmt.Sprintf("-config=b%d.hcl", i)
				if strings.HasPrefix(body, "-") {
					arg = body // a flag
				}
				res[j] = runTool(t, tl.bin, toolDir(t, tl.name, files), "", 30*time.Second, "-parse-only", "-log-level", "err", "-template", "in.tmpl:out", arg)
			}
			if res[0].Code != res[1].Code {
				t.Errorf("%q: consul-template exit %d, templater exit %d\n  consul-template: %s\n  templater: %s", body, res[0].Code, res[1].Code, res[0].Stderr, res[1].Stderr)
			}
		})
	}
}

// TestConformTemplateErrorFatalFlag: -template-error-fatal given on the
// command line wins over a template block's error_fatal (cli.go loadConfigs
// sets every template's ErrFatal from it). Two templates, one failing to
// execute: fatal, both exit 14; not fatal, both render the good one, and
// under -once consul-template keeps waiting for the failing one while
// templater exits 14 naming it (README, differences;
// TestConformOnceErrorNotFatal).
func TestConformTemplateErrorFatalFlag(t *testing.T) {
	seedConform(t)
	block := func(fatal bool) string {
		return fmt.Sprintf("template {\n contents = \"{{ key \\\"ct/badjson\\\" | parseJSON }}\"\n destination = \"bad\"\n error_fatal = %v\n}\ntemplate {\n contents = \"good\"\n destination = \"out\"\n}\n", fatal)
	}
	files := map[string]string{"fatal.hcl": block(true), "nofatal.hcl": block(false)}
	cases := [][]string{
		{"-config", "fatal.hcl", "-template-error-fatal=false"},
		{"-config", "nofatal.hcl", "-template-error-fatal=true"},
		{"-config", "fatal.hcl"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, files)
				res[i] = runTool(t, tl.bin, dir, dir+"/out", argFormWait, append([]string{"-once", "-log-level", "err", "-consul-addr", agent.HTTPAddr()}, c...)...)
			}
			if len(c) > 2 && c[2] == "-template-error-fatal=false" {
				if res[0].Code != -1 || res[1].Code != exitRunner || res[0].Out != res[1].Out {
					t.Errorf("%v: consul-template %s (want still running), templater %s (want exit 14), the same bytes", c, res[0], res[1])
				}
				return
			}
			sameOutcome(t, strings.Join(c, " "), res[0], res[1])
		})
	}
}

// TestConformOnceErrorNotFatal: -once with a template whose execution fails
// under error_fatal = false. consul-template v0.41.1 never finishes: it
// waits for the failing template forever, or, when the template failed on
// its first pass and data comes in afterwards, crashes on a nil pointer
// (manager/runner.go runTemplate reads lastEvent.UsedDeps, never set for a
// failed first pass). templater writes the other templates, runs their
// commands and exits 14 naming the failing one (README, differences). For
// consul-template the test checks only that it does not finish so.
func TestConformOnceErrorNotFatal(t *testing.T) {
	seedConform(t)
	files := map[string]string{
		// Fails on the first pass, before any data: consul-template's crash.
		"first.hcl": "template {\n contents = \"{{ \\\"x\\\" | parseJSON }}\"\n destination = \"bad\"\n error_fatal = false\n}\n" +
			"template {\n contents = \"{{ key \\\"ct/name\\\" }}\"\n destination = \"out\"\n command = \"touch ran\"\n}\n",
		// Fails once its data is in: consul-template waits forever.
		"later.hcl": "template {\n contents = \"{{ key \\\"ct/badjson\\\" | parseJSON }}\"\n destination = \"bad\"\n error_fatal = false\n}\n" +
			"template {\n contents = \"{{ key \\\"ct/name\\\" }}\"\n destination = \"out\"\n command = \"touch ran\"\n}\n",
	}
	for _, cfg := range []string{"first.hcl", "later.hcl"} {
		t.Run(cfg, func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			var dirs [2]string
			for i, tl := range tools(t) {
				dirs[i] = toolDir(t, tl.name, files)
				res[i] = runTool(t, tl.bin, dirs[i], filepath.Join(dirs[i], "out"), argFormWait, "-once", "-log-level", "err", "-consul-addr", agent.HTTPAddr(), "-config", cfg)
			}
			peer, ours := res[0], res[1]
			crashed := peer.Code == 2 && strings.Contains(peer.Stderr, "nil pointer dereference")
			if peer.Code != -1 && !crashed {
				t.Errorf("consul-template finished (exit %d) instead of hanging or crashing: the difference is gone, drop the README row\n%s", peer.Code, lastLines(peer.Stderr))
			}
			if ours.Code != exitRunner || ours.Out != "hello" {
				t.Errorf("templater: %s, want exit 14 with out written\n  stderr: %s", ours, ours.Stderr)
			}
			if _, err := os.Stat(filepath.Join(dirs[1], "ran")); err != nil {
				t.Errorf("templater did not run the good template's command: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dirs[1], "bad")); err == nil {
				t.Errorf("templater wrote the failing template's destination")
			}
			if line := strings.TrimSpace(ours.Stderr); !strings.Contains(line, "parseJSON") || strings.Count(line, "\n") > 1 {
				t.Errorf("templater's stderr should end with one line naming the failure: %q", ours.Stderr)
			}
		})
	}
}

// TestConformErrorNotFatalDaemon: without -once, a template that fails on
// its first pass under error_fatal = false crashes consul-template v0.41.1
// as soon as data comes in for another template (the same nil pointer as
// under -once); templater writes the other template and keeps running. The
// test checks only that consul-template does not keep running so.
func TestConformErrorNotFatalDaemon(t *testing.T) {
	seedConform(t)
	files := map[string]string{"c.hcl": "template {\n contents = \"{{ \\\"x\\\" | parseJSON }}\"\n destination = \"bad\"\n error_fatal = false\n}\n" +
		"template {\n contents = \"{{ key \\\"ct/name\\\" }}\"\n destination = \"out\"\n}\n"}
	ds, dirs := startBoth(t, files, "-log-level", "err", "-consul-addr", agent.HTTPAddr(), "-config", "c.hcl")
	eventually.True(t, 20*time.Second, "templater renders out", func() bool { return readFile(filepath.Join(dirs[1], "out")) == "hello" })
	peer := exitOrKill(ds[0])
	if peer == 137 || !strings.Contains(ds[0].Stdout.String(), "nil pointer dereference") {
		t.Errorf("consul-template (exit %d) no longer crashes: the difference is gone, drop the README row\n%s", peer, lastLines(ds[0].Stdout.String()))
	}
	if !ds[1].Alive() {
		t.Errorf("templater stopped (exit %d): %s", ds[1].Code(), lastLines(ds[1].Stdout.String()))
	}
	ds[1].Stop(syscall.SIGTERM, daemonStopWait)
}
