package supervisor

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ShellMode says whether a command line runs through sh -c.
type ShellMode int

const (
	// ShellAuto execs several arguments as given and runs a single argument
	// containing spaces or shell syntax through sh -c.
	ShellAuto ShellMode = iota
	// ShellAlways joins the arguments with spaces and runs them with sh -c,
	// as consul lock and envconsul do.
	ShellAlways
	// ShellNever execs the arguments as given.
	ShellNever
)

// ShellFlag is the -shell flag: unset means ShellAuto, -shell or -shell=true
// means ShellAlways, -shell=false means ShellNever.
type ShellFlag struct{ Mode ShellMode }

func (f *ShellFlag) String() string {
	if f == nil {
		return "auto"
	}
	switch f.Mode {
	case ShellAlways:
		return "true"
	case ShellNever:
		return "false"
	}
	return "auto"
}

// Set parses true, false or auto.
func (f *ShellFlag) Set(s string) error {
	if strings.EqualFold(s, "auto") {
		f.Mode = ShellAuto
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true, false or auto")
	}
	if b {
		f.Mode = ShellAlways
	} else {
		f.Mode = ShellNever
	}
	return nil
}

// IsBoolFlag lets "-shell" alone mean -shell=true.
func (f *ShellFlag) IsBoolFlag() bool { return true }

// shellChars are the characters that make a single argument a shell command.
const shellChars = " \t\n|&;<>()$`\\\"'*?[]#~{}"

// NeedsShell reports whether a single argument must be run through sh -c.
func NeedsShell(arg string) bool { return strings.ContainsAny(arg, shellChars) }

// ShellWord reports whether w, a first word, is one only a shell
// understands: POSIX's reserved words and the builtins that are no program
// (XCU 2.4, 2.14 and the utilities that must be built in to work: cd,
// umask, ulimit, …). "exec nginx …" or "exit 3" under consul-template,
// "ulimit" under consul lock run in a shell.
func ShellWord(w string) bool {
	switch w {
	case "!", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then", "until", "while",
		".", ":", "break", "continue", "eval", "exec", "exit", "export", "readonly", "return", "set", "shift", "times", "trap", "unset",
		"alias", "bg", "cd", "command", "fg", "getopts", "hash", "jobs", "read", "type", "ulimit", "umask", "unalias", "wait":
		return true
	}
	return false
}

// OnlyShellRuns reports whether a single-word command only a shell can run:
// a shell word (ShellWord), a variable assignment (NAME=value), or a
// function bash exported into env (export -f: BASH_FUNC_NAME%%), when no
// program of that name is on PATH.
func OnlyShellRuns(word string, env []string) bool {
	if ShellWord(word) {
		return true
	}
	if name, _, ok := strings.Cut(word, "="); ok && name != "" && !strings.Contains(name, "/") {
		return true
	}
	if _, err := exec.LookPath(word); err == nil {
		return false
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "BASH_FUNC_"+word+"%%=") || strings.HasPrefix(kv, "BASH_FUNC_"+word+"()=") {
			return true
		}
	}
	return false
}

// Argv turns the command the user wrote into the argv to exec.
func Argv(args []string, mode ShellMode) ([]string, error) {
	if len(args) == 0 || (len(args) == 1 && strings.TrimSpace(args[0]) == "") {
		return nil, fmt.Errorf("no command given")
	}
	switch mode {
	case ShellAlways:
		return []string{"/bin/sh", "-c", strings.Join(args, " ")}, nil
	case ShellNever:
		return args, nil
	}
	if len(args) == 1 && NeedsShell(args[0]) {
		return []string{"/bin/sh", "-c", args[0]}, nil
	}
	return args, nil
}

// ParseSignal accepts SIGHUP, HUP, hup or a number.
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(t); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %q: number out of range", s)
		}
		return syscall.Signal(n), nil
	}
	if !strings.HasPrefix(t, "SIG") {
		t = "SIG" + t
	}
	if sig := unix.SignalNum(t); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// SignalName is the SIGxxx name of sig.
func SignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return "signal " + strconv.Itoa(int(sig))
}

// Forwardable reports whether a signal the program received should go to the
// child: everything but SIGURG (used by the Go runtime for preemption) and
// SIGCHLD (about our own children).
func Forwardable(sig syscall.Signal) bool {
	return sig != syscall.SIGURG && sig != syscall.SIGCHLD
}
