package main

import (
	"strings"
	"testing"
	"time"
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
