// Package version carries the build version of the berth programs.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version and Commit are set at build time with
// -ldflags "-X github.com/berth/berth/pkg/version.Version=v1.2.3 -X github.com/berth/berth/pkg/version.Commit=<git sha>"
// (make build and make dist do). A plain `go build` in a git checkout falls
// back to the VCS revision Go embeds.
var (
	Version = "dev"
	Commit  = ""
)

// String is the line printed by -version: program, version, commit, Go
// version and platform, e.g.
// "lockrun v0.3.0 (commit 4da2f6f1a2b3, go1.26.8, linux/amd64)".
func String(program string) string {
	commit := Commit
	if commit == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			dirty := false
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					commit = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if commit != "" && dirty {
				commit += "-dirty"
			}
		}
	}
	commit = shortSHA(commit)
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("%s %s (commit %s, %s, %s/%s)", program, Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// shortSHA keeps 12 hex digits of a full SHA and any "-dirty" after it.
func shortSHA(c string) string {
	sha, rest, _ := strings.Cut(c, "-")
	if len(sha) > 12 {
		sha = sha[:12]
	}
	if rest != "" {
		return sha + "-" + rest
	}
	return sha
}
