package main

// Differential cases of what a -once run writes, prints and exits with:
// perms, backup, create_dest_dirs, delimiters, -parse-only, -dry, commands,
// writeToFile and -exec. Each runs consul-template v0.41.1 and templater on
// the same files and flags and compares the exit code, stdout, and the state
// (mode and bytes, or absence) of the destination and of the files named.

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fileState is f in dir as "MODE BYTES", "dir MODE" or "absent".
func fileState(dir, f string) string {
	st, err := os.Lstat(filepath.Join(dir, f))
	if err != nil {
		return "absent"
	}
	if st.IsDir() {
		return fmt.Sprintf("dir %o", st.Mode().Perm())
	}
	b, _ := os.ReadFile(filepath.Join(dir, f))
	return fmt.Sprintf("%o %q", st.Mode().Perm(), b)
}

var conformWriteCases = []struct {
	name  string
	files map[string]string
	dst   string
	check []string
	args  []string
}{
	{"perms existing kept", map[string]string{"in.tmpl": "x", "out": "old"}, "out", []string{"out"}, []string{"-template", "in.tmpl:out"}},
	{"perms cfg 0600", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n perms = 0600\n}\n", "out": "old"}, "out", []string{"out"}, []string{"-config", "c.hcl"}},
	{"perms cfg string", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n perms = \"600\"\n}\n"}, "out", []string{"out"}, []string{"-config", "c.hcl"}},
	{"perms cfg decimal", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n perms = 420\n}\n"}, "out", []string{"out"}, []string{"-config", "c.hcl"}},
	{"perms cfg 0o", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n perms = \"0o600\"\n}\n"}, "out", []string{"out"}, []string{"-config", "c.hcl"}},
	{"perms cfg bad", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n perms = \"abc\"\n}\n"}, "out", []string{"out"}, []string{"-config", "c.hcl"}},
	{"perms cfg 0 is unset", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n perms = 0\n}\n"}, "out", nil, []string{"-config", "c.hcl"}},
	{"perms cfg 0 keeps existing", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n perms = \"0000\"\n}\n", "out": "old"}, "out", nil, []string{"-config", "c.hcl"}},
	{"perms same content", map[string]string{"c.hcl": "template {\n contents = \"old\"\n destination = \"out\"\n perms = 0600\n}\n", "out": "old"}, "out", []string{"out"}, []string{"-config", "c.hcl"}},
	{"create_dest_dirs false", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"a/b/out\"\n create_dest_dirs = false\n}\n"}, "a/b/out", []string{"a"}, []string{"-config", "c.hcl"}},
	{"create_dest_dirs true", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"a/b/out\"\n}\n"}, "a/b/out", []string{"a", "a/b"}, []string{"-config", "c.hcl"}},
	{"backup new", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n backup = true\n}\n"}, "out", []string{"out.bak"}, []string{"-config", "c.hcl"}},
	{"backup same", map[string]string{"c.hcl": "template {\n contents = \"old\"\n destination = \"out\"\n backup = true\n}\n", "out": "old"}, "out", []string{"out.bak"}, []string{"-config", "c.hcl"}},
	{"backup existing bak", map[string]string{"c.hcl": "template {\n contents = \"new\"\n destination = \"out\"\n backup = true\n perms = 0600\n}\n", "out": "old", "out.bak": "older"}, "out", []string{"out.bak"}, []string{"-config", "c.hcl"}},
	{"dest is dir", map[string]string{"in.tmpl": "x", "out/keep": "k"}, "out/keep", []string{"out"}, []string{"-template", "in.tmpl:out"}},
	{"source missing", map[string]string{}, "out", nil, []string{"-template", "nope.tmpl:out"}},
	{"source and contents", map[string]string{"in.tmpl": "x", "c.hcl": "template {\n source = \"in.tmpl\"\n contents = \"y\"\n destination = \"out\"\n}\n"}, "out", nil, []string{"-config", "c.hcl"}},
	{"left only", map[string]string{"c.hcl": "template {\n contents = \"<% key \\\"ct/name\\\" }} {{x\"\n destination = \"out\"\n left_delimiter = \"<%\"\n}\n"}, "out", nil, []string{"-config", "c.hcl"}},
	{"same delims", map[string]string{"c.hcl": "template {\n contents = \"% key \\\"ct/name\\\" %\"\n destination = \"out\"\n left_delimiter = \"%\"\n right_delimiter = \"%\"\n}\n"}, "out", nil, []string{"-config", "c.hcl"}},
	{"empty delims", map[string]string{"c.hcl": "template {\n contents = \"{{ key \\\"ct/name\\\" }}\"\n destination = \"out\"\n left_delimiter = \"\"\n right_delimiter = \"\"\n}\n"}, "out", nil, []string{"-config", "c.hcl"}},
	{"parse-only good", map[string]string{"in.tmpl": "{{ key \"ct/name\" }}"}, "out", nil, []string{"-parse-only", "-template", "in.tmpl:out"}},
	{"parse-only bad", map[string]string{"in.tmpl": "{{ if }}"}, "out", nil, []string{"-parse-only", "-template", "in.tmpl:out"}},
	{"parse-only missing src", map[string]string{}, "out", nil, []string{"-parse-only", "-template", "nope:out"}},
	{"parse-only undefined fn", map[string]string{"in.tmpl": "{{ nofn }}"}, "out", nil, []string{"-parse-only", "-template", "in.tmpl:out"}},
	{"empty render", map[string]string{"in.tmpl": "{{ if false }}x{{ end }}"}, "out", nil, []string{"-template", "in.tmpl:out"}},
	{"empty render existing", map[string]string{"in.tmpl": "{{ if false }}x{{ end }}", "out": "old"}, "out", nil, []string{"-template", "in.tmpl:out"}},
	{"dry new", map[string]string{"in.tmpl": "a\nb"}, "out", nil, []string{"-dry", "-template", "in.tmpl:out"}},
	{"dry empty", map[string]string{"in.tmpl": ""}, "out", nil, []string{"-dry", "-template", "in.tmpl:out"}},
	{"dry two", map[string]string{"in.tmpl": "a\n", "in2.tmpl": "b"}, "out", nil, []string{"-dry", "-template", "in.tmpl:out", "-template", "in2.tmpl:sub/out2"}},
	{"dry same", map[string]string{"in.tmpl": "a", "out": "a"}, "out", nil, []string{"-dry", "-template", "in.tmpl:out"}},
	{"dry with cmd", map[string]string{"in.tmpl": "a"}, "out", []string{"ran"}, []string{"-dry", "-template", "in.tmpl:out:touch ran"}},
	{"command fails", map[string]string{"in.tmpl": "a"}, "out", nil, []string{"-template", "in.tmpl:out:exit 3"}},
	{"commands after a failed one", map[string]string{"a.tmpl": "a", "b.tmpl": "b"}, "out", []string{"out2", "log"}, []string{"-template", "a.tmpl:out:echo a >> log; exit 3", "-template", "b.tmpl:out2:echo b >> log"}},
	{"command failing last", map[string]string{"a.tmpl": "a", "b.tmpl": "b"}, "out", []string{"out2", "log"}, []string{"-template", "a.tmpl:out:echo a >> log", "-template", "b.tmpl:out2:echo b >> log; exit 3"}},
	{"command unchanged", map[string]string{"in.tmpl": "a", "out": "a"}, "out", []string{"ran"}, []string{"-template", "in.tmpl:out:touch ran"}},
	{"command twice same", map[string]string{"in.tmpl": "a", "in2.tmpl": "b"}, "out", []string{"ran"}, []string{"-template", "in.tmpl:out:echo x >> ran", "-template", "in2.tmpl:out2:echo x >> ran"}},
	{"command order", map[string]string{"in.tmpl": "a", "in2.tmpl": "b"}, "out", []string{"ran"}, []string{"-template", "in2.tmpl:out2:echo 2 >> ran", "-template", "in.tmpl:out:echo 1 >> ran"}},
	{"command env", map[string]string{"in.tmpl": "a"}, "out", []string{"env"}, []string{"-template", "in.tmpl:out:env | grep -v '^_=' | grep -v PWD | grep -v SHLVL | sort > env"}},
	{"command timeout", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n command = \"sleep 5\"\n command_timeout = \"100ms\"\n}\n"}, "out", nil, []string{"-config", "c.hcl"}},
	// A timeout of 0 starts the command and does not wait for it
	// (child.Start): its failure is not -once's.
	{"command timeout 0", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n command = \"exit 3\"\n command_timeout = \"0s\"\n}\n"}, "out", nil, []string{"-config", "c.hcl"}},
	{"exec timeout 0", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n exec {\n  command = \"exit 3\"\n  timeout = \"0s\"\n }\n}\n"}, "out", nil, []string{"-config", "c.hcl"}},
	{"writeToFile append only", map[string]string{"in.tmpl": `{{ "a" | writeToFile "w" "" "" "0600" "append" }}{{ "b" | writeToFile "w" "" "" "0600" "append" }}`}, "out", []string{"w"}, []string{"-template", "in.tmpl:out"}},
	{"writeToFile newline", map[string]string{"in.tmpl": `{{ "a" | writeToFile "w" "" "" "0600" "newline" }}`}, "out", []string{"w"}, []string{"-template", "in.tmpl:out"}},
	{"writeToFile existing mode", map[string]string{"w": "old", "in.tmpl": `{{ "a" | writeToFile "w" "" "" "0600" }}`}, "out", []string{"w"}, []string{"-template", "in.tmpl:out"}},
	{"writeToFile bad flags", map[string]string{"in.tmpl": `{{ "a" | writeToFile "w" "" "" "0600" "bogus" }}`}, "out", []string{"w"}, []string{"-template", "in.tmpl:out"}},
	{"writeToFile user", map[string]string{"in.tmpl": `{{ "a" | writeToFile "w" "root" "root" "0600" }}`}, "out", []string{"w"}, []string{"-template", "in.tmpl:out"}},
	{"writeToFile bad user", map[string]string{"in.tmpl": `{{ "a" | writeToFile "w" "nosuchuserxx" "" "0600" }}`}, "out", []string{"w"}, []string{"-template", "in.tmpl:out"}},
	{"writeToFile subdir", map[string]string{"in.tmpl": `{{ "a" | writeToFile "d/e/w" "" "" "0600" }}`}, "out", []string{"d", "d/e", "d/e/w"}, []string{"-template", "in.tmpl:out"}},
	{"writeToFile perms empty", map[string]string{"in.tmpl": `{{ "a" | writeToFile "w" "" "" "" }}`}, "out", []string{"w"}, []string{"-template", "in.tmpl:out"}},
	{"writeToFile perms decimal", map[string]string{"in.tmpl": `{{ "a" | writeToFile "w" "" "" "644" }}`}, "out", []string{"w"}, []string{"-template", "in.tmpl:out"}},
	{"writeToFile nonstring", map[string]string{"in.tmpl": `{{ 5 | writeToFile "w" "" "" "0644" }}`}, "out", []string{"w"}, []string{"-template", "in.tmpl:out"}},
	{"exec once code", map[string]string{"in.tmpl": "a"}, "out", nil, []string{"-template", "in.tmpl:out", "-exec", "sh -c 'exit 7'"}},
	{"exec once missing prog", map[string]string{"in.tmpl": "a"}, "out", nil, []string{"-template", "in.tmpl:out", "-exec", "no-such-prog-xyz"}},
	{"exec once kill signal", map[string]string{"in.tmpl": "a"}, "out", nil, []string{"-template", "in.tmpl:out", "-exec", "true", "-exec-kill-signal", "SIGUSR1", "-exec-reload-signal", "SIGHUP", "-exec-kill-timeout", "1s", "-exec-splay", "0s"}},
	{"exec once stdout", map[string]string{"in.tmpl": "a"}, "out", nil, []string{"-template", "in.tmpl:out", "-exec", "cat out"}},
	{"exec empty", map[string]string{"in.tmpl": "a"}, "out", nil, []string{"-template", "in.tmpl:out", "-exec", ""}},
	{"exec signal bad", map[string]string{"in.tmpl": "a"}, "out", nil, []string{"-template", "in.tmpl:out", "-exec", "true", "-exec-kill-signal", "BOGUS"}},
	{"exec cfg block", map[string]string{"in.tmpl": "a", "c.hcl": "exec {\n command = \"cat out\"\n}\n"}, "out", nil, []string{"-template", "in.tmpl:out", "-config", "c.hcl"}},
	{"exec cfg list", map[string]string{"in.tmpl": "a", "c.hcl": "exec {\n command = [\"cat\", \"out\"]\n}\n"}, "out", nil, []string{"-template", "in.tmpl:out", "-config", "c.hcl"}},
	{"wait block max below min", map[string]string{"a.tmpl": "a", "c.hcl": "wait {\n min = \"5s\"\n max = \"1s\"\n}\n"}, "out", nil, []string{"-config", "c.hcl", "-template", "a.tmpl:out"}},
	{"template wait block max below min", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n wait {\n min = \"5s\"\n max = \"1s\"\n }\n}\n"}, "out", nil, []string{"-config", "c.hcl"}},
	{"template wait string max below min", map[string]string{"c.hcl": "template {\n contents = \"x\"\n destination = \"out\"\n wait = \"5s:1s\"\n}\n"}, "out", nil, []string{"-config", "c.hcl"}},
	{"wait flag max below min", map[string]string{"a.tmpl": "a"}, "out", nil, []string{"-wait", "5s:1s", "-template", "a.tmpl:out"}},
	{"exec env custom", map[string]string{"in.tmpl": "a"}, "out", nil, []string{"-template", "in.tmpl:out", "-exec", "sh -c 'echo $FOO'", "-exec-env-custom", "FOO=bar"}},
}

func TestConformWrites(t *testing.T) {
	seedConform(t)
	for _, tc := range conformWriteCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err"}, tc.args...)
			res, dirs := bothIn(t, tc.files, tc.dst, args...)
			sameOutcome(t, tc.name, res[0], res[1])
			if res[0].Stdout != res[1].Stdout {
				t.Errorf("stdout: consul-template %q, templater %q", res[0].Stdout, res[1].Stdout)
			}
			for _, f := range append([]string{tc.dst}, tc.check...) {
				if a, b := fileState(dirs[0], f), fileState(dirs[1], f); a != b {
					t.Errorf("%s: consul-template %s, templater %s", f, a, b)
				}
			}
		})
	}
}

// conformWriteDifferences are cases where templater deliberately does less
// (or, with ours, more) than consul-template (README, differences): each
// runs both; the file named must be there for consul-template and not for
// templater (with ours: the reverse), so the difference is real and still
// there, and templater's exit code must be code.
var conformWriteDifferences = []struct {
	name  string
	files map[string]string
	file  string
	code  int
	args  []string
	ours  bool
}{
	// consul-template -once writes one of two templates with the same text
	// (hashicorp/consul-template#1719); templater writes both.
	{"same text, two destinations", map[string]string{"a.tmpl": "a", "b.tmpl": "a"}, "out2", exitOK, []string{"-template", "a.tmpl:out", "-template", "b.tmpl:out2"}, true},
	// consul-template renders both, the last one wins; templater refuses.
	{"two templates, one destination", map[string]string{"a.tmpl": "a", "b.tmpl": "b"}, "out", exitRunner, []string{"-template", "a.tmpl:out", "-template", "b.tmpl:out"}, false},
	// consul-template runs the command whatever enabled says.
	{"exec enabled = false", map[string]string{"a.tmpl": "a", "c.hcl": "exec {\n command = \"touch ran\"\n enabled = false\n}\n"}, "ran", exitOK, []string{"-template", "a.tmpl:out", "-config", "c.hcl"}, false},
	// consul-template starts the -exec child under -dry.
	{"-dry -exec", map[string]string{"a.tmpl": "a"}, "ran", exitOK, []string{"-dry", "-template", "a.tmpl:out", "-exec", "touch ran"}, false},
	// consul-template's -parse-only renders the templates that need no data
	// and runs their commands.
	{"-parse-only", map[string]string{"a.tmpl": "a"}, "ran", exitOK, []string{"-parse-only", "-template", "a.tmpl:out:touch ran"}, false},
}

func TestConformWriteDifferences(t *testing.T) {
	seedConform(t)
	for _, tc := range conformWriteDifferences {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-once", "-consul-addr", agent.HTTPAddr(), "-log-level", "err"}, tc.args...)
			res, dirs := bothIn(t, tc.files, "", args...)
			peer, ours := fileState(dirs[0], tc.file) != "absent", fileState(dirs[1], tc.file) != "absent"
			if peer == tc.ours {
				t.Errorf("consul-template (exit %d): %s there: %v; the difference is gone", res[0].Code, tc.file, peer)
			}
			if ours != tc.ours || res[1].Code != tc.code {
				t.Errorf("templater: exit %d, %s there: %v; want exit %d and %v\n  stderr: %s", res[1].Code, tc.file, ours, tc.code, tc.ours, lastLines(res[1].Stderr))
			}
		})
	}
}

// TestConformWriteModeAndOwner: the mode and owner a render leaves, with
// files set up beforehand (mode bits beyond the permissions, an owner other
// than the one asked for). Both tools run -once on the same files; the
// exit code and each file's full mode (setuid, setgid, sticky included),
// owner, group and bytes must be the same.
func TestConformWriteModeAndOwner(t *testing.T) {
	seedConform(t)
	me := fmt.Sprint(os.Getuid())
	cfg := func(body string) string {
		return "template {\n contents = \"x\"\n destination = \"out\"\n" + body + "}\n"
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		modes map[string]os.FileMode
		check []string
		old   bool // the files set up are dated 2020: show whether each checked file kept that date
		dry   bool // run with -dry
	}{
		{"setuid kept", map[string]string{"c.hcl": cfg(""), "out": "old"}, map[string]os.FileMode{"out": 0o750 | os.ModeSetuid}, []string{"out"}, false, false},
		{"setgid sticky kept", map[string]string{"c.hcl": cfg(""), "out": "old"}, map[string]os.FileMode{"out": 0o755 | os.ModeSetgid | os.ModeSticky}, []string{"out"}, false, false},
		{"backup keeps setgid", map[string]string{"c.hcl": cfg(" backup = true\n"), "out": "old"}, map[string]os.FileMode{"out": 0o755 | os.ModeSetgid}, []string{"out", "out.bak"}, false, false},
		{"perms set over setuid", map[string]string{"c.hcl": cfg(" perms = \"0640\"\n"), "out": "old"}, map[string]os.FileMode{"out": 0o755 | os.ModeSetuid}, []string{"out"}, false, false},
		{"same bytes, other owner", map[string]string{"c.hcl": cfg(" user = \"nobody\"\n command = \"touch ran\"\n"), "out": "x"}, nil, []string{"out", "ran"}, false, false},
		{"same bytes, other group", map[string]string{"c.hcl": cfg(" group = \"65534\"\n command = \"touch ran\"\n"), "out": "x"}, nil, []string{"out", "ran"}, false, false},
		{"same bytes, same owner", map[string]string{"c.hcl": cfg(" user = \"" + me + "\"\n command = \"touch ran\"\n"), "out": "x"}, nil, []string{"out", "ran"}, false, false},
		{"backup keeps the date", map[string]string{"c.hcl": cfg(" backup = true\n"), "out": "old"}, nil, []string{"out", "out.bak"}, true, false},
		{"dry: same bytes, other owner", map[string]string{"c.hcl": cfg(" user = \"nobody\"\n"), "out": "x"}, nil, []string{"out"}, false, true},
		{"dry: same bytes, same owner", map[string]string{"c.hcl": cfg(" user = \"" + me + "\"\n"), "out": "x"}, nil, []string{"out"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			var states [2]string
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, tc.files)
				for f, m := range tc.modes {
					if err := os.Chmod(filepath.Join(dir, f), m); err != nil {
						t.Fatal(err)
					}
				}
				old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
				if tc.old {
					for f := range tc.files {
						if err := os.Chtimes(filepath.Join(dir, f), old, old); err != nil {
							t.Fatal(err)
						}
					}
				}
				args := []string{"-once", "-log-level", "err", "-consul-addr", agent.HTTPAddr(), "-config", "c.hcl"}
				if tc.dry {
					args = append(args, "-dry")
				}
				res[i] = runTool(t, tl.bin, dir, "", 30*time.Second, args...)
				states[i] = fmt.Sprintf("stdout %q; ", res[i].Stdout)
				for _, f := range tc.check {
					st, err := os.Stat(filepath.Join(dir, f))
					if err != nil {
						states[i] += f + " absent; "
						continue
					}
					sys := st.Sys().(*syscall.Stat_t)
					states[i] += fmt.Sprintf("%s %o %d:%d %q", f, sys.Mode&0o7777, sys.Uid, sys.Gid, readFile(filepath.Join(dir, f)))
					if tc.old {
						states[i] += fmt.Sprintf(" dated 2020: %v", st.ModTime().Equal(old))
					}
					states[i] += "; "
				}
			}
			if res[0].Code != res[1].Code || states[0] != states[1] {
				t.Errorf("consul-template: exit %d, %s\n  stderr: %s\ntemplater:       exit %d, %s\n  stderr: %s",
					res[0].Code, states[0], lastLines(res[0].Stderr), res[1].Code, states[1], lastLines(res[1].Stderr))
			}
		})
	}
}

// treeState lists everything below dir, sorted, one entry a line: its
// path, its full mode (file type included), a symbolic link's text (dir
// itself written as DIR) and a regular file's bytes. A temp file left
// behind shows as a name of its own.
func treeState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "\n    %s %s", rel, st.Mode())
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			to, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %s", strings.ReplaceAll(to, dir, "DIR"))
		case st.Mode().IsRegular():
			fmt.Fprintf(&b, " %q", readFile(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestConformBackup: backup = true where DEST.bak cannot simply be made,
// with a backup left from before, and where the destination is a symbolic
// link. consul-template v0.41.1 (renderer/renderer.go AtomicWrite) moves
// DEST.bak to DEST.old.bak, hard-links DEST as DEST.bak (a symbolic link
// itself, not its target) and removes DEST.old.bak when that worked; a
// link that fails is a warning and the file is written all the same; the
// rename replaces a symbolic link destination with the new file. Each case
// sets up the same files for both tools (a shell script run in the
// folder), runs -once, and compares the exit code and every file left
// behind: names, modes, link texts and bytes.
func TestConformBackup(t *testing.T) {
	seedConform(t)
	const cfg = "template {\n contents = \"new\"\n destination = \"out\"\n backup = true\n command = \"touch ran\"\n}\n"
	for _, tc := range []struct{ name, setup string }{
		{"bak is an empty folder", "echo old > out; mkdir out.bak"},
		{"bak is a folder with files", "echo old > out; mkdir out.bak; echo k > out.bak/k"},
		{"bak cannot be made", "echo old > out; mkdir out.bak out.old.bak; echo k > out.old.bak/k"},
		{"bak cannot be made, old.bak a file", "echo old > out; mkdir out.bak; echo k > out.bak/k; echo oldest > out.old.bak"},
		{"bak cannot be made, unchanged", "printf new > out; mkdir out.bak out.old.bak; echo k > out.old.bak/k"},
		{"old.bak left behind", "echo old > out; echo oldest > out.old.bak"},
		{"old.bak and bak", "echo old > out; echo older > out.bak; echo oldest > out.old.bak"},
		{"bak without a destination", "echo older > out.bak"},
		{"bak is a link", "echo old > out; echo t > t; ln -s t out.bak"},
		{"bak and mode", "echo old > out; chmod 640 out; echo older > out.bak; chmod 600 out.bak"},
		{"link", "mkdir real; echo old > real/target; chmod 600 real/target; ln -s real/target out"},
		{"absolute link", "echo old > target; ln -s \"$PWD/target\" out"},
		{"link to a link", "echo old > target; ln -s target mid; ln -s mid out"},
		{"link to nothing", "ln -s nowhere out"},
		{"link to nothing, bak there", "ln -s nowhere out; echo older > out.bak"},
		{"link, bak there", "echo old > target; ln -s target out; echo older > out.bak"},
		{"link, bak cannot be made", "echo old > target; ln -s target out; mkdir out.bak out.old.bak; echo k > out.old.bak/k"},
		{"link, unchanged", "printf new > target; ln -s target out"},
		{"link to a folder", "mkdir d; ln -s d out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			var left [2]string
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, map[string]string{"c.hcl": cfg})
				setup := exec.Command("/bin/sh", "-ec", tc.setup)
				setup.Dir = dir
				if out, err := setup.CombinedOutput(); err != nil {
					t.Fatalf("setup: %v: %s", err, out)
				}
				res[i] = runTool(t, tl.bin, dir, "", 30*time.Second, "-once", "-log-level", "warn", "-consul-addr", agent.HTTPAddr(), "-config", "c.hcl")
				left[i] = treeState(t, dir)
			}
			if res[0].Code != res[1].Code || left[0] != left[1] {
				t.Errorf("%s:\nconsul-template: exit %d, files:%s\n  stderr: %s\ntemplater:       exit %d, files:%s\n  stderr: %s",
					tc.setup, res[0].Code, left[0], lastLines(res[0].Stderr), res[1].Code, left[1], lastLines(res[1].Stderr))
			}
		})
	}
}
