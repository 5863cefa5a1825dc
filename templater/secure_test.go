package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/consultest"
)

// ACL token (flags, consul-template's aliases, file) and TLS to a real agent
// with default-deny ACLs serving HTTPS with its own CA.
func TestACLTokenAndTLS(t *testing.T) {
	const token = "3b9d6c20-5e4f-4a1b-8c7d-9e0f1a2b3c4d"
	a, tokenFile := consultest.StartSecureT(t, "templater-secure", token)
	put(t, a.Client(), "secure/value", "from-acl-agent")
	dir := t.TempDir()
	src := filepath.Join(dir, "in.tmpl")
	os.WriteFile(src, []byte(`value={{ key "secure/value" }}`), 0o644)
	https := "https://" + a.HTTPSAddr()
	tls := a.TLSFlags()
	for i, auth := range [][]string{
		{"-http-addr", https, "-token-file", tokenFile},
		{"-consul-addr", https, "-consul-token", token},
	} {
		out := filepath.Join(dir, "out"+string(rune('a'+i)))
		args := append(append(append([]string{}, auth...), tls...), "-once", "-once-timeout", "20s", "-log-level", "debug", "-template", src+":"+out)
		cmd := exec.Command(binary(t), args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		log, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", auth, err, log)
		}
		if got := readFile(out); got != "value=from-acl-agent" {
			t.Fatalf("%v: rendered %q", auth, got)
		}
		if strings.Contains(string(log), token) {
			t.Fatalf("the ACL token appears in templater's log:\n%s", log)
		}
	}
	// Without a token: nothing rendered, and -once fails naming the key.
	out := filepath.Join(dir, "denied")
	cmd := exec.Command(binary(t), append(append([]string{"-http-addr", https}, tls...), "-once", "-once-timeout", "3s", "-template", src+":"+out)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	log, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(log), "secure/value") {
		t.Fatalf("without a token: %v\n%s", err, log)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("rendered without a token")
	}
}
