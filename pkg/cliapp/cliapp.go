// Package cliapp is the command-line scaffold every berth program is built
// on: urfave/cli/v2 parses, and this package adds what the five programs
// share, defined once:
//
//   - the shared flags: Consul (pkg/consulclient), -log-level and
//     -log-format (pkg/logging), -metrics-addr (pkg/telemetry), -version and
//     -h/-help;
//   - an environment variable for every flag, PROGRAM_FLAG_NAME
//     (REGISTRATOR_RESYNC, TEMPLATER_TEMPLATE, ...), shown in -h; a flag on
//     the command line wins over its variable, and an empty variable
//     counts as unset. A variable of a repeatable flag is one value (given
//     before those on the command line), never split. The Consul flags keep the
//     CONSUL_* variables, which api.DefaultConfig reads itself: only a Consul
//     flag actually given overrides them (the consul CLI's rule);
//   - one help layout (Help), printed on Stderr;
//   - one error line, "PROGRAM: error", on the Stderr the program was given,
//     and the exit code the program chose for it (Fail);
//   - binding -metrics-addr at start, so that an address that cannot be
//     bound fails the start with one line naming it (ListenMetrics).
//
// Flags parse as the peers' users write them, because urfave/cli/v2 hands
// the arguments to the standard library's flag package: -flag value,
// -flag=value, --flag, -bool, -bool=false, parsing stops at the first
// positional argument or at "--". Repeatable flags are Var flags on a
// flag.Value the program owns, so a value is never split on commas
// (urfave's StringSliceFlag would split consul-template's
// -template "in:out:cmd a,b").
//
// Help and -version are handled here rather than by urfave/cli: its help
// flag treats the first positional argument as a command name
// ("lockrun -h PREFIX cmd" would print "No help topic for 'PREFIX'"), and
// both of its printers are package-level variables.
package cliapp

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth/berth/pkg/consulclient"
	"github.com/berth/berth/pkg/logging"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/berth/berth/pkg/version"
	"github.com/hashicorp/consul/api"
	"github.com/urfave/cli/v2"
)

// ErrExit is returned by Parse after it printed the help (-h) or the
// version (-version): the program has nothing more to do and exits 0.
var ErrExit = errors.New("cliapp: help or version printed")

// Main is the body of every berth main function: `PROGRAM -healthcheck
// [ADDR]` probes a running instance (telemetry.Healthcheck; without ADDR at
// PROGRAM_METRICS_ADDR, the variable of -metrics-addr, when set), anything
// else runs run with the arguments after the program name; the process
// exits with the code run returns.
func Main(run func(args []string) int) {
	name := filepath.Base(os.Args[0])
	if code, ok := telemetry.Healthcheck(name, os.Args[1:], os.Getenv(EnvName(name, "metrics-addr")), os.Stderr); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:]))
}

// Section titles of the help, in the order they are printed.
const (
	sectionProgram = ""
	sectionConsul  = "Consul connection"
	sectionCommon  = "Logging, metrics and version"
)

var sectionOrder = []string{sectionProgram, sectionConsul, sectionCommon}

// entry is what the help says about one flag.
type entry struct {
	names       []string // the name first, then its aliases
	placeholder string   // "" for a bool flag
	usage       string
	def         string // default shown, "" for none
	env         string // variable shown, "" for none
	section     string
	hidden      bool
}

// Program is one program's command line: its own flags, added with the
// String, Bool, Duration, Int and Var methods before Parse, and the shared
// ones, which New adds. Stdout gets -version; Stderr gets the help and the
// error lines.
type Program struct {
	Name string
	// Usage lists the synopsis lines after "Usage: ", e.g.
	// "lockrun [flags] PREFIX COMMAND [ARGS...]".
	Usage []string
	// About is the paragraph under the synopsis; Footer, when set, is
	// printed after the flags.
	About, Footer  string
	Stdout, Stderr io.Writer
	// HelpToStdout prints -h on Stdout (as envconsul and consul-template
	// do) instead of Stderr.
	HelpToStdout bool
	// DeferVersion leaves -version to the caller: Parse then returns the
	// result as for a run, VersionAsked tells it was given, and the caller
	// checks what it must first (envconsul refuses a bad configuration
	// before it prints its version) and then calls PrintVersion.
	DeferVersion bool
	// HelpAnyValue reads -h and -help as the flag package does when a
	// program defines neither (flag.go parseOne: an undefined "help" or
	// "h" is flag.ErrHelp whatever its value, even -help=false or
	// -help=tRuE, and parsing stops there, so a bad flag after it is not
	// looked at). Without it they take strconv.ParseBool's values only.
	HelpAnyValue bool

	// Consul, Log and MetricsAddr hold the shared flags once parsed.
	Consul      consulclient.Flags
	Log         logging.Flags
	MetricsAddr string

	flags   []cli.Flag
	entries []*entry
	byName  map[string]*entry
	flagOf  map[string]cli.Flag
	bound   []string // flags with a variable of their own
	section string
	version bool
	help    helpValue
}

// New returns the command line of the program name with the shared flags.
func New(name string, stdout, stderr io.Writer) *Program {
	p := &Program{Name: name, Stdout: stdout, Stderr: stderr, byName: map[string]*entry{}, flagOf: map[string]cli.Flag{}}
	p.section = sectionConsul
	for _, d := range p.Consul.Defs() {
		e := p.add(&cli.GenericFlag{Name: d.Name, Value: d.Value}, d.Placeholder, d.Usage, "")
		if d.Env != "" {
			e.env = d.Env // shown only: api.DefaultConfig reads it
		} else {
			p.bindEnv(d.Name)
		}
	}
	p.section = sectionCommon
	p.String(&p.Log.Level, "log-level", "info", "log level: debug, info, warn, error (trace is debug)")
	p.String(&p.Log.Format, "log-format", "text", "log format: text or json")
	p.String(&p.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /health on this `ADDRESS` (off when empty); an address that cannot be bound fails the start")
	p.add(&cli.BoolFlag{Name: "version", Destination: &p.version}, "", "print the version and exit", "")
	p.add(&cli.GenericFlag{Name: "help", Aliases: []string{"h"}, Value: &p.help}, "", "print this help and exit", "")
	p.section = sectionProgram
	return p
}

// EnvName is the environment variable of a program's flag:
// EnvName("registrator", "resync") is REGISTRATOR_RESYNC.
func EnvName(program, flagName string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(program + "_" + flagName))
}

// add records f and its help entry. usage may name the placeholder in
// backquotes, as the flag package's usage strings do.
func (p *Program) add(f cli.Flag, placeholder, usage, def string) *entry {
	if i := strings.Index(usage, "`"); i >= 0 {
		if j := strings.Index(usage[i+1:], "`"); j >= 0 {
			placeholder = usage[i+1 : i+1+j]
			usage = usage[:i] + placeholder + usage[i+1+j+1:]
		}
	}
	e := &entry{names: f.Names(), placeholder: placeholder, usage: usage, def: def, section: p.section}
	p.flags = append(p.flags, f)
	p.entries = append(p.entries, e)
	for _, n := range e.names {
		p.byName[n] = e
		p.flagOf[n] = f
	}
	return e
}

// bindEnv gives the flag name the program's variable (EnvName); Parse
// attaches it when it is set and not empty.
func (p *Program) bindEnv(name string) {
	p.byName[name].env = EnvName(p.Name, name)
	p.bound = append(p.bound, name)
}

// attachEnv hands urfave the variables that are set and not empty: an
// empty variable counts as unset for every kind of flag (urfave alone
// would set a string or bool flag to "" or false, and ignore the others).
func (p *Program) attachEnv() {
	for _, name := range p.bound {
		env := p.byName[name].env
		if v, ok := os.LookupEnv(env); !ok || v == "" {
			continue
		}
		vars := []string{env}
		switch f := p.flagOf[name].(type) {
		case *cli.StringFlag:
			f.EnvVars = vars
		case *cli.BoolFlag:
			f.EnvVars = vars
		case *cli.DurationFlag:
			f.EnvVars = vars
		case *cli.IntFlag:
			f.EnvVars = vars
		case *cli.GenericFlag:
			f.EnvVars = vars
		}
	}
}

// String adds a string flag -name writing to dst, with its variable.
func (p *Program) String(dst *string, name, def, usage string) {
	p.add(&cli.StringFlag{Name: name, Value: def, Destination: dst}, "VALUE", usage, quoteDefault(def))
	p.bindEnv(name)
}

// Bool adds a bool flag -name writing to dst, with its variable.
func (p *Program) Bool(dst *bool, name string, def bool, usage string) {
	d := ""
	if def {
		d = "true"
	}
	p.add(&cli.BoolFlag{Name: name, Value: def, Destination: dst}, "", usage, d)
	p.bindEnv(name)
}

// Duration adds a duration flag -name (Go syntax: 1m30s) writing to dst.
func (p *Program) Duration(dst *time.Duration, name string, def time.Duration, usage string) {
	d := ""
	if def != 0 {
		d = def.String()
	}
	p.add(&cli.DurationFlag{Name: name, Value: def, Destination: dst}, "DURATION", usage, d)
	p.bindEnv(name)
}

// durationError says why a duration flag's value is bad where Go's flag
// package says only "parse error" (`invalid value "5x" for flag -wait: parse
// error`): the reason time.ParseDuration gives is added.
func (p *Program) durationError(err error) error {
	m := durationParseError.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	isDuration := false
	for _, f := range p.flags {
		if d, ok := f.(*cli.DurationFlag); ok && slices.Contains(d.Names(), m[2]) {
			isDuration = true
		}
	}
	if !isDuration {
		return err
	}
	_, perr := time.ParseDuration(m[1])
	if perr == nil {
		return err
	}
	return fmt.Errorf("invalid value %q for flag -%s: %v (want a duration such as 500ms, 30s or 5m)", m[1], m[2], perr)
}

// durationParseError matches Go's flag package error for a value its
// Duration flag refuses: the value and the flag name.
var durationParseError = regexp.MustCompile(`^invalid value "(.*)" for flag -([^:]+): parse error$`)

// Int adds an integer flag -name writing to dst.
func (p *Program) Int(dst *int, name string, def int, usage string) {
	d := ""
	if def != 0 {
		d = strconv.Itoa(def)
	}
	p.add(&cli.IntFlag{Name: name, Value: def, Destination: dst}, "N", usage, d)
	p.bindEnv(name)
}

// Var adds a flag -name backed by v: repeatable flags (each use calls
// v.Set with the value as given, never split), flags with their own syntax,
// and bool-like flags (v has IsBoolFlag() true: "-name" alone means
// "-name=true"). The default shown is v.String() now, unless empty. Its
// variable, when set, is given to v.Set before the command line.
func (p *Program) Var(v flag.Value, name, usage string) {
	placeholder := "VALUE"
	if b, ok := v.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		placeholder = ""
	}
	p.add(&cli.GenericFlag{Name: name, Value: v}, placeholder, usage, quoteDefault(v.String()))
	p.bindEnv(name)
}

// DefaultText replaces what help shows as the default of flag name, for a
// default that is not the flag's value (one read from the Consul agent, say).
func (p *Program) DefaultText(name, text string) {
	e := p.byName[name]
	if e == nil {
		panic("cliapp: default text of unknown flag -" + name)
	}
	e.def = text
}

// FlagUsage replaces the help text of flag name, for a shared flag that
// means something else (or nothing) to one program.
func (p *Program) FlagUsage(name, usage string) {
	e := p.byName[name]
	if e == nil {
		panic("cliapp: usage of unknown flag -" + name)
	}
	e.usage = usage
}

// Hidden adds a Var flag that help does not list (refused peer flags,
// which the program describes in its Footer).
func (p *Program) Hidden(v flag.Value, name string) {
	p.add(&cli.GenericFlag{Name: name, Value: v}, "", "", "").hidden = true
}

// Alias makes alias another name of the flag name (help lists it beside
// the name). A Var flag gets a second flag on the same value (or on the
// value's ForAlias, an AliasValue), so that a repeatable value is never set
// twice and both names may be given, the last one winning, as with the
// flag package; the others take urfave's alias, which refuses both names in
// one command line.
func (p *Program) Alias(alias, name string) {
	e := p.byName[name]
	if e == nil {
		panic("cliapp: alias of unknown flag -" + name)
	}
	switch f := p.flagOf[name].(type) {
	case *cli.GenericFlag:
		v := f.Value
		if a, ok := v.(AliasValue); ok {
			v = a.ForAlias(alias)
		}
		p.flags = append(p.flags, &cli.GenericFlag{Name: alias, Value: v})
		p.flagOf[alias] = p.flags[len(p.flags)-1]
	case *cli.StringFlag:
		f.Aliases = append(f.Aliases, alias)
	case *cli.BoolFlag:
		f.Aliases = append(f.Aliases, alias)
	case *cli.DurationFlag:
		f.Aliases = append(f.Aliases, alias)
	case *cli.IntFlag:
		f.Aliases = append(f.Aliases, alias)
	}
	e.names = append(e.names, alias)
	p.byName[alias] = e
}

// AliasValue is a Var flag's value that wants to know the name it is set
// under: Alias gives the alias the value ForAlias returns (one that sets
// the same variable), so that an error about the value can name the flag
// the user gave.
type AliasValue interface {
	flag.Value
	ForAlias(alias string) flag.Value
}

// quoteDefault shows a non-empty string default in quotes.
func quoteDefault(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

// helpValue is the -h/-help flag. Its String is empty, so that urfave's own
// help check (which reads the flags "help" and "h" as bools) never fires.
type helpValue struct {
	on       bool
	anyValue bool // Program.HelpAnyValue
}

// errHelpAsked stops the parse at -h/-help under Program.HelpAnyValue;
// Parse then prints the help.
var errHelpAsked = errors.New("help asked")

func (h *helpValue) String() string   { return "" }
func (h *helpValue) IsBoolFlag() bool { return true }
func (h *helpValue) Set(s string) error {
	if h.anyValue {
		h.on = true
		return errHelpAsked
	}
	if s == "" {
		return nil // urfave copying the value to the alias
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	h.on = v
	return nil
}

// Result is a parsed command line.
type Result struct {
	// Args are the positional arguments: those after the flags, or after
	// "--" (which is dropped).
	Args []string
	ctx  *cli.Context
}

// IsSet tells whether the flag name (or an alias) was given on the command
// line or by its environment variable.
func (r *Result) IsSet(name string) bool { return r.ctx.IsSet(name) }

// Set sets the flag name as if given on the command line (configuration
// files under the flags use it).
func (r *Result) Set(name, value string) error { return r.ctx.Set(name, value) }

// Explicit returns the set of flag names given on the command line or by
// an environment variable, every alias of such a flag included.
func (p *Program) Explicit(r *Result) map[string]bool {
	set := map[string]bool{}
	for name := range p.flagOf {
		if r.ctx.IsSet(name) {
			for _, n := range p.byName[name].names {
				set[n] = true
			}
		}
	}
	return set
}

// Parse parses args (the arguments after the program name). A bad flag or
// variable is an error naming it (print it with Fail). After printing the
// help (-h) or the version (-version) it returns ErrExit.
func (p *Program) Parse(args []string) (*Result, error) {
	var res *Result
	p.attachEnv()
	app := &cli.App{
		Name:            p.Name,
		Flags:           p.flags,
		HideHelp:        true,
		HideHelpCommand: true,
		HideVersion:     true,
		Writer:          p.Stderr,
		ErrWriter:       p.Stderr,
		// Errors are returned, never turned into os.Exit by urfave.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   func(_ *cli.Context, err error, _ bool) error { return err },
		Action: func(c *cli.Context) error {
			res = &Result{Args: c.Args().Slice(), ctx: c}
			return nil
		},
	}
	p.help.anyValue = p.HelpAnyValue
	if err := app.Run(append([]string{p.Name}, args...)); err != nil && !(p.HelpAnyValue && p.help.on) {
		return nil, p.durationError(err)
	}
	if p.help.on {
		if p.HelpToStdout {
			p.Help(p.Stdout)
		} else {
			p.Help(p.Stderr)
		}
		return nil, ErrExit
	}
	if p.version && !p.DeferVersion {
		p.PrintVersion()
		return nil, ErrExit
	}
	return res, nil
}

// VersionAsked tells whether -version was given (see DeferVersion).
func (p *Program) VersionAsked() bool { return p.version }

// PrintVersion prints the version line on Stdout.
func (p *Program) PrintVersion() { fmt.Fprintln(p.Stdout, version.String(p.Name)) }

// Help writes the help: the synopsis, the paragraph, then each section of
// flags, each flag as "-name, -alias PLACEHOLDER" over its usage, default
// and environment variable.
func (p *Program) Help(w io.Writer) {
	for i, u := range p.Usage {
		if i == 0 {
			fmt.Fprintf(w, "Usage: %s\n", u)
		} else {
			fmt.Fprintf(w, "       %s\n", u)
		}
	}
	if p.About != "" {
		fmt.Fprintf(w, "\n%s\n", p.About)
	}
	for _, sec := range sectionOrder {
		title := "Flags"
		if sec != sectionProgram {
			title = sec + " flags"
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, e := range p.entries {
			if e.section != sec || e.hidden {
				continue
			}
			aliases := slices.Sorted(slices.Values(e.names[1:]))
			names := "-" + strings.Join(append([]string{e.names[0]}, aliases...), ", -")
			if e.placeholder != "" {
				names += " " + e.placeholder
			}
			text := e.usage
			if e.def != "" {
				text += " (default " + e.def + ")"
			}
			if e.env != "" {
				text += " [$" + e.env + "]"
			}
			fmt.Fprintf(w, "  %s\n    \t%s\n", names, text)
		}
	}
	if p.Footer != "" {
		fmt.Fprintf(w, "\n%s\n", p.Footer)
	}
}

// Fail returns the exit code for err: 0 for ErrExit; otherwise it prints
// "PROGRAM: err" on Stderr and returns code.
func (p *Program) Fail(err error, code int) int {
	if errors.Is(err, ErrExit) {
		return 0
	}
	fmt.Fprintf(p.Stderr, "%s: %v\n", p.Name, err)
	return code
}

// Setup builds the logger (writing to Stderr, as -log-level and
// -log-format ask) and the Consul client (api.DefaultConfig, the Consul
// flags given, then adjust when not nil, -stale on every read). Errors name
// the flag at fault.
func (p *Program) Setup(adjust func(*api.Config)) (*slog.Logger, *api.Client, error) {
	log, err := p.Log.New(p.Stderr, p.Name)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := p.Consul.Config()
	if err != nil {
		return nil, nil, err
	}
	if adjust != nil {
		adjust(cfg)
	}
	client, err := p.Consul.NewClientFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	return log, client, nil
}
