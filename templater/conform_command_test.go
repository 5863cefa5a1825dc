package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConformTemplateCommandForms: a template's command as consul-template
// v0.41.1 reads it, run with -once by both tools in folders holding the
// same files: the exit code and every file each leaves behind are the same.
// A blank command renders the file and then fails (exit 14: nothing to
// run); a single word is run as written, spaces and all (" true" is not
// found); a list whose first word is empty is no command; exec { command }
// wins over command, whichever is written first.
func TestConformTemplateCommandForms(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`,
		"blank.hcl":      "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = \"   \"\n}\n",
		"blanklist.hcl":  "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = [\"  \"]\n}\n",
		"blankexec.hcl":  "template {\n source = \"in.tmpl\"\n destination = \"out\"\n exec {\n  command = \" \"\n }\n}\n",
		"emptyfirst.hcl": "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = [\"\", \"touch x\"]\n}\n",
		"emptylist.hcl":  "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = []\n}\n",
		"execwins.hcl":   "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = \"touch a\"\n exec {\n  command = \"touch b\"\n }\n}\n",
		"execfirst.hcl":  "template {\n source = \"in.tmpl\"\n destination = \"out\"\n exec {\n  command = \"touch b\"\n }\n command = \"touch a\"\n}\n",
		"execempty.hcl":  "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = \"touch a\"\n exec {\n  command = \"\"\n }\n}\n",
		"twoblank.hcl": "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = \"  \"\n}\n" +
			"template {\n contents = \"two\"\n destination = \"out2\"\n command = \"touch c\"\n}\n",
	}
	compareOnce(t, files, nil, [][]string{
		{"-template", "in.tmpl:out:   "},
		{"-template", "in.tmpl:out:\t"},
		{"-template", "in.tmpl:out: touch y"},
		{"-template", "in.tmpl:out: true"},
		{"-config", "blank.hcl"},
		{"-config", "blanklist.hcl"},
		{"-config", "blankexec.hcl"},
		{"-config", "emptyfirst.hcl"},
		{"-config", "emptylist.hcl"},
		{"-config", "execwins.hcl"},
		{"-config", "execfirst.hcl"},
		{"-config", "execempty.hcl"},
		{"-config", "twoblank.hcl"},
	})
}

// compareOnce runs both tools with -once, the test agent and base plus each
// case's arguments, each case in a parallel subtest in folders holding
// files, and compares their exit codes and the files they leave; an error
// of templater's must be one line.
func compareOnce(t *testing.T, files map[string]string, base []string, cases [][]string) {
	t.Helper()
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			var left [2]string
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, files)
				all := append(append([]string{"-once", "-log-level", "err", "-consul-addr", agent.HTTPAddr()}, base...), args...)
				res[i] = runTool(t, tl.bin, dir, "", 30*time.Second, all...)
				left[i] = dirContents(t, dir)
			}
			if res[0].Code != res[1].Code || left[0] != left[1] {
				t.Errorf("%q:\nconsul-template: exit %d, files %s\n  stderr: %s\ntemplater:       exit %d, files %s\n  stderr: %s",
					args, res[0].Code, left[0], lastLines(res[0].Stderr), res[1].Code, left[1], lastLines(res[1].Stderr))
			}
			if res[1].Code != 0 && strings.Contains(strings.TrimSpace(res[1].Stderr), "\n") {
				t.Errorf("templater's error is more than one line: %q", res[1].Stderr)
			}
		})
	}
}

// TestConformBlankCommandDaemon: without -once, a blank template command
// stops both tools too, after the file is written (consul-template: "failed
// parsing command", exit 14), and so does a blank -exec command.
func TestConformBlankCommandDaemon(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`}
	for _, args := range [][]string{{"-template", "in.tmpl:out:  "}, {"-template", "in.tmpl:out", "-exec", "  "}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			ds, dirs := startBoth(t, files, append([]string{"-log-level", "err", "-consul-addr", agent.HTTPAddr()}, args...)...)
			var codes [2]int
			for i, d := range ds {
				codes[i] = exitOrKill(d)
			}
			if codes[0] != codes[1] || readFile(filepath.Join(dirs[0], "out")) != readFile(filepath.Join(dirs[1], "out")) {
				t.Errorf("consul-template: exit %d, out %q; templater: exit %d, out %q\n  templater: %s", codes[0], readFile(filepath.Join(dirs[0], "out")),
					codes[1], readFile(filepath.Join(dirs[1], "out")), lastLines(ds[1].Stdout.String()))
			}
		})
	}
}

// TestConformExecEmptyCommand: an empty exec command (exec { command = "" },
// -exec "", which wins over a file's command) starts no child: consul-
// template reads it as no command (config/exec.go commandList.Empty), so
// -once renders and exits 0. A blank one ("  ") is a command that cannot
// start. Exit codes and the files left are compared.
func TestConformExecEmptyCommand(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`,
		"empty.hcl":     "exec {\n command = \"\"\n}\n",
		"emptylist.hcl": "exec {\n command = []\n}\n",
		"touch.hcl":     "exec {\n command = \"touch child\"\n}\n",
		"blank.hcl":     "exec {\n command = \"  \"\n}\n",
	}
	compareOnce(t, files, []string{"-template", "in.tmpl:out"}, [][]string{
		{"-config", "empty.hcl"},
		{"-config", "emptylist.hcl"},
		{"-config", "touch.hcl", "-exec", ""},
		{"-config", "touch.hcl", "-config", "empty.hcl"},
		{"-exec", ""},
		{"-config", "blank.hcl"},
		{"-exec", "   "},
	})
}
