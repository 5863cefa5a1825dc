package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// The environment variables consul-template v0.41.1 reads besides the
// Consul API client's: CONSUL_TOKEN and CONSUL_TOKEN_FILE (config/consul.go
// Finalize), CT_LOG, CONSUL_TEMPLATE_LOG and CONSUL_TEMPLATE_LOG_LEVEL
// (config/config.go Finalize) and CT_LOCAL_CONFIG (cli.go ParseFlags). Each
// case runs both tools with -once and the variables and compares the exit
// code, the written bytes and whether anything was logged. The token cases
// show the token through the child environment a template reads with env
// (manager/runner.go childEnv), as the test agent has no ACLs.
func TestConformEnvironment(t *testing.T) {
	seedConform(t)
	files := map[string]string{
		"in.tmpl":   `[{{ env "CONSUL_HTTP_TOKEN" }}] [{{ env "CONSUL_HTTP_TOKEN_FILE" }}] {{ key "ct/name" }}`,
		"tok":       "from-file\n",
		"cfg.hcl":   "consul {\n  token = \"from-config\"\n}\n",
		"tfcfg.hcl": "consul {\n  token_file = \"tok\"\n}\n",
	}
	local := "template {\n  contents = \"local {{ key \\\"ct/name\\\" }}\"\n  destination = \"out\"\n}\n"
	cases := []struct {
		name string
		env  []string
		args []string
	}{
		{"CONSUL_TOKEN", []string{"CONSUL_TOKEN=legacy"}, nil},
		{"CONSUL_TOKEN over CONSUL_HTTP_TOKEN", []string{"CONSUL_TOKEN=legacy", "CONSUL_HTTP_TOKEN=http"}, nil},
		{"CONSUL_HTTP_TOKEN", []string{"CONSUL_HTTP_TOKEN=http"}, nil},
		{"CONSUL_TOKEN under the flag", []string{"CONSUL_TOKEN=legacy"}, []string{"-consul-token", "flag"}},
		{"CONSUL_TOKEN under the config", []string{"CONSUL_TOKEN=legacy"}, []string{"-config", "cfg.hcl"}},
		{"CONSUL_TOKEN_FILE", []string{"CONSUL_TOKEN_FILE=tok"}, nil},
		{"CONSUL_TOKEN_FILE missing", []string{"CONSUL_TOKEN_FILE=nosuchfile"}, nil},
		{"token_file in config", nil, []string{"-config", "tfcfg.hcl"}},
		{"-consul-token-file", nil, []string{"-consul-token-file", "tok"}},
		{"CT_LOG err", []string{"CT_LOG=err"}, nil},
		{"CONSUL_TEMPLATE_LOG err", []string{"CONSUL_TEMPLATE_LOG=err"}, nil},
		{"CONSUL_TEMPLATE_LOG_LEVEL err", []string{"CONSUL_TEMPLATE_LOG_LEVEL=err"}, nil},
		{"CT_LOG bogus", []string{"CT_LOG=bogus"}, nil},
		{"CT_LOG error", []string{"CT_LOG=error"}, nil},
		{"CT_LOG under the flag", []string{"CT_LOG=bogus"}, []string{"-log-level", "err"}},
		{"CT_LOCAL_CONFIG template", []string{"CT_LOCAL_CONFIG=" + local, "CT_LOG=err"}, []string{"-template", "in.tmpl:other"}},
		{"CT_LOCAL_CONFIG only", []string{"CT_LOCAL_CONFIG=" + local, "CT_LOG=err"}, nil},
		{"CT_LOCAL_CONFIG over the config", []string{"CT_LOCAL_CONFIG=consul {\n token = \"local\"\n}\n", "CT_LOG=err"}, []string{"-config", "cfg.hcl"}},
		{"CT_LOCAL_CONFIG bad", []string{"CT_LOCAL_CONFIG=template {", "CT_LOG=err"}, nil},
		{"CT_LOCAL_CONFIG unknown key", []string{"CT_LOCAL_CONFIG=colour = \"red\"\n", "CT_LOG=err"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-once", "-consul-addr", agent.HTTPAddr()}, c.args...)
			if !strings.Contains(strings.Join(c.env, " "), "CT_LOCAL_CONFIG=template") {
				args = append(args, "-template", "in.tmpl:out")
			}
			var res [2]outcome
			var wg sync.WaitGroup
			for i, tl := range tools(t) {
				dir := toolDir(t, tl.name, files)
				wg.Add(1)
				go func(i int, bin, dir string) {
					defer wg.Done()
					res[i] = runToolEnv(t, bin, dir, dir+"/out", 30*time.Second, c.env, args...)
				}(i, tl.bin, dir)
			}
			wg.Wait()
			sameOutcome(t, strings.Join(c.env, " "), res[0], res[1])
			// consul-template logs nothing at its default level (warn) on
			// a good run; templater's default is info: compared only where
			// a variable sets the level.
			logged := [2]bool{res[0].Stderr != "", res[1].Stderr != ""}
			if strings.Contains(strings.Join(c.env, " "), "_LOG") && res[0].Code == 0 && logged[0] != logged[1] {
				t.Errorf("logged: consul-template %v, templater %v\n  consul-template: %s\n  templater: %s", logged[0], logged[1], lastLines(res[0].Stderr), lastLines(res[1].Stderr))
			}
			if res[1].Code != 0 && strings.Contains(strings.TrimSpace(res[1].Stderr), "\n") {
				t.Errorf("templater's error is more than one line: %q", res[1].Stderr)
			}
		})
	}
}

// TestConformConsulSSL: when consul-template talks TLS to Consul
// (config/ssl.go SSLConfig.Finalize): -consul-ssl or ssl { enabled } when
// given, else any TLS setting given turns it on; with it off, the file's TLS
// settings are not read. The template reads no Consul data, only what the
// child environment says (CONSUL_HTTP_SSL, CONSUL_HTTP_SSL_VERIFY; the test
// agent speaks plain HTTP), so both render whichever way it goes.
func TestConformConsulSSL(t *testing.T) {
	files := map[string]string{
		"ssl.tmpl":      `[{{ env "CONSUL_HTTP_SSL" }}] [{{ env "CONSUL_HTTP_SSL_VERIFY" }}]`,
		"sn.hcl":        "consul {\n  ssl {\n    server_name = \"x\"\n  }\n}\n",
		"verify.hcl":    "consul {\n  ssl {\n    verify = false\n  }\n}\n",
		"off.hcl":       "consul {\n  ssl {\n    enabled = false\n    cert = \"nosuch\"\n    server_name = \"x\"\n  }\n}\n",
		"empty.hcl":     "consul {\n  ssl {\n    ca_cert = \"\"\n  }\n}\n",
		"on.hcl":        "consul {\n  ssl {\n    enabled = true\n  }\n}\n",
		"offverify.hcl": "consul {\n  ssl {\n    enabled = false\n    verify = false\n  }\n}\n",
	}
	cases := [][]string{
		{},
		{"-consul-ssl"},
		{"-consul-ssl-server-name=x"},
		{"-consul-ssl-verify=false"},
		{"-consul-ssl-verify=true"},
		{"-consul-ssl=false", "-consul-ssl-server-name=x"},
		{"-config=sn.hcl"},
		{"-config=verify.hcl"},
		{"-config=off.hcl"},
		{"-config=empty.hcl"},
		{"-config=on.hcl"},
		{"-config=offverify.hcl"},
		{"-config=off.hcl", "-consul-ssl-server-name=y"},
		{"-config=on.hcl", "-consul-ssl=false"},
		{"-config=verify.hcl", "-consul-ssl-verify=true"},
		{"-config=offverify.hcl", "-consul-ssl"},
		{"-config=offverify.hcl", "-consul-ssl", "-consul-ssl-verify=true"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-once", "-log-level", "err", "-consul-addr", agent.HTTPAddr(), "-template", "ssl.tmpl:out"}, c...)
			res, _ := bothIn(t, files, "out", args...)
			sameOutcome(t, strings.Join(c, " "), res[0], res[1])
		})
	}
}

// TestConformCertHoldsKey: -consul-ssl-cert without -consul-ssl-key names a
// PEM file holding the certificate and its key (consul-template
// dependency/client_set.go CreateConsulClient loads the pair from the one
// file). The template reads no Consul data (the agent speaks plain HTTP):
// both must take the flag and render; a file that holds no key fails both.
func TestConformCertHoldsKey(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	files := map[string]string{
		"ssl.tmpl":     `[{{ env "CONSUL_HTTP_SSL" }}]`,
		"both.pem":     certPEM + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})),
		"certonly.pem": certPEM,
	}
	for _, c := range [][]string{{"-consul-ssl-cert=both.pem"}, {"-consul-ssl-cert=certonly.pem"}} {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-once", "-log-level", "err", "-consul-addr", agent.HTTPAddr(), "-consul-retry-attempts=1", "-template", "ssl.tmpl:out"}, c...)
			res, _ := bothIn(t, files, "out", args...)
			if res[0].Code == -1 {
				t.Fatalf("consul-template still running after 30s: the case shows nothing")
			}
			sameOutcome(t, strings.Join(c, " "), res[0], res[1])
		})
	}
}

// TestConformConsulAddrEnv: CONSUL_HTTP_ADDR in the environment of commands
// and of templates is the address as given, scheme included
// (manager/runner.go childEnv writes config.Consul.Address itself).
func TestConformConsulAddrEnv(t *testing.T) {
	seedConform(t)
	files := map[string]string{"in.tmpl": `{{ env "CONSUL_HTTP_ADDR" }}`, "a.hcl": "consul {\n  address = \"http://@ADDR@\"\n}\n"}
	for _, args := range [][]string{{"-consul-addr", "http://" + agent.HTTPAddr()}, {"-config", "a.hcl"}, {"-consul-addr", agent.HTTPAddr()}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			res, dirs := bothIn(t, files, "out", append([]string{"-once", "-log-level", "err", "-template", "in.tmpl:out:echo $CONSUL_HTTP_ADDR > cmd"}, args...)...)
			sameOutcome(t, strings.Join(args, " "), res[0], res[1])
			if a, b := fileState(dirs[0], "cmd"), fileState(dirs[1], "cmd"); a != b {
				t.Errorf("command saw: consul-template %s, templater %s", a, b)
			}
		})
	}
}
