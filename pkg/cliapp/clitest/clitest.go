// Package clitest replays command lines against a berth program's parse
// function: the per-program tests that the peers' documented invocations
// still parse as their users expect.
package clitest

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/berth/berth/pkg/consulclient"
)

// View is what a command line parsed to, by name: a program's options as
// its test looks at them ("argv", "timeout", "consul-address", ...).
type View map[string]any

// Case is one command line: the arguments after the program name, the
// variables set for it, and the names of the View it must parse to with
// their values. Only the names given are compared; a value compares equal
// when it prints the same (%v; a []string quoted, %q), so a duration may be
// given as "30s".
type Case struct {
	Args []string
	Env  map[string]string
	Want View
}

// Parse is a program's parse function: the arguments after the program
// name, and the writers for -version and for help and errors.
type Parse[O any] func(args []string, stdout, stderr io.Writer) (O, error)

// Replay parses each case in a subtest with its variables set (output
// discarded), after emptying every PROGRAM_* and CONSUL_* variable of the
// test's own environment (an empty variable counts as unset, for cliapp and
// for api.DefaultConfig), and compares view of the result with the case's
// Want. A case fails when parse returns an error, when Want names what view
// does not have, or for each value that differs. It uses t.Setenv, so the
// test must not be parallel.
func Replay[O any](t *testing.T, program string, parse Parse[O], view func(O) View, cases []Case) {
	t.Helper()
	prefix := strings.ToUpper(program) + "_"
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, prefix) || strings.HasPrefix(k, "CONSUL_") {
			t.Setenv(k, "")
		}
	}
	for _, c := range cases {
		t.Run(strings.Join(c.Args, " "), func(t *testing.T) {
			for k, v := range c.Env {
				t.Setenv(k, v)
			}
			o, err := parse(c.Args, io.Discard, io.Discard)
			if err != nil {
				t.Fatalf("%s %q (env %v): %v", program, c.Args, c.Env, err)
			}
			got := view(o)
			for _, name := range sortedKeys(c.Want) {
				g, ok := got[name]
				if !ok {
					t.Errorf("%s %q: the view has no %q", program, c.Args, name)
				} else if format(g) != format(c.Want[name]) {
					t.Errorf("%s %q (env %v): %s is %s, want %s", program, c.Args, c.Env, name, format(g), format(c.Want[name]))
				}
			}
		})
	}
}

// WithConsul adds to v what the shared Consul flags and the CONSUL_*
// variables configure (consulclient.Flags.Config): "consul-address",
// "consul-scheme", "consul-token", "consul-datacenter" and "consul-stale",
// or "consul-error" when the configuration fails. It returns v.
func (v View) WithConsul(f *consulclient.Flags) View {
	cfg, err := f.Config()
	if err != nil {
		v["consul-error"] = err.Error()
		return v
	}
	v["consul-address"], v["consul-scheme"], v["consul-token"] = cfg.Address, cfg.Scheme, cfg.Token
	v["consul-datacenter"], v["consul-stale"] = cfg.Datacenter, f.Stale()
	return v
}

// Set lists the names that are true in set (a program's explicitly given
// flags), sorted.
func Set(set map[string]bool) []string {
	var out []string
	for k, on := range set {
		if on {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func format(v any) string {
	if s, ok := v.([]string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

func sortedKeys(v View) []string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
