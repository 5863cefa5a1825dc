package main

// consul-template's pure helper functions. Each follows the rule of the
// function of the same name in consul-template v0.41.1 template/funcs.go
// (the source is cited per function); the differential suite
// (conform_funcs_test.go) renders every one with consul-template itself and
// compares the bytes.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"dario.cat/mergo"
	"github.com/BurntSushi/toml"
	"github.com/Masterminds/sprig/v3"
	"github.com/davecgh/go-spew/spew"
	socktmpl "github.com/hashicorp/go-sockaddr/template"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"
	yamlv2 "gopkg.in/yaml.v2"
)

// helperFuncs are consul-template's helpers, then Sprig's: every hermetic
// Sprig function as sprig_NAME (as consul-template exposes them), and also
// under its plain name where neither consul-template nor text/template has a
// function of that name (a templater extension: consul-template knows only
// the sprig_ names).
func helperFuncs() template.FuncMap {
	m := template.FuncMap{
		"base64Decode":    func(s string) (string, error) { return decode64(base64.StdEncoding, "base64Decode", s) },
		"base64Encode":    func(s string) (string, error) { return base64.StdEncoding.EncodeToString([]byte(s)), nil },
		"base64URLDecode": func(s string) (string, error) { return decode64(base64.URLEncoding, "base64URLDecode", s) },
		"base64URLEncode": func(s string) (string, error) { return base64.URLEncoding.EncodeToString([]byte(s)), nil },
		"byKey":           byKey,
		"byPort":          byPort,
		"byTag":           byTag,
		"byMeta":          byMeta,
		"contains":        func(v, l any) (bool, error) { return in(l, v) },
		// containsSomeFunc(retTrue, invert): the first argument is a []interface{}.
		"containsAll":           containsSome(true, true),
		"containsAny":           containsSome(false, false),
		"containsNone":          containsSome(true, false),
		"containsNotAll":        containsSome(false, true),
		"explode":               explode,
		"explodeMap":            explodeMap,
		"mergeMap":              func(dst, src map[string]any) (map[string]any, error) { return mergeMap(dst, src) },
		"mergeMapWithOverride":  func(dst, src map[string]any) (map[string]any, error) { return mergeMap(dst, src, mergo.WithOverride) },
		"in":                    in,
		"indent":                indent,
		"loop":                  loop,
		"join":                  func(sep string, a []string) (string, error) { return strings.Join(a, sep), nil },
		"trim":                  func(cutset, s string) (string, error) { return strings.Trim(s, cutset), nil },
		"trimPrefix":            func(p, s string) (string, error) { return strings.TrimPrefix(s, p), nil },
		"trimSuffix":            func(p, s string) (string, error) { return strings.TrimSuffix(s, p), nil },
		"trimSpace":             func(s string) (string, error) { return strings.TrimSpace(s), nil },
		"parseBool":             parseBool,
		"parseFloat":            parseFloat,
		"parseInt":              parseInt,
		"parseJSON":             parseJSON,
		"parseUint":             parseUint,
		"parseYAML":             parseYAML,
		"plugin":                plugin,
		"regexReplaceAll":       regexReplaceAll,
		"regexMatch":            regexMatch,
		"replaceAll":            func(f, t, s string) (string, error) { return strings.ReplaceAll(s, f, t), nil },
		"sha256Hex":             func(s string) (string, error) { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]), nil },
		"md5sum":                func(s string) (string, error) { return fmt.Sprintf("%x", md5.Sum([]byte(s))), nil },
		"hmacSHA256Hex":         hmacSHA256Hex,
		"timestamp":             timestamp,
		"toLower":               func(s string) (string, error) { return strings.ToLower(s), nil },
		"toJSON":                toJSON,
		"toJSONPretty":          toJSONPretty,
		"toUnescapedJSON":       func(v any) (string, error) { return jsonNoEscape(v, "") },
		"toUnescapedJSONPretty": func(v any) (string, error) { return jsonNoEscape(v, "  ") },
		"toTitle":               func(s string) (string, error) { return cases.Title(language.Und, cases.NoLower).String(s), nil },
		"toTOML":                toTOML,
		"toUpper":               func(s string) (string, error) { return strings.ToUpper(s), nil },
		"toYAML":                toYAML,
		"split":                 split,
		"splitToMap":            splitToMap,
		"sockaddr":              sockaddr,
		"writeToFile":           writeToFile,
		"add":                   func(b, a any) (any, error) { return arith("add", a, b) },
		"subtract":              func(b, a any) (any, error) { return arith("subtract", a, b) },
		"multiply":              func(b, a any) (any, error) { return arith("multiply", a, b) },
		"divide":                func(b, a any) (any, error) { return arith("divide", a, b) },
		"modulo":                func(b, a any) (any, error) { return arith("modulo", a, b) },
		"minimum":               func(b, a any) (any, error) { return minMax("minimum", a, b) },
		"maximum":               func(b, a any) (any, error) { return minMax("maximum", a, b) },
		"spew_dump":             func(args ...any) (string, error) { spew.Dump(args...); return "", nil },
		"spew_printf":           func(f string, args ...any) (string, error) { spew.Printf(f, args...); return "", nil },
		"spew_sdump":            func(args ...any) (string, error) { return spew.Sdump(args...), nil },
		"spew_sprintf":          func(f string, args ...any) (string, error) { return spew.Sprintf(f, args...), nil },
	}
	// text/template's own functions keep their meaning too (Sprig's slice
	// would take the place of the builtin slice).
	builtin := map[string]bool{"and": true, "call": true, "html": true, "index": true, "slice": true, "js": true, "len": true,
		"not": true, "or": true, "print": true, "printf": true, "println": true, "urlquery": true,
		"eq": true, "ge": true, "gt": true, "le": true, "lt": true, "ne": true}
	for name, fn := range sprig.HermeticTxtFuncMap() {
		m["sprig_"+name] = fn
		if _, clash := m[name]; !clash && !dataFuncNames[name] && !builtin[name] {
			m[name] = fn
		}
	}
	return m
}

// dataFuncNames are the names dataFuncs defines (Sprig must not shadow them).
var dataFuncNames = map[string]bool{"key": true, "keyExists": true, "keyOrDefault": true, "ls": true, "safeLs": true, "tree": true,
	"safeTree": true, "service": true, "connect": true, "services": true, "nodes": true, "node": true, "datacenters": true,
	"file": true, "env": true, "mustEnv": true, "envOrDefault": true, "executeTemplate": true, "scratch": true,
	"caRoots": true, "caLeaf": true, "peerings": true, "exportedServices": true}

func decode64(enc *base64.Encoding, name, s string) (string, error) {
	b, err := enc.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return string(b), nil
}

var metaKeyRe = regexp.MustCompile("[^a-zA-Z0-9_-]")

// indent puts n spaces before every line that is not empty (funcs.go indent).
func indent(n int, s string) (string, error) {
	if n < 0 {
		return "", fmt.Errorf("indent value must be a positive integer")
	}
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	atStart := true
	for i := 0; i < len(s); i++ {
		if atStart && s[i] != '\n' {
			b.WriteString(pad)
		}
		b.WriteByte(s[i])
		atStart = s[i] == '\n'
	}
	return b.String(), nil
}

// split trims s; empty gives an empty list (funcs.go split).
func split(sep, s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return []string{}, nil
	}
	return strings.Split(s, sep), nil
}

// splitToMap splits s on pairSep, then each part once on kvSep; parts
// without kvSep are skipped (funcs.go splitToMap: splitToMap SEP1 SEP2 S, so
// `key "x" | splitToMap "," "="`).
func splitToMap(pairSep, kvSep, s string) (map[string]string, error) {
	s = strings.TrimSpace(s)
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, p := range strings.Split(s, pairSep) {
		if k, v, ok := strings.Cut(p, kvSep); ok {
			out[k] = v
		}
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

func regexMatch(re, s string) (bool, error) {
	r, err := regexp.Compile(re)
	if err != nil {
		return false, err
	}
	return r.MatchString(s), nil
}

// The parse* helpers: "" is the zero value; anything else must parse as it
// is, spaces included (funcs.go parseBool, parseInt, parseUint, parseFloat).
func parseBool(s string) (bool, error) { return parseOrZero("parseBool", s, false, strconv.ParseBool) }

func parseInt(s string) (int64, error) {
	return parseOrZero("parseInt", s, 0, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
}

func parseUint(s string) (uint64, error) {
	return parseOrZero("parseUint", s, 0, func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) })
}

func parseFloat(s string) (float64, error) {
	return parseOrZero("parseFloat", s, 0, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) })
}

// parseJSON: "" is an empty map (funcs.go parseJSON).
func parseJSON(s string) (any, error) {
	return parseOrZero("parseJSON", s, any(map[string]any{}), decodeWith(json.Unmarshal))
}

// parseYAML: "" is an empty map; otherwise yaml.v2's reading (YAML 1.1:
// y/yes/on are true; maps are map[interface{}]interface{}) (funcs.go parseYAML).
func parseYAML(s string) (any, error) {
	return parseOrZero("parseYAML", s, any(map[string]any{}), decodeWith(yamlv2.Unmarshal))
}

// parseOrZero is the shape every parse* helper shares: "" gives empty;
// anything else is parse(s), whose error comes back as "NAME: ERR" with the
// zero T.
func parseOrZero[T any](name, s string, empty T, parse func(string) (T, error)) (T, error) {
	if s == "" {
		return empty, nil
	}
	v, err := parse(s)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// decodeWith turns an Unmarshal function (encoding/json, yaml.v2) into a
// parser of a string into any.
func decodeWith(unmarshal func([]byte, any) error) func(string) (any, error) {
	return func(s string) (any, error) {
		var v any
		err := unmarshal([]byte(s), &v)
		return v, err
	}
}

// toJSON / toJSONPretty: encoding/json, surrounding space trimmed (funcs.go).
func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return trimmedOr("toJSON", b, err)
}

func toJSONPretty(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return trimmedOr("toJSONPretty", b, err)
}

// trimmedOr is the shape the to* encoders share: the encoding with the
// surrounding space trimmed, or err as "NAME: ERR".
func trimmedOr(name string, b []byte, err error) (string, error) {
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return string(bytes.TrimSpace(b)), nil
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
	return strings.TrimRight(buf.String(), "\r\n"), nil
}

// toYAML: yaml.v2 (two-space indent), surrounding space trimmed (funcs.go toYAML).
func toYAML(v any) (string, error) {
	b, err := yamlv2.Marshal(v)
	return trimmedOr("toYAML", b, err)
}

// toTOML: BurntSushi/toml, surrounding space trimmed (funcs.go toTOML).
func toTOML(v any) (string, error) {
	var buf bytes.Buffer
	err := toml.NewEncoder(&buf).Encode(v)
	return trimmedOr("toTOML", buf.Bytes(), err)
}

// timestamp: now in UTC, RFC 3339 or the given Go layout, or "unix" seconds
// (funcs.go timestamp).
func timestamp(f ...string) (string, error) {
	now := time.Now().UTC()
	switch len(f) {
	case 0:
		return now.Format(time.RFC3339), nil
	case 1:
		if f[0] == "unix" {
			return strconv.FormatInt(now.Unix(), 10), nil
		}
		return now.Format(f[0]), nil
	}
	return "", fmt.Errorf("timestamp: wrong number of arguments, expected 0 or 1, but got %d", len(f))
}

func hmacSHA256Hex(message, key string) (string, error) {
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(message))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sockaddr evaluates a go-sockaddr template expression (funcs.go sockaddr).
func sockaddr(args ...string) (string, error) {
	return socktmpl.Parse("{{ " + strings.Join(args, " ") + " }}")
}

// plugin runs NAME with the non-empty trimmed arguments and returns its
// trimmed stdout; it fails when the program fails or runs over 30 s
// (funcs.go plugin).
func plugin(name string, args ...string) (string, error) {
	if name == "" {
		return "", nil
	}
	words := make([]string, 0, len(args))
	for _, a := range args {
		if v := strings.TrimSpace(a); v != "" {
			words = append(words, v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, words...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("exec %q: did not finish in 30s", name)
		}
		return "", fmt.Errorf("exec %q: %v; stderr: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// writeToFile writes content (the last argument) to path with the octal
// permissions and, when given, owner and group (names or ids); flags
// "append" and "newline" (funcs.go writeToFile). It renders as "".
func writeToFile(path, owner, group, perms string, args ...string) (string, error) {
	if len(args) == 0 {
		return "", fmt.Errorf("writeToFile: no content")
	}
	flags := ""
	if len(args) == 2 {
		flags = args[0]
	}
	content := []byte(args[len(args)-1])
	p, err := strconv.ParseUint(perms, 8, 32)
	if err != nil {
		return "", err
	}
	mode := os.FileMode(p)
	if strings.Contains(flags, "newline") {
		content = append(content, '\n')
	}
	var f *os.File
	if strings.Contains(flags, "append") {
		f, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, mode)
	} else {
		if err = os.MkdirAll(filepath.Dir(path), os.ModePerm); err == nil {
			f, err = os.Create(path)
		}
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		return "", err
	}
	if owner != "" || group != "" {
		uid, gid := os.Getuid(), os.Getgid()
		if owner != "" {
			if uid, err = lookupID(owner, func(n string) (string, error) { u, err := user.Lookup(n); return idOf(u, err) }); err != nil {
				return "", err
			}
		}
		if group != "" {
			if gid, err = lookupID(group, func(n string) (string, error) {
				g, err := user.LookupGroup(n)
				if err != nil {
					return "", err
				}
				return g.Gid, nil
			}); err != nil {
				return "", err
			}
		}
		if err := os.Chown(path, uid, gid); err != nil {
			return "", err
		}
	}
	return "", os.Chmod(path, mode)
}

func idOf(u *user.User, err error) (string, error) {
	if err != nil {
		return "", err
	}
	return u.Uid, nil
}

// lookupID resolves a name, or takes it as a number when no such name exists.
func lookupID(name string, lookup func(string) (string, error)) (int, error) {
	id, err := lookup(name)
	if err != nil {
		n, cerr := strconv.Atoi(name)
		if cerr != nil {
			return 0, err
		}
		return n, nil
	}
	return strconv.Atoi(id)
}

// loop yields start..stop-1 (one argument: 0..n-1); arguments are integers
// or strings holding one (funcs.go loop).
func loop(args ...any) ([]int64, error) {
	to64 := func(v any) (int64, error) {
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return rv.Int(), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return int64(rv.Uint()), nil
		case reflect.String:
			return parseInt(rv.String())
		}
		return 0, fmt.Errorf("loop: bad argument type: %T", v)
	}
	var a, b any
	switch len(args) {
	case 1:
		a, b = 0, args[0]
	case 2:
		a, b = args[0], args[1]
	default:
		return nil, fmt.Errorf("loop: wrong number of arguments, expected 1 or 2, but got %d", len(args))
	}
	start, err := to64(a)
	if err != nil {
		return nil, err
	}
	stop, err := to64(b)
	if err != nil {
		return nil, err
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

// number is one math operand: an int, a uint or a float.
type number struct {
	kind byte // 'i', 'u' or 'f'
	i    int64
	u    uint64
	f    float64
}

func toNumber(op string, v any) (number, error) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return number{kind: 'i', i: rv.Int()}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return number{kind: 'u', u: rv.Uint()}, nil
	case reflect.Float32, reflect.Float64:
		return number{kind: 'f', f: rv.Float()}, nil
	}
	return number{}, fmt.Errorf("%s: unknown type for %q (%T)", op, fmt.Sprint(v), v)
}

func (n number) float() float64 {
	switch n.kind {
	case 'i':
		return float64(n.i)
	case 'u':
		return float64(n.u)
	}
	return n.f
}

func (n number) int() int64 {
	if n.kind == 'u' {
		return int64(n.u)
	}
	return n.i
}

func (n number) value() any {
	switch n.kind {
	case 'i':
		return n.i
	case 'u':
		return n.u
	}
	return n.f
}

// arith computes a OP b with consul-template's types: a float on either side
// gives a float64, two uints a uint64, else an int64; modulo takes integers
// only (funcs.go add, subtract, multiply, divide, modulo). The template
// functions take (b, a), so `{{ 5 | subtract 2 }}` is 5-2.
func arith(op string, a, b any) (any, error) {
	x, y, err := toNumbers(op, a, b)
	if err != nil {
		return nil, err
	}
	switch {
	case x.kind == 'f' || y.kind == 'f':
		if op == "modulo" {
			return nil, fmt.Errorf("modulo: unknown type for %q", fmt.Sprint(b))
		}
		return basicArith(op, x.float(), y.float()), nil
	case x.kind == 'u' && y.kind == 'u':
		return intArith(op, x.u, y.u)
	}
	return intArith(op, x.int(), y.int())
}

// intArith is arith for two integers of one type: p OP q, where divide and
// modulo by 0 are an error "OP: integer divide by zero".
func intArith[T int64 | uint64](op string, p, q T) (any, error) {
	if q == 0 && (op == "divide" || op == "modulo") {
		return nil, fmt.Errorf("%s: integer divide by zero", op)
	}
	if op == "modulo" {
		return p % q, nil
	}
	return basicArith(op, p, q), nil
}

// basicArith is p OP q for op add, subtract or multiply, and p / q for
// divide (the only other op it is given).
func basicArith[T int64 | uint64 | float64](op string, p, q T) T {
	switch op {
	case "add":
		return p + q
	case "subtract":
		return p - q
	case "multiply":
		return p * q
	}
	return p / q
}

// toNumbers is toNumber of both operands of op, a first.
func toNumbers(op string, a, b any) (x, y number, err error) {
	if x, err = toNumber(op, a); err != nil {
		return x, y, err
	}
	y, err = toNumber(op, b)
	return x, y, err
}

// minMax returns the smaller (larger) operand as it was given: its own type;
// on a tie the second, b (funcs.go minimum, maximum: a < b, a > b, else b).
func minMax(op string, a, b any) (any, error) {
	x, y, err := toNumbers(op, a, b)
	if err != nil {
		return nil, err
	}
	if op == "maximum" {
		x, y = y, x // a > b is b < a
	}
	var less bool
	switch {
	case x.kind == 'f' || y.kind == 'f':
		less = x.float() < y.float()
	case x.kind == 'u' && y.kind == 'u':
		less = x.u < y.u
	default:
		less = x.int() < y.int()
	}
	switch {
	case op == "minimum" && less:
		return x.value(), nil
	case op == "minimum":
		return y.value(), nil
	case less: // maximum: b < a
		return y.value(), nil
	}
	return x.value(), nil
}
