package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
)

// templateConfig is one template stanza (or -template flag).
type templateConfig struct {
	Source          string
	Contents        string
	Destination     string
	Command         string
	CommandTimeout  time.Duration
	Check           string
	Perms           os.FileMode
	PermsSet        bool
	Backup          bool
	LeftDelim       string
	RightDelim      string
	Wait            *waitConfig
	ErrOnMissingKey bool
	CreateDestDirs  bool
	InPlace         bool
	origin          string // where it was defined, for errors
}

type waitConfig struct{ Min, Max time.Duration }

type execConfig struct {
	Command      string
	Splay        time.Duration
	ReloadSignal string
	KillSignal   string
	KillTimeout  time.Duration
}

// fileConfig is what config files set; nil/zero means "not set here".
type fileConfig struct {
	ConsulAddr   *string
	ConsulToken  *string
	ConsulTLS    map[string]string
	MaxStale     *time.Duration
	Wait         *waitConfig
	LogLevel     *string
	PidFile      *string
	KillSignal   *string
	ReloadSignal *string
	Exec         *execConfig
	Templates    []*templateConfig
}

func defaultTemplate(origin string) *templateConfig {
	return &templateConfig{CommandTimeout: 30 * time.Second, CreateDestDirs: true, origin: origin}
}

// parseTemplateFlag parses -template "in:out[:command]".
func parseTemplateFlag(s string) (*templateConfig, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("-template %q: want SOURCE:DESTINATION[:COMMAND]", s)
	}
	c := defaultTemplate("-template " + s)
	c.Source, c.Destination = parts[0], parts[1]
	if len(parts) == 3 {
		c.Command = parts[2]
	}
	return c, nil
}

// parseWait parses "min[:max]"; max defaults to 4×min.
func parseWait(s string) (*waitConfig, error) {
	a, b, two := strings.Cut(s, ":")
	min, err := time.ParseDuration(strings.TrimSpace(a))
	if err != nil {
		return nil, fmt.Errorf("wait %q: %w", s, err)
	}
	max := 4 * min
	if two {
		if max, err = time.ParseDuration(strings.TrimSpace(b)); err != nil {
			return nil, fmt.Errorf("wait %q: %w", s, err)
		}
	}
	if min < 0 || max < min {
		return nil, fmt.Errorf("wait %q: want 0 <= min <= max", s)
	}
	return &waitConfig{Min: min, Max: max}, nil
}

// loadConfigPaths reads every -config FILE|DIR in order (a folder's *.hcl,
// *.json and *.conf files in name order); later ones win.
func loadConfigPaths(paths []string) (*fileConfig, error) {
	out := &fileConfig{}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("-config: %w", err)
		}
		files := []string{p}
		if st.IsDir() {
			ents, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("-config: %w", err)
			}
			files = nil
			for _, e := range ents {
				if e.IsDir() {
					continue
				}
				switch filepath.Ext(e.Name()) {
				case ".hcl", ".json", ".conf", ".ctmpl.hcl":
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
			sort.Strings(files)
		}
		for _, f := range files {
			if err := loadConfigFile(f, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// unsupported are consul-template stanzas accepted with a warning.
var unsupported = map[string]bool{"vault": true, "nomad": true, "syslog": true, "deduplicate": true, "log_file": true, "default_delimiters": true, "once": true, "template_error_fatal": true, "err_on_failed_lookup": true, "block_query_wait": true}

func loadConfigFile(path string, out *fileConfig) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var raw map[string]any
	if err := hcl.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("config %s: %v", path, err)
	}
	cerr := func(key string, err error) error { return fmt.Errorf("config %s: %s: %w", path, key, err) }
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := raw[k]
		switch k {
		case "consul":
			m, err := oneBlock(v)
			if err != nil {
				return cerr(k, err)
			}
			for ck, cv := range m {
				switch ck {
				case "address":
					s, err := asString(cv)
					if err != nil {
						return cerr("consul.address", err)
					}
					out.ConsulAddr = &s
				case "token":
					s, err := asString(cv)
					if err != nil {
						return cerr("consul.token", err)
					}
					out.ConsulToken = &s
				case "ssl":
					sm, err := oneBlock(cv)
					if err != nil {
						return cerr("consul.ssl", err)
					}
					if out.ConsulTLS == nil {
						out.ConsulTLS = map[string]string{}
					}
					for sk, sv := range sm {
						out.ConsulTLS[sk] = fmt.Sprint(sv)
					}
				case "retry", "auth", "transport", "namespace", "partition":
					// Retry is forever with backoff; the rest is not needed on loopback.
				default:
					return cerr("consul."+ck, errors.New("unknown setting"))
				}
			}
		case "max_stale":
			d, err := asDuration(v)
			if err != nil {
				return cerr(k, err)
			}
			out.MaxStale = &d
		case "wait":
			w, err := asWait(v)
			if err != nil {
				return cerr(k, err)
			}
			out.Wait = w
		case "log_level", "pid_file", "kill_signal", "reload_signal":
			s, err := asString(v)
			if err != nil {
				return cerr(k, err)
			}
			switch k {
			case "log_level":
				out.LogLevel = &s
			case "pid_file":
				out.PidFile = &s
			case "kill_signal":
				out.KillSignal = &s
			case "reload_signal":
				out.ReloadSignal = &s
			}
		case "exec":
			m, err := oneBlock(v)
			if err != nil {
				return cerr(k, err)
			}
			e := &execConfig{KillTimeout: 30 * time.Second}
			for ek, ev := range m {
				var err error
				switch ek {
				case "command":
					e.Command, err = asCommand(ev)
				case "splay":
					e.Splay, err = asDuration(ev)
				case "reload_signal":
					e.ReloadSignal, err = asString(ev)
				case "kill_signal":
					e.KillSignal, err = asString(ev)
				case "kill_timeout":
					e.KillTimeout, err = asDuration(ev)
				case "env", "timeout":
				default:
					err = errors.New("unknown setting")
				}
				if err != nil {
					return cerr("exec."+ek, err)
				}
			}
			out.Exec = e
		case "template":
			blocks, err := blockList(v)
			if err != nil {
				return cerr(k, err)
			}
			for i, m := range blocks {
				tc, err := templateBlock(m, fmt.Sprintf("%s template #%d", path, i+1))
				if err != nil {
					return fmt.Errorf("config %s: template #%d: %w", path, i+1, err)
				}
				out.Templates = append(out.Templates, tc)
			}
		default:
			if unsupported[k] {
				continue
			}
			return cerr(k, errors.New("unknown setting"))
		}
	}
	return nil
}

func templateBlock(m map[string]any, origin string) (*templateConfig, error) {
	c := defaultTemplate(origin)
	for k, v := range m {
		var err error
		switch k {
		case "source":
			c.Source, err = asString(v)
		case "contents":
			c.Contents, err = asString(v)
		case "destination":
			c.Destination, err = asString(v)
		case "command":
			c.Command, err = asCommand(v)
		case "exec":
			var em map[string]any
			if em, err = oneBlock(v); err == nil {
				if cv, ok := em["command"]; ok {
					c.Command, err = asCommand(cv)
				}
				if tv, ok := em["timeout"]; ok && err == nil {
					c.CommandTimeout, err = asDuration(tv)
				}
			}
		case "command_timeout":
			c.CommandTimeout, err = asDuration(v)
		case "check":
			c.Check, err = asCommand(v)
		case "perms":
			var p int64
			p, err = asPerms(v)
			c.Perms, c.PermsSet = os.FileMode(p), true
		case "backup":
			c.Backup, err = asBool(v)
		case "left_delimiter":
			c.LeftDelim, err = asString(v)
		case "right_delimiter":
			c.RightDelim, err = asString(v)
		case "wait":
			c.Wait, err = asWait(v)
		case "error_on_missing_key":
			c.ErrOnMissingKey, err = asBool(v)
		case "create_dest_dirs":
			c.CreateDestDirs, err = asBool(v)
		case "in_place":
			c.InPlace, err = asBool(v)
		case "source_contents", "sandbox_path", "function_denylist", "function_blacklist", "uid", "gid", "user", "group", "template_error_fatal", "err_missing_key":
			// accepted and ignored
		default:
			err = errors.New("unknown setting")
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	if c.Source == "" && c.Contents == "" {
		return nil, errors.New("needs source or contents")
	}
	if c.Source != "" && c.Contents != "" {
		return nil, errors.New("source and contents are mutually exclusive")
	}
	if c.Destination == "" {
		return nil, errors.New("needs destination")
	}
	return c, nil
}

func oneBlock(v any) (map[string]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return x, nil
	case []map[string]any:
		out := map[string]any{}
		for _, m := range x {
			for k, vv := range m {
				out[k] = vv
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a block { ... }, got %T", v)
}

func blockList(v any) ([]map[string]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return []map[string]any{x}, nil
	case []map[string]any:
		return x, nil
	case []any:
		var out []map[string]any
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("want blocks, got %T", e)
			}
			out = append(out, m)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a block { ... }, got %T", v)
}

func asString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int, int64, float64, bool:
		return fmt.Sprint(x), nil
	}
	return "", fmt.Errorf("want a string, got %T", v)
}

func asBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		return strconv.ParseBool(x)
	}
	return false, fmt.Errorf("want true or false, got %T", v)
}

func asDuration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case string:
		d, err := time.ParseDuration(x)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q", x)
		}
		return d, nil
	case int:
		return time.Duration(x) * time.Second, nil
	case int64:
		return time.Duration(x) * time.Second, nil
	}
	return 0, fmt.Errorf("want a duration like \"5s\", got %T", v)
}

func asPerms(v any) (int64, error) {
	var p int64
	switch x := v.(type) {
	case int:
		p = int64(x)
	case int64:
		p = x
	case string:
		n, err := strconv.ParseInt(x, 8, 32)
		if err != nil {
			return 0, fmt.Errorf("bad octal mode %q", x)
		}
		p = n
	default:
		return 0, fmt.Errorf("want an octal mode like 0644, got %T", v)
	}
	if p < 0 || p > 0o7777 {
		return 0, fmt.Errorf("mode %o out of range", p)
	}
	return p, nil
}

func asWait(v any) (*waitConfig, error) {
	if s, ok := v.(string); ok {
		return parseWait(s)
	}
	m, err := oneBlock(v)
	if err != nil {
		return nil, err
	}
	w := &waitConfig{}
	if mv, ok := m["min"]; ok {
		if w.Min, err = asDuration(mv); err != nil {
			return nil, fmt.Errorf("min: %w", err)
		}
	}
	w.Max = 4 * w.Min
	if mv, ok := m["max"]; ok {
		if w.Max, err = asDuration(mv); err != nil {
			return nil, fmt.Errorf("max: %w", err)
		}
	}
	if w.Max < w.Min {
		return nil, errors.New("max is below min")
	}
	return w, nil
}

// asCommand accepts a string or a list (consul-template 0.30+); a list is
// joined into one shell command with each word quoted.
func asCommand(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []any:
		words := make([]string, 0, len(x))
		for _, w := range x {
			s, ok := w.(string)
			if !ok {
				return "", fmt.Errorf("command list holds %T", w)
			}
			words = append(words, shellQuote(s))
		}
		if len(words) == 1 {
			return x[0].(string), nil
		}
		return strings.Join(words, " "), nil
	}
	return "", fmt.Errorf("want a command string or list, got %T", v)
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`;&|<>()*?[]#~!{}") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
