package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/hashicorp/consul/api"
)

// kvFuncs are the KV data functions: key, keyExists, keyOrDefault, ls,
// safeLs, tree, safeTree (template/funcs.go keyFunc ... treeFunc).
func kvFuncs(t *tmpl) template.FuncMap {
	st := func() *execState { return t.st }
	kv := func(s string) (kvValue, bool, error) {
		path, dc, err := parseKVQuery(s)
		if err != nil {
			return kvValue{}, false, err
		}
		v, ok := st().get(kvGetDep{path: path, dc: dc})
		if !ok {
			return kvValue{}, false, nil
		}
		return v.(kvValue), true, nil
	}
	list := func(s string, direct, safe bool) ([]*KeyPair, error) {
		if s == "" {
			return []*KeyPair{}, nil
		}
		path, dc, err := parseKVQuery(s)
		if err != nil {
			return nil, err
		}
		d := kvListDep{prefix: path, dc: dc}
		v, ok := st().get(d)
		if !ok {
			return []*KeyPair{}, nil
		}
		all := v.([]*KeyPair)
		// ls: non-empty keys with no "/"; tree: keys whose last part is
		// not empty (folder keys dropped) (template/funcs.go lsFunc, treeFunc).
		out := make([]*KeyPair, 0, len(all))
		for _, p := range all {
			if direct && p.Key != "" && !strings.Contains(p.Key, "/") || !direct && p.Key != "" && !strings.HasSuffix(p.Key, "/") {
				out = append(out, p)
			}
		}
		if safe && len(out) == 0 {
			st().miss(d.String() + " (empty; safe" + map[bool]string{true: "Ls", false: "Tree"}[direct] + " waits for data)")
		}
		return out, nil
	}
	return template.FuncMap{
		"key": func(s string) (string, error) {
			if s == "" {
				return "", nil // consul-template: no query for an empty name
			}
			v, ok, err := kv(s)
			if err != nil {
				return "", err
			}
			switch {
			case ok && !v.Exists && v.HadLast:
				return v.Last, nil // deleted: the last value stays (see kvValue)
			case ok && !v.Exists && t.cfg.ErrOnLookup:
				return "", &lookupError{key: s}
			case ok && !v.Exists:
				st().miss("kv.get(" + s + ") (key does not exist)")
			}
			return v.Value, nil
		},
		"keyExists": func(s string) (bool, error) {
			if s == "" {
				return false, nil
			}
			v, _, err := kv(s)
			return v.Exists, err
		},
		"keyOrDefault": func(s, def string) (string, error) {
			if s == "" {
				return def, nil
			}
			v, _, err := kv(s)
			if err != nil {
				return "", err
			}
			if !v.Exists || v.Value == "" {
				return def, nil
			}
			return v.Value, nil
		},
		"ls":       func(s string) ([]*KeyPair, error) { return list(s, true, false) },
		"safeLs":   func(s string) ([]*KeyPair, error) { return list(s, true, true) },
		"tree":     func(s string) ([]*KeyPair, error) { return list(s, false, false) },
		"safeTree": func(s string) ([]*KeyPair, error) { return list(s, false, true) },
	}
}

// lookupError is a key that has not existed since the start while
// err_on_failed_lookup is on: consul-template's watcher then fails the whole
// run (watch/view.go fetch: errLookup when a blocking key query answers
// without data), whatever error_fatal says.
type lookupError struct{ key string }

func (e *lookupError) Error() string {
	return fmt.Sprintf("key %q: lookup error: the key does not exist (err_on_failed_lookup)", e.key)
}

// dataFuncs are the functions that read Consul, files or the environment for
// one template. They record which deps the template used and which had no data.
func dataFuncs(t *tmpl) template.FuncMap {
	st := func() *execState { return t.st }
	health := func(connect bool) func(...string) ([]*HealthService, error) {
		return func(args ...string) ([]*HealthService, error) {
			if len(args) == 0 || args[0] == "" {
				// consul-template: no name (or an empty one) is no query,
				// no data (template/funcs.go serviceFunc, connectFunc).
				return []*HealthService{}, nil
			}
			d, states, err := parseServiceQuery(args[0], args[1:]...)
			if err != nil {
				return nil, err
			}
			d.connect = connect
			v, ok := st().get(d)
			if !ok {
				return []*HealthService{}, nil
			}
			return filterHealth(v.([]*HealthService), states), nil
		}
	}
	m := template.FuncMap{
		"service": health(false),
		"connect": health(true),
		"services": func(s ...string) ([]*CatalogSnippet, error) {
			q := strings.Join(s, "")
			if err := checkForm("services", q); err != nil {
				return nil, err
			}
			v, ok := st().get(servicesDep{dc: strings.TrimPrefix(q, "@")})
			if !ok {
				return []*CatalogSnippet{}, nil
			}
			return v.([]*CatalogSnippet), nil
		},
		"nodes": func(s ...string) ([]*Node, error) {
			if err := checkForm("nodes", strings.Join(s, "")); err != nil {
				return nil, err
			}
			_, dc, near, err := parseNodeQuery(strings.Join(s, ""))
			if err != nil {
				return nil, err
			}
			v, ok := st().get(nodesDep{dc: dc, near: near})
			if !ok {
				return []*Node{}, nil
			}
			return v.([]*Node), nil
		},
		"node": func(s ...string) (*CatalogNode, error) {
			if err := checkForm("node", strings.Join(s, "")); err != nil {
				return nil, err
			}
			name, dc, _, err := parseNodeQuery(strings.Join(s, ""))
			if err != nil {
				return nil, err
			}
			v, ok := st().get(nodeDep{name: name, dc: dc})
			if !ok {
				return nil, nil
			}
			return v.(nodeData).N, nil
		},
		"datacenters": func(ignore ...bool) ([]string, error) {
			if len(ignore) > 1 {
				return []string{}, fmt.Errorf("datacenters: wrong number of arguments, expected 0 or 1, but got %d", len(ignore))
			}
			v, ok := st().get(datacentersDep{})
			if !ok {
				return []string{}, nil
			}
			return v.([]string), nil
		},
		"file": func(path string) (string, error) {
			if path == "" {
				return "", nil // consul-template: no query for an empty name (funcs.go fileFunc)
			}
			if err := inSandbox(t.cfg.SandboxPath, path); err != nil {
				return "", err
			}
			v, ok := st().get(fileDep{path: path})
			if !ok {
				return "", nil
			}
			fd := v.(fileData)
			if fd.Err != nil {
				return "", fd.Err
			}
			return fd.Contents, nil
		},
		"env": func(name string) string { v, _ := st().lookupEnv(name); return v },
		// A set variable wins even when empty (funcs.go envWithDefaultFunc).
		"envOrDefault": func(name, def string) string {
			if v, ok := st().lookupEnv(name); ok {
				return v
			}
			return def
		},
		// An empty value in the child environment falls through to the
		// process's own (funcs.go mustEnvFunc).
		"mustEnv": func(name string) (string, error) {
			v, _ := st().lookupEnv(name)
			if v == "" {
				v = os.Getenv(name)
			}
			if v != "" {
				return v, nil
			}
			return "", fmt.Errorf("required environment variable %s is empty", name)
		},
		"executeTemplate": func(name string, data ...any) (string, error) {
			if len(data) > 1 {
				return "", fmt.Errorf("executeTemplate: wrong number of arguments, expected 1 or 2, but got %d", len(data)+1)
			}
			var buf bytes.Buffer
			var d any
			if len(data) > 0 {
				d = data[0]
			}
			if err := t.t.ExecuteTemplate(&buf, name, d); err != nil {
				return "", err
			}
			return buf.String(), nil
		},
		"scratch": func() *Scratch { return &st().scratch },
		// Connect CA, peerings, exported services (connect_deps.go;
		// template/funcs.go connectCARootsFunc, connectLeafFunc,
		// peeringsFunc, exportedServicesFunc).
		"caRoots": func(...string) ([]*CARoot, error) {
			v, ok := st().get(caRootsDep{})
			if !ok {
				return nil, nil
			}
			return v.([]*CARoot), nil
		},
		"caLeaf": func(s ...string) (any, error) {
			if len(s) == 0 || s[0] == "" {
				return nil, nil
			}
			v, ok := st().get(caLeafDep{service: s[0]})
			if !ok {
				return nil, nil
			}
			return v.(*api.LeafCert), nil
		},
		"peerings": func(s ...string) ([]*Peering, error) {
			if q := strings.Join(s, ""); q != "" {
				// consul-template takes only query parameters here
				// (?partition=), which templater refuses everywhere.
				return nil, fmt.Errorf("peerings %q: query parameters are not supported", q)
			}
			v, ok := st().get(peeringsDep{})
			if !ok {
				return []*Peering{}, nil
			}
			return v.([]*Peering), nil
		},
		"exportedServices": func(s ...string) ([]ExportedService, error) {
			if len(s) > 1 {
				return []ExportedService{}, fmt.Errorf("exportedServices: wrong number of arguments, expected 0 or 1")
			}
			v, ok := st().get(exportedServicesDep{partition: strings.Join(s, "")})
			if !ok {
				return []ExportedService{}, nil
			}
			return v.([]ExportedService), nil
		},
	}
	for k, v := range kvFuncs(t) {
		m[k] = v
	}
	return m
}

// Scratch is the per-execution scratch pad of `scratch`.
type Scratch struct {
	values map[string]any
}

func (s *Scratch) init() {
	if s.values == nil {
		s.values = map[string]any{}
	}
}

// Key reports whether the key is set.
func (s *Scratch) Key(k string) bool { s.init(); _, ok := s.values[k]; return ok }

// Get returns the value of k.
func (s *Scratch) Get(k string) any { s.init(); return s.values[k] }

// Set sets k.
func (s *Scratch) Set(k string, v any) string { s.init(); s.values[k] = v; return "" }

// SetX sets k only when it is not set.
func (s *Scratch) SetX(k string, v any) string {
	s.init()
	if _, ok := s.values[k]; !ok {
		s.values[k] = v
	}
	return ""
}

// MapSet sets mk in the map at k.
func (s *Scratch) MapSet(k, mk string, v any) (string, error) {
	s.init()
	m, ok := s.values[k].(map[string]any)
	if !ok {
		if _, set := s.values[k]; set {
			return "", fmt.Errorf("scratch: %q is not a map", k)
		}
		m = map[string]any{}
		s.values[k] = m
	}
	m[mk] = v
	return "", nil
}

// MapSetX sets mk in the map at k only when not set.
func (s *Scratch) MapSetX(k, mk string, v any) (string, error) {
	s.init()
	if m, ok := s.values[k].(map[string]any); ok {
		if _, set := m[mk]; set {
			return "", nil
		}
	}
	return s.MapSet(k, mk, v)
}

// MapValues returns the values of the map at k sorted by their keys.
func (s *Scratch) MapValues(k string) ([]any, error) {
	s.init()
	m, ok := s.values[k].(map[string]any)
	if !ok {
		return []any{}, nil
	}
	keys := make([]string, 0, len(m))
	for mk := range m {
		keys = append(keys, mk)
	}
	sort.Strings(keys)
	out := make([]any, len(keys))
	for i, mk := range keys {
		out[i] = m[mk]
	}
	return out, nil
}

// inSandbox fails when sandbox is set and path (symlinks resolved) is not
// below it (consul-template template/funcs.go pathInSandbox).
func inSandbox(sandbox, p string) error {
	if sandbox == "" {
		return nil
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(sandbox, real)
	if err != nil {
		return err
	}
	if strings.HasPrefix(rel, "..") {
		return fmt.Errorf("'%s' is outside of sandbox", p)
	}
	return nil
}
