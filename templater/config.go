package main

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/pkg/configfile"
)

// templateConfig is one template stanza (or -template flag).
type templateConfig struct {
	Source           string
	Contents         string
	Destination      string
	Command          string
	CommandArgv      []string // a command list of several words: its argv, run without a shell (nil: Command as written)
	CommandTimeout   time.Duration
	Check            string
	Perms            os.FileMode
	PermsSet         bool
	Backup           bool
	LeftDelim        string
	RightDelim       string
	Wait             *waitConfig
	ErrOnMissingKey  bool
	ErrOnLookup      bool // err_on_failed_lookup: a key that never existed is a fatal error
	CreateDestDirs   bool
	InPlace          bool
	ErrorFatal       *bool    // template's error_fatal (nil: the global template_error_fatal)
	User, Group      string   // owner of the destination (name or id); empty: kept
	FunctionDenylist []string // glob patterns of functions that fail when called
	SandboxPath      string   // file() reads only below this folder
	origin           string   // where it was defined, for errors
}

type waitConfig struct{ Min, Max time.Duration }

// waitParts is a wait as one file (or the -wait flag) gives it, each field
// nil when not given: consul-template's config/wait.go WaitConfig before
// Finalize. Files merge field by field, the flag last (WaitConfig.Merge),
// so wait { min = "5s" } in one file and wait { max = "20s" } in a later
// one is 5s:20s.
type waitParts struct {
	Min, Max *time.Duration
	Enabled  *bool // the block's "bool" key
}

// merge is w with what o gives over it.
func (w waitParts) merge(o waitParts) waitParts {
	if o.Min != nil {
		w.Min = o.Min
	}
	if o.Max != nil {
		w.Max = o.Max
	}
	if o.Enabled != nil {
		w.Enabled = o.Enabled
	}
	return w
}

// final is the wait the parts make (WaitConfig.Finalize): on when "bool"
// says so, else when a min above 0 is given; max defaults to 4×min. nil:
// no wait (a template's own then leaves it to the global one, as
// consul-template's runner does).
func (w waitParts) final() *waitConfig {
	on := w.Min != nil && *w.Min != 0
	if w.Enabled != nil {
		on = *w.Enabled
	}
	if !on {
		return nil
	}
	c := &waitConfig{}
	if w.Min != nil {
		c.Min = *w.Min
	}
	c.Max = 4 * c.Min
	if w.Max != nil {
		c.Max = *w.Max
	}
	return c
}

type execConfig struct {
	Command      string   // for logs
	Argv         []string // as written: one string (sh -c when it has several words) or the argv
	Enabled      bool
	Env          execEnv
	Splay        time.Duration
	ReloadSignal string
	KillSignal   string
	KillTimeout  time.Duration
}

// execEnv is exec { env { ... } } and the -exec-env-* flags: what the
// child's environment holds (consul-template config/env.go).
type execEnv struct {
	Pristine bool
	Custom   []string // NAME=VALUE, always given
	Allow    []string // glob patterns; empty: all
	Deny     []string // glob patterns; win over Allow
}

// fileConfig is what config files set; nil/zero means "not set here".
type fileConfig struct {
	ConsulAddr         *string
	ConsulAddrFrom     string // where ConsulAddr was set ("config FILE: consul.address"), for errors
	ConsulToken        *string
	ConsulTokenFile    *string
	ConsulNamespace    *string
	ConsulTLS          map[string]string
	ConsulAuth         map[string]string
	ConsulTransport    map[string]string
	ConsulRetry        retrySettings
	BlockQueryWait     *time.Duration
	TemplateErrorFatal *bool
	ErrOnFailedLookup  *bool
	// NoEffect are the keys given that consul-template v0.41.1 reads and
	// then ignores: once and parseonly, which its command line always
	// overrides (config/config.go Merge sets them from the flags'
	// configuration, merged last by cli.go loadConfigs). Warned about.
	NoEffect []string
	// Warnings are what a file says in a form consul-template still reads
	// but warns about (consul = "ADDR"). Logged.
	Warnings       []string
	LeftDelim      string
	RightDelim     string
	Syslog         *bool
	SyslogFacility string
	SyslogName     string
	MaxStale       *time.Duration
	Wait           waitParts
	LogLevel       *string
	PidFile        *string
	KillSignal     *string
	ReloadSignal   *string
	Exec           *execConfig
	Templates      []*templateConfig
}

func defaultTemplate(origin string) *templateConfig {
	return &templateConfig{CommandTimeout: 30 * time.Second, CreateDestDirs: true, origin: origin}
}

// templateShapeError is a template block that cannot make a template (no
// destination; not exactly one of source and contents): consul-template
// fails on it when it builds the templates (exit 14), not as a bad
// configuration.
type templateShapeError string

func (e templateShapeError) Error() string { return string(e) }

const errNoDestination = templateShapeError("needs destination")

// templatePiece is one piece of -template "in:out[:command]" as
// consul-template v0.41.1 splits it (config/template.go,
// ParseTemplateConfig): a run of characters other than ":", taken together
// with a one-letter piece and its colon before it (a Windows drive, "C:\in").
// So empty pieces vanish and "a:b:c" is the source "a:b" and the
// destination "c".
var templatePiece = regexp.MustCompile(`([A-Za-z]:)?[^:]+`)

// parseTemplateFlag parses -template "in:out[:command]" as consul-template
// splits it (templatePiece): the third piece and the rest, joined with ":",
// are the command.
func parseTemplateFlag(s string) (*templateConfig, error) {
	parts := templatePiece.FindAllString(s, -1)
	if len(parts) < 2 {
		return nil, fmt.Errorf("-template %q: want SOURCE:DESTINATION[:COMMAND]: %w", s, errNoDestination)
	}
	c := defaultTemplate("-template " + s)
	c.Source, c.Destination = parts[0], parts[1]
	c.Command = strings.Join(parts[2:], ":")
	return c, nil
}

// parseWait parses "min[:max]"; max defaults to 4×min.
func parseWait(s string) (*waitConfig, error) {
	if strings.Count(s, ":") > 1 {
		return nil, fmt.Errorf("wait %q: want MIN[:MAX]", s)
	}
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

// configSpec is every key consul-template v0.41.1 reads from a config file
// (config/*.go, the mapstructure names): each one is honoured, or refused
// with the reason: the keys consul-template shares with envconsul
// (configfile.ConsulTemplateKeys, but for exec.timeout, refused) and its own.
// templater's own keys (template.check, template.in_place) are added.
var configSpec = configfile.Spec{
	Keys: append(configfile.ConsulTemplateKeys("exec.timeout"),
		"default_delimiters.left", "default_delimiters.right",
		"block_query_wait",
		"template_error_fatal", "err_on_failed_lookup",
		"once", "parseonly", // read, and without effect, as consul-template's
		"wait.bool",
		"template.source", "template.destination", "template.contents", "template.command", "template.command_timeout",
		"template.exec.command", "template.exec.timeout", "template.create_dest_dirs", "template.error_on_missing_key",
		"template.error_fatal", "template.perms", "template.user", "template.uid", "template.group", "template.gid",
		"template.backup", "template.left_delimiter", "template.right_delimiter", "template.wait", "template.wait.min",
		"template.wait.max", "template.wait.bool", "template.function_denylist", "template.function_blacklist",
		"template.sandbox_path",
		"template.check", "template.in_place", // templater's own
	),
	Refused: map[string]string{
		"vault":             "templater does not read Vault (no secret/pkiCert functions)",
		"nomad":             "templater does not read Nomad (no nomad* functions)",
		"deduplicate":       "dedup mode is not supported (templater already runs each distinct query once)",
		"log_file":          "templater logs to stderr (or to syslog with syslog { enabled = true })",
		"exec.timeout":      "the -exec child runs until it exits or templater stops",
		"template.exec.env": "a template command runs with templater's environment",
	},
}

// loadConfigPaths reads every -config FILE|DIR in order (a folder is every
// file below it, whatever its name: pkg/configfile, after consul-template's
// config.FromPath); each file's keys are checked against configSpec, and
// later files win.
func loadConfigPaths(paths []string) (*fileConfig, error) {
	return loadConfig(paths, "")
}

// loadConfig is loadConfigPaths followed by local, the text of
// consul-template's CT_LOCAL_CONFIG variable when set: it is read as one
// more file, after the -config files, so its values win over theirs and its
// templates come after theirs (cli.go ParseFlags merges it into the flags'
// configuration, which loadConfigs merges last). A local text that does not
// parse is a badFlag (consul-template: exit 13, as a bad flag).
func loadConfig(paths []string, local string) (*fileConfig, error) {
	files, err := configfile.Load(paths)
	if err != nil {
		return nil, err
	}
	// legacy: the files that give consul = "ADDRESS" (warned about).
	legacy := map[*configfile.File]bool{}
	if local != "" {
		f, err := configfile.Parse("CT_LOCAL_CONFIG", []byte(local))
		if err != nil {
			return nil, badFlag{err}
		}
		dropDisabledDedup(f)
		dropInertBlocks(f)
		legacy[f] = legacyConsulAddress(f)
		if err := configSpec.Check(f); err != nil {
			return nil, badFlag{err}
		}
		files = append(files, f)
	}
	out := &fileConfig{}
	for _, f := range files {
		dropDisabledDedup(f)
		dropInertBlocks(f)
		if legacyConsulAddress(f) || legacy[f] {
			out.Warnings = append(out.Warnings, fmt.Sprintf("config %s: consul = \"ADDRESS\" is the old form of consul { address = \"ADDRESS\" }, as consul-template warns; write the block instead", f.Path))
		}
		if err := configSpec.Check(f); err != nil {
			return nil, err
		}
		if err := applyConfigFile(f, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// legacyConsulAddress turns consul = "ADDRESS", the form older
// consul-template releases documented, into consul { address = "ADDRESS" },
// as consul-template v0.41.1 still reads it (config/config.go
// ConsulStringToStructFunc, with a warning), and reports whether it did.
func legacyConsulAddress(f *configfile.File) bool {
	s, ok := f.Values["consul"].(string)
	if !ok {
		return false
	}
	f.Values["consul"] = map[string]any{"address": s}
	return true
}

// dropInertBlocks removes vault and nomad blocks that do not turn their
// integration on: enabled = false, or no enabled and no address
// (consul-template config/vault.go and config/nomad.go Finalize: Enabled
// defaults to an address being given). They ask for nothing; a block that
// turns Vault or Nomad on is refused by configSpec.
func dropInertBlocks(f *configfile.File) {
	for _, name := range []string{"vault", "nomad"} {
		m, err := configfile.Block(f.Values[name])
		if err != nil || m == nil {
			continue
		}
		on, err := configfile.Bool(m["enabled"])
		switch {
		case m["enabled"] != nil && err == nil && !on:
		case m["enabled"] == nil:
			if addr, err := configfile.String(m["address"]); m["address"] != nil && (err != nil || addr != "") {
				continue
			}
		default:
			continue
		}
		delete(f.Values, name)
	}
	// A log_file block without a path (or with path = "") writes no log
	// file in consul-template (logging/logging.go Setup opens one only for
	// a path): it asks for nothing either.
	// A block with another key or a value of the wrong type stays, and is
	// refused (exit 15, as consul-template refuses it).
	if m, err := configfile.Block(f.Values["log_file"]); err == nil && m != nil && inertLogFile(m) {
		delete(f.Values, "log_file")
	}
}

// inertLogFile reports whether a log_file block has no path (or path = "")
// and only consul-template's other keys, each of its type.
func inertLogFile(m map[string]any) bool {
	for k, v := range m {
		var err error
		switch k {
		case "path":
			var p string
			if p, err = configfile.String(v); err == nil && p != "" {
				return false
			}
		case "log_rotate_bytes", "log_rotate_max_files":
			_, err = configfile.Int(v)
		case "log_rotate_duration":
			_, err = configfile.Duration(v)
		default:
			return false
		}
		if err != nil {
			return false
		}
	}
	return true
}

// dropDisabledDedup removes a deduplicate block that says enabled = false:
// it asks for nothing templater does not do. Any other deduplicate block
// is refused by configSpec.
func dropDisabledDedup(f *configfile.File) {
	m, err := configfile.Block(f.Values["deduplicate"])
	if err != nil {
		return
	}
	if on, err := configfile.Bool(m["enabled"]); err == nil && !on {
		delete(f.Values, "deduplicate")
	}
}

// applyConfigFile reads one checked file into out; only keys set in the file
// change out.
func applyConfigFile(f *configfile.File, out *fileConfig) error {
	cerr := func(key string, err error) error { return fmt.Errorf("config %s: %s: %w", f.Path, key, err) }
	v := f.Values
	if c, ok := v["consul"]; ok {
		before := out.ConsulAddr
		if err := applyConsul(c, out, cerr); err != nil {
			return err
		}
		if out.ConsulAddr != before {
			out.ConsulAddrFrom = fmt.Sprintf("config %s: consul.address", f.Path)
		}
	}
	strs := map[string]**string{"log_level": &out.LogLevel, "pid_file": &out.PidFile, "kill_signal": &out.KillSignal, "reload_signal": &out.ReloadSignal}
	for k, dst := range strs {
		if x, ok := v[k]; ok {
			s, err := configfile.String(x)
			if err != nil {
				return cerr(k, err)
			}
			*dst = &s
		}
	}
	for _, k := range []string{"kill_signal", "reload_signal"} {
		if p := *strs[k]; p != nil {
			if _, err := parseConfigSignal(*p); err != nil {
				return cerr(k, err)
			}
		}
	}
	durs := map[string]**time.Duration{"max_stale": &out.MaxStale, "block_query_wait": &out.BlockQueryWait}
	for k, dst := range durs {
		if x, ok := v[k]; ok {
			d, err := configfile.Duration(x)
			if err != nil {
				return cerr(k, err)
			}
			*dst = &d
		}
	}
	for _, k := range []string{"once", "parseonly"} {
		if x, ok := v[k]; ok {
			if _, err := configfile.Bool(x); err != nil {
				return cerr(k, err)
			}
			out.NoEffect = append(out.NoEffect, k)
		}
	}
	bools := map[string]**bool{"template_error_fatal": &out.TemplateErrorFatal, "err_on_failed_lookup": &out.ErrOnFailedLookup}
	for k, dst := range bools {
		if x, ok := v[k]; ok {
			b, err := configfile.Bool(x)
			if err != nil {
				return cerr(k, err)
			}
			*dst = &b
		}
	}
	if x, ok := v["wait"]; ok {
		w, err := asWaitParts(x)
		if err != nil {
			return cerr("wait", err)
		}
		out.Wait = out.Wait.merge(w)
	}
	if x, ok := v["default_delimiters"]; ok {
		m, err := configfile.Block(x)
		if err != nil {
			return cerr("default_delimiters", err)
		}
		for k, dst := range map[string]*string{"left": &out.LeftDelim, "right": &out.RightDelim} {
			if s, ok := m[k]; ok {
				if *dst, err = configfile.String(s); err != nil {
					return cerr("default_delimiters."+k, err)
				}
			}
		}
	}
	if x, ok := v["syslog"]; ok {
		if err := applySyslog(x, out, cerr); err != nil {
			return err
		}
	}
	if x, ok := v["exec"]; ok {
		if err := applyExec(x, out, cerr); err != nil {
			return err
		}
	}
	if x, ok := v["template"]; ok {
		blocks, err := configfile.Blocks(x)
		if err != nil {
			return cerr("template", err)
		}
		for i, m := range blocks {
			tc, err := templateBlock(m, fmt.Sprintf("%s template #%d", f.Path, i+1))
			if err != nil {
				return fmt.Errorf("config %s: template #%d: %w", f.Path, i+1, err)
			}
			out.Templates = append(out.Templates, tc)
		}
	}
	return nil
}

// applyConsul reads consul { ... }.
func applyConsul(x any, out *fileConfig, cerr func(string, error) error) error {
	m, err := configfile.Block(x)
	if err != nil {
		return cerr("consul", err)
	}
	for k, dst := range map[string]**string{"address": &out.ConsulAddr, "token": &out.ConsulToken, "token_file": &out.ConsulTokenFile, "namespace": &out.ConsulNamespace} {
		if s, ok := m[k]; ok {
			str, err := configfile.String(s)
			if err != nil {
				return cerr("consul."+k, err)
			}
			*dst = &str
		}
	}
	for _, sub := range []string{"ssl", "auth", "transport", "retry"} {
		b, ok := m[sub]
		if !ok {
			continue
		}
		sm, err := configfile.Block(b)
		if err != nil {
			return cerr("consul."+sub, err)
		}
		if sub == "retry" {
			if err := applyRetry(sm, &out.ConsulRetry, cerr); err != nil {
				return err
			}
			continue
		}
		for k, sv := range sm {
			s, err := configfile.String(sv)
			if err != nil {
				return cerr("consul."+sub+"."+k, err)
			}
			switch sub {
			case "ssl":
				setMap(&out.ConsulTLS, k, s)
			case "auth":
				setMap(&out.ConsulAuth, k, s)
			case "transport":
				setMap(&out.ConsulTransport, k, s)
			}
		}
	}
	return nil
}

// retrySettings are consul { retry { } } as a file sets them (nil: not
// set there), or as flags and file merge.
type retrySettings struct {
	Enabled             *bool
	Attempts            *int
	Backoff, MaxBackoff *time.Duration
}

// applyRetry reads consul { retry { enabled attempts backoff max_backoff } }
// (consul-template config/retry.go).
func applyRetry(m map[string]any, out *retrySettings, cerr func(string, error) error) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		sv := m[k]
		var err error
		switch k {
		case "enabled":
			var b bool
			b, err = configfile.Bool(sv)
			out.Enabled = &b
		case "attempts":
			var n int
			if n, err = configfile.Int(sv); err == nil && n < 0 {
				err = fmt.Errorf("%d: must not be negative", n)
			}
			out.Attempts = &n
		case "backoff", "max_backoff":
			var d time.Duration
			if d, err = configfile.Duration(sv); err == nil && d < 0 {
				err = fmt.Errorf("%s: must not be negative", d)
			}
			if k == "backoff" {
				out.Backoff = &d
			} else {
				out.MaxBackoff = &d
			}
		}
		if err != nil {
			return cerr("consul.retry."+k, err)
		}
	}
	return nil
}

func setMap(m *map[string]string, k, v string) {
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
}

// applySyslog reads syslog { enabled facility name }.
func applySyslog(x any, out *fileConfig, cerr func(string, error) error) error {
	m, err := configfile.Block(x)
	if err != nil {
		return cerr("syslog", err)
	}
	if b, ok := m["enabled"]; ok {
		e, err := configfile.Bool(b)
		if err != nil {
			return cerr("syslog.enabled", err)
		}
		out.Syslog = &e
	}
	for k, dst := range map[string]*string{"facility": &out.SyslogFacility, "name": &out.SyslogName} {
		if s, ok := m[k]; ok {
			if *dst, err = configfile.String(s); err != nil {
				return cerr("syslog."+k, err)
			}
		}
	}
	return nil
}

// applyExec reads exec { ... }; a later file's exec block is merged over
// an earlier one's.
func applyExec(x any, out *fileConfig, cerr func(string, error) error) error {
	m, err := configfile.Block(x)
	if err != nil {
		return cerr("exec", err)
	}
	e := out.Exec
	if e == nil {
		e = &execConfig{KillTimeout: 30 * time.Second, Enabled: true}
	}
	for k, ev := range m {
		var err error
		switch k {
		case "command":
			e.Argv, err = asArgv(ev)
			e.Command = strings.Join(e.Argv, " ")
			if len(e.Argv) > 1 {
				// A list: its words, each quoted (for logs).
				words := make([]string, len(e.Argv))
				for i, w := range e.Argv {
					words[i] = shellQuote(w)
				}
				e.Command = strings.Join(words, " ")
			}
		case "enabled":
			e.Enabled, err = configfile.Bool(ev)
		case "splay":
			e.Splay, err = configfile.Duration(ev)
		case "reload_signal":
			e.ReloadSignal, err = configfile.String(ev)
			e.ReloadSignal = emptyIsSignull(e.ReloadSignal)
		case "kill_signal":
			e.KillSignal, err = configfile.String(ev)
			e.KillSignal = emptyIsSignull(e.KillSignal)
		case "kill_timeout":
			e.KillTimeout, err = configfile.Duration(ev)
		case "env":
			err = applyExecEnv(ev, &e.Env)
		}
		if err != nil {
			return cerr("exec."+k, err)
		}
	}
	for k, s := range map[string]string{"reload_signal": e.ReloadSignal, "kill_signal": e.KillSignal} {
		if _, err := parseConfigSignal(s); err != nil {
			return cerr("exec."+k, err)
		}
	}
	out.Exec = e
	return nil
}

// applyExecEnv reads exec { env { pristine custom allowlist denylist } }
// (whitelist/blacklist are consul-template's older names). The lists of a
// later file are added to an earlier one's, as consul-template merges them
// (config/env.go EnvConfig.Merge appends).
func applyExecEnv(x any, env *execEnv) error {
	m, err := configfile.Block(x)
	if err != nil {
		return err
	}
	lists := map[string]*[]string{"custom": &env.Custom, "allowlist": &env.Allow, "whitelist": &env.Allow,
		"denylist": &env.Deny, "blacklist": &env.Deny}
	for k, v := range m {
		var err error
		if dst, ok := lists[k]; ok {
			var l []string
			l, err = configfile.Strings(v)
			*dst = append(*dst, l...)
		} else if k == "pristine" {
			env.Pristine, err = configfile.Bool(v)
		}
		if err != nil {
			return fmt.Errorf("env.%s: %w", k, err)
		}
	}
	return nil
}

// templateBlock reads one template { ... } (keys already checked).
func templateBlock(m map[string]any, origin string) (*templateConfig, error) {
	c := defaultTemplate(origin)
	// The plain string and true/false keys; the others below.
	strs := map[string]*string{"source": &c.Source, "contents": &c.Contents, "destination": &c.Destination,
		"left_delimiter": &c.LeftDelim, "right_delimiter": &c.RightDelim, "user": &c.User, "uid": &c.User,
		"group": &c.Group, "gid": &c.Group, "sandbox_path": &c.SandboxPath}
	bools := map[string]*bool{"backup": &c.Backup, "error_on_missing_key": &c.ErrOnMissingKey,
		"create_dest_dirs": &c.CreateDestDirs, "in_place": &c.InPlace}
	for k, v := range m {
		var err error
		switch k {
		case "command":
			if !hasExecKey(m, "command") {
				c.Command, c.CommandArgv, err = asCommand(commaList(v))
			}
		case "exec":
			_, err = configfile.Block(v) // read after the loop: it wins over command and command_timeout
		case "command_timeout":
			if !hasExecKey(m, "timeout") {
				c.CommandTimeout, err = configfile.Duration(v)
			}
		case "check":
			c.Check, _, err = asCommand(v)
		case "perms":
			var p int64
			p, err = asPerms(v)
			// 0 is no mode given, as in consul-template: the existing
			// file's mode, or 0644.
			c.Perms, c.PermsSet = os.FileMode(p), p != 0
		case "wait":
			c.Wait, err = asWait(v)
		case "error_fatal":
			var b bool
			b, err = configfile.Bool(v)
			c.ErrorFatal = &b
		case "function_denylist", "function_blacklist":
			var l []string
			l, err = configfile.Strings(v)
			c.FunctionDenylist = append(c.FunctionDenylist, l...)
		default:
			if p, ok := strs[k]; ok {
				*p, err = configfile.String(v)
			} else if p, ok := bools[k]; ok {
				*p, err = configfile.Bool(v)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	if ev, ok := m["exec"]; ok {
		// exec { command timeout } win over the older command and
		// command_timeout, as consul-template's config/template.go
		// Finalize has it, whatever order they are written in.
		em, _ := configfile.Block(ev)
		var err error
		if cv, ok := em["command"]; ok {
			if c.Command, c.CommandArgv, err = asCommand(commaList(cv)); err != nil {
				return nil, fmt.Errorf("exec.command: %w", err)
			}
		}
		if tv, ok := em["timeout"]; ok {
			if c.CommandTimeout, err = configfile.Duration(tv); err != nil {
				return nil, fmt.Errorf("exec.timeout: %w", err)
			}
		}
	}
	if c.Source == "" && c.Contents == "" {
		return nil, templateShapeError("needs source or contents")
	}
	if c.Source != "" && c.Contents != "" {
		return nil, templateShapeError("source and contents are mutually exclusive")
	}
	if c.Destination == "" {
		return nil, errNoDestination
	}
	return c, nil
}

// hasExecKey reports whether the template block m has exec { key }.
func hasExecKey(m map[string]any, key string) bool {
	em, err := configfile.Block(m["exec"])
	if err != nil || em == nil {
		return false
	}
	_, ok := em[key]
	return ok
}

// asWait reads a template's wait: see asWaitParts and waitParts.final.
func asWait(v any) (*waitConfig, error) {
	w, err := asWaitParts(v)
	if err != nil {
		return nil, err
	}
	return w.final(), nil
}

// asWaitParts reads wait = "min[:max]" (both given; max 4×min when left
// out) or wait { min max bool } ("bool" is consul-template's key for
// enabled: config/wait.go WaitConfig), each key as given.
func asWaitParts(v any) (waitParts, error) {
	if s, ok := v.(string); ok {
		w, err := parseWait(s)
		if err != nil {
			return waitParts{}, err
		}
		return waitParts{Min: &w.Min, Max: &w.Max}, nil
	}
	m, err := configfile.Block(v)
	if err != nil {
		return waitParts{}, err
	}
	var w waitParts
	for k, dst := range map[string]**time.Duration{"min": &w.Min, "max": &w.Max} {
		if mv, ok := m[k]; ok {
			d, err := configfile.Duration(mv)
			if err != nil {
				return waitParts{}, fmt.Errorf("%s: %w", k, err)
			}
			*dst = &d
		}
	}
	if ev, ok := m["bool"]; ok {
		on, err := configfile.Bool(ev)
		if err != nil {
			return waitParts{}, fmt.Errorf("bool: %w", err)
		}
		w.Enabled = &on
	}
	// A max below min is taken, as consul-template's wait block takes it
	// (only its "MIN:MAX" string form refuses it): min alone then bounds
	// the wait (supervisor.Quiescence).
	return w, nil
}

// asArgv reads an exec command: a string (run as consul-template runs it:
// under sh -c when it has more than one word; split on its commas first,
// see commaList) or a list (the argv).
func asArgv(v any) ([]string, error) {
	return configfile.Strings(commaList(v))
}

// commaList is a command string of a configuration file as consul-template
// v0.41.1 decodes it: split on every comma into a command list
// (config/config.go Parse decodes with mapstructure's
// StringToSliceHookFunc(","), and a command is a commandList), so
// "echo a,b" is the program "echo a" with the argument "b", and ",x" no
// command. A string without a comma, and any other value, is v itself.
// The -template and -exec flags are taken whole (cli.go).
func commaList(v any) any {
	s, ok := v.(string)
	if !ok || !strings.Contains(s, ",") {
		return v
	}
	parts := strings.Split(s, ",")
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out
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

// asCommand accepts a string or a list (consul-template 0.30+). A list of
// several words is also returned as the argv, which runs without a shell as
// consul-template runs it (child/command-prep.go CommandPrep); the string
// is then its words, each quoted, for logs and to tell commands apart.
func asCommand(v any) (string, []string, error) {
	switch x := v.(type) {
	case string:
		return x, nil, nil
	case []any:
		if len(x) == 0 || x[0] == "" {
			// No command, as consul-template's commandList.Empty reads
			// a list whose first word is empty (config/exec.go).
			return "", nil, nil
		}
		words := make([]string, 0, len(x))
		argv := make([]string, 0, len(x))
		for _, w := range x {
			s, ok := w.(string)
			if !ok {
				return "", nil, fmt.Errorf("command list holds %T", w)
			}
			words = append(words, shellQuote(s))
			argv = append(argv, s)
		}
		if len(words) == 1 {
			return argv[0], nil, nil
		}
		return strings.Join(words, " "), argv, nil
	}
	return "", nil, fmt.Errorf("want a command string or list, got %T", v)
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`;&|<>()*?[]#~!{}") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
