package main

import (
	"bytes"
	"fmt"
	"html/template"
	"path"
	"regexp"
	"sort"
	"strings"
)

// invalidNameChars matches what -sanitize replaces (as envconsul does).
var invalidNameChars = regexp.MustCompile(`[^A-Za-z0-9_]`)

// nameProblem says why s cannot be an environment variable name, or "" when
// it can. Like envconsul (runner.go, appendPrefixes: only a blank key is
// dropped), any name is passed on, also those no shell can use ("db-host",
// "log.level", "db/host"): programs read them with getenv. Only what the
// kernel's "NAME=value" strings cannot carry is refused: an empty name, a
// "=" (the reader would split there) and a NUL byte.
func nameProblem(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "empty variable name"
	case strings.IndexByte(s, '=') >= 0:
		return "a variable name cannot contain \"=\" (use -sanitize or a format)"
	case strings.IndexByte(s, 0) >= 0:
		return "a variable name cannot contain a NUL byte (use -sanitize or a format)"
	}
	return ""
}

// shellName reports whether s is a name every shell and env-file reader
// accepts: [A-Za-z_][A-Za-z0-9_]*.
func shellName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// naming holds the options that turn Consul data into variables.
type naming struct {
	sanitize    bool
	upcase      bool
	nodeAddress bool // -service-node-address: an instance without an address gets its node's
}

// finish applies -sanitize and -upcase, in envconsul's order for KV keys
// (runner.go, appendPrefixes: sanitize, then upcase).
func (n naming) finish(name string) string {
	if n.sanitize {
		name = invalidNameChars.ReplaceAllString(name, "_")
	}
	if n.upcase {
		name = strings.ToUpper(name)
	}
	return name
}

// kvName computes the variable name for a key under prefix p. rel is the key
// relative to the prefix, without a leading slash.
//
// The pipeline is envconsul's (runner.go, appendPrefixes): with
// no_prefix=false the prefix path (characters outside [A-Za-z0-9_] as "_")
// and "_" go in front; the prefix's format template is applied ({{ key }} is
// the name so far); -sanitize; -upcase. Nested keys keep their "/" unless
// -sanitize or a format changes them.
func (n naming) kvName(p *prefixSpec, rel string) (string, error) {
	key := rel
	if !p.noPrefix {
		// The prefix as given, not as cleaned: "app/config/@dc2" puts
		// "app_config__dc2_" in front, as envconsul sanitizes
		// PrefixConfig.Path itself.
		key = invalidNameChars.ReplaceAllString(p.given, "_") + "_" + key
	}
	if p.format != nil {
		var err error
		if key, err = execFormat(p.format, map[string]string{"key": key}); err != nil {
			return "", err
		}
	}
	return n.finish(key), nil
}

// serviceName computes the variable name for one field (id, name, address,
// tag, port) of an instance of service svc: "<service>/<field>" or the
// field's format, then -upcase, then -sanitize, in envconsul's order for
// services (runner.go, appendServices). The "/" stays unless -sanitize.
func (n naming) serviceName(s *serviceSpec, svc, field string) (string, error) {
	key := svc + "/" + field
	if t := s.formats[field]; t != nil {
		var err error
		if key, err = execFormat(t, map[string]string{"key": field, "service": svc}); err != nil {
			return "", err
		}
	}
	if n.upcase {
		key = strings.ToUpper(key)
	}
	if n.sanitize {
		key = invalidNameChars.ReplaceAllString(key, "_")
	}
	return key, nil
}

// parseFormat parses a name format such as "APP_{{ key }}". The template has
// the functions key (and service, for service formats), upper, lower,
// replace and envconsul's replaceKey. An empty text gives nil: the default
// name.
func parseFormat(text string, withService bool) (*template.Template, error) {
	if text == "" {
		// An empty format is no format: the default name, as envconsul
		// tests formats with consul-template v0.41.1 config/convert.go
		// StringPresent, false for "" (runner.go appendPrefixes,
		// appendServices).
		return nil, nil
	}
	funcs := template.FuncMap{
		"key":     func() string { return "" },
		"upper":   strings.ToUpper,
		"lower":   strings.ToLower,
		"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		// envconsul's replaceKey (runner.go): {{ key | replaceKey "from" "to" }}
		// gives "to" when the key is exactly "from", else the key.
		"replaceKey": func(args ...string) string {
			if len(args) != 3 {
				return args[0]
			}
			if args[0] == args[2] {
				return args[1]
			}
			return args[2]
		},
	}
	if withService {
		funcs["service"] = func() string { return "" }
	}
	t, err := template.New("format").Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("format %q: %w", text, err)
	}
	// Try it once so a template that cannot run is refused at start.
	vals := map[string]string{"key": "x", "service": "s"}
	if _, err := execFormat(t, vals); err != nil {
		return nil, fmt.Errorf("format %q: %w", text, err)
	}
	return t, nil
}

// execFormat runs a format template; the functions key and service return
// the given values. Clone keeps the parsed template shareable.
func execFormat(t *template.Template, vals map[string]string) (string, error) {
	c, err := t.Clone()
	if err != nil {
		return "", err
	}
	funcs := template.FuncMap{"key": func() string { return vals["key"] }}
	if _, ok := vals["service"]; ok {
		funcs["service"] = func() string { return vals["service"] }
	}
	var buf bytes.Buffer
	if err := c.Funcs(funcs).Execute(&buf, nil); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// namedVar is one candidate variable: the Consul key (or service field) it
// comes from, the computed name and the value.
type namedVar struct {
	key   string
	name  string
	value string
	err   error
}

// skipped is a key that did not become a variable, and why. It never holds
// the value.
type skipped struct {
	key    string
	name   string
	reason string
}

// merge builds the environment from each source's variables in order: later
// sources win. It returns the variables and the keys it skipped.
func merge(lists [][]namedVar) (map[string]string, []skipped) {
	env := map[string]string{}
	var skips []skipped
	for _, list := range lists {
		for _, v := range list {
			switch {
			case v.err != nil:
				skips = append(skips, skipped{key: v.key, reason: "name format failed: " + v.err.Error()})
			case nameProblem(v.name) != "":
				skips = append(skips, skipped{key: v.key, name: v.name, reason: nameProblem(v.name)})
			case strings.IndexByte(v.value, 0) >= 0:
				skips = append(skips, skipped{key: v.key, name: v.name, reason: "value contains a NUL byte, which an environment cannot carry"})
			default:
				env[v.name] = v.value
			}
		}
	}
	return env, skips
}

// childEnv is the child's environment: the parent's (all of it, or with
// -pristine only the names matching the -env-allow list), then the Consul
// variables, which win; then, as envconsul's applyConfigEnv (runner.go)
// does for exec { env { } }, only names matching the allowlist (if any),
// none matching the denylist, and the custom NAME=value entries last.
//
// exec { env { pristine = true } } gives the child the custom entries only,
// the Consul variables dropped too, as envconsul's applyConfigEnv does; an
// empty environment (never nil, which would inherit envexec's) without them.
func childEnv(parent []string, vars map[string]string, pristine bool, allow []string, pol envPolicy) []string {
	out := make([]string, 0, len(parent)+len(vars)+len(pol.custom))
	if pol.pristine {
		parent, vars = nil, nil
	}
	seen := map[string]bool{}
	keep := func(name string) bool {
		if len(pol.allowlist) > 0 && !allowed(name, pol.allowlist) {
			return false
		}
		return !allowed(name, pol.denylist)
	}
	custom := map[string]bool{}
	for _, kv := range pol.custom {
		name, _, _ := strings.Cut(kv, "=")
		custom[name] = true
	}
	for _, kv := range parent {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			continue
		}
		if pristine && !allowed(name, allow) {
			continue
		}
		if _, over := vars[name]; over || seen[name] || custom[name] || !keep(name) {
			continue
		}
		seen[name] = true
		out = append(out, kv)
	}
	for _, name := range sortedNames(vars) {
		if keep(name) && !custom[name] {
			out = append(out, name+"="+vars[name])
		}
	}
	done := map[string]bool{}
	for i := len(pol.custom) - 1; i >= 0; i-- { // the last entry of a name wins
		name, _, _ := strings.Cut(pol.custom[i], "=")
		if done[name] {
			continue
		}
		done[name] = true
		out = append(out, pol.custom[i])
	}
	return out
}

// allowed reports whether name matches one of the -env-allow patterns (exact
// names or shell globs such as LC_*).
func allowed(name string, allow []string) bool {
	for _, p := range allow {
		if p == name {
			return true
		}
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// equalEnv reports whether two environments are the same.
func equalEnv(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// diffNames lists the names added, removed or changed between a and b.
func diffNames(a, b map[string]string) []string {
	var out []string
	for k, v := range b {
		if w, ok := a[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
