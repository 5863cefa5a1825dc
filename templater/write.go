package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/supervisor"
	"github.com/berth/berth/pkg/syncbuffer"
)

// checkError is a failed check command: the old file stays.
type checkError struct {
	cmd    string
	output string
	err    error
}

func (e *checkError) Error() string {
	// One line: the check's own lines joined.
	out := strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(e.output), "\n", " ; ")), " ")
	if out == "" {
		return fmt.Sprintf("check %q failed (%v)", e.cmd, e.err)
	}
	return fmt.Sprintf("check %q failed (%v): %s", e.cmd, e.err, out)
}

// install writes content to c.Destination when it differs from what is there.
// The candidate goes to a temp file in the destination's folder, created with
// the final mode before the first byte, synced; the check (if any) runs on it;
// then it is renamed over the destination (or copied in place). A
// destination that is a symbolic link is replaced by the new file, its
// target left as it was, as consul-template does; in place writes through
// it. A backup (see backup) that fails is not an error: warn (when not
// nil) is told, and the write goes on.
func install(ctx context.Context, c *templateConfig, content []byte, reaper *supervisor.Reaper, warn func(msg string, args ...any)) (changed bool, err error) {
	dest := c.Destination
	old, rerr := os.ReadFile(dest)
	exists := rerr == nil
	if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		return false, fmt.Errorf("destination: %w", rerr) // rerr names the path
	}
	if exists && bytes.Equal(old, content) {
		// Unchanged bytes: nothing to do, unless the file's owner is not
		// the one user/group ask for; consul-template then writes it again
		// (and so runs the command): renderer/renderer.go isChownNeeded.
		if need, err := chownNeeded(dest, c); err != nil || !need {
			return false, err
		}
	}
	dir := filepath.Dir(dest)
	if _, err := os.Stat(dir); err != nil {
		if !errors.Is(err, os.ErrNotExist) || !c.CreateDestDirs {
			return false, fmt.Errorf("destination folder %s: %w", dir, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("create destination folder: %w", err)
		}
	}
	mode := os.FileMode(0o644)
	uid, gid := -1, -1
	if st, err := os.Stat(dest); err == nil {
		// The whole mode, setuid, setgid and sticky included, as
		// consul-template keeps it (renderer.go AtomicWrite: Chmod with
		// the existing file's Mode()).
		mode = st.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(sys.Uid), int(sys.Gid)
		}
	}
	oldMode := mode // the backup keeps the old file's mode and owner
	if c.PermsSet {
		mode = c.Perms
	}
	tmp, err := writeTemp(dir, filepath.Base(dest), content, mode, uid, gid)
	if err != nil {
		return false, err
	}
	if err := chownAsAsked(tmp, c); err != nil {
		os.Remove(tmp)
		return false, err
	}
	defer os.Remove(tmp) // no-op after the rename
	if c.Check != "" {
		if err := runCheck(ctx, c, tmp, reaper); err != nil {
			return false, err
		}
	}
	if c.Backup {
		inPlace := c.InPlace && exists
		if err := backup(dest, inPlace, oldMode, uid, gid); err != nil && warn != nil {
			warn("could not back up the destination; writing it all the same", "destination", dest, "err", err)
		}
	}
	if c.InPlace && exists {
		// Keeps the inode: a single-file bind mount sees the new content.
		f, err := os.OpenFile(dest, os.O_WRONLY|os.O_TRUNC, mode)
		if err != nil {
			return false, fmt.Errorf("in-place write %s: %w", dest, err)
		}
		if _, err := f.Write(content); err != nil {
			f.Close()
			return false, fmt.Errorf("in-place write %s: %w", dest, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return false, fmt.Errorf("in-place sync %s: %w", dest, err)
		}
		if err := f.Close(); err != nil {
			return false, err
		}
		if c.PermsSet {
			_ = os.Chmod(dest, mode)
		}
		return true, nil
	}
	if err := os.Rename(tmp, dest); err != nil {
		return false, fmt.Errorf("rename into %s: %w", dest, err)
	}
	return true, nil
}

// backup keeps dest's old file as dest.bak the way consul-template v0.41.1
// does (renderer/renderer.go AtomicWrite), right before the new file is put
// in place: a dest.bak already there is first moved to dest.old.bak (when it
// can be); then dest is hard-linked as dest.bak, and dest.old.bak removed
// once that worked. A link keeps the old file's mode, owner and times; a
// destination that is a symbolic link is linked itself (link(2) does not
// follow it), so dest.bak points where dest pointed, and the rename that
// follows replaces the link with the new file, leaving its target as it
// was. When the link fails (dest.bak is a folder that could not be moved
// away, the file system has no hard links), dest.bak is not made, dest.old.bak
// keeps the previous backup, and the error is returned for a warning: the
// write goes on. No destination (none yet, or a symbolic link to nothing
// counts as one) is no error, but the old backup is moved all the same.
//
// inPlace (templater's in_place, over an existing file): the write that
// follows changes the old inode, which a hard link would share, so the
// backup is a copy of the old content instead, with mode and owner uid:gid
// (copyFile).
func backup(dest string, inPlace bool, mode os.FileMode, uid, gid int) error {
	bak, old := dest+".bak", dest+".old.bak"
	_ = os.Rename(bak, old) // as consul-template: an error here is ignored
	var err error
	if inPlace {
		err = copyFile(dest, bak, mode, uid, gid)
	} else {
		err = os.Link(dest, bak)
	}
	if err != nil {
		if _, lerr := os.Lstat(dest); errors.Is(lerr, os.ErrNotExist) {
			return nil // nothing to back up: the first write
		}
		return err
	}
	_ = os.Remove(old)
	return nil
}

func writeTemp(dir, base string, content []byte, mode os.FileMode, uid, gid int) (string, error) {
	for i := 0; i < 100; i++ {
		name := filepath.Join(dir, fmt.Sprintf(".%s.templater-%d-%d", base, os.Getpid(), time.Now().UnixNano()%1e9+int64(i)))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("temp file in %s: %w", dir, err)
		}
		// The owner first: a chown clears setuid and setgid.
		if uid >= 0 {
			_ = f.Chown(uid, gid) // keep the owner when we may
		}
		// The umask may have cut the mode: set it exactly before writing.
		if err := f.Chmod(mode); err != nil {
			f.Close()
			os.Remove(name)
			return "", fmt.Errorf("chmod temp file: %w", err)
		}
		if _, err := f.Write(content); err != nil {
			f.Close()
			os.Remove(name)
			return "", fmt.Errorf("write temp file: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(name)
			return "", fmt.Errorf("sync temp file: %w", err)
		}
		if err := f.Close(); err != nil {
			os.Remove(name)
			return "", err
		}
		return name, nil
	}
	return "", fmt.Errorf("temp file in %s: no free name", dir)
}

// copyFile copies src to dst (through a temp file renamed over it) with
// mode, src's access and modification times, and owner uid:gid when
// uid >= 0 and the process may set it.
func copyFile(src, dst string, mode os.FileMode, uid, gid int) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if uid >= 0 {
		_ = tmp.Chown(uid, gid) // keep the owner when we may (before the mode: a chown clears setuid)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// The old file's times too, as a hard link (backup) keeps them.
	atime := st.ModTime()
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		atime = time.Unix(sys.Atim.Unix())
	}
	if err := os.Chtimes(tmp.Name(), atime, st.ModTime()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// runCheck runs the check command with {{path}} (or $TEMPLATER_CANDIDATE)
// naming the candidate file.
func runCheck(ctx context.Context, c *templateConfig, candidate string, reaper *supervisor.Reaper) error {
	cmdline := strings.ReplaceAll(c.Check, "{{path}}", shellQuote(candidate))
	cmdline = strings.ReplaceAll(cmdline, "{{ path }}", shellQuote(candidate))
	out, err := runShell(ctx, reaper, cmdline, c.CommandTimeout, []string{"TEMPLATER_CANDIDATE=" + candidate, "TEMPLATER_DESTINATION=" + c.Destination}, nil, nil)
	if err != nil {
		return &checkError{cmd: cmdline, output: out, err: err}
	}
	return nil
}

// commandArgv is how a template's command string runs, by consul-template's
// rule (child/command-prep.go CommandPrep): a string of several words
// under sh -c, a single word as the program itself, without a shell (so a
// program that does not exist is exec's "executable file not found", not
// the shell's 127).
func commandArgv(cmdline string) []string {
	if len(strings.Fields(cmdline)) == 1 {
		return []string{cmdline}
	}
	return []string{"/bin/sh", "-c", cmdline}
}

// runShell runs cmdline with sh -c in its own process group, killing the
// group when the timeout passes (runArgv: a command that is not sh -c, the
// program alone). It returns the combined output. The reaper
// (set when templater is PID 1) is told the command is ours.
// Its output also goes to stdout and stderr when they are not nil.
func runShell(ctx context.Context, reaper *supervisor.Reaper, cmdline string, timeout time.Duration, env []string, stdout, stderr io.Writer) (string, error) {
	return runArgv(ctx, reaper, []string{"/bin/sh", "-c", cmdline}, timeout, env, nil, stdout, stderr)
}

// runArgv is runShell for an argv, with stdin as its standard input (nil:
// /dev/null). A stdout or stderr that is an *os.File is handed to the
// command itself, as consul-template does (child.NewInput): then the
// returned output lacks what went there, and a process the command leaves
// in the background (`cmd &`) does not hold the command's end back.
func runArgv(ctx context.Context, reaper *supervisor.Reaper, argv []string, timeout time.Duration, env []string, stdin *os.File, stdout, stderr io.Writer) (string, error) {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A timeout kills what consul-template kills (v0.41.1 child/child.go
	// start: signal(os.Kill)): the whole group of a sh -c command, else
	// the program alone; what the program left in the background runs on.
	group := supervisor.IsShellWrapper(argv)
	cmd.Cancel = func() error {
		if group {
			return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		return cmd.Process.Kill()
	}
	cmd.WaitDelay = 2 * time.Second
	cmd.Env = append(os.Environ(), env...)
	// Two copiers (stdout, stderr) may write buf at once.
	var buf syncbuffer.Buffer
	cmd.Stdout, cmd.Stderr = io.Writer(&buf), io.Writer(&buf)
	cmd.Stdout, cmd.Stderr = teeOrFile(&buf, stdout), teeOrFile(&buf, stderr)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	err := reaper.RunCmd(cmd)
	if cctx.Err() == context.DeadlineExceeded {
		return buf.String(), fmt.Errorf("timed out after %s", timeout)
	}
	return buf.String(), err
}

// teeOrFile is where a command's stream goes: w itself when it is a file,
// else buf and w (buf alone when w is nil).
func teeOrFile(buf io.Writer, w io.Writer) io.Writer {
	switch f := w.(type) {
	case nil:
		return buf
	case *os.File:
		return f
	}
	return io.MultiWriter(buf, w)
}

// askedOwner is the uid and gid the template's user/uid and group/gid name
// (a name, or a number when no such name exists), -1 for one not given.
func askedOwner(c *templateConfig) (uid, gid int, err error) {
	uid, gid = -1, -1
	if c.User != "" {
		if uid, err = lookupID(c.User, func(n string) (string, error) { u, err := user.Lookup(n); return idOf(u, err) }); err != nil {
			return 0, 0, fmt.Errorf("user %q: %w", c.User, err)
		}
	}
	if c.Group != "" {
		if gid, err = lookupID(c.Group, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		}); err != nil {
			return 0, 0, fmt.Errorf("group %q: %w", c.Group, err)
		}
	}
	return uid, gid, nil
}

// chownNeeded reports whether path's owner or group is not the one the
// template asks for.
func chownNeeded(path string, c *templateConfig) (bool, error) {
	if c.User == "" && c.Group == "" {
		return false, nil
	}
	uid, gid, err := askedOwner(c)
	if err != nil {
		return false, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false, nil
	}
	return uid >= 0 && uint32(uid) != sys.Uid || gid >= 0 && uint32(gid) != sys.Gid, nil
}

// chownAsAsked gives the candidate the owner and group the template's
// user/uid and group/gid name, as consul-template does
// (renderer/renderer.go setFileOwnership).
func chownAsAsked(path string, c *templateConfig) error {
	if c.User == "" && c.Group == "" {
		return nil
	}
	uid, gid, err := askedOwner(c)
	if err != nil {
		return err
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("set owner of %s: %w", c.Destination, err)
	}
	return nil
}
