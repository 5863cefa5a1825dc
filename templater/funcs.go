package main

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/Masterminds/sprig/v3"
	"gopkg.in/yaml.v3"
)

// dataFuncs are the functions that read Consul, files or the environment for
// one template. They record which deps the template used and which had no data.
func dataFuncs(t *tmpl) template.FuncMap {
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
		out := all
		if direct {
			out = make([]*KeyPair, 0, len(all))
			for _, p := range all {
				if !strings.Contains(p.Key, "/") {
					out = append(out, p)
				}
			}
		}
		if safe && len(out) == 0 {
			st().miss(d.String() + " (empty; safe" + map[bool]string{true: "Ls", false: "Tree"}[direct] + " waits for data)")
		}
		return out, nil
	}
	health := func(connect bool) func(string, ...string) ([]*HealthService, error) {
		return func(s string, filters ...string) ([]*HealthService, error) {
			d, states, err := parseServiceQuery(s, filters...)
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
	return template.FuncMap{
		"key": func(s string) (string, error) {
			v, ok, err := kv(s)
			if err != nil {
				return "", err
			}
			if ok && !v.Exists {
				st().miss("kv.get(" + s + ") (key does not exist)")
			}
			return v.Value, nil
		},
		"keyExists": func(s string) (bool, error) {
			v, _, err := kv(s)
			return v.Exists, err
		},
		"keyOrDefault": func(s, def string) (string, error) {
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
		"service":  health(false),
		"connect":  health(true),
		"services": func(s ...string) ([]*CatalogSnippet, error) {
			_, dc, err := parseKVQuery(strings.Join(s, ""))
			if err != nil {
				return nil, err
			}
			v, ok := st().get(servicesDep{dc: dc})
			if !ok {
				return []*CatalogSnippet{}, nil
			}
			return v.([]*CatalogSnippet), nil
		},
		"nodes": func(s ...string) ([]*Node, error) {
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
		"datacenters": func(_ ...bool) ([]string, error) {
			v, ok := st().get(datacentersDep{})
			if !ok {
				return []string{}, nil
			}
			return v.([]string), nil
		},
		"file": func(path string) (string, error) {
			v, ok := st().get(fileDep{path: path})
			if !ok {
				return "", nil
			}
			return v.(fileData).Contents, nil
		},
		"env": func(name string) string { return os.Getenv(name) },
		"envOrDefault": func(name, def string) string {
			if v, ok := os.LookupEnv(name); ok && v != "" {
				return v
			}
			return def
		},
		"executeTemplate": func(name string, data ...any) (string, error) {
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
	}
}

// helperFuncs are consul-template's pure helpers, then Sprig's: every Sprig
// function as sprig_NAME, and under its plain name where that does not clash.
func helperFuncs() template.FuncMap {
	m := template.FuncMap{
		"byKey":                byKey,
		"byTag":                byTag,
		"byMeta":               byMeta,
		"contains":             contains,
		"containsAll":          func(v, l any) (bool, error) { return containsSet(v, l, true) },
		"containsAny":          func(v, l any) (bool, error) { return containsSet(v, l, false) },
		"containsNone":         func(v, l any) (bool, error) { r, err := containsSet(v, l, false); return !r, err },
		"containsNotAll":       func(v, l any) (bool, error) { r, err := containsSet(v, l, true); return !r, err },
		"in":                   func(l, v any) (bool, error) { return contains(v, l) },
		"explode":              explode,
		"explodeMap":           explodeMap,
		"mergeMap":             func(a, b map[string]any) map[string]any { return mergeMap(a, b, false) },
		"mergeMapWithOverride": func(a, b map[string]any) map[string]any { return mergeMap(a, b, true) },
		"indent":               indent,
		"join":                 func(sep string, l any) (string, error) { s, err := toStrings(l); return strings.Join(s, sep), err },
		"split": func(sep, s string) []string {
			s = strings.TrimSpace(s)
			if s == "" {
				return []string{}
			}
			return strings.Split(s, sep)
		},
		"splitToMap":      splitToMap,
		"trimSpace":       strings.TrimSpace,
		"trimPrefix":      func(p, s string) string { return strings.TrimPrefix(s, p) },
		"trimSuffix":      func(p, s string) string { return strings.TrimSuffix(s, p) },
		"toLower":         strings.ToLower,
		"toUpper":         strings.ToUpper,
		"toTitle":         func(s string) string { return strings.Title(s) }, //nolint:staticcheck // consul-template's meaning
		"replaceAll":      func(f, t, s string) string { return strings.ReplaceAll(s, f, t) },
		"regexMatch":      func(re, s string) (bool, error) { return regexp.MatchString(re, s) },
		"regexReplaceAll": regexReplaceAll,
		"parseBool": func(s string) (bool, error) {
			if s == "" {
				return false, nil
			}
			return strconv.ParseBool(s)
		},
		"parseInt": func(s string) (int64, error) {
			if s == "" {
				return 0, nil
			}
			return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		},
		"parseUint": func(s string) (uint64, error) {
			if s == "" {
				return 0, nil
			}
			return strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		},
		"parseFloat": func(s string) (float64, error) {
			if s == "" {
				return 0, nil
			}
			return strconv.ParseFloat(strings.TrimSpace(s), 64)
		},
		"parseJSON":             parseJSON,
		"parseYAML":             parseYAML,
		"toJSON":                func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err },
		"toJSONPretty":          func(v any) (string, error) { b, err := json.MarshalIndent(v, "", "  "); return string(b), err },
		"toUnescapedJSON":       func(v any) (string, error) { return jsonNoEscape(v, "") },
		"toUnescapedJSONPretty": func(v any) (string, error) { return jsonNoEscape(v, "  ") },
		"toYAML":                toYAML,
		"toTOML":                toTOML,
		"base64Encode":          func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"base64Decode":          func(s string) (string, error) { b, err := base64.StdEncoding.DecodeString(s); return string(b), err },
		"base64URLEncode":       func(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) },
		"base64URLDecode":       func(s string) (string, error) { b, err := base64.URLEncoding.DecodeString(s); return string(b), err },
		"sha256Hex":             func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) },
		"md5sum":                func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) },
		"timestamp":             timestamp,
		"add":                   func(b, a any) (any, error) { return mathOp("add", a, b) },
		"subtract":              func(b, a any) (any, error) { return mathOp("subtract", a, b) },
		"multiply":              func(b, a any) (any, error) { return mathOp("multiply", a, b) },
		"divide":                func(b, a any) (any, error) { return mathOp("divide", a, b) },
		"modulo":                func(b, a any) (any, error) { return mathOp("modulo", a, b) },
		"minimum":               func(b, a any) (any, error) { return mathOp("minimum", a, b) },
		"maximum":               func(b, a any) (any, error) { return mathOp("maximum", a, b) },
		"loop":                  loop,
		"sockaddr":              func(...any) (string, error) { return "", fmt.Errorf("sockaddr is not supported by templater") },
	}
	for name, fn := range sprig.HermeticTxtFuncMap() {
		m["sprig_"+name] = fn
		if _, clash := m[name]; !clash && !dataFuncNames[name] {
			m[name] = fn
		}
	}
	return m
}

// dataFuncNames are the names dataFuncs defines (Sprig must not shadow them).
var dataFuncNames = map[string]bool{"key": true, "keyExists": true, "keyOrDefault": true, "ls": true, "safeLs": true, "tree": true,
	"safeTree": true, "service": true, "connect": true, "services": true, "nodes": true, "node": true, "datacenters": true,
	"file": true, "env": true, "envOrDefault": true, "executeTemplate": true, "scratch": true}

func byKey(pairs []*KeyPair) (map[string]map[string]*KeyPair, error) {
	out := map[string]map[string]*KeyPair{}
	for _, p := range pairs {
		parts := strings.SplitN(p.Key, "/", 2)
		if len(parts) < 2 {
			continue
		}
		top := parts[0]
		if out[top] == nil {
			out[top] = map[string]*KeyPair{}
		}
		np := *p
		np.Key = parts[1]
		out[top][parts[1]] = &np
	}
	return out, nil
}

func byTag(in any) (map[string][]*HealthService, error) {
	out := map[string][]*HealthService{}
	switch l := in.(type) {
	case []*HealthService:
		for _, s := range l {
			for _, t := range s.Tags {
				out[t] = append(out[t], s)
			}
		}
	case []*CatalogSnippet:
		return nil, fmt.Errorf("byTag: wants the result of service, not services")
	default:
		return nil, fmt.Errorf("byTag: cannot group %T", in)
	}
	return out, nil
}

func byMeta(meta string, in []*HealthService) (map[string][]*HealthService, error) {
	out := map[string][]*HealthService{}
	for _, s := range in {
		v := s.ServiceMeta[meta]
		out[v] = append(out[v], s)
	}
	return out, nil
}

func contains(v, l any) (bool, error) {
	if l == nil {
		return false, nil
	}
	lv := reflect.ValueOf(l)
	switch lv.Kind() {
	case reflect.Slice, reflect.Array:
		for i := 0; i < lv.Len(); i++ {
			if reflect.DeepEqual(lv.Index(i).Interface(), v) || fmt.Sprint(lv.Index(i).Interface()) == fmt.Sprint(v) {
				return true, nil
			}
		}
		return false, nil
	case reflect.Map:
		return lv.MapIndex(reflect.ValueOf(v)).IsValid(), nil
	case reflect.String:
		return strings.Contains(lv.String(), fmt.Sprint(v)), nil
	}
	return false, fmt.Errorf("contains: cannot search in %T", l)
}

func containsSet(v, l any, all bool) (bool, error) {
	vv := reflect.ValueOf(v)
	if vv.Kind() != reflect.Slice && vv.Kind() != reflect.Array {
		return false, fmt.Errorf("containsAll/Any/None/NotAll: first argument must be a list, not %T", v)
	}
	for i := 0; i < vv.Len(); i++ {
		ok, err := contains(vv.Index(i).Interface(), l)
		if err != nil {
			return false, err
		}
		if all && !ok {
			return false, nil
		}
		if !all && ok {
			return true, nil
		}
	}
	return all, nil
}

func explode(pairs []*KeyPair) (map[string]any, error) {
	m := map[string]any{}
	for _, p := range pairs {
		if err := explodeInto(m, p.Key, p.Value); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func explodeMap(in map[string]any) (map[string]any, error) {
	m := map[string]any{}
	for k, v := range in {
		if err := explodeInto(m, k, v); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func explodeInto(m map[string]any, key string, v any) error {
	parts := strings.Split(strings.Trim(key, "/"), "/")
	cur := m
	for i, p := range parts {
		if i == len(parts)-1 {
			if _, isMap := cur[p].(map[string]any); isMap {
				return nil
			}
			cur[p] = v
			return nil
		}
		next, ok := cur[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	return nil
}

func mergeMap(a, b map[string]any, override bool) map[string]any {
	out := map[string]any{}
	for k, v := range b {
		out[k] = v
	}
	for k, v := range a {
		if _, ok := out[k]; ok && !override {
			continue
		}
		out[k] = v
	}
	return out
}

func indent(n int, s string) (string, error) {
	if n < 0 {
		return "", fmt.Errorf("indent: negative width %d", n)
	}
	pad := strings.Repeat(" ", n)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n"), nil
}

func toStrings(l any) ([]string, error) {
	switch v := l.(type) {
	case []string:
		return v, nil
	case ServiceTags:
		return v, nil
	}
	lv := reflect.ValueOf(l)
	if lv.Kind() != reflect.Slice && lv.Kind() != reflect.Array {
		return nil, fmt.Errorf("join: want a list, got %T", l)
	}
	out := make([]string, lv.Len())
	for i := range out {
		out[i] = fmt.Sprint(lv.Index(i).Interface())
	}
	return out, nil
}

func splitToMap(s, pairSep, kvSep string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, p := range strings.Split(s, pairSep) {
		k, v, ok := strings.Cut(p, kvSep)
		if !ok {
			return nil, fmt.Errorf("splitToMap: %q has no %q", p, kvSep)
		}
		out[k] = v
	}
	return out, nil
}

func regexReplaceAll(re, repl, s string) (string, error) {
	r, err := regexp.Compile(re)
	if err != nil {
		return "", err
	}
	return r.ReplaceAllString(s, repl), nil
}

func parseJSON(s string) (any, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]any{}, nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("parseJSON: %w", err)
	}
	return v, nil
}

func parseYAML(s string) (any, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]any{}, nil
	}
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("parseYAML: %w", err)
	}
	return v, nil
}

func jsonNoEscape(v any, ind string) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if ind != "" {
		enc.SetIndent("", ind)
	}
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func toYAML(v any) (string, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

func toTOML(v any) (string, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(v); err != nil {
		return "", fmt.Errorf("toTOML: %w", err)
	}
	return buf.String(), nil
}

func timestamp(f ...string) string {
	now := time.Now().UTC()
	if len(f) == 0 || f[0] == "" {
		return now.Format(time.RFC3339)
	}
	if f[0] == "unix" {
		return strconv.FormatInt(now.Unix(), 10)
	}
	return now.Format(f[0])
}

func loop(args ...any) ([]int64, error) {
	var start, stop int64
	switch len(args) {
	case 1:
		n, err := toInt(args[0])
		if err != nil {
			return nil, err
		}
		stop = n
	case 2:
		a, err := toInt(args[0])
		if err != nil {
			return nil, err
		}
		b, err := toInt(args[1])
		if err != nil {
			return nil, err
		}
		start, stop = a, b
	default:
		return nil, fmt.Errorf("loop: want 1 or 2 arguments, got %d", len(args))
	}
	if stop-start > 1e7 {
		return nil, fmt.Errorf("loop: %d iterations is too many", stop-start)
	}
	out := make([]int64, 0, max(stop-start, 0))
	for i := start; i < stop; i++ {
		out = append(out, i)
	}
	return out, nil
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case uint64:
		return int64(x), nil
	case float64:
		return int64(x), nil
	case string:
		return strconv.ParseInt(strings.TrimSpace(x), 10, 64)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(rv.Uint()), nil
	}
	return 0, fmt.Errorf("not a number: %v (%T)", v, v)
}

func toFloat(v any) (float64, bool, error) {
	switch x := v.(type) {
	case float64:
		return x, true, nil
	case float32:
		return float64(x), true, nil
	case string:
		if i, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return float64(i), false, nil
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, true, err
	}
	i, err := toInt(v)
	return float64(i), false, err
}

// mathOp computes a OP b. The template functions take (b, a) so that
// `{{ 5 | subtract 2 }}` is 5-2, as in consul-template.
func mathOp(op string, a, b any) (any, error) {
	fa, aFloat, err := toFloat(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	fb, bFloat, err := toFloat(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if aFloat || bFloat {
		switch op {
		case "add":
			return fa + fb, nil
		case "subtract":
			return fa - fb, nil
		case "multiply":
			return fa * fb, nil
		case "divide":
			if fb == 0 {
				return nil, fmt.Errorf("divide: by zero")
			}
			return fa / fb, nil
		case "modulo":
			if fb == 0 {
				return nil, fmt.Errorf("modulo: by zero")
			}
			return math.Mod(fa, fb), nil
		case "minimum":
			return math.Min(fa, fb), nil
		case "maximum":
			return math.Max(fa, fb), nil
		}
	}
	ia, ib := int64(fa), int64(fb)
	switch op {
	case "add":
		return ia + ib, nil
	case "subtract":
		return ia - ib, nil
	case "multiply":
		return ia * ib, nil
	case "divide":
		if ib == 0 {
			return nil, fmt.Errorf("divide: by zero")
		}
		return ia / ib, nil
	case "modulo":
		if ib == 0 {
			return nil, fmt.Errorf("modulo: by zero")
		}
		return ia % ib, nil
	case "minimum":
		return min(ia, ib), nil
	case "maximum":
		return max(ia, ib), nil
	}
	return nil, fmt.Errorf("unknown operation %s", op)
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
