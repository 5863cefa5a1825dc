package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
)

// TestConformReloadConsul: the reload signal applies a changed consul
// block, as consul-template v0.41.1 builds a new runner, and with it new
// clients, from the files read again (cli.go Run, ReloadSignal case). Both
// tools render a key from the package's agent, then their config file is
// rewritten to name a second agent with default-deny ACLs over HTTPS (its
// address, token and TLS settings) whose key differs, and both get SIGHUP:
// the rendered bytes are compared after the reload and after a change on
// the second agent.
func TestConformReloadConsul(t *testing.T) {
	c := seedConform(t)
	put(t, c, "ct/reload/who", "agent-a")
	b := consultest.StartSecure(t, "templater-reload-b")
	put(t, b.Client(), "ct/reload/who", "agent-b")
	tmpl := "template {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n"
	toA := "consul {\n address = \"@ADDR@\"\n}\n" + tmpl
	toB := fmt.Sprintf("consul {\n address = %q\n token = %q\n ssl {\n  enabled = true\n  ca_cert = %q\n  server_name = %q\n }\n}\n",
		b.HTTPSAddr(), b.Token, b.TLS.CAFile, b.TLS.ServerName) + tmpl
	files := map[string]string{"in.tmpl": `who={{ key "ct/reload/who" }}`, "c.hcl": toA}
	ds, dirs := startBoth(t, files, "-config", "c.hcl", "-log-level", "err")
	outs := func() [2]string {
		return [2]string{readFile(filepath.Join(dirs[0], "out")), readFile(filepath.Join(dirs[1], "out"))}
	}
	waitSame := func(what, want string) {
		t.Helper()
		eventually.Holds(t, 30*time.Second, what, func() (bool, string) {
			o := outs()
			return o[0] == want && o[1] == want, fmt.Sprintf("consul-template %q, templater %q", o[0], o[1])
		})
	}
	// The peer's render is the one to match: what it writes first.
	eventually.True(t, 30*time.Second, "consul-template's first render", func() bool { return outs()[0] != "" })
	waitSame("first render", outs()[0])
	for i, dir := range dirs {
		proctest.WriteFile(t, filepath.Join(dir, "c.hcl"), toB)
		ds[i].Signal(t, syscall.SIGHUP)
	}
	eventually.True(t, 30*time.Second, "consul-template's render from the second agent", func() bool { return outs()[0] == "who=agent-b" })
	waitSame("render after the reload", outs()[0])
	put(t, b.Client(), "ct/reload/who", "agent-b2")
	eventually.True(t, 30*time.Second, "consul-template's render of the change", func() bool { return outs()[0] == "who=agent-b2" })
	waitSame("render of a change on the second agent", outs()[0])
	for i, d := range ds {
		if !d.Alive() {
			t.Fatalf("%s exited (%d):\n%s", tools(t)[i].name, d.Code(), d.Stdout.String())
		}
		b.RequireNoToken(t, tools(t)[i].name, d.Stdout.String())
	}
}

// TestConformReloadSignals: the kill and reload signals of a config file
// read again on the reload signal apply from the next signal on, as
// consul-template v0.41.1 compares each signal with the config it holds
// then (cli.go Run). The file first sets kill_signal SIGINT and
// reload_signal SIGHUP, then SIGUSR2 and SIGUSR1; after a SIGHUP both
// tools get, in order, SIGHUP and SIGINT (the old signals), SIGUSR1 twice
// (the new reload signal) and SIGUSR2 (the new kill signal). Each tool's
// count of "Reloading configuration..." lines and its exit code are
// compared.
func TestConformReloadSignals(t *testing.T) {
	seedConform(t)
	conf := func(kill, reload string) string {
		return fmt.Sprintf("consul {\n address = \"@ADDR@\"\n}\nkill_signal = %q\nreload_signal = %q\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n", kill, reload)
	}
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`, "c.hcl": conf("SIGINT", "SIGHUP")}
	ds, dirs := startBoth(t, files, "-config", "c.hcl", "-log-level", "err")
	for _, dir := range dirs {
		eventually.True(t, 30*time.Second, "first render", func() bool { return readFile(filepath.Join(dir, "out")) == "hello" })
	}
	reloads := func(d *proctest.Proc) int { return strings.Count(d.Stdout.String(), "Reloading configuration...") }
	// waitReloads waits until d printed n reload lines or exited: the
	// signals sent before the one that printed the n-th were handled.
	waitReloads := func(d *proctest.Proc, n int) {
		_, _ = eventually.Poll(30*time.Second, func() (bool, string) { return reloads(d) >= n || !d.Alive(), "" })
	}
	var got [2]string
	for i, d := range ds {
		proctest.WriteFile(t, filepath.Join(dirs[i], "c.hcl"), strings.ReplaceAll(conf("SIGUSR2", "SIGUSR1"), "@ADDR@", agent.HTTPAddr()))
		d.Signal(t, syscall.SIGHUP)
		waitReloads(d, 1)
		usr1 := 0
		for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGINT, syscall.SIGUSR1} {
			if !d.Alive() {
				break
			}
			_ = d.Cmd.Process.Signal(sig)
			if sig == syscall.SIGUSR1 {
				// Its line comes after those of the signals before it.
				usr1++
				waitReloads(d, 1+usr1)
			}
		}
		if d.Alive() {
			_ = d.Cmd.Process.Signal(syscall.SIGUSR2)
		}
		code := exitOrKill(d)
		got[i] = "exit " + strconv.Itoa(code) + ", reload lines " + strconv.Itoa(reloads(d))
	}
	t.Logf("both: %s", got[0])
	if got[0] != got[1] {
		t.Fatalf("after the reload changed the signals: consul-template %s, templater %s\n%s", got[0], got[1], ds[1].Stdout.String())
	}
}

// TestConformReloadExec: a reload whose exec block names another command
// stops the running child with its kill signal and starts the new one once
// the templates are rendered again, as consul-template v0.41.1 does (its
// runner stops the child, manager/runner.go internalStop, and the new
// runner starts one). The children log their start and their stop; each
// tool's log is compared once the second child started and again after the
// tools are stopped with their kill signal.
func TestConformReloadExec(t *testing.T) {
	seedConform(t)
	conf := func(word string) string {
		return "consul {\n address = \"@ADDR@\"\n}\nexec {\n command = \"sh child.sh " + word + "\"\n}\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n"
	}
	child := "echo start-$1 >> children.log\ntrap 'echo stop-'$1' >> children.log; exit 0' INT TERM\nwhile :; do sleep 1; done\n"
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }}`, "c.hcl": conf("one"), "child.sh": child}
	ds, dirs := startBoth(t, files, "-config", "c.hcl", "-log-level", "err")
	logs := func() [2]string {
		return [2]string{readFile(filepath.Join(dirs[0], "children.log")), readFile(filepath.Join(dirs[1], "children.log"))}
	}
	for i := range dirs {
		eventually.True(t, 30*time.Second, "first child", func() bool { return logs()[i] == "start-one\n" })
	}
	for i, d := range ds {
		proctest.WriteFile(t, filepath.Join(dirs[i], "c.hcl"), strings.ReplaceAll(conf("two"), "@ADDR@", agent.HTTPAddr()))
		d.Signal(t, syscall.SIGHUP)
	}
	for i := range dirs {
		_, _ = eventually.Poll(30*time.Second, func() (bool, string) { return strings.Contains(logs()[i], "start-two"), "" })
	}
	if l := logs(); l[0] != l[1] {
		t.Fatalf("children after the reload: consul-template %q, templater %q\n%s", l[0], l[1], ds[1].Stdout.String())
	}
	var codes [2]int
	for i, d := range ds {
		_ = d.Cmd.Process.Signal(syscall.SIGINT)
		codes[i] = exitOrKill(d)
	}
	t.Logf("consul-template: exit %d, children %q", codes[0], logs()[0])
	if l := logs(); l[0] != l[1] || codes[0] != codes[1] {
		t.Fatalf("after the kill signal: consul-template exit %d, %q; templater exit %d, %q", codes[0], l[0], codes[1], l[1])
	}
}

// TestConformReloadPidFile: a reload whose pid_file names another file
// removes the old one and writes the new one, as consul-template v0.41.1's
// old runner removes its PID file when it stops and the new one writes its
// own (manager/runner.go deletePid, storePid). Both files of each tool are
// compared once the peer wrote its new one.
func TestConformReloadPidFile(t *testing.T) {
	seedConform(t)
	conf := func(pid string) string {
		return "consul {\n address = \"@ADDR@\"\n}\npid_file = \"" + pid + "\"\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n"
	}
	files := map[string]string{"in.tmpl": "static\n", "c.hcl": conf("a.pid")}
	ds, dirs := startBoth(t, files, "-config", "c.hcl", "-log-level", "err")
	for _, dir := range dirs {
		eventually.True(t, 30*time.Second, "first render and PID file", func() bool {
			return readFile(filepath.Join(dir, "out")) == "static\n" && readFile(filepath.Join(dir, "a.pid")) != ""
		})
	}
	var got [2]string
	for i, d := range ds {
		proctest.WriteFile(t, filepath.Join(dirs[i], "c.hcl"), strings.ReplaceAll(conf("b.pid"), "@ADDR@", agent.HTTPAddr()))
		d.Signal(t, syscall.SIGHUP)
		pid := d.Cmd.Process.Pid
		_, _ = eventually.Poll(30*time.Second, func() (bool, string) {
			return readFile(filepath.Join(dirs[i], "b.pid")) != "" && readFile(filepath.Join(dirs[i], "a.pid")) == "", ""
		})
		got[i] = "a.pid: " + pidFileState(filepath.Join(dirs[i], "a.pid"), pid) + "; b.pid: " + pidFileState(filepath.Join(dirs[i], "b.pid"), pid)
	}
	t.Logf("consul-template: %s", got[0])
	if got[0] != got[1] {
		t.Fatalf("after the reload: consul-template %s; templater %s", got[0], got[1])
	}
}

// queryRecorder is a reverse proxy to the package's agent that records
// whether each KV read asked for a stale answer (?stale).
type queryRecorder struct {
	mu    sync.Mutex
	stale []bool
	addr  string
}

func newQueryRecorder(t *testing.T) *queryRecorder {
	t.Helper()
	target, err := url.Parse("http://" + agent.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	q := &queryRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			q.mu.Lock()
			q.stale = append(q.stale, r.URL.Query().Has("stale"))
			q.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	q.addr = l.Addr().String()
	return q
}

// since is how many KV reads came from the n-th on, and whether any of
// them asked for a stale answer.
func (q *queryRecorder) since(n int) (count int, anyStale bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.stale))
	for _, s := range q.stale[n:] {
		anyStale = anyStale || s
	}
	return len(q.stale) - n, anyStale
}

func (q *queryRecorder) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.stale)
}

// TestConformReloadMaxStale: a max_stale changed in the config file applies
// after the reload signal, as consul-template v0.41.1 builds its clients
// and watcher again from the new config (cli.go Run; manager.NewRunner).
// Each tool reads the agent through a proxy of its own that records
// whether a KV read asks for a stale answer; with max_stale = "0s" and
// then, after SIGHUP, "10s", whether the reads before and after the reload
// asked for one is compared.
func TestConformReloadMaxStale(t *testing.T) {
	seedConform(t)
	conf := func(addr, stale string) string {
		return fmt.Sprintf("consul {\n address = %q\n}\nmax_stale = %q\ntemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n", addr, stale)
	}
	var got [2]string
	for i, tl := range tools(t) {
		q := newQueryRecorder(t)
		dir := toolDir(t, tl.name, map[string]string{"in.tmpl": `{{ key "ct/name" }}`, "c.hcl": conf(q.addr, "0s")})
		d := startDaemon(t, tl.bin, dir, "-config", "c.hcl", "-log-level", "err")
		eventually.True(t, 30*time.Second, tl.name+" first render", func() bool { return readFile(filepath.Join(dir, "out")) == "hello" })
		_, before := q.since(0)
		mark := q.count()
		proctest.WriteFile(t, filepath.Join(dir, "c.hcl"), conf(q.addr, "10s"))
		d.Signal(t, syscall.SIGHUP)
		// The reads after the reload: the first of the new watch, then
		// as they come.
		_, _ = eventually.Poll(30*time.Second, func() (bool, string) { n, _ := q.since(mark); return n > 0, "" })
		_, after := q.since(mark)
		got[i] = fmt.Sprintf("stale asked before the reload: %v; after: %v; running: %v", before, after, d.Alive())
	}
	t.Logf("consul-template: %s", got[0])
	if got[0] != got[1] {
		t.Fatalf("consul-template: %s\ntemplater: %s", got[0], got[1])
	}
}
