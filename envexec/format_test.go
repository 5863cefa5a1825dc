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

// TestServiceAddressAsEnvconsul: an instance registered without an address
// of its own has an empty <service>/address, as envconsul sets the
// catalog's ServiceAddress as is (consul-template v0.41.1
// dependency/catalog_service.go Fetch, envconsul runner.go appendServices);
// -service-node-address (a file's service_node_address) gives it the node's
// address instead. An instance with an address keeps it either way.
func TestServiceAddressAsEnvconsul(t *testing.T) {
	a, _, n := nsWith(t, "K", "v")
	bare, own := "envexecbareaddr", "envexecownaddr"
	consultest.Register(t, c(a), &api.AgentServiceRegistration{ID: bare + "-1", Name: bare, Port: 7002})
	consultest.Register(t, c(a), &api.AgentServiceRegistration{ID: own + "-1", Name: own, Address: "10.9.9.7", Port: 7003})
	nodes, _, err := c(a).Catalog().Service(bare, "", nil)
	if err != nil || len(nodes) != 1 || nodes[0].ServiceAddress != "" || nodes[0].Address == "" {
		t.Fatalf("catalog %s: %v %+v, want one instance without a service address on a node with one", bare, err, nodes)
	}
	node := nodes[0].Address
	cfg := filepath.Join(t.TempDir(), "c.hcl")
	if err := os.WriteFile(cfg, []byte("service_node_address = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ""},
		{[]string{"-service-node-address"}, node},
		{[]string{"-config", cfg}, node},
		{[]string{"-config", cfg, "-service-node-address=false"}, ""},
	} {
		dir := childDir(t)
		args := append(append([]string{"-once", "-prefix", n, "-service", bare, "-service", own}, tc.args...), childArgs(dir, "exit", 0)...)
		p := runEnvexec(t, a.HTTPAddr(), nil, args...)
		if p.code != 0 {
			t.Errorf("%q: exit %d\n%s", tc.args, p.code, p.stderr)
			continue
		}
		env := lastEnv(t, dir)
		got, ok := env[bare+"/address"]
		if !ok || got != tc.want || env[own+"/address"] != "10.9.9.7" || env[bare+"/port"] != "7002" {
			t.Errorf("%q: %s/address=%q (set: %v), %s/address=%q; want %q and 10.9.9.7\n%s", tc.args, bare, got, ok, own, env[own+"/address"], tc.want, fmtEnv(onlyConsul(env)))
		}
	}
}
