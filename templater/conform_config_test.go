package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConformLegacyConsulString: consul = "ADDRESS", the string form older
// consul-template releases documented, is read by v0.41.1 as consul {
// address } (with a warning), in an HCL or JSON file or CT_LOCAL_CONFIG; no
// -consul-addr is given, so the file's address is the only way to the
// agent. Exit code and the file written are compared.
func TestConformLegacyConsulString(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`,
		"a.hcl":    "consul = \"@ADDR@\"\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n",
		"b.json":   `{"consul": "@ADDR@", "template": [{"source": "in.tmpl", "destination": "out"}]}`,
		"tok.hcl":  "consul = \"@ADDR@\"\n",
		"tok2.hcl": "consul {\n token = \"\"\n}\n",
	}
	cases := []struct {
		env  []string
		args []string
	}{
		{nil, []string{"-config", "a.hcl"}},
		{nil, []string{"-config", "b.json"}},
		{nil, []string{"-config", "tok.hcl", "-config", "tok2.hcl", "-template", "in.tmpl:out"}},
		{[]string{"CT_LOCAL_CONFIG=consul = \"" + agent.HTTPAddr() + "\""}, []string{"-template", "in.tmpl:out"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(append(tc.env, tc.args...), " "), func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, files)
				res[i] = runToolEnv(t, tl.bin, dir, filepath.Join(dir, "out"), 30*time.Second, tc.env, append([]string{"-once", "-log-level", "err"}, tc.args...)...)
			}
			sameOutcome(t, strings.Join(tc.args, " "), res[0], res[1])
			if res[0].Code != 0 {
				t.Errorf("consul-template did not render (%s): the case tests nothing", res[0])
			}
		})
	}
}

// TestConformCommandCommas: a command string in a configuration file is
// split on its commas into a command list, as consul-template v0.41.1
// decodes it (mapstructure's StringToSliceHookFunc(",")): "touch,x y" runs
// touch with "x y", "echo a,b > f" looks for a program "echo a", ",x" is no
// command; the -template and -exec flags keep theirs. Exit codes and the
// files each tool leaves are compared.
func TestConformCommandCommas(t *testing.T) {
	seedConform(t)
	tmpl := func(cmd string) string {
		return "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = \"" + cmd + "\"\n}\n"
	}
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`,
		"shell.hcl":      tmpl("echo a,b > cmdout"),
		"argv.hcl":       tmpl("touch,x y"),
		"emptyfirst.hcl": tmpl(",touch z"),
		"trailing.hcl":   tmpl("sh,-c,touch t,"),
		"texec.hcl":      "template {\n source = \"in.tmpl\"\n destination = \"out\"\n exec {\n  command = \"touch,e\"\n }\n}\n",
		"list.hcl":       "template {\n source = \"in.tmpl\"\n destination = \"out\"\n command = [\"touch\", \"a,b\"]\n}\n",
		"cmd.json":       `{"template": [{"source": "in.tmpl", "destination": "out", "command": "touch,j1,j2"}]}`,
		"exec.hcl":       "exec {\n command = \"touch,child\"\n}\n",
		"execshell.hcl":  "exec {\n command = \"sh -c 'echo a,b > x'\"\n}\n",
	}
	compareOnce(t, files, nil, [][]string{
		{"-config", "shell.hcl"},
		{"-config", "argv.hcl"},
		{"-config", "emptyfirst.hcl"},
		{"-config", "trailing.hcl"},
		{"-config", "texec.hcl"},
		{"-config", "list.hcl"},
		{"-config", "cmd.json"},
		{"-config", "exec.hcl", "-template", "in.tmpl:out"},
		{"-config", "execshell.hcl", "-template", "in.tmpl:out"},
		{"-template", "in.tmpl:out:touch f,g"},
		{"-template", "in.tmpl:out", "-exec", "touch c,d"},
	})
}
