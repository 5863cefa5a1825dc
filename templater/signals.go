package main

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// ctSignals are the signal names consul-template v0.41.1 accepts for
// -kill-signal, -reload-signal, -exec-kill-signal, -exec-reload-signal and
// their config keys on Linux (checked against it by TestConformFlagValues):
// full SIG names only, any letter case, no numbers, no short names, no
// surrounding spaces. SIGNULL is signal 0: no signal.
var ctSignals = map[string]syscall.Signal{
	"SIGNULL": 0, "SIGABRT": syscall.SIGABRT, "SIGALRM": syscall.SIGALRM, "SIGBUS": syscall.SIGBUS,
	"SIGCONT": syscall.SIGCONT, "SIGFPE": syscall.SIGFPE, "SIGHUP": syscall.SIGHUP, "SIGILL": syscall.SIGILL,
	"SIGINT": syscall.SIGINT, "SIGIO": syscall.SIGIO, "SIGIOT": syscall.SIGIOT, "SIGKILL": syscall.SIGKILL,
	"SIGPIPE": syscall.SIGPIPE, "SIGPROF": syscall.SIGPROF, "SIGQUIT": syscall.SIGQUIT, "SIGSEGV": syscall.SIGSEGV,
	"SIGSTOP": syscall.SIGSTOP, "SIGSYS": syscall.SIGSYS, "SIGTERM": syscall.SIGTERM, "SIGTRAP": syscall.SIGTRAP,
	"SIGTSTP": syscall.SIGTSTP, "SIGTTIN": syscall.SIGTTIN, "SIGTTOU": syscall.SIGTTOU, "SIGUSR1": syscall.SIGUSR1,
	"SIGUSR2": syscall.SIGUSR2, "SIGWINCH": syscall.SIGWINCH, "SIGXCPU": syscall.SIGXCPU, "SIGXFSZ": syscall.SIGXFSZ,
}

// parseSignal reads a signal name as consul-template does. An empty value
// is an error here; config files allow it (see parseConfigSignal).
func parseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return 0, errors.New("empty signal name (want a name such as SIGHUP)")
	}
	sig, ok := ctSignals[strings.ToUpper(s)]
	if !ok {
		return 0, fmt.Errorf("unknown signal %q (want a full name such as SIGHUP or SIGTERM, as consul-template)", s)
	}
	return sig, nil
}

// parseConfigSignal is parseSignal for a config file's value, where
// consul-template takes "" as SIGNULL (no signal).
func parseConfigSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return 0, nil
	}
	return parseSignal(s)
}

// emptyIsSignull is an exec block's signal value as consul-template reads
// it: "" is SIGNULL, set (signals/mapstructure.go StringToSignalFunc), not
// unset, so the default does not replace it.
func emptyIsSignull(s string) string {
	if s == "" {
		return "SIGNULL"
	}
	return s
}
