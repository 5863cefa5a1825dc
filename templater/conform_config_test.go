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
