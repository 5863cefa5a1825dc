package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
)

// notifyListener is a stand-in for systemd's notification socket: it
// records each datagram and whether dst held want when it came.
type notifyListener struct {
	mu   sync.Mutex
	msgs []string
	// early: a message that came before dst held want.
	early []string
}

func listenNotify(t *testing.T, sock, dst, want string) *notifyListener {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := &notifyListener{}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			if readFile(dst) != want {
				n.early = append(n.early, string(buf[:k]))
			}
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifyListener) got() (msgs, early []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...), append([]string(nil), n.early...)
}

// TestConformSystemdNotify: under a systemd Type=notify unit (NOTIFY_SOCKET
// set), consul-template v0.41.1 sends READY=1 once every template is
// rendered; templater must too, or systemd kills it at TimeoutStartSec. The
// template waits for a key that is put after both started, so READY=1 must
// not come before the file holds it; after the reload signal it comes again.
func TestConformSystemdNotify(t *testing.T) {
	c := seedConform(t)
	if _, err := c.KV().Delete("ct/notify/k", nil); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"in.tmpl": `v={{ key "ct/notify/k" }}`}
	var ls []*notifyListener
	var ds []*proctest.Proc
	for _, tl := range tools(t) {
		dir := toolDir(t, tl.name, files)
		sock := filepath.Join(dir, "n.sock")
		ls = append(ls, listenNotify(t, sock, filepath.Join(dir, "out"), "v=up"))
		cmd := exec.Command(tl.bin, "-consul-addr", agent.HTTPAddr(), "-log-level", "err", "-template", "in.tmpl:out")
		cmd.Dir, cmd.Env = dir, append(append([]string{}, ctEnv...), "NOTIFY_SOCKET="+sock)
		ds = append(ds, proctest.Start(t, cmd, proctest.Options{Combined: true}))
	}
	put(t, c, "ct/notify/k", "up")
	ready := func(msgs []string) int {
		n := 0
		for _, m := range msgs {
			if m == "READY=1" {
				n++
			}
		}
		return n
	}
	var before [2]int
	for i, tl := range tools(t) {
		eventually.True(t, 30*time.Second, tl.name+" sends READY=1", func() bool {
			msgs, _ := ls[i].got()
			before[i] = ready(msgs)
			return before[i] > 0
		})
		if _, early := ls[i].got(); len(early) > 0 {
			t.Errorf("%s: %q sent before the file was rendered", tl.name, early)
		}
	}
	// The reload signal builds the runner again; READY=1 comes again once
	// its templates are rendered.
	for i, tl := range tools(t) {
		if err := ds[i].Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		eventually.True(t, 30*time.Second, tl.name+" sends READY=1 again after SIGHUP", func() bool {
			msgs, _ := ls[i].got()
			return ready(msgs) > before[i]
		})
	}
	for _, d := range ds {
		d.Stop(syscall.SIGINT, daemonStopWait)
	}
}
