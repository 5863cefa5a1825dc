package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The shared folder (c.Shared on this machine, /shared in every container):
// ticks/ holds the tick children's lines, logs/ the output of the agents and
// of programs started with loggedArgv, one NAME.log each.

// makeShared makes the shared folder's ticks/ and logs/, writable by every
// container user.
func (c *Cluster) makeShared() error {
	for _, d := range []string{"ticks", "logs"} {
		if err := os.MkdirAll(c.SharedPath(d), 0o777); err != nil {
			return err
		}
	}
	return nil
}

// SharedPath is the path on this machine of rel below the shared folder
// (/shared/REL in the containers).
func (c *Cluster) SharedPath(rel string) string { return filepath.Join(c.Shared, rel) }

// ReadShared is the content of rel below the shared folder; "" when it is
// missing or unreadable (a program that has not written yet).
func (c *Cluster) ReadShared(rel string) string {
	b, _ := os.ReadFile(c.SharedPath(rel))
	return string(b)
}

// WriteShared writes content to rel below the shared folder, making its
// folders, readable and writable by every container user; it returns the
// file's path on this machine.
func (c *Cluster) WriteShared(rel, content string) (string, error) {
	p := c.SharedPath(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, []byte(content), 0o666)
}

// LogText is what node or program NAME has written to logs/NAME.log so far
// (a node's agent logs under its short name: s1, h2, …).
func (c *Cluster) LogText(name string) string { return c.ReadShared("logs/" + name + ".log") }

// loggedArgv wraps argv in a shell that appends its standard output and
// error to /shared/logs/NAME.log.
func loggedArgv(name string, argv ...string) []string {
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return []string{"/bin/sh", "-c", "exec " + strings.Join(quoted, " ") + " >>/shared/logs/" + name + ".log 2>&1"}
}

// logTails logs the last limit bytes of every log in logs/ to the test.
func (c *Cluster) logTails(limit int) {
	logs, _ := filepath.Glob(c.SharedPath("logs/*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > limit {
			b = b[len(b)-limit:]
		}
		c.t.Logf("--- tail of %s ---\n%s", filepath.Base(l), b)
	}
}

// TickDir is the host folder where tick children write (/shared/ticks in the
// containers).
func (c *Cluster) TickDir() string { return c.SharedPath("ticks") }

// Ticks reads and analyses the tick files of the given labels (all when
// none) for a lock allowing limit holders.
func (c *Cluster) Ticks(limit int, labels ...string) (Report, error) {
	lines, err := ReadLines(c.TickDir())
	if err != nil {
		return Report{}, err
	}
	if len(labels) > 0 {
		keep := map[string]bool{}
		for _, l := range labels {
			keep[l] = true
		}
		var sel []Line
		for _, l := range lines {
			if keep[l.Label] {
				sel = append(sel, l)
			}
		}
		lines = sel
	}
	return Analyse(lines, limit), nil
}

// FirstTick waits until label's first line is written and returns its time.
func (c *Cluster) FirstTick(label string, timeout time.Duration) (time.Time, error) {
	var first time.Time
	_, err := waitUntil(timeout, func() error {
		lines, err := ReadLines(c.TickDir())
		if err != nil {
			return err
		}
		for _, l := range lines {
			if l.Label == label {
				first = time.Unix(0, l.At)
				return nil
			}
		}
		return fmt.Errorf("%s never started", label)
	})
	return first, err
}

// MarkedFailed reports whether any server logged host h's node as failed
// (serfHealth critical, which invalidates its sessions) at or after since:
// gossip on a loaded machine can do that to a host nobody cut off.
func (c *Cluster) MarkedFailed(h *Node, since time.Time) bool {
	for _, s := range c.Servers {
		for _, line := range strings.Split(c.LogText(s.short()), "\n") {
			if !strings.Contains(line, "member failed, marking health critical: member="+h.short()+" ") {
				continue
			}
			ts, err := time.Parse(time.RFC3339Nano, strings.Fields(line)[0])
			if err == nil && !ts.Before(since.Add(-time.Second)) {
				return true
			}
		}
	}
	return false
}
