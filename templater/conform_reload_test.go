package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sort"
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

// kvRequest is what a requestRecorder keeps of one KV read: its
// Authorization header, the wait it asked for when it blocked (an index
// above 0; a wait without an index blocks nothing) and whether it asked to
// close its connection (Connection: close, which disable_keep_alives sends).
type kvRequest struct {
	path, auth, wait string
	close            bool
}

// requestRecorder is a reverse proxy to the package's agent that keeps
// every KV read it forwards; close stops it and drops its connections (an
// outage).
type requestRecorder struct {
	mu   sync.Mutex
	reqs []kvRequest
	// inFlight is how many KV reads are being answered now, maxInFlight
	// the most at once so far.
	inFlight, maxInFlight int
	addr                  string
	close                 func()
}

func newRequestRecorder(t *testing.T) *requestRecorder {
	t.Helper()
	target, err := url.Parse("http://" + agent.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	rec := &requestRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	// A read cancelled by its tool's reload is no news.
	proxy.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			q := r.URL.Query()
			kr := kvRequest{path: r.URL.Path, auth: r.Header.Get("Authorization"), close: r.Close}
			if idx, _ := strconv.ParseUint(q.Get("index"), 10, 64); idx > 0 {
				kr.wait = q.Get("wait")
			}
			rec.mu.Lock()
			rec.reqs = append(rec.reqs, kr)
			rec.inFlight++
			rec.maxInFlight = max(rec.maxInFlight, rec.inFlight)
			rec.mu.Unlock()
			defer func() {
				rec.mu.Lock()
				rec.inFlight--
				rec.mu.Unlock()
			}()
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	rec.close = func() { srv.Close() }
	t.Cleanup(rec.close)
	rec.addr = l.Addr().String()
	return rec
}

// blocked reports whether a blocking KV read came through.
func (rec *requestRecorder) blocked() bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.reqs {
		if r.wait != "" {
			return true
		}
	}
	return false
}

// blockedOn reports whether a blocking read of each KV path came through.
func (rec *requestRecorder) blockedOn(paths ...string) bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, p := range paths {
		found := false
		for _, r := range rec.reqs {
			found = found || (r.path == p && r.wait != "")
		}
		if !found {
			return false
		}
	}
	return true
}

// auths is the distinct Authorization headers of the KV reads so far,
// sorted.
func (rec *requestRecorder) auths() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, r := range rec.reqs {
		if !seen[r.auth] {
			seen[r.auth] = true
			out = append(out, r.auth)
		}
	}
	sort.Strings(out)
	return out
}

// summary is the distinct Authorization headers, blocking waits and
// Connection: close flags of the KV reads so far, each set sorted.
func (rec *requestRecorder) summary() string {
	auths := rec.auths()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	wait, closed := map[string]bool{}, map[bool]bool{}
	for _, r := range rec.reqs {
		if r.wait != "" {
			wait[r.wait] = true
		}
		closed[r.close] = true
	}
	keys := func(m map[string]bool) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	return fmt.Sprintf("authorization %q, blocking wait %q, connection close %v", auths, keys(wait), closed)
}

// TestConformReloadConsulClient: a reload's consul.auth, block_query_wait
// and consul.transport apply to the reads that follow, as consul-template
// v0.41.1 builds its clients and watcher again from the new config (cli.go
// Run; manager.NewRunner, dependency.ClientSet). Each configuration names a
// recording proxy of its own, so every read a proxy sees was made under
// that configuration: basic auth alice with block_query_wait 5s, then bob
// with 7s and disable_keep_alives, then auth disabled (with a username) and
// neither setting, then a password alone, then auth enabled with neither
// username nor password. Each tool's Authorization headers, blocking waits and
// Connection: close flags per configuration are compared.
func TestConformReloadConsulClient(t *testing.T) {
	seedConform(t)
	tmpl := "template {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n"
	confs := []func(addr string) string{
		func(addr string) string {
			return fmt.Sprintf("consul {\n address = %q\n auth {\n  username = \"alice\"\n  password = \"one\"\n }\n}\nblock_query_wait = \"5s\"\n", addr) + tmpl
		},
		func(addr string) string {
			return fmt.Sprintf("consul {\n address = %q\n auth {\n  enabled = true\n  username = \"bob\"\n  password = \"two\"\n }\n transport {\n  disable_keep_alives = true\n }\n}\nblock_query_wait = \"7s\"\n", addr) + tmpl
		},
		func(addr string) string {
			return fmt.Sprintf("consul {\n address = %q\n auth {\n  enabled = false\n  username = \"carol\"\n  password = \"three\"\n }\n}\n", addr) + tmpl
		},
		func(addr string) string {
			return fmt.Sprintf("consul {\n address = %q\n auth {\n  password = \"four\"\n }\n}\n", addr) + tmpl
		},
		func(addr string) string {
			return fmt.Sprintf("consul {\n address = %q\n auth {\n  enabled = true\n }\n}\n", addr) + tmpl
		},
	}
	var got [2][]string
	for i, tl := range tools(t) {
		var recs []*requestRecorder
		for range confs {
			recs = append(recs, newRequestRecorder(t))
		}
		dir := toolDir(t, tl.name, map[string]string{"in.tmpl": `{{ key "ct/name" }}`, "c.hcl": confs[0](recs[0].addr)})
		d := startDaemon(t, tl.bin, dir, "-config", "c.hcl", "-log-level", "err")
		for k, rec := range recs {
			if k > 0 {
				proctest.WriteFile(t, filepath.Join(dir, "c.hcl"), confs[k](rec.addr))
				d.Signal(t, syscall.SIGHUP)
			}
			// Its first blocking read: the one after the first answer.
			_, _ = eventually.Poll(30*time.Second, func() (bool, string) { return rec.blocked() || !d.Alive(), "" })
			got[i] = append(got[i], fmt.Sprintf("configuration %d: %s", k+1, rec.summary()))
		}
		alive := d.Alive()
		_ = d.Cmd.Process.Signal(syscall.SIGINT)
		got[i] = append(got[i], fmt.Sprintf("running: %v; exit after the kill signal: %d", alive, exitOrKill(d)))
	}
	t.Logf("consul-template:\n%s", strings.Join(got[0], "\n"))
	if a, b := strings.Join(got[0], "\n"), strings.Join(got[1], "\n"); a != b {
		t.Fatalf("consul-template:\n%s\ntemplater:\n%s", a, b)
	}
}

// TestConformReloadRetry: a reload's consul.retry applies to the failures
// that follow, as consul-template v0.41.1's new runner retries with the new
// config (cli.go Run; config/retry.go RetryFunc). Each tool starts with the
// retry defaults, through a recording proxy; the reload names a second
// proxy and 2 attempts 10ms apart (20ms at most); once the tool reads
// through the second proxy, it is stopped (an outage). Both exit codes are
// compared.
func TestConformReloadRetry(t *testing.T) {
	seedConform(t)
	tmpl := "template {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n"
	first := func(addr string) string { return fmt.Sprintf("consul {\n address = %q\n}\n", addr) + tmpl }
	second := func(addr string) string {
		return fmt.Sprintf("consul {\n address = %q\n retry {\n  attempts = 2\n  backoff = \"10ms\"\n  max_backoff = \"20ms\"\n }\n}\n", addr) + tmpl
	}
	var codes [2]int
	var ds [2]*proctest.Proc
	for i, tl := range tools(t) {
		a, b := newRequestRecorder(t), newRequestRecorder(t)
		dir := toolDir(t, tl.name, map[string]string{"in.tmpl": `{{ key "ct/name" }}`, "c.hcl": first(a.addr)})
		d := startDaemon(t, tl.bin, dir, "-config", "c.hcl", "-log-level", "err")
		ds[i] = d
		eventually.True(t, 30*time.Second, tl.name+" first render", func() bool { return readFile(filepath.Join(dir, "out")) == "hello" })
		proctest.WriteFile(t, filepath.Join(dir, "c.hcl"), second(b.addr))
		d.Signal(t, syscall.SIGHUP)
		_, _ = eventually.Poll(30*time.Second, func() (bool, string) { return b.blocked() || !d.Alive(), "" })
		b.close()
		codes[i] = exitOrKill(d)
	}
	t.Logf("consul-template: exit %d", codes[0])
	if codes[0] != codes[1] {
		t.Fatalf("outage after a reload to 2 retry attempts: consul-template exit %d, templater exit %d\n%s", codes[0], codes[1], ds[1].Stdout.String())
	}
}

// TestConformConsulAuthMerge: HTTP basic authentication from -consul-auth
// and consul { auth { } } together, as consul-template v0.41.1 merges them
// field by field (config/auth.go ParseAuthConfig, Merge, Finalize): each
// tool renders once through a recording proxy of its own; the
// Authorization headers of its KV reads, its exit code and the file, which
// shows CONSUL_HTTP_AUTH of the environment it gives templates and
// commands (manager/runner.go childEnv), are compared.
func TestConformConsulAuthMerge(t *testing.T) {
	seedConform(t)
	for _, c := range []struct {
		name, auth string
		flags      []string
	}{
		{"flag user over file user and password", "username = \"fu\"\n password = \"fp\"", []string{"-consul-auth", "flaguser"}},
		{"flag user and password over file disabled", "enabled = false", []string{"-consul-auth", "a:b"}},
		{"flag user and empty password over file password", "password = \"fp\"", []string{"-consul-auth", "x:"}},
		{"file password alone", "password = \"fp\"", nil},
		{"file enabled alone", "enabled = true", nil},
		{"file username, disabled", "enabled = false\n username = \"u\"", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var got [2]string
			var wg sync.WaitGroup
			for i, tl := range tools(t) {
				rec := newRequestRecorder(t)
				conf := fmt.Sprintf("consul {\n address = %q\n auth {\n %s\n }\n}\n", rec.addr, c.auth)
				dir := toolDir(t, tl.name, map[string]string{"in.tmpl": `{{ key "ct/name" }} [{{ env "CONSUL_HTTP_AUTH" }}]`, "c.hcl": conf})
				wg.Add(1)
				go func() {
					defer wg.Done()
					args := append([]string{"-once", "-log-level", "err", "-config", "c.hcl", "-template", "in.tmpl:out"}, c.flags...)
					o := runTool(t, tl.bin, dir, filepath.Join(dir, "out"), 30*time.Second, args...)
					got[i] = fmt.Sprintf("%s; authorization %q", o, rec.auths())
				}()
			}
			wg.Wait()
			t.Logf("consul-template: %s", got[0])
			if got[0] != got[1] {
				t.Fatalf("consul-template: %s\ntemplater:       %s", got[0], got[1])
			}
		})
	}
}

// TestConformReloadDelimiters: a reload's default_delimiters apply to the
// templates read again, as consul-template v0.41.1's new runner is built
// from the new config (cli.go Run; config/config.go Finalize gives each
// template without delimiters of its own the default ones). The template
// holds an action in each pair; the file before and after a reload that
// sets << >> as the defaults and the exit codes after the kill signal are
// compared.
func TestConformReloadDelimiters(t *testing.T) {
	seedConform(t)
	conf := func(extra string) string {
		return "consul {\n address = \"@ADDR@\"\n}\n" + extra + "template {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n"
	}
	files := map[string]string{"in.tmpl": `{{ key "ct/name" }} <<key "ct/num">>`, "c.hcl": conf("")}
	ds, dirs := startBoth(t, files, "-config", "c.hcl", "-log-level", "err")
	var got [2]string
	for i, d := range ds {
		out := filepath.Join(dirs[i], "out")
		_, _ = eventually.Poll(30*time.Second, func() (bool, string) { return readFile(out) != "" || !d.Alive(), "" })
		first := readFile(out)
		proctest.WriteFile(t, filepath.Join(dirs[i], "c.hcl"), strings.ReplaceAll(conf("default_delimiters {\n left = \"<<\"\n right = \">>\"\n}\n"), "@ADDR@", agent.HTTPAddr()))
		d.Signal(t, syscall.SIGHUP)
		_, _ = eventually.Poll(30*time.Second, func() (bool, string) { return readFile(out) != first || !d.Alive(), "" })
		after := readFile(out)
		_ = d.Cmd.Process.Signal(syscall.SIGINT)
		got[i] = fmt.Sprintf("before the reload %q; after %q; exit %d", first, after, exitOrKill(d))
	}
	t.Logf("consul-template: %s", got[0])
	if got[0] != got[1] {
		t.Fatalf("consul-template: %s\ntemplater:       %s\n%s", got[0], got[1], ds[1].Stdout.String())
	}
}

// TestConformReloadConnsPerHost: a reload's consul.transport
// max_conns_per_host applies to the reads that follow, as consul-template
// v0.41.1 builds its clients again from the new config (cli.go Run;
// dependency/client_set.go CreateConsulClient). A template reads two keys,
// each a blocking query of its own; each configuration names a recording
// proxy of its own, the second sets max_conns_per_host = 1 (and
// block_query_wait 1s, so that the reads queued behind one connection come
// through). How many reads each proxy answered at once at
// most, once both keys had a blocking read, is compared.
func TestConformReloadConnsPerHost(t *testing.T) {
	seedConform(t)
	conf := func(addr, transport, wait string) string {
		return fmt.Sprintf("consul {\n address = %q\n%s}\n%stemplate {\n source = \"in.tmpl\"\n destination = \"out\"\n}\n", addr, transport, wait)
	}
	var got [2]string
	for i, tl := range tools(t) {
		a, b := newRequestRecorder(t), newRequestRecorder(t)
		dir := toolDir(t, tl.name, map[string]string{"in.tmpl": `{{ key "ct/name" }} {{ key "ct/num" }}`, "c.hcl": conf(a.addr, "", "")})
		d := startDaemon(t, tl.bin, dir, "-config", "c.hcl", "-log-level", "err")
		both := func(rec *requestRecorder) {
			_, _ = eventually.Poll(30*time.Second, func() (bool, string) { return rec.blockedOn("/v1/kv/ct/name", "/v1/kv/ct/num") || !d.Alive(), "" })
		}
		both(a)
		proctest.WriteFile(t, filepath.Join(dir, "c.hcl"), conf(b.addr, " transport {\n  max_conns_per_host = 1\n }\n", "block_query_wait = \"1s\"\n"))
		d.Signal(t, syscall.SIGHUP)
		both(b)
		a.mu.Lock()
		b.mu.Lock()
		got[i] = fmt.Sprintf("at most at once: %d before the reload, %d after", a.maxInFlight, b.maxInFlight)
		b.mu.Unlock()
		a.mu.Unlock()
		_ = d.Cmd.Process.Signal(syscall.SIGINT)
		got[i] += fmt.Sprintf("; exit %d", exitOrKill(d))
	}
	t.Logf("consul-template: %s", got[0])
	if got[0] != got[1] {
		t.Fatalf("consul-template: %s\ntemplater:       %s", got[0], got[1])
	}
}
