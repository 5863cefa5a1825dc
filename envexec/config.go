package main

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/cliapp"
	"github.com/berth/berth/pkg/configfile"
)

// configSpec lists the keys of envconsul's configuration file that envexec
// supports: envconsul's Config (config.go) with consul-template's blocks for
// consul, exec, syslog and wait (config/*.go, v0.41.1 as envconsul pins:
// configfile.ConsulTemplateKeys, but for ca_cert_bytes, refused).
// Anything else is refused with a one-line error naming it.
var configSpec = configfile.Spec{
	Keys: append(configfile.ConsulTemplateKeys("consul.ssl.ca_cert_bytes"),
		"pristine", "sanitize", "upcase",
		"service_node_address", // envexec's: -service-node-address
		"consul",               // consul = "ADDR", consul-template's old form of consul { address } (config/mapstructure.go ConsulStringToStructFunc)
		"wait.bool",            // consul-template config/wait.go: WaitConfig's key for enabled
		"prefix.path", "prefix.format", "prefix.no_prefix",
		"prefix.key.name", "prefix.key.format", // read, no effect: see readSources
		"service.query", "service.format_id", "service.format_name", "service.format_address", "service.format_tag", "service.format_port",
		// Deprecated top-level keys envconsul still reads (config.go, Parse).
		"auth.enabled", "auth.username", "auth.password", "token", "splay", "timeout", "path", "retry",
		"ssl.enabled", "ssl.verify", "ssl.cert", "ssl.key", "ssl.ca_cert", "ssl.ca_path", "ssl.server_name",
	),
	Refused: map[string]string{
		"vault":                    "envexec reads Consul only, not Vault",
		"secret":                   "envexec reads Consul only, not Vault secrets",
		"custom_env":               "not an envconsul key either (its config.go refuses it): use exec { env { custom = [\"NAME=value\"] } }",
		"consul.ssl.ca_cert_bytes": "give the CA as a file (ca_cert)",
	},
}

// fileSetting is one value from a file for a flag: the flag is set to it
// unless given on the command line.
type fileSetting struct {
	value string
	key   string // the dotted key, for messages
	file  string
}

// fileConfig collects what the -config files say, later files winning.
type fileConfig struct {
	flags    map[string]fileSetting
	prefixes []*prefixSpec
	services []*serviceSpec
	command  []string
	env      envPolicy
	auth     authConfig // the auth blocks, merged field by field
	wait     waitConfig // the wait settings, merged field by field
	warn     []string
}

// loadConfigFiles reads the -config files and merges them under the
// flags, as envconsul does (cli.go, loadConfigs: defaults, then each path
// in order, then the command line): a setting from a file counts only when
// its flag was not given; the files' prefix and service blocks come before
// the -prefix and -service flags (later sources win); the command from a
// file is used when none is given on the command line.
func loadConfigFiles(o *options, flags *cliapp.Result, set map[string]bool) error {
	if len(o.configPaths) == 0 {
		return nil
	}
	files, err := configfile.Load(o.configPaths)
	if err != nil {
		return err
	}
	fc := &fileConfig{flags: map[string]fileSetting{}}
	for _, f := range files {
		if err := configSpec.Check(f); err != nil {
			return err
		}
		if err := fc.read(f); err != nil {
			return fmt.Errorf("config %s: %w", f.Path, err)
		}
	}
	names := make([]string, 0, len(fc.flags))
	for name := range fc.flags {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := fc.flags[name]
		if set[name] {
			continue
		}
		if (name == "http-addr" || name == "token-file") && s.value == "" {
			// An empty consul.address (over an earlier file's) is no
			// address: CONSUL_HTTP_ADDR or the default, as envconsul
			// hands it to consul-template's CreateConsulClient, which
			// keeps the API client's default for "". Likewise an empty
			// token_file is none (envconsul never opens it: newClientSet
			// does not pass a token file on).
			continue
		}
		var err error
		direct, isDirect := directSettings[name]
		switch {
		case name == "log-level":
			// Checked here to name the file; envconsul checks the
			// merged level, an empty one too (cli.go setupLogger).
			if err = checkLogLevel(s.value); err == nil {
				err = flags.Set(name, s.value)
			}
		case isDirect:
			err = direct(o, s.value)
		default:
			err = flags.Set(name, s.value)
		}
		if err != nil {
			return fmt.Errorf("config %s: %s: %w", s.file, s.key, err)
		}
		// consul-template config/ssl.go, Finalize: a non-empty cert, key,
		// CA or server name, or any verify, turns SSL on; an empty one
		// does not (StringPresent).
		if strings.HasPrefix(name, "consul-ssl-") && (s.value != "" || name == "consul-ssl-verify") {
			o.peer.sslImplied = true
		}
	}
	o.prefixes = append(fc.prefixes, o.prefixes...)
	o.services = append(fc.services, o.services...)
	o.fileCommand = fc.command
	o.env = fc.env
	o.peer.warn = append(o.peer.warn, fc.warn...)
	o.peer.fileAuth = fc.auth
	o.fileWait = fc.wait
	return nil
}

// directSettings are file settings without a flag of their own.
var directSettings = map[string]func(o *options, v string) error{
	"syslog-name": func(o *options, v string) error { o.syslog.name = v; return nil },
	"consul-transport-idle-conn-timeout": func(o *options, v string) error {
		return optDuration{&o.peer.transport.IdleConnTimeout}.Set(v)
	},
	"consul-transport-max-idle-conns": func(o *options, v string) error { return optInt{&o.peer.transport.MaxIdleConns}.Set(v) },
	// envconsul decodes transport.max_conns_per_host but its runner.go
	// newClientSet never hands it to CreateConsulClient, whose transport
	// then has no limit: checked and not used (readConsul warns).
	"consul-transport-max-conns-per-host": func(o *options, v string) error { var n *int; return optInt{&n}.Set(v) },
}

// setFlag records a file value for a flag (or a direct setting).
func (fc *fileConfig) setFlag(file, key, flagName, value string) {
	fc.flags[flagName] = fileSetting{value: value, key: key, file: file}
}

// scalar reads m[k] as text for a flag: strings as they are, booleans,
// numbers and durations in the flag's syntax.
func scalar(kind string, v any) (string, error) {
	switch kind {
	case "bool":
		b, err := configfile.Bool(v)
		return fmt.Sprint(b), err
	case "int":
		n, err := fileInt(v)
		return fmt.Sprint(n), err
	case "duration":
		d, err := fileDuration(v)
		return d.String(), err
	}
	return configfile.String(v)
}

// fileDuration reads a duration as envconsul decodes one (config.go Parse:
// mapstructure v1.5.0 without weak typing): a string with
// time.ParseDuration (StringToTimeDurationHookFunc), a whole number as
// nanoseconds, and a number with a fraction cut to whole nanoseconds
// (decodeInt: int64(f)): kill_timeout = 2.5 is 2ns, as there.
func fileDuration(v any) (time.Duration, error) {
	if f, ok := v.(float64); ok {
		return time.Duration(int64(f)), nil
	}
	return configfile.Duration(v)
}

// fileInt reads a whole number as envconsul decodes one (mapstructure
// decodeInt): a number with a fraction is cut, attempts = 2.9 is 2.
func fileInt(v any) (int, error) {
	if f, ok := v.(float64); ok {
		return int(int64(f)), nil
	}
	return configfile.Int(v)
}

// flagKeys maps the keys of a block that are plain flags: key -> kind, flag.
type flagKeys map[string][2]string

var (
	topFlags = flagKeys{
		"kill_signal": {"string", "kill-signal"}, "reload_signal": {"string", "reload-signal"},
		"log_level": {"string", "log-level"}, "max_stale": {"duration", "max-stale"}, "pid_file": {"string", "pid-file"},
		"pristine": {"bool", "pristine"}, "sanitize": {"bool", "sanitize"}, "upcase": {"bool", "upcase"},
		"service_node_address": {"bool", "service-node-address"},
	}
	// Deprecated top-level keys (envconsul config.go, Parse): each is moved
	// into its block, over the block's own value in the same file.
	deprecatedTopFlags = flagKeys{"token": {"string", "token"}, "splay": {"duration", "splay"}, "timeout": {"duration", "kill-timeout"}}
	consulFlags        = flagKeys{"address": {"string", "http-addr"}, "token": {"string", "token"}, "token_file": {"string", "token-file"}}
	retryFlags         = flagKeys{
		"enabled": {"bool", "consul-retry"}, "attempts": {"int", "consul-retry-attempts"},
		"backoff": {"duration", "consul-retry-backoff"}, "max_backoff": {"duration", "consul-retry-max-backoff"},
	}
	sslFlags = flagKeys{
		"enabled": {"bool", "consul-ssl"}, "verify": {"bool", "consul-ssl-verify"}, "cert": {"string", "consul-ssl-cert"},
		"key": {"string", "consul-ssl-key"}, "ca_cert": {"string", "consul-ssl-ca-cert"}, "ca_path": {"string", "consul-ssl-ca-path"},
		"server_name": {"string", "consul-ssl-server-name"},
	}
	transportFlags = flagKeys{
		"dial_keep_alive": {"duration", "consul-transport-dial-keep-alive"}, "dial_timeout": {"duration", "consul-transport-dial-timeout"},
		"disable_keep_alives": {"bool", "consul-transport-disable-keep-alives"}, "idle_conn_timeout": {"duration", "consul-transport-idle-conn-timeout"},
		"max_idle_conns": {"int", "consul-transport-max-idle-conns"}, "max_idle_conns_per_host": {"int", "consul-transport-max-idle-conns-per-host"},
		"max_conns_per_host": {"int", "consul-transport-max-conns-per-host"}, "tls_handshake_timeout": {"duration", "consul-transport-tls-handshake-timeout"},
	}
	execFlags = flagKeys{
		"kill_signal": {"string", "exec-kill-signal"}, "kill_timeout": {"duration", "kill-timeout"},
		"splay": {"duration", "splay"},
	}
	syslogFlags = flagKeys{"enabled": {"bool", "syslog"}, "facility": {"string", "syslog-facility"}, "name": {"string", "syslog-name"}}
)

// flagsOf records the keys of block m listed in keys.
func (fc *fileConfig) flagsOf(file, path string, m map[string]any, keys flagKeys) error {
	for k, v := range m {
		spec, ok := keys[k]
		if !ok {
			continue
		}
		s, err := scalar(spec[0], v)
		if err != nil {
			return fmt.Errorf("%s%s: %w", path, k, err)
		}
		fc.setFlag(file, path+k, spec[1], s)
	}
	return nil
}

// block reads m[k] as one block (the last if given several times, as
// envconsul's flattenKeys), or nil when absent.
func block(m map[string]any, k string) (map[string]any, error) {
	v, ok := m[k]
	if !ok {
		return nil, nil
	}
	b, err := configfile.Block(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k, err)
	}
	return b, nil
}

// read takes one file's settings.
func (fc *fileConfig) read(f *configfile.File) error {
	m := f.Values
	if err := fc.flagsOf(f.Path, "", m, topFlags); err != nil {
		return err
	}
	// envconsul warns about each deprecated top-level key it moves into
	// its block (config.go, Parse).
	for _, k := range []string{"token", "splay", "timeout", "auth", "ssl", "retry"} {
		if _, ok := m[k]; ok {
			fc.warn = append(fc.warn, fmt.Sprintf("config %s: top-level %s is deprecated (as in envconsul); see the README for its block", f.Path, k))
		}
	}
	if _, ok := m["path"]; ok {
		fc.warn = append(fc.warn, fmt.Sprintf("config %s: path is not read (as in envconsul): use prefix { path = ... } or -prefix", f.Path))
	}
	if err := fc.readConsul(f, m); err != nil {
		return err
	}
	if err := fc.readExec(f, m); err != nil {
		return err
	}
	if err := fc.flagsOf(f.Path, "", m, deprecatedTopFlags); err != nil {
		return err
	}
	if b, err := block(m, "syslog"); err != nil || b != nil {
		if err != nil {
			return err
		}
		if err := fc.flagsOf(f.Path, "syslog.", b, syslogFlags); err != nil {
			return err
		}
	}
	if v, ok := m["wait"]; ok {
		w, err := waitValue(v)
		if err != nil {
			return fmt.Errorf("wait: %w", err)
		}
		fc.wait = fc.wait.merge(w)
	}
	return fc.readSources(f, m)
}

// readConsul takes the consul { } block and the deprecated top-level auth,
// ssl and retry.
func (fc *fileConfig) readConsul(f *configfile.File, m map[string]any) error {
	if addr, ok := m["consul"].(string); ok {
		// consul = "ADDR": consul-template's old form of consul { address
		// = "ADDR" }, taken with a warning (config/mapstructure.go
		// ConsulStringToStructFunc, in envconsul's decoder). A deprecated
		// top-level token, auth, ssl or retry in the same file replaces
		// it with a fresh consul block (envconsul config.go, Parse: the
		// string is not a map), so the address is lost then, as there.
		fc.warn = append(fc.warn, fmt.Sprintf("config %s: consul = \"...\" is deprecated (as in envconsul): use consul { address = \"...\" }", f.Path))
		lost := ""
		for _, k := range []string{"token", "auth", "ssl", "retry"} {
			if _, ok := m[k]; ok && lost == "" {
				lost = k
			}
		}
		if lost == "" {
			fc.setFlag(f.Path, "consul", "http-addr", addr)
		} else {
			fc.warn = append(fc.warn, fmt.Sprintf("config %s: consul = %q is not read beside the top-level %s (as in envconsul)", f.Path, addr, lost))
		}
		m = maps.Clone(m)
		delete(m, "consul")
	}
	c, err := block(m, "consul")
	if err != nil {
		return err
	}
	if c == nil {
		c = map[string]any{}
	}
	if err := fc.flagsOf(f.Path, "consul.", c, consulFlags); err != nil {
		return err
	}
	if v, ok := c["namespace"]; ok {
		// envconsul decodes consul.namespace (consul-template's
		// ConsulConfig) but its runner.go newClientSet never hands it to
		// CreateConsulClient: the client asks without a namespace (or
		// with the API's CONSUL_NAMESPACE), and an open issue asks for it
		// (hashicorp/envconsul#184). Taken the same way, with a warning:
		// a Consul without namespaces refuses every request that names
		// one.
		if _, err := configfile.String(v); err != nil {
			return fmt.Errorf("consul.namespace: %w", err)
		}
		fc.warn = append(fc.warn, fmt.Sprintf("config %s: consul.namespace has no effect (as in envconsul): use -prefix PATH?ns=NS or CONSUL_NAMESPACE", f.Path))
	}
	for _, sub := range []struct {
		name, prefix string
		keys         flagKeys
	}{{"retry", "consul.retry.", retryFlags}, {"ssl", "consul.ssl.", sslFlags}, {"transport", "consul.transport.", transportFlags}} {
		// A deprecated top-level retry or ssl replaces the whole block of
		// consul {} in the same file (envconsul config.go, Parse).
		where := c
		if _, ok := m[sub.name]; ok && sub.name != "transport" {
			where = m
		}
		v, ok := where[sub.name]
		if !ok {
			continue
		}
		if s, isString := v.(string); isString && sub.name == "retry" {
			// retry = "5s" (deprecated): backoff and max_backoff.
			fc.setFlag(f.Path, "retry", "consul-retry-backoff", s)
			fc.setFlag(f.Path, "retry", "consul-retry-max-backoff", s)
			continue
		}
		b, err := configfile.Block(v)
		if err != nil {
			return fmt.Errorf("%s: %w", sub.prefix[:len(sub.prefix)-1], err)
		}
		if err := fc.flagsOf(f.Path, sub.prefix, b, sub.keys); err != nil {
			return err
		}
		if _, ok := b["max_conns_per_host"]; ok && sub.name == "transport" {
			fc.warn = append(fc.warn, fmt.Sprintf("config %s: consul.transport.max_conns_per_host has no effect (as in envconsul)", f.Path))
		}
	}
	// Likewise a deprecated top-level auth replaces consul.auth.
	where := c
	if _, ok := m["auth"]; ok {
		where = m
	}
	a, err := block(where, "auth")
	if err != nil || a == nil {
		return err
	}
	auth, err := authBlock(a)
	if err != nil {
		return fmt.Errorf("consul.auth: %w", err)
	}
	fc.auth = fc.auth.merge(auth)
	return nil
}

// authBlock reads auth { enabled, username, password }: the keys given,
// which merge over the earlier files' field by field (consul-template
// config/auth.go AuthConfig.Merge, from envconsul's Config.Merge).
func authBlock(a map[string]any) (authConfig, error) {
	var out authConfig
	for _, k := range []string{"username", "password"} {
		if _, ok := a[k]; !ok {
			continue
		}
		var s string
		if err := configfile.Get(a, k, configfile.String, &s); err != nil {
			return out, err
		}
		if k == "username" {
			out.user = &s
		} else {
			out.pass = &s
		}
	}
	if _, ok := a["enabled"]; ok {
		var b bool
		if err := configfile.Get(a, "enabled", configfile.Bool, &b); err != nil {
			return out, err
		}
		out.enabled = &b
	}
	return out, nil
}

// waitConfig is consul-template's WaitConfig (v0.41.1 config/wait.go),
// which envconsul uses for -wait and wait: each field nil until given.
type waitConfig struct {
	enabled  *bool // the block's key "bool"
	min, max *time.Duration
}

// merge is WaitConfig.Merge: every field o gives wins, field by field, so
// a later file's max keeps an earlier file's min, and -wait (which gives
// min and max) keeps a file's bool = false (envconsul cli.go loadConfigs
// merges the files, then the flags).
func (w waitConfig) merge(o waitConfig) waitConfig {
	w.enabled = mergeField(w.enabled, o.enabled)
	w.min = mergeField(w.min, o.min)
	w.max = mergeField(w.max, o.max)
	return w
}

// mergeField is consul-template's Merge rule for one field of a
// configuration (authConfig, waitConfig): the later one's value when it
// gives one (not nil), else the earlier one's.
func mergeField[T any](earlier, later *T) *T {
	if later != nil {
		return later
	}
	return earlier
}

// bounds is the wait envconsul's runner uses (WaitConfig.Finalize): enabled
// defaults to "min given and not 0", max to 4*min; disabled, or a min of
// 0, is no wait (0, 0). A max below min (only a block can give one; the
// string form refuses it) is taken: envconsul's runner then acts max after
// the first change (runner.go Start: the max timer fires first), which is
// max:max.
func (w waitConfig) bounds() (time.Duration, time.Duration) {
	var min time.Duration
	if w.min != nil {
		min = *w.min
	}
	enabled := min != 0
	if w.enabled != nil {
		enabled = *w.enabled
	}
	if !enabled || min <= 0 {
		return 0, 0
	}
	max := 4 * min
	if w.max != nil {
		max = *w.max
	}
	if max < min {
		min = max
	}
	return min, max
}

// waitValue reads wait = "MIN[:MAX]" (consul-template ParseWaitConfig,
// min and max given, as -wait) or wait { min, max, bool } (the keys
// given) as envconsul decodes them.
func waitValue(v any) (waitConfig, error) {
	if s, ok := v.(string); ok {
		min, max, err := parseWait(s)
		if err != nil {
			return waitConfig{}, err
		}
		return waitConfig{min: &min, max: &max}, nil
	}
	b, err := configfile.Block(v)
	if err != nil {
		return waitConfig{}, err
	}
	var w waitConfig
	for _, k := range []string{"min", "max"} {
		if _, ok := b[k]; !ok {
			continue
		}
		var d time.Duration
		if err := configfile.Get(b, k, fileDuration, &d); err != nil {
			return waitConfig{}, err
		}
		if k == "min" {
			w.min = &d
		} else {
			w.max = &d
		}
	}
	if _, ok := b["bool"]; ok {
		var on bool
		if err := configfile.Get(b, "bool", configfile.Bool, &on); err != nil {
			return waitConfig{}, err
		}
		w.enabled = &on
	}
	return w, nil
}

// readExec takes the exec { } block: the command, its signals and timeouts,
// and env { }.
func (fc *fileConfig) readExec(f *configfile.File, m map[string]any) error {
	e, err := block(m, "exec")
	if err != nil || e == nil {
		return err
	}
	if err := fc.flagsOf(f.Path, "exec.", e, execFlags); err != nil {
		return err
	}
	if v, ok := e["command"]; ok {
		// A string is split at commas, as envconsul's decoder does for
		// every list (config.go, Parse: mapstructure's
		// StringToSliceHookFunc(",") into consul-template's commandList):
		// "/app,--serve" is exec'd as two arguments; a string without a
		// comma is one command line, run as envexec runs one argument.
		cmd, err := configfile.Strings(v)
		if err != nil {
			return fmt.Errorf("exec.command: %w", err)
		}
		fc.command = cmd
	}
	// envconsul accepts these and does nothing with them: exec.reload_signal
	// goes to consul-template's child, whose Reload it never calls (a
	// change always restarts; -exec-reload-signal asks for a signal
	// instead).
	for _, k := range []string{"enabled", "timeout", "reload_signal"} {
		if v, ok := e[k]; ok {
			if k == "reload_signal" {
				if s, err := configfile.String(v); err != nil {
					return fmt.Errorf("exec.reload_signal: %w", err)
				} else if err := (signalFlag{sig: new(syscall.Signal), orNone: true}).Set(s); err != nil {
					return fmt.Errorf("exec.reload_signal: %w", err)
				}
			}
			fc.warn = append(fc.warn, fmt.Sprintf("config %s: exec.%s has no effect (as in envconsul)", f.Path, k))
		}
	}
	env, err := block(e, "env")
	if err != nil || env == nil {
		return err
	}
	return fc.env.read(env)
}

// readSources takes the prefix { } and service { } blocks, in order.
func (fc *fileConfig) readSources(f *configfile.File, m map[string]any) error {
	err := eachBlock(m, "prefix", func(b map[string]any) error {
		p, err := prefixBlock(b, "config "+f.Path+": prefix: ")
		if err != nil {
			return err
		}
		if v, ok := b["key"]; ok {
			// envconsul decodes a prefix's key { name format } blocks
			// (config_prefix.go KeyFormat) and uses them for Vault
			// secrets only (runner.go appendSecrets; appendPrefixes
			// ignores them): checked and not used.
			keys, err := configfile.Blocks(v)
			if err != nil {
				return fmt.Errorf("key: %w", err)
			}
			for _, k := range keys {
				for _, name := range []string{"name", "format"} {
					var s string
					if err := configfile.Get(k, name, configfile.String, &s); err != nil {
						return fmt.Errorf("key.%w", err)
					}
				}
			}
			fc.warn = append(fc.warn, fmt.Sprintf("config %s: prefix.key has no effect on a Consul prefix (as in envconsul, which uses per-key formats for Vault secrets only)", f.Path))
		}
		// A block without a path is kept as a blank one: envconsul's
		// PrefixConfigs.Finalize drops it or not by its place in the list
		// (envconsulPrefixList).
		fc.prefixes = append(fc.prefixes, p)
		return nil
	})
	if err != nil {
		return err
	}
	return eachBlock(m, "service", func(b map[string]any) error {
		s, err := serviceBlock(b, "config "+f.Path+": service: ")
		if err == nil {
			fc.services = append(fc.services, s)
		}
		return err
	})
}

// eachBlock calls read with each block under key in m (none when m has no
// key), in order; an error, of the blocks or of read, is "KEY: ERR".
func eachBlock(m map[string]any, key string, read func(map[string]any) error) error {
	v, ok := m[key]
	if !ok {
		return nil
	}
	blocks, err := configfile.Blocks(v)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	for _, b := range blocks {
		if err := read(b); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// prefixBlock reads prefix { path, format, no_prefix }; no_prefix defaults
// to true for Consul prefixes (runner.go, appendPrefixes). A path that
// does not parse makes a badPrefix, its problem starting with where.
func prefixBlock(b map[string]any, where string) (*prefixSpec, error) {
	// A block without a path is one with an empty path (envconsul's
	// PrefixConfig.Path is nil then, read as ""): see envconsulPrefixList.
	var path string
	if v, ok := b["path"]; ok {
		var err error
		if path, err = configfile.String(v); err != nil {
			return nil, fmt.Errorf("path: %w", err)
		}
	}
	p, err := parsePrefix(path)
	if err != nil {
		// envconsul refuses a bad path when its runner is built
		// (sourceProblem).
		p = badPrefix(path, fmt.Errorf("%spath: %w", where, err))
	}
	if v, ok := b["format"]; ok {
		s, err := configfile.String(v)
		if err != nil {
			return nil, fmt.Errorf("format: %w", err)
		}
		if p.format, err = parseFormat(s, false); err != nil {
			return nil, err
		}
		p.fmtSrc = s
	}
	if err := configfile.Get(b, "no_prefix", configfile.Bool, &p.noPrefix); err != nil {
		return nil, err
	}
	return p, nil
}

// serviceBlock reads service { query, format_id, ... } (config_service.go).
// A query that does not parse makes a badService, its problem starting
// with where.
func serviceBlock(b map[string]any, where string) (*serviceSpec, error) {
	// A block without a query has an empty one (config_service.go
	// ServiceConfig.Finalize), which envconsul refuses when it builds its
	// runner (runner.go init: NewCatalogServiceQuery, sourceProblem).
	var q string
	if err := configfile.Get(b, "query", configfile.String, &q); err != nil {
		return nil, err
	}
	s, err := parseService(q)
	if err != nil {
		s = badService(q, fmt.Errorf("%squery: %w", where, err))
	}
	for _, field := range serviceFields() {
		v, ok := b["format_"+field]
		if !ok {
			continue
		}
		text, err := configfile.String(v)
		if err != nil {
			return nil, fmt.Errorf("format_%s: %w", field, err)
		}
		if s.formats[field], err = parseFormat(text, true); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// envPolicy is exec { env { } }: which of envexec's own variables the
// command gets, filtered after the Consul variables are added, and custom
// variables added last (envconsul runner.go, applyConfigEnv).
type envPolicy struct {
	pristine  bool
	allowlist []string
	denylist  []string
	custom    []string // NAME=value
}

func (e *envPolicy) read(b map[string]any) error {
	for _, k := range []string{"allowlist", "whitelist", "denylist", "blacklist", "custom"} {
		v, ok := b[k]
		if !ok {
			continue
		}
		list, err := configfile.Strings(v)
		if err != nil {
			return fmt.Errorf("exec.env.%s: %w", k, err)
		}
		switch k {
		case "allowlist", "whitelist":
			e.allowlist = append(e.allowlist, list...)
		case "denylist", "blacklist":
			e.denylist = append(e.denylist, list...)
		default:
			for _, kv := range list {
				name, _, ok := strings.Cut(kv, "=")
				if !ok || nameProblem(name) != "" {
					return fmt.Errorf("exec.env.custom: %q: want NAME=value", kv)
				}
			}
			e.custom = append(e.custom, list...)
		}
	}
	if v, ok := b["pristine"]; ok {
		p, err := configfile.Bool(v)
		if err != nil {
			return fmt.Errorf("exec.env.pristine: %w", err)
		}
		e.pristine = p
	}
	return nil
}
