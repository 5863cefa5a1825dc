package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth/berth/pkg/consultest"
	"github.com/hashicorp/consul/api"
)

// TestEmptyFormatIsDefault: an empty format (-format "", a file's
// format = "", -service-format-port "") names variables as no format does,
// as envconsul tests formats with consul-template v0.41.1 config/convert.go
// StringPresent, false for "" (runner.go appendPrefixes, appendServices).
func TestEmptyFormatIsDefault(t *testing.T) {
	a, _, n := nsWith(t, "K", "v")
	svc := "envexecemptyformat"
	consultest.Register(t, c(a), &api.AgentServiceRegistration{ID: svc + "-1", Name: svc, Address: "10.9.9.8", Port: 7001})
	cfg := filepath.Join(t.TempDir(), "c.hcl")
	hcl := fmt.Sprintf("prefix {\n  path = %q\n  format = \"\"\n}\nservice {\n  query = %q\n  format_address = \"\"\n}\n", n, svc)
	if err := os.WriteFile(cfg, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-prefix", n, "-format", "", "-service", svc, "-service-format-address", ""},
		{"-config", cfg},
	} {
		dir := childDir(t)
		p := runEnvexec(t, a.HTTPAddr(), nil, append(append([]string{"-once"}, args...), childArgs(dir, "exit", 0)...)...)
		if p.code != 0 {
			t.Errorf("%q: exit %d\n%s", args, p.code, p.stderr)
			continue
		}
		env := lastEnv(t, dir)
		if env["K"] != "v" || env[svc+"/address"] != "10.9.9.8" {
			t.Errorf("%q: K=%q %s/address=%q, want the default names\n%s", args, env["K"], svc, env[svc+"/address"], fmtEnv(onlyConsul(env)))
		}
	}
}
