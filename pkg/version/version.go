// Package version carries the build version of the berth programs.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set at build time with -ldflags "-X github.com/berth/berth/pkg/version.Version=...".
var Version = "dev"

// String is the line printed by -version.
func String(program string) string {
	v := Version
	if v == "dev" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					v = "dev-" + s.Value[:12]
				}
			}
		}
	}
	return fmt.Sprintf("%s %s (%s, %s/%s)", program, v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
