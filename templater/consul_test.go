package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/proctest"
)

// TestTransportFlagsWinOverFile: consul { transport { } } sets the
// transport; a -consul-transport-* flag given wins over the file; a bad
// number names the key.
func TestTransportFlagsWinOverFile(t *testing.T) {
	o := &options{set: map[string]bool{"consul-transport-dial-timeout": true, "consul-transport-max-idle-conns-per-host": true},
		transport: transportFlags{dialTimeout: 2 * time.Second, maxIdleConnsPerHost: 9, tlsHandshakeTimeout: time.Hour}}
	tr, err := transport(o, map[string]string{"dial_timeout": "10s", "max_idle_conns_per_host": "4", "max_conns_per_host": "5",
		"idle_conn_timeout": "1m", "tls_handshake_timeout": "3s", "disable_keep_alives": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if tr.MaxIdleConnsPerHost != 9 || tr.MaxConnsPerHost != 5 || tr.IdleConnTimeout != time.Minute || tr.TLSHandshakeTimeout != 3*time.Second || !tr.DisableKeepAlives || tr.MaxIdleConns != 256 {
		t.Fatalf("transport: %+v", tr)
	}
	if _, err := transport(o, map[string]string{"max_conns_per_host": "many"}); err == nil || !strings.Contains(err.Error(), "consul.transport.max_conns_per_host") {
		t.Fatalf("bad number: %v", err)
	}
}

// TestBadAddressNamesWhatWasGiven: an agent address no request could use is
// refused in one line naming where the user gave it: consul-template's
// -consul-addr, -http-addr, or the config file's consul.address (also in the
// old form consul = "ADDRESS"), not -http-addr for all of them.
// consul-template itself never names it: it retries the request, whose
// error shows only the URL.
func TestBadAddressNamesWhatWasGiven(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.tmpl"), filepath.Join(dir, "out")
	proctest.WriteFile(t, in, "x")
	block, legacy := filepath.Join(dir, "block.hcl"), filepath.Join(dir, "legacy.hcl")
	proctest.WriteFile(t, block, "consul {\n address = \"127.0.0.1:abc\"\n}\n")
	proctest.WriteFile(t, legacy, "consul = \"127.0.0.1:abc\"\n")
	tmpl := []string{"-once", "-log-level", "err", "-template", in + ":" + out}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-consul-addr", "127.0.0.1:1/"}, `templater: -consul-addr "127.0.0.1:1/": bad port`},
		{[]string{"-consul-addr", "http://127.0.0.1:1/"}, `templater: -consul-addr "http://127.0.0.1:1/": a trailing "/"`},
		{[]string{"-http-addr", "127.0.0.1:abc"}, `templater: -http-addr (CONSUL_HTTP_ADDR) "127.0.0.1:abc": bad port`},
		{[]string{"-http-addr", "127.0.0.1:1", "-consul-addr", "127.0.0.1:abc"}, `templater: -consul-addr "127.0.0.1:abc": bad port`},
		{[]string{"-consul-addr", "127.0.0.1:1", "-http-addr", "127.0.0.1:abc"}, `templater: -http-addr (CONSUL_HTTP_ADDR) "127.0.0.1:abc": bad port`},
		{[]string{"-config", block}, `templater: config ` + block + `: consul.address "127.0.0.1:abc": bad port`},
		{[]string{"-config", legacy}, `templater: config ` + legacy + `: consul.address "127.0.0.1:abc": bad port`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append(tc.args, tmpl...), &stdout, &stderr)
		if got := stderr.String(); code != exitRunner || !strings.HasPrefix(got, tc.want) || strings.Count(got, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and one line starting %q", tc.args, code, got, exitRunner, tc.want)
		}
	}
}
