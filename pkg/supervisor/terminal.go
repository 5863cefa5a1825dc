package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Handing a terminal to a child, as a shell does for a job. Every child runs
// in its own process group (Start); when the program was run on a terminal
// (a script without job control, an operator's shell), a child that reads it
// from a background group is stopped by SIGTTIN for good. consul lock and
// envconsul avoid this by leaving a plain command in their own group
// (consul-template child/child.go: Setpgid only for sh -c subshells); berth
// makes the child's group the terminal's foreground group (Config.Terminal)
// and takes the terminal back when the child is gone (TakeTerminal).
//
// While the child's group has the terminal the program is in its
// background, where a write to it (with the terminal's tostop set) or taking
// it back raises SIGTTOU, which stops the program's whole process group (the
// script that ran it too). The program ignores SIGTTOU then, but only once
// the child is started (an ignored signal stays ignored across exec); what
// it writes meanwhile is held back by an OutputGate.

// ForegroundTerminal returns f when it is a terminal whose foreground
// process group is the caller's (TIOCGPGRP), else nil.
func ForegroundTerminal(f *os.File) *os.File {
	if f == nil {
		return nil
	}
	pgrp, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	if err != nil || pgrp != unix.Getpgrp() {
		return nil
	}
	return f
}

// TakeTerminal makes the caller's process group the foreground group of f
// again (TIOCSPGRP), once the child that had it is gone, so that whoever ran
// the program can read it. From the background this raises SIGTTOU: the
// caller must have it ignored. Nothing is done when the caller's group is
// the foreground group already.
func TakeTerminal(f *os.File) error {
	pgrp := unix.Getpgrp()
	if fg, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP); err == nil && fg == pgrp {
		return nil
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.TIOCSPGRP, pgrp); err != nil {
		return fmt.Errorf("take the terminal back (TIOCSPGRP): %w", err)
	}
	return nil
}

// OutputGate is a program's standard error (its log): writes pass through,
// except while it is held (Hold), when they are kept, in order, until
// Release writes them.
type OutputGate struct {
	mu   sync.Mutex
	w    io.Writer
	kept *bytes.Buffer
}

// NewOutputGate returns an open gate in front of w.
func NewOutputGate(w io.Writer) *OutputGate { return &OutputGate{w: w} }

// Write writes p to the gate's writer, or keeps it while the gate is held.
func (g *OutputGate) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.kept != nil {
		return g.kept.Write(p)
	}
	return g.w.Write(p)
}

// Hold keeps what is written from now on until Release.
func (g *OutputGate) Hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.kept == nil {
		g.kept = &bytes.Buffer{}
	}
}

// Release writes what was kept and lets writes through again.
func (g *OutputGate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.kept != nil {
		_, _ = g.w.Write(g.kept.Bytes())
		g.kept = nil
	}
}
