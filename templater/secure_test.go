package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/consultest"
)

// ACL token (flags, consul-template's aliases, file, environment) and TLS
// to a real agent with default-deny ACLs serving HTTPS with its own CA.
func TestACLTokenAndTLS(t *testing.T) {
	a := consultest.StartSecure(t, "templater-secure")
	put(t, a.Client(), "secure/value", "from-acl-agent")
	dir := t.TempDir()
	src := filepath.Join(dir, "in.tmpl")
	os.WriteFile(src, []byte(`value={{ key "secure/value" }}`), 0o644)
	https := "https://" + a.HTTPSAddr()
	// The shared ways with the address from -http-addr, then
	// consul-template's -consul-addr and -consul-token.
	cases := a.Credentials()
	for i := range cases {
		cases[i].Args = append([]string{"-http-addr", https}, cases[i].Args...)
	}
	cases = append(cases, consultest.Credential{Name: "-consul-addr, -consul-token", Args: append([]string{"-consul-addr", https, "-consul-token", a.Token}, a.TLSFlags()...)})
	for i, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			out := filepath.Join(dir, "out"+string(rune('a'+i)))
			args := append(append([]string{}, c.Args...), "-once", "-once-timeout", "20s", "-log-level", "debug", "-template", src+":"+out)
			cmd := exec.Command(binary(t), args...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, c.Env...)
			log, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", args, err, log)
			}
			if got := readFile(out); got != "value=from-acl-agent" {
				t.Fatalf("%v: rendered %q", args, got)
			}
			a.RequireNoToken(t, "templater's log", string(log))
		})
	}
	// Without a token: nothing rendered, and -once fails naming the key.
	out := filepath.Join(dir, "denied")
	cmd := exec.Command(binary(t), append(append([]string{"-http-addr", https}, a.NoToken().Args...), "-once", "-once-timeout", "3s", "-template", src+":"+out)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	log, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(log), "secure/value") {
		t.Fatalf("without a token: %v\n%s", err, log)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("rendered without a token")
	}
}
