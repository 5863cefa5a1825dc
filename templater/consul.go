package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/pkg/consulclient"
	"github.com/hashicorp/consul/api"
)

// transportFlags are consul-template's -consul-transport-* flags.
type transportFlags struct {
	dialKeepAlive, dialTimeout, tlsHandshakeTimeout time.Duration
	disableKeepAlives                               bool
	maxIdleConnsPerHost                             int
}

// consulConfig builds the Consul client configuration: flags, then the
// config file where no flag set the same thing, then the environment.
func consulConfig(o *options, fc *fileConfig) (*api.Config, error) {
	if fc.ConsulAddr != nil && !o.set["http-addr"] && !o.set["consul-addr"] {
		o.cli.Consul.SetAddressFrom(*fc.ConsulAddr, fc.ConsulAddrFrom)
	}
	o.cli.Consul.CertHoldsKey()
	ccfg, err := o.cli.Consul.Config()
	if err != nil {
		return nil, err
	}
	if sslEnabled(o, fc.ConsulTLS) {
		ccfg.Scheme = "https"
		applyFileTLS(ccfg, fc.ConsulTLS, o.set)
	}
	// verify, unlike the other ssl settings, counts with TLS off too: the
	// child environment's CONSUL_HTTP_SSL_VERIFY says false (consul-template
	// merges it into its config whatever enabled says); a flag wins.
	if fc.ConsulTLS["verify"] == "false" && !o.set["consul-ssl-verify"] {
		ccfg.TLSConfig.InsecureSkipVerify = true
	}
	if !o.consulSSLVerify {
		ccfg.TLSConfig.InsecureSkipVerify = true
	}
	tokenFlag := o.set["token"] || o.set["consul-token"] || o.set["token-file"] || o.set["consul-token-file"]
	switch {
	case tokenFlag:
	case fc.ConsulToken != nil:
		ccfg.Token = *fc.ConsulToken
	case fc.ConsulTokenFile != nil:
		b, err := os.ReadFile(*fc.ConsulTokenFile)
		if err != nil {
			return nil, fmt.Errorf("consul.token_file: %w", err)
		}
		ccfg.Token = strings.TrimSpace(string(b))
	case os.Getenv("CONSUL_TOKEN_FILE") != "":
		// consul-template's older variables (config/consul.go Finalize:
		// CONSUL_TOKEN before CONSUL_HTTP_TOKEN, CONSUL_TOKEN_FILE before
		// CONSUL_HTTP_TOKEN_FILE); a file it names wins over a token, as
		// the consul api client reads it (api.NewClient).
		b, err := os.ReadFile(os.Getenv("CONSUL_TOKEN_FILE"))
		if err != nil {
			return nil, fmt.Errorf("CONSUL_TOKEN_FILE: %w", err)
		}
		if tok := strings.TrimSpace(string(b)); tok != "" {
			ccfg.Token = tok
		}
	case os.Getenv("CONSUL_TOKEN") != "" && os.Getenv("CONSUL_HTTP_TOKEN_FILE") == "":
		ccfg.Token = os.Getenv("CONSUL_TOKEN")
	}
	if fc.ConsulNamespace != nil {
		ccfg.Namespace = *fc.ConsulNamespace
	}
	if user, pass, on := basicAuth(o, fc.ConsulAuth); on {
		ccfg.HttpAuth = &api.HttpBasicAuth{Username: user, Password: pass}
	}
	if p := ccfg.TLSConfig.CAPath; p != "" {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("CA path: %w", err)
		}
	}
	t, err := transport(o, fc.ConsulTransport)
	if err != nil {
		return nil, err
	}
	ccfg.Transport = t
	return ccfg, nil
}

// basicAuth is consul-template's HTTP basic authentication to Consul
// (config/auth.go ParseAuthConfig, Merge, Finalize): -consul-auth over the
// files' consul { auth { } } field by field (USER alone leaves a file's
// password), on when enabled says so, else when the username or the
// password is not empty. On, it is sent even with both empty
// (dependency/client_set.go: HttpAuth whenever AuthEnabled).
func basicAuth(o *options, file map[string]string) (user, pass string, on bool) {
	user, pass = file["username"], file["password"]
	if o.set["consul-auth"] {
		user = o.consulAuth
		if u, p, ok := strings.Cut(o.consulAuth, ":"); ok {
			user, pass = u, p
		}
	}
	if v, ok := file["enabled"]; ok {
		return user, pass, v == "true"
	}
	return user, pass, user != "" || pass != ""
}

// transport builds the HTTP transport to Consul from the -consul-transport-*
// flags and consul { transport { ... } }.
func transport(o *options, file map[string]string) (*http.Transport, error) {
	var s consulclient.Transport
	durations := map[string]**time.Duration{"dial_keep_alive": &s.DialKeepAlive, "dial_timeout": &s.DialTimeout,
		"idle_conn_timeout": &s.IdleConnTimeout, "tls_handshake_timeout": &s.TLSHandshakeTimeout}
	ints := map[string]**int{"max_idle_conns": &s.MaxIdleConns, "max_idle_conns_per_host": &s.MaxIdleConnsPerHost, "max_conns_per_host": &s.MaxConnsPerHost}
	for k, v := range file {
		var err error
		if p, ok := durations[k]; ok {
			*p, err = parsedPtr(time.ParseDuration, v)
		} else if p, ok := ints[k]; ok {
			*p, err = parsedPtr(strconv.Atoi, v)
		} else if k == "disable_keep_alives" {
			b := v == "true"
			s.DisableKeepAlives = &b
		}
		if err != nil {
			return nil, fmt.Errorf("consul.transport.%s: %w", k, err)
		}
	}
	f := o.transport
	flagWins(o.set, "consul-transport-dial-keep-alive", &s.DialKeepAlive, &f.dialKeepAlive)
	flagWins(o.set, "consul-transport-dial-timeout", &s.DialTimeout, &f.dialTimeout)
	flagWins(o.set, "consul-transport-disable-keep-alives", &s.DisableKeepAlives, &f.disableKeepAlives)
	flagWins(o.set, "consul-transport-max-idle-conns-per-host", &s.MaxIdleConnsPerHost, &f.maxIdleConnsPerHost)
	flagWins(o.set, "consul-transport-tls-handshake-timeout", &s.TLSHandshakeTimeout, &f.tlsHandshakeTimeout)
	return s.HTTP(), nil
}

// childEnv is what consul-template puts in the environment of the -exec
// child and of commands (manager/runner.go childEnv): the Consul address and
// token it was given, and whether it uses TLS and verifies it.
func childEnv(o *options, fc *fileConfig, c *api.Config) []string {
	var out []string
	if o.set["http-addr"] || o.set["consul-addr"] || fc.ConsulAddr != nil {
		// As given, scheme included (config.Consul.Address is the string
		// itself); consulConfig put a file's address into the flag.
		out = append(out, "CONSUL_HTTP_ADDR="+o.cli.Consul.HTTPAddr())
	}
	if c.HttpAuth != nil {
		out = append(out, "CONSUL_HTTP_AUTH="+c.HttpAuth.Username+":"+c.HttpAuth.Password)
	}
	// The token and token file as consul-template's configuration holds
	// them: flag, config file, then CONSUL_TOKEN or CONSUL_HTTP_TOKEN
	// (CONSUL_TOKEN_FILE or CONSUL_HTTP_TOKEN_FILE) (config/consul.go Finalize).
	tok := lastSet(os.Getenv("CONSUL_HTTP_TOKEN"), os.Getenv("CONSUL_TOKEN"))
	if fc.ConsulToken != nil {
		tok = *fc.ConsulToken
	}
	if o.set["token"] || o.set["consul-token"] {
		tok = c.Token
	}
	if tok != "" {
		out = append(out, "CONSUL_HTTP_TOKEN="+tok)
	}
	tf := lastSet(os.Getenv("CONSUL_HTTP_TOKEN_FILE"), os.Getenv("CONSUL_TOKEN_FILE"))
	if fc.ConsulTokenFile != nil {
		tf = *fc.ConsulTokenFile
	}
	if o.set["token-file"] || o.set["consul-token-file"] {
		tf = o.cli.Consul.TokenFile()
	}
	if tf != "" {
		out = append(out, "CONSUL_HTTP_TOKEN_FILE="+tf)
	}
	return append(out, "CONSUL_HTTP_SSL="+strconv.FormatBool(c.Scheme == "https"), "CONSUL_HTTP_SSL_VERIFY="+strconv.FormatBool(!c.TLSConfig.InsecureSkipVerify))
}

// lastSet returns the last non-empty of vs.
func lastSet(vs ...string) string {
	out := ""
	for _, v := range vs {
		if v != "" {
			out = v
		}
	}
	return out
}

// sslEnabled is consul-template's rule for talking TLS to Consul
// (config/ssl.go SSLConfig.Finalize, after the flags are merged over the
// files): -consul-ssl when given, else consul { ssl { enabled } } when set,
// else whether any TLS setting is given (a certificate, key, CA, server
// name or verify), on the command line or in the file. When it is off, the
// file's TLS settings are not used (dependency/client_set.go reads them only
// with SSL enabled).
func sslEnabled(o *options, file map[string]string) bool {
	if o.set["consul-ssl"] {
		return o.consulSSL
	}
	if v, ok := file["enabled"]; ok {
		return v == "true"
	}
	for _, f := range []string{"consul-ssl-cert", "consul-ssl-key", "consul-ssl-ca-cert", "consul-ssl-ca-path", "consul-ssl-server-name", "consul-ssl-verify"} {
		if o.set[f] {
			return true
		}
	}
	for _, k := range []string{"cert", "key", "ca_cert", "ca_cert_bytes", "ca_path", "server_name"} {
		if file[k] != "" {
			return true
		}
	}
	_, verify := file["verify"]
	return verify
}

// applyFileTLS applies a config file's consul { ssl { ... } } where no flag
// set the same thing (verify is consulConfig's).
func applyFileTLS(c *api.Config, ssl map[string]string, set map[string]bool) {
	if len(ssl) == 0 {
		return
	}
	if ssl["enabled"] == "true" {
		c.Scheme = "https"
	}
	for key, flags := range map[string][]string{"ca_cert": {"ca-file", "consul-ssl-ca-cert"}, "ca_path": {"ca-path", "consul-ssl-ca-path"},
		"cert": {"client-cert", "consul-ssl-cert"}, "key": {"client-key", "consul-ssl-key"}, "server_name": {"tls-server-name", "consul-ssl-server-name"}} {
		v, ok := ssl[key]
		if !ok || v == "" || set[flags[0]] || set[flags[1]] {
			continue
		}
		switch key {
		case "ca_cert":
			c.TLSConfig.CAFile = v
		case "ca_path":
			c.TLSConfig.CAPath = v
		case "cert":
			c.TLSConfig.CertFile = v
		case "key":
			c.TLSConfig.KeyFile = v
		case "server_name":
			c.TLSConfig.Address = v
		}
	}
}
