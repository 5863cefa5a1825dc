package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berth/berth/pkg/proctest"
)

// TestTerminalReadByCommand: run from a script on a terminal, the command
// reads the terminal, a restarted command reads it again, and the script
// reads it once envexec has exited. So it is with envconsul, whose plain
// command shares its process group (consul-template v0.41.1
// child/child.go: Setpgid only for sh -c subshells). envexec's command has
// its own group: unless that group is made the terminal's foreground group
// (and the terminal taken back after), the command is stopped by SIGTTIN
// for good.
func TestTerminalReadByCommand(t *testing.T) {
	a, c, n := nsWith(t, "V", "1")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	child := `echo ready:$V; read x; echo got:$V:$x; [ "$x" = end ] || exec sleep 300`
	script := fmt.Sprintf("%s __envexec -http-addr %s -prefix %s -- sh -c %s; echo rc=$?; read y; echo after:$y",
		q(self), a.HTTPAddr(), n, q(child))
	tm := proctest.OnTerminal(t, script, append(os.Environ(), "CONSUL_HTTP_TOKEN=", "CONSUL_HTTP_TOKEN_FILE="))
	step := func(want string) {
		t.Helper()
		if !tm.WaitFor(want, 20*time.Second) {
			t.Fatalf("no %q on the terminal:\n%s", want, tm.Output())
		}
	}
	step("ready:1")
	tm.Type("hello\n")
	step("got:1:hello")
	put(t, c, n+"/V", "2") // a restart
	step("ready:2")
	tm.Type("end\n")
	step("got:2:end")
	step("rc=0")
	tm.Type("world\n")
	step("after:world")
}
