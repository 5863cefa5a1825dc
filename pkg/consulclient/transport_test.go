package consulclient

import (
	"testing"
	"time"
)

// TestTransportHTTP: no settings keep api's pooled transport with 256 idle
// connections; each setting given changes its field only.
func TestTransportHTTP(t *testing.T) {
	def := Transport{}.HTTP()
	if def.MaxIdleConns != 256 || def.MaxIdleConnsPerHost != 256 || def.DisableKeepAlives || def.DialContext == nil {
		t.Fatalf("defaults: %+v", def)
	}
	d, n, yes := 7*time.Second, 3, true
	got := Transport{IdleConnTimeout: &d, TLSHandshakeTimeout: &d, DisableKeepAlives: &yes, MaxIdleConns: &n, MaxIdleConnsPerHost: &n, MaxConnsPerHost: &n, DialTimeout: &d}.HTTP()
	if got.IdleConnTimeout != d || got.TLSHandshakeTimeout != d || !got.DisableKeepAlives || got.MaxIdleConns != 3 || got.MaxIdleConnsPerHost != 3 || got.MaxConnsPerHost != 3 || got.DialContext == nil {
		t.Fatalf("with settings: %+v", got)
	}
	if again := (Transport{}).HTTP(); again.MaxConnsPerHost != 0 || again.DisableKeepAlives || again.IdleConnTimeout != def.IdleConnTimeout {
		t.Fatalf("settings leaked into the default: %+v", again)
	}
}
