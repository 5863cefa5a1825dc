// Package configfile reads the HCL (v1) or JSON configuration files of
// consul-template and envconsul: the files a list of -config paths names, each
// parsed into a generic map, helpers that decode its blocks and values, and a
// strict key check so that a key the program does not support is refused with
// a one-line error instead of being ignored.
//
// The reading rules are consul-template's (config/config.go, FromPath and
// FromFile, v0.41.1): paths are read in the order given; a directory stands
// for every file below it, walked in lexical order by filepath.Walk
// (recursively, whatever the file names); each file is parsed with
// hashicorp/hcl v1, which also reads JSON; a block given twice keeps its last
// occurrence (flattenKeys). envconsul's config.FromPath follows the same rules.
package configfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
)

// File is one parsed configuration file.
type File struct {
	// Path is the file's path as found (directory entries joined to the
	// -config path that named their directory).
	Path string
	// Values holds the top-level keys. Blocks are map[string]any or, as
	// hcl v1 decodes them, []map[string]any; use Block or Blocks to read them.
	Values map[string]any
}

// Files expands -config paths into the files to read, in order: a regular
// file is itself; a directory is every non-directory entry below it, in
// lexical order, recursively (consul-template's FromPath uses filepath.Walk
// and reads every file it finds, whatever its name). A missing path, an
// unreadable directory or a path that is neither file nor directory is an
// error naming the path.
func Files(paths []string) ([]string, error) {
	found, err := files(paths)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(found))
	for i, f := range found {
		out[i] = f.path
	}
	return out, nil
}

// found is one file Files found, with the -config folder it was found
// below ("" when the path named the file itself).
type found struct{ path, dir string }

func files(paths []string) ([]found, error) {
	var out []found
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", p, unwrapPath(err))
		}
		switch {
		case st.Mode().IsRegular():
			out = append(out, found{path: p})
		case st.IsDir():
			err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return fmt.Errorf("config %s: %w", path, unwrapPath(err))
				}
				if !d.IsDir() {
					out = append(out, found{path: path, dir: p})
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("config %s: not a file or directory (%s)", p, st.Mode().Type())
		}
	}
	return out, nil
}

// Read parses one file, HCL v1 or JSON, into a File. The error names the file
// and, for a syntax error, the position hcl reports.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, unwrapPath(err))
	}
	return Parse(path, b)
}

// Parse parses configuration text, HCL v1 or JSON, from a source other
// than a file (consul-template's CT_LOCAL_CONFIG variable); name stands for
// the path in the File and in errors.
func Parse(name string, b []byte) (*File, error) {
	var raw map[string]any
	if err := hcl.Unmarshal(b, &raw); err != nil {
		return nil, &syntaxError{path: name, msg: oneLine(err.Error())}
	}
	if raw == nil {
		raw = map[string]any{}
	}
	return &File{Path: name, Values: raw}, nil
}

// Load is Files followed by Read of each file, in order. A file found below
// a -config folder that does not parse (a template kept there, say) is named
// with that folder in the error: every file below it is read as
// configuration, as consul-template reads them.
func Load(paths []string) ([]*File, error) {
	names, err := files(paths)
	if err != nil {
		return nil, err
	}
	return each(names, func(f found) (*File, error) {
		out, err := Read(f.path)
		var syntax *syntaxError
		if f.dir != "" && errors.As(err, &syntax) {
			return nil, fmt.Errorf("%w (every file below the -config folder %s is read as configuration: keep templates and other files outside it)", err, f.dir)
		}
		return out, err
	})
}

// syntaxError is a file that hcl cannot parse.
type syntaxError struct{ path, msg string }

func (e *syntaxError) Error() string { return fmt.Sprintf("config %s: %s", e.path, e.msg) }

// Spec names the keys a program accepts, as dotted paths from the top of a
// file ("consul.address", "consul.ssl.enabled", "template.source"). A path
// that has children in Keys or Refused is a block: its own keys are checked
// in turn (in every occurrence, so each template block is checked). A path
// without children accepts any value, including a block.
type Spec struct {
	// Keys are the supported dotted paths.
	Keys []string
	// Refused maps a dotted path consul-template or envconsul documents but
	// the program does not support to the reason, given in the error.
	Refused map[string]string
}

// ConsulTemplateKeys are the dotted keys of the configuration file that
// consul-template v0.41.1 and envconsul (which pins it) share (config/*.go,
// the mapstructure names): the consul block (config/consul.go with its auth,
// retry, ssl and transport blocks), the exec block (config/exec.go and
// config/env.go), syslog and wait, and the top-level kill_signal,
// reload_signal, log_level, max_stale and pid_file; all but the keys in
// except, which a program refuses (Spec.Refused). A program's Spec.Keys adds
// its own to them.
func ConsulTemplateKeys(except ...string) []string {
	keys := []string{
		"consul.address", "consul.token", "consul.token_file", "consul.namespace",
		"consul.auth.enabled", "consul.auth.username", "consul.auth.password",
		"consul.retry.enabled", "consul.retry.attempts", "consul.retry.backoff", "consul.retry.max_backoff",
		"consul.ssl.enabled", "consul.ssl.verify", "consul.ssl.cert", "consul.ssl.key", "consul.ssl.ca_cert",
		"consul.ssl.ca_cert_bytes", "consul.ssl.ca_path", "consul.ssl.server_name",
		"consul.transport.dial_keep_alive", "consul.transport.dial_timeout", "consul.transport.disable_keep_alives",
		"consul.transport.idle_conn_timeout", "consul.transport.max_idle_conns", "consul.transport.max_idle_conns_per_host",
		"consul.transport.max_conns_per_host", "consul.transport.tls_handshake_timeout",
		"exec.command", "exec.enabled", "exec.kill_signal", "exec.kill_timeout", "exec.reload_signal", "exec.splay", "exec.timeout",
		"exec.env.pristine", "exec.env.custom", "exec.env.allowlist", "exec.env.denylist", "exec.env.whitelist", "exec.env.blacklist",
		"kill_signal", "reload_signal", "log_level", "max_stale", "pid_file",
		"syslog.enabled", "syslog.facility", "syslog.name",
		"wait", "wait.min", "wait.max",
	}
	return slices.DeleteFunc(keys, func(k string) bool { return slices.Contains(except, k) })
}

// Check returns an error naming the first key of f (in sorted order, depth
// first) that the spec does not support, or nil. The error is one line:
//
//	config FILE: KEY: not supported
//	config FILE: KEY: not supported: REASON
func (s Spec) Check(f *File) error {
	keys := make(map[string]bool, len(s.Keys))
	blocks := map[string]bool{}
	mark := func(p string) {
		for i := strings.LastIndexByte(p, '.'); i > 0; i = strings.LastIndexByte(p[:i], '.') {
			blocks[p[:i]] = true
		}
	}
	for _, k := range s.Keys {
		keys[k] = true
		mark(k)
	}
	for k := range s.Refused {
		mark(k)
	}
	return s.check(f.Path, "", f.Values, keys, blocks)
}

func (s Spec) check(file, prefix string, m map[string]any, keys, blocks map[string]bool) error {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		p := prefix + k
		if why, ok := s.Refused[p]; ok {
			return fmt.Errorf("config %s: %s: not supported: %s", file, p, why)
		}
		if !keys[p] && !blocks[p] {
			return fmt.Errorf("config %s: %s: not supported", file, p)
		}
		if !blocks[p] {
			continue
		}
		subs, err := Blocks(m[k])
		if err != nil {
			if keys[p] {
				continue // a supported key that also takes a plain value (wait = "1s:4s")
			}
			return fmt.Errorf("config %s: %s: %w", file, p, err)
		}
		for _, sub := range subs {
			if err := s.check(file, p+".", sub, keys, blocks); err != nil {
				return err
			}
		}
	}
	return nil
}

// Block reads a value that is one block. Given more than once, the last
// occurrence is the one used (consul-template's flattenKeys).
func Block(v any) (map[string]any, error) {
	bs, err := Blocks(v)
	if err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return map[string]any{}, nil
	}
	return bs[len(bs)-1], nil
}

// Blocks reads a value that is a list of blocks (template { } given N times,
// or a JSON list of objects).
func Blocks(v any) ([]map[string]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return []map[string]any{x}, nil
	case []map[string]any:
		return x, nil
	case []any:
		out := make([]map[string]any, 0, len(x))
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("want blocks { ... }, got %s", typeName(e))
			}
			out = append(out, m)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a block { ... }, got %s", typeName(v))
}

// String reads a string; numbers and booleans are turned into their text.
func String(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int, int64, float64, bool:
		return fmt.Sprint(x), nil
	}
	return "", fmt.Errorf("want a string, got %s", typeName(v))
}

// Strings reads a list of strings; a single string is split on commas
// (mapstructure's StringToSliceHookFunc(","), as consul-template decodes).
func Strings(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return []string{}, nil
		}
		return strings.Split(x, ","), nil
	case []any:
		return each(x, String)
	case []string:
		return x, nil
	}
	return nil, fmt.Errorf("want a list of strings, got %s", typeName(v))
}

// Get sets *dst to decode of the value of key in block b (String, Bool,
// Int, Duration, ...) when b has the key, and leaves it alone when not. An
// error names the key: "key: ...".
func Get[T any](b map[string]any, key string, decode func(any) (T, error), dst *T) error {
	v, ok := b[key]
	if !ok {
		return nil
	}
	x, err := decode(v)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	*dst = x
	return nil
}

// each returns f of every element of xs, in order, or f's first error.
func each[T, U any](xs []T, f func(T) (U, error)) ([]U, error) {
	out := make([]U, 0, len(xs))
	for _, x := range xs {
		y, err := f(x)
		if err != nil {
			return nil, err
		}
		out = append(out, y)
	}
	return out, nil
}

// Bool reads true/false (or a string strconv.ParseBool accepts).
func Bool(v any) (bool, error) {
	return scalar(v, "true or false", strconv.ParseBool)
}

// Int reads a whole number (or a string holding one).
func Int(v any) (int, error) {
	switch x := v.(type) {
	case int64:
		return int(x), nil
	case float64:
		if x == float64(int(x)) {
			return int(x), nil
		}
	}
	return scalar(v, "a whole number", strconv.Atoi)
}

// scalar reads a T given as itself or as a string that parse accepts. The
// errors say "want " + want + ", got " and the string quoted, or what v is.
func scalar[T any](v any, want string, parse func(string) (T, error)) (T, error) {
	var zero T
	switch x := v.(type) {
	case T:
		return x, nil
	case string:
		if r, err := parse(x); err == nil {
			return r, nil
		}
		return zero, fmt.Errorf("want %s, got %q", want, x)
	}
	return zero, fmt.Errorf("want %s, got %s", want, typeName(v))
}

// Duration reads a Go duration string ("5s", "1m30s"); a bare number is
// nanoseconds, as mapstructure decodes a number into a time.Duration.
func Duration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case string:
		d, err := time.ParseDuration(x)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q", x)
		}
		return d, nil
	case int:
		return time.Duration(x), nil
	case int64:
		return time.Duration(x), nil
	}
	return 0, fmt.Errorf("want a duration like \"5s\", got %s", typeName(v))
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, float64:
		return "a number"
	case map[string]any, []map[string]any:
		return "a block"
	case []any, []string:
		return "a list"
	}
	return fmt.Sprintf("%T", v)
}

// unwrapPath drops the *PathError wrapper so the path is not printed twice.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
