package configfile

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A directory is every file below it, whatever its name, in lexical order,
// sub-directories included (consul-template config.FromPath: filepath.Walk).
func TestFilesDirectoryIsEveryFile(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "b.hcl"), "")
	write(t, filepath.Join(dir, "00-consul"), "")
	write(t, filepath.Join(dir, "a", "z.txt"), "")
	write(t, filepath.Join(dir, "c.json"), "{}")
	one := filepath.Join(t.TempDir(), "one.conf")
	write(t, one, "")
	got, err := Files([]string{one, dir})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{one, filepath.Join(dir, "00-consul"), filepath.Join(dir, "a", "z.txt"), filepath.Join(dir, "b.hcl"), filepath.Join(dir, "c.json")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Files = %q, want %q", got, want)
	}
	if _, err := Files([]string{filepath.Join(dir, "nope")}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("missing path: err = %v, want one naming it", err)
	}
}

func TestReadHCLAndJSON(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.hcl"), "consul { address = \"x:1\" }\nconsul { address = \"y:2\" }\ntemplate { source = \"s1\" }\ntemplate { source = \"s2\" }\nmax_stale = \"3s\"\n")
	write(t, filepath.Join(dir, "b.json"), `{"consul": {"address": "z:3"}, "template": [{"source": "j1"}, {"source": "j2"}]}`)
	files, err := Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		c, err := Block(f.Values["consul"])
		if err != nil {
			t.Fatal(err)
		}
		ts, err := Blocks(f.Values["template"])
		if err != nil {
			t.Fatal(err)
		}
		var srcs []string
		for _, tb := range ts {
			s, _ := String(tb["source"])
			srcs = append(srcs, s)
		}
		switch filepath.Base(f.Path) {
		case "a.hcl":
			if c["address"] != "y:2" || !reflect.DeepEqual(srcs, []string{"s1", "s2"}) {
				t.Fatalf("a.hcl: consul %v templates %v", c, srcs)
			}
			if d, err := Duration(f.Values["max_stale"]); err != nil || d != 3*time.Second {
				t.Fatalf("max_stale = %v, %v", d, err)
			}
		case "b.json":
			if c["address"] != "z:3" || !reflect.DeepEqual(srcs, []string{"j1", "j2"}) {
				t.Fatalf("b.json: consul %v templates %v", c, srcs)
			}
		}
	}
	write(t, filepath.Join(dir, "c.hcl"), "consul {\n")
	if _, err := Load([]string{dir}); err == nil || !strings.Contains(err.Error(), "c.hcl") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("syntax error: %v, want one line naming c.hcl", err)
	}
}

func TestSpecCheck(t *testing.T) {
	spec := Spec{
		Keys:    []string{"consul.address", "consul.ssl.enabled", "template.source", "wait", "wait.min", "exec"},
		Refused: map[string]string{"vault": "templater does not read Vault"},
	}
	cases := []struct{ body, want string }{
		{"consul { address = \"a\" ssl { enabled = true } }\ntemplate { source = \"x\" }\nwait = \"1s\"\nexec { anything = 1 }", ""},
		{"wait { min = \"1s\" }", ""},
		{"template { source = \"x\" }\ntemplate { source = \"y\" bogus = 1 }", "config F: template.bogus: not supported"},
		{"consul { ssl { verify = false } }", "config F: consul.ssl.verify: not supported"},
		{"vault { address = \"v\" }", "config F: vault: not supported: templater does not read Vault"},
		{"zeta = 1\nalpha = 2", "config F: alpha: not supported"},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "F")
		write(t, path, c.body)
		f, err := Read(path)
		if err != nil {
			t.Fatal(err)
		}
		err = spec.Check(f)
		got := ""
		if err != nil {
			got = strings.ReplaceAll(err.Error(), path, "F")
		}
		if got != c.want {
			t.Errorf("%q: Check = %q, want %q", c.body, got, c.want)
		}
	}
}

// TestConsulTemplateKeysExcept: the keys a program refuses are left out,
// and only those.
func TestConsulTemplateKeysExcept(t *testing.T) {
	all := ConsulTemplateKeys()
	some := ConsulTemplateKeys("exec.timeout", "consul.ssl.ca_cert_bytes")
	if len(some) != len(all)-2 || slices.Contains(some, "exec.timeout") || slices.Contains(some, "consul.ssl.ca_cert_bytes") || !slices.Contains(some, "consul.address") {
		t.Fatalf("ConsulTemplateKeys(2 refused): %d of %d keys: %v", len(some), len(all), some)
	}
}

// TestGetAndDecoders: Get leaves the destination alone when the key is
// absent and names the key in an error; the decoders take their own type
// or a string that parses, and say what they wanted.
func TestGetAndDecoders(t *testing.T) {
	b := map[string]any{"n": "12", "on": "true", "off": false, "whole": 3.0, "half": 2.5, "list": []any{"a", 1}, "bad": []any{"x"}}
	n, on, off, absent := 0, false, true, 7
	if err := Get(b, "n", Int, &n); err != nil || n != 12 {
		t.Errorf("Get n: %d, %v", n, err)
	}
	if err := Get(b, "on", Bool, &on); err != nil || !on {
		t.Errorf("Get on: %v, %v", on, err)
	}
	if err := Get(b, "off", Bool, &off); err != nil || off {
		t.Errorf("Get off: %v, %v", off, err)
	}
	if err := Get(b, "absent", Int, &absent); err != nil || absent != 7 {
		t.Errorf("Get absent: %d, %v", absent, err)
	}
	if err := Get(b, "half", Int, &n); err == nil || err.Error() != "half: want a whole number, got a number" || n != 12 {
		t.Errorf("Get half: %d, %v", n, err)
	}
	if err := Get(b, "bad", Bool, &on); err == nil || err.Error() != "bad: want true or false, got a list" {
		t.Errorf("Get bad: %v", err)
	}
	if _, err := Bool("yes"); err == nil || err.Error() != `want true or false, got "yes"` {
		t.Errorf(`Bool("yes"): %v`, err)
	}
	if w, err := Int(b["whole"]); err != nil || w != 3 {
		t.Errorf("Int(3.0): %d, %v", w, err)
	}
	if l, err := Strings(b["list"]); err != nil || !slices.Equal(l, []string{"a", "1"}) {
		t.Errorf("Strings: %q, %v", l, err)
	}
}

// A template kept in a -config folder is read as configuration, as
// consul-template reads every file there (config.FromPath); the error names
// the file and says why it was read. A file named by -config itself gets
// the plain syntax error.
func TestLoadFolderSyntaxErrorNamesFolder(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "templater.hcl"), "template { source = \"x\" }\n")
	tmpl := filepath.Join(dir, "nginx.conf.ctmpl")
	write(t, tmpl, "events {\n}\n{{ range service \"web\" }}\n{{ end }}\n")
	_, err := Load([]string{dir})
	if err == nil {
		t.Fatal("a template in the folder parsed as configuration")
	}
	msg := err.Error()
	if !strings.Contains(msg, tmpl) || !strings.Contains(msg, "below the -config folder "+dir) || strings.Contains(msg, "\n") {
		t.Fatalf("err = %q, want one line naming %s and the folder %s", msg, tmpl, dir)
	}
	_, err = Load([]string{tmpl})
	if err == nil || !strings.Contains(err.Error(), tmpl) || strings.Contains(err.Error(), "-config folder") {
		t.Fatalf("file named itself: err = %v, want the syntax error alone", err)
	}
}
