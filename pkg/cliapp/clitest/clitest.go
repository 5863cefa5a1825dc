// Package clitest replays command lines against a berth program's parse
// function: the per-program tests that the peers' documented invocations
// still parse as their users expect.
package clitest

import (
	"io"
	"os"
	"strings"
	"testing"
)

// Case is one command line: the arguments after the program name, the
// variables set for it, and the check of what it parsed to.
type Case[O any] struct {
	Args  []string
	Env   map[string]string
	Check func(O) bool
}

// Parse is a program's parse function: the arguments after the program
// name, and the writers for -version and for help and errors.
type Parse[O any] func(args []string, stdout, stderr io.Writer) (O, error)

// Replay parses each case in a subtest with its variables set (output
// discarded), after
// emptying every PROGRAM_* and CONSUL_* variable of the test's own
// environment (an empty variable counts as unset, for cliapp and for
// api.DefaultConfig). A case fails when parse returns an error or Check
// returns false. It uses t.Setenv, so the test must not be parallel.
func Replay[O any](t *testing.T, program string, parse Parse[O], cases ...Case[O]) {
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
			if !c.Check(o) {
				t.Errorf("%s %q (env %v): parsed as %+v", program, c.Args, c.Env, o)
			}
		})
	}
}
