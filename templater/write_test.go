package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestInstall(t *testing.T) {
	ctx := context.Background()
	old := syscall.Umask(0o077) // a strict umask must not change the asked mode
	defer syscall.Umask(old)

	t.Run("new file gets the asked mode", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "a", "b", "out")
		c := &templateConfig{Destination: dst, Perms: 0o640, PermsSet: true, CreateDestDirs: true}
		changed, err := install(ctx, c, []byte("x"), nil, nil)
		if err != nil || !changed {
			t.Fatalf("install: %v %v", changed, err)
		}
		st, _ := os.Stat(dst)
		if st.Mode().Perm() != 0o640 {
			t.Fatalf("mode %o", st.Mode().Perm())
		}
	})
	t.Run("temp file has the final mode before its first byte", func(t *testing.T) {
		dir := t.TempDir()
		name, err := writeTemp(dir, "out", nil, 0o604, -1, -1)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(name)
		if st.Mode().Perm() != 0o604 || st.Size() != 0 {
			t.Fatalf("empty temp file mode %o size %d", st.Mode().Perm(), st.Size())
		}
	})
	t.Run("keeps mode and owner of the existing file, no write when unchanged", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "out")
		os.WriteFile(dst, []byte("old"), 0o600)
		os.Chmod(dst, 0o611)
		if os.Geteuid() == 0 {
			os.Chown(dst, 1234, 4321)
		}
		c := &templateConfig{Destination: dst, CreateDestDirs: true}
		if _, err := install(ctx, c, []byte("new"), nil, nil); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(dst)
		if st.Mode().Perm() != 0o611 {
			t.Fatalf("mode %o, want 611", st.Mode().Perm())
		}
		if os.Geteuid() == 0 {
			s := st.Sys().(*syscall.Stat_t)
			if s.Uid != 1234 || s.Gid != 4321 {
				t.Fatalf("owner %d:%d", s.Uid, s.Gid)
			}
		}
		ino := st.Sys().(*syscall.Stat_t).Ino
		mt := st.ModTime()
		time.Sleep(10 * time.Millisecond)
		changed, err := install(ctx, c, []byte("new"), nil, nil)
		if err != nil || changed {
			t.Fatalf("unchanged bytes: changed=%v err=%v", changed, err)
		}
		st2, _ := os.Stat(dst)
		if st2.Sys().(*syscall.Stat_t).Ino != ino || !st2.ModTime().Equal(mt) {
			t.Fatal("file rewritten although unchanged")
		}
	})
	t.Run("backup", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "out")
		os.WriteFile(dst, []byte("v1"), 0o644)
		c := &templateConfig{Destination: dst, Backup: true, CreateDestDirs: true}
		if _, err := install(ctx, c, []byte("v2"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if readFile(dst+".bak") != "v1" || readFile(dst) != "v2" {
			t.Fatalf("backup %q dest %q", readFile(dst+".bak"), readFile(dst))
		}
	})
	t.Run("backup that cannot be made: a warning, and the write goes on", func(t *testing.T) {
		dir := t.TempDir()
		dst := filepath.Join(dir, "out")
		os.WriteFile(dst, []byte("v1"), 0o644)
		// DEST.bak a folder that cannot be moved to DEST.old.bak (a folder
		// with files there): no hard link can be made.
		os.MkdirAll(filepath.Join(dir, "out.bak"), 0o755)
		os.MkdirAll(filepath.Join(dir, "out.old.bak"), 0o755)
		os.WriteFile(filepath.Join(dir, "out.old.bak", "k"), []byte("k"), 0o644)
		for _, inPlace := range []bool{false, true} {
			var warned []string
			warn := func(msg string, args ...any) { warned = append(warned, msg) }
			c := &templateConfig{Destination: dst, Backup: true, InPlace: inPlace, CreateDestDirs: true}
			content := fmt.Sprintf("in place %v", inPlace)
			changed, err := install(ctx, c, []byte(content), nil, warn)
			if err != nil || !changed || readFile(dst) != content || len(warned) != 1 {
				t.Fatalf("in_place %v: changed %v, err %v, dest %q, warnings %q", inPlace, changed, err, readFile(dst), warned)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 3 {
				t.Fatalf("in_place %v: left behind: %v", inPlace, ents)
			}
		}
	})
	t.Run("first write with backup: no warning, an old backup moved aside", func(t *testing.T) {
		dir := t.TempDir()
		dst := filepath.Join(dir, "out")
		os.WriteFile(dst+".bak", []byte("older"), 0o644)
		warned := 0
		c := &templateConfig{Destination: dst, Backup: true, CreateDestDirs: true}
		if _, err := install(ctx, c, []byte("v1"), nil, func(string, ...any) { warned++ }); err != nil || warned != 0 {
			t.Fatalf("err %v, %d warnings", err, warned)
		}
		if readFile(dst) != "v1" || readFile(dst+".old.bak") != "older" || fileState(dir, "out.bak") != "absent" {
			t.Fatalf("dest %q, old.bak %q, bak %s", readFile(dst), readFile(dst+".old.bak"), fileState(dir, "out.bak"))
		}
	})
	t.Run("in-place backup is a copy the write does not change", func(t *testing.T) {
		// Through a symbolic link too: in_place writes the link's target,
		// so the backup is the target's old content, not the link.
		dir := t.TempDir()
		dst := filepath.Join(dir, "out")
		for _, link := range []bool{false, true} {
			os.Remove(dst)
			if link {
				os.Symlink("target", dst)
			} else {
				os.WriteFile(dst, []byte("v1"), 0o640)
			}
			os.WriteFile(filepath.Join(dir, "target"), []byte("v1"), 0o640)
			os.Chmod(dst, 0o640) // the umask (077 here) cut it
			os.WriteFile(dst+".old.bak", []byte("oldest"), 0o644)
			c := &templateConfig{Destination: dst, Backup: true, InPlace: true, CreateDestDirs: true}
			if _, err := install(ctx, c, []byte("v2"), nil, nil); err != nil {
				t.Fatal(err)
			}
			st, err := os.Lstat(dst + ".bak")
			if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o640 || readFile(dst+".bak") != "v1" || readFile(dst) != "v2" {
				t.Fatalf("link %v: backup %v %q, dest %q", link, st.Mode(), readFile(dst+".bak"), readFile(dst))
			}
			if fileState(dir, "out.old.bak") != "absent" {
				t.Fatalf("link %v: out.old.bak left: %s", link, fileState(dir, "out.old.bak"))
			}
			if lst, _ := os.Lstat(dst); link != (lst.Mode()&os.ModeSymlink != 0) || link && readFile(filepath.Join(dir, "target")) != "v2" {
				t.Fatalf("link %v: dest %v, target %q", link, lst.Mode(), readFile(filepath.Join(dir, "target")))
			}
		}
	})
	t.Run("in place keeps the inode", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "out")
		os.WriteFile(dst, []byte("v1 long content"), 0o644)
		st, _ := os.Stat(dst)
		ino := st.Sys().(*syscall.Stat_t).Ino
		c := &templateConfig{Destination: dst, InPlace: true, CreateDestDirs: true}
		if _, err := install(ctx, c, []byte("v2"), nil, nil); err != nil {
			t.Fatal(err)
		}
		st2, _ := os.Stat(dst)
		if st2.Sys().(*syscall.Stat_t).Ino != ino || readFile(dst) != "v2" {
			t.Fatalf("in-place: inode changed or content %q", readFile(dst))
		}
	})
	t.Run("atomic rename replaces the inode", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "out")
		os.WriteFile(dst, []byte("v1"), 0o644)
		st, _ := os.Stat(dst)
		ino := st.Sys().(*syscall.Stat_t).Ino
		c := &templateConfig{Destination: dst, CreateDestDirs: true}
		if _, err := install(ctx, c, []byte("v2"), nil, nil); err != nil {
			t.Fatal(err)
		}
		st2, _ := os.Stat(dst)
		if st2.Sys().(*syscall.Stat_t).Ino == ino {
			t.Fatal("not renamed")
		}
	})
	t.Run("failed check keeps the old file and leaves no temp file", func(t *testing.T) {
		dir := t.TempDir()
		dst := filepath.Join(dir, "out")
		os.WriteFile(dst, []byte("good"), 0o644)
		c := &templateConfig{Destination: dst, Check: "grep -q good {{path}}", CommandTimeout: 5 * time.Second, CreateDestDirs: true}
		_, err := install(ctx, c, []byte("bad"), nil, nil)
		var ce *checkError
		if !errors.As(err, &ce) {
			t.Fatalf("want a check error, got %v", err)
		}
		if readFile(dst) != "good" {
			t.Fatal("old file replaced")
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Fatalf("left behind: %v", ents)
		}
		if _, err := install(ctx, c, []byte("good and new"), nil, nil); err != nil {
			t.Fatalf("passing check: %v", err)
		}
	})
	t.Run("command timeout", func(t *testing.T) {
		start := time.Now()
		_, err := runShell(ctx, nil, "sleep 30", 200*time.Millisecond, nil, nil, nil)
		if err == nil || time.Since(start) > 10*time.Second {
			t.Fatalf("timeout not enforced: %v after %s", err, time.Since(start))
		}
	})
}
