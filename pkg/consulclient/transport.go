package consulclient

import (
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
)

// Transport holds consul-template's consul { transport { ... } } settings
// (config/transport.go), from a config file or the -consul-transport-*
// flags. A nil field keeps the default.
type Transport struct {
	DialKeepAlive, DialTimeout, IdleConnTimeout, TLSHandshakeTimeout *time.Duration
	DisableKeepAlives                                                *bool
	MaxIdleConns, MaxIdleConnsPerHost, MaxConnsPerHost               *int
}

// HTTP builds the HTTP transport to Consul: api.DefaultConfig's pooled
// transport (30 s dial timeout and TCP keep-alive) keeping up to 256 idle
// connections (blocking queries hold many at once), with the settings of s.
func (s Transport) HTTP() *http.Transport {
	t := api.DefaultConfig().Transport
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 256, 256
	if s.DialKeepAlive != nil || s.DialTimeout != nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		setIfGiven(&d.KeepAlive, s.DialKeepAlive)
		setIfGiven(&d.Timeout, s.DialTimeout)
		t.DialContext = d.DialContext
	}
	setIfGiven(&t.TLSHandshakeTimeout, s.TLSHandshakeTimeout)
	setIfGiven(&t.IdleConnTimeout, s.IdleConnTimeout)
	setIfGiven(&t.DisableKeepAlives, s.DisableKeepAlives)
	setIfGiven(&t.MaxIdleConns, s.MaxIdleConns)
	setIfGiven(&t.MaxIdleConnsPerHost, s.MaxIdleConnsPerHost)
	setIfGiven(&t.MaxConnsPerHost, s.MaxConnsPerHost)
	return t
}

// setIfGiven sets *dst to *v when v is not nil.
func setIfGiven[T any](dst, v *T) {
	if v != nil {
		*dst = *v
	}
}
