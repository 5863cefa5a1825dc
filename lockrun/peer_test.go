package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

// peerArgs is args for bin: consul lock's when bin is the consul binary.
func peerArgs(a *consultest.Agent, bin string, args []string) []string {
	if bin == a.Bin {
		return append([]string{"lock"}, args...)
	}
	return slices.Clone(args)
}

// TestHeldLayoutAsConsulLock: while the command runs, what the holder keeps
// in Consul is what consul lock keeps: the KV pairs under the prefix (keys,
// flags, values, which ones a session holds, the lock index) and the
// sessions holding them (name, behaviour, TTL, lock-delay, checks, node), for
// a lock and a semaphore, with and without -name. Tools that look at a
// held lock (a dashboard, `consul kv get -detailed`, a script finding the
// holder's session) see the same thing. Session IDs are written <session>.
func TestHeldLayoutAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client()
	dir := t.TempDir()
	layout := func(bin string, args []string, prefix string) []string {
		marker := filepath.Join(dir, "held") // in the default session name: one path for both
		_ = os.Remove(marker)
		p := proctest.Start(t, command(a, bin, append(peerArgs(a, bin, args), prefix, "touch "+marker+"; exec sleep 300")...), proctest.Options{})
		eventually.True(t, 20*time.Second, "holder", func() bool { _, err := os.Stat(marker); return err == nil })
		pairs, _, err := c.KV().List(prefix+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		sessions := map[string]bool{}
		for _, kv := range pairs {
			held := ""
			if kv.Session != "" {
				held, sessions[kv.Session] = "<session>", true
			}
			lines = append(lines, fmt.Sprintf("key %s flags %#x value %q session %q lock-index %d", sessionID.ReplaceAllString(kv.Key, "<session>"),
				kv.Flags, sessionID.ReplaceAllString(string(kv.Value), "<session>"), held, kv.LockIndex))
		}
		for id := range sessions {
			se, _, err := c.Session().Info(id, nil)
			if err != nil || se == nil {
				t.Fatalf("session %s: %v", id, err)
			}
			lines = append(lines, fmt.Sprintf("session name %q behavior %q ttl %q lock-delay %s checks %q node-checks %q service-checks %v node %q",
				se.Name, se.Behavior, se.TTL, se.LockDelay, se.Checks, se.NodeChecks, se.ServiceChecks, se.Node))
		}
		slices.Sort(lines)
		p.Signal(t, syscall.SIGTERM)
		<-p.Done()
		eventually.True(t, 20*time.Second, "the prefix emptied after the holder", func() bool {
			keys, _, err := c.KV().Keys(prefix+"/", "", nil)
			return err == nil && len(keys) == 0
		})
		return lines
	}
	for i, tc := range []struct {
		args   []string
		prefix string // "": test/layout-<case>
	}{
		{args: nil}, {args: []string{"-n", "2"}}, {args: []string{"-name", "nightly report"}}, {args: []string{"-n", "3", "-name", "web restarts"}},
		// characters a URL escapes, and ".lock" inside the prefix
		{prefix: "test/layout odd?#%20+;ü/x"}, {args: []string{"-n", "2"}, prefix: "test/layout odd?#%20+;ü/y"},
		{prefix: "test/layout-n/.lock"}, {args: []string{"-n", "2"}, prefix: "test/layout-s/.lock"},
	} {
		prefix := tc.prefix
		if prefix == "" {
			prefix = fmt.Sprintf("test/layout-%d", i)
		}
		want := layout(a.Bin, tc.args, prefix)
		if got := layout(lockrunPath(t), tc.args, prefix); !slices.Equal(got, want) {
			t.Errorf("%q %q: held by lockrun:\n  %s\nby consul lock:\n  %s", tc.args, prefix, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
}

// TestChildSetupAsConsulLock: what the command finds when it starts is what
// consul lock gives it: the environment (with CONSUL_LOCK_HELD=true even
// when the caller's environment says otherwise, and the last of two values
// of a variable; lockrun's own LOCKRUN_SESSION and LOCKRUN_TOKEN aside),
// its open file descriptors, standard input (/dev/null, or ours with
// -pass-stdin), the signals it ignores or blocks, its umask and directory,
// its argument vector (the shell as $SHELL names it) and its limits;
// through the shell and exec'd directly (-shell=false).
func TestChildSetupAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	const probe = `env | LC_ALL=C sort; ls /proc/self/fd; readlink /proc/self/fd/0 | sed 's/:.*//'; grep -E '^(SigIgn|SigBlk)' /proc/self/status; umask; pwd; ` +
		`tr '\0' ' ' < /proc/$$/cmdline; echo; ulimit -n; ulimit -Hn; ulimit -c`
	dir := t.TempDir()
	setup := func(bin string, args []string) string {
		cmd := command(a, bin, peerArgs(a, bin, args)...)
		cmd.Env = append(cmd.Env, "CONSUL_LOCK_HELD=false", "BERTH_DUP=first", "BERTH_DUP=second")
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader("stdin")
		var errb strings.Builder
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %q: %v: %s", filepath.Base(bin), args, err, errb.String())
		}
		var kept []string
		for _, line := range strings.FieldsFunc(string(out), func(r rune) bool { return r == '\n' || r == 0 }) {
			if !strings.HasPrefix(line, "LOCKRUN_SESSION=") && !strings.HasPrefix(line, "LOCKRUN_TOKEN=") {
				kept = append(kept, line)
			}
		}
		return strings.Join(kept, "\n")
	}
	for _, args := range [][]string{
		{"test/childsetup", probe},
		{"-pass-stdin", "test/childsetup", probe},
		{"-shell=false", "test/childsetup", "/bin/sh", "-c", probe},
		{"-shell=false", "-pass-stdin", "-n", "2", "test/childsetup-sem", "/bin/sh", "-c", probe},
		// env itself, not a shell (which keeps one of two values as it
		// likes): the environment as the command gets it, in its order.
		{"-shell=false", "test/childsetup", "env", "-0"},
	} {
		want := setup(a.Bin, args)
		if got := setup(lockrunPath(t), args); got != want {
			t.Errorf("%q: the command under lockrun found\n%s\nunder consul lock\n%s", args[:len(args)-1], got, want)
		}
	}
}

// recorder is a reverse proxy to an agent that notes, of every request, what
// the connection settings put in it: the ACL token, basic authentication,
// the datacenter and whether the read may be stale.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen map[string]bool
}

func newRecorder(t *testing.T, a *consultest.Agent) *recorder {
	t.Helper()
	target, err := url.Parse("http://" + a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{seen: map[string]bool{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		r.mu.Lock()
		if tok := req.Header.Get("X-Consul-Token"); tok != "" {
			r.seen["token "+tok] = true
		}
		if auth := req.Header.Get("Authorization"); auth != "" {
			r.seen["authorization "+auth] = true
		}
		if q.Has("dc") {
			r.seen["dc "+q.Get("dc")] = true
		}
		if q.Has("stale") {
			r.seen["stale read"] = true
		}
		r.mu.Unlock()
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// take returns what was seen since the last take, sorted, and forgets it.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for k := range r.seen {
		s = append(s, k)
	}
	slices.Sort(s)
	r.seen = map[string]bool{}
	return s
}

// TestConnectionSettingsAsConsulLock: the connection flags and variables
// reach Consul as they do from consul lock: the same token, basic
// authentication (CONSUL_HTTP_AUTH) and datacenter on the requests, and
// reads that may be stale exactly when consul lock's are (its -stale is
// accepted and changes nothing: command/lock never asks the flag, and
// command/flags HTTPFlags.MergeOntoConfig does not carry it to the client).
// A recording proxy in front of the agent sees both tools' requests.
func TestConnectionSettingsAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	rec := newRecorder(t, a)
	dcs, err := a.Client().Catalog().Datacenters()
	if err != nil || len(dcs) == 0 {
		t.Fatal(dcs, err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args, env []string
	}{
		{args: []string{"-stale"}},
		{args: []string{"-stale", "-n", "2"}},
		{args: []string{"-datacenter", dcs[0], "-stale=true"}},
		{args: []string{"-token", "from-the-flag"}},
		{args: []string{"-token-file", tokenFile}, env: []string{"CONSUL_HTTP_TOKEN=from-the-variable"}},
		{env: []string{"CONSUL_HTTP_AUTH=alice:s3cret", "CONSUL_HTTP_TOKEN_FILE=" + tokenFile}},
		{args: []string{"-n", "2"}, env: []string{"CONSUL_HTTP_AUTH=bob"}},
	}
	for i, tc := range cases {
		seen := func(bin string) []string {
			args := append(append([]string{"-http-addr", rec.srv.URL}, tc.args...), fmt.Sprintf("test/settings-%d", i), "true")
			cmd := command(a, bin, peerArgs(a, bin, args)...)
			cmd.Env = append(cmd.Env, tc.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s %q: %v: %s", filepath.Base(bin), args, err, out)
			}
			return rec.take()
		}
		want := seen(a.Bin)
		if got := seen(lockrunPath(t)); !slices.Equal(got, want) {
			t.Errorf("%q %q: lockrun's requests carried %q; consul lock's %q", tc.args, tc.env, got, want)
		}
	}
}

// TestTLSVariablesAsConsulLock: the TLS settings the consul CLI takes from
// its variables and flags beyond the common ones (CONSUL_HTTP_SSL with an
// address without a scheme, CONSUL_HTTP_SSL_VERIFY=false, a CA directory by
// -ca-path or CONSUL_CAPATH) let lockrun run the command exactly when they
// let consul lock run it.
func TestTLSVariablesAsConsulLock(t *testing.T) {
	s := consultest.StartSecure(t, "lockrun-tls-vars")
	caDir := t.TempDir()
	ca, err := os.ReadFile(s.TLS.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(caDir, "ca.pem"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	addr, tok, name := "CONSUL_HTTP_ADDR="+s.HTTPSAddr(), "CONSUL_HTTP_TOKEN="+s.Token, "CONSUL_TLS_SERVER_NAME="+s.TLS.ServerName
	cases := []struct {
		args, env []string
	}{
		{env: []string{addr, tok, name, "CONSUL_HTTP_SSL=true", "CONSUL_CACERT=" + s.TLS.CAFile}},
		{env: []string{addr, tok, "CONSUL_HTTP_SSL=true", "CONSUL_HTTP_SSL_VERIFY=false"}},
		{env: []string{addr, tok, "CONSUL_HTTP_SSL=1", "CONSUL_HTTP_SSL_VERIFY=0"}},
		{env: []string{addr, tok, "CONSUL_HTTP_SSL=true"}},
		{env: []string{addr, tok, name, "CONSUL_HTTP_SSL=true", "CONSUL_CAPATH=" + caDir}},
		{args: []string{"-ca-path", caDir, "-tls-server-name", s.TLS.ServerName}, env: []string{addr, tok, "CONSUL_HTTP_SSL=true"}},
		{args: []string{"-http-addr", "https://" + s.HTTPSAddr(), "-ca-path", caDir}, env: []string{tok, name}},
		{args: []string{"-http-addr", "https://" + s.HTTPSAddr(), "-tls-server-name", "other.name"}, env: []string{tok, "CONSUL_CACERT=" + s.TLS.CAFile}},
		{env: []string{addr, tok, "CONSUL_HTTP_SSL=false"}},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		ran := func(bin string) bool {
			marker := filepath.Join(dir, fmt.Sprintf("ran-%d-%s", i, filepath.Base(bin)))
			args := append(slices.Clone(tc.args), "-timeout", "5s", "test/tlsvars", "touch "+marker)
			cmd := exec.Command(bin, peerArgs(s.Agent, bin, args)...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "SHELL=/bin/sh"}, tc.env...)
			done := make(chan []byte, 1)
			go func() { out, _ := cmd.CombinedOutput(); done <- out }()
			select {
			case out := <-done:
				t.Logf("%s case %d: %s", filepath.Base(bin), i, strings.ReplaceAll(string(out), s.Token, "<token>"))
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Logf("%s case %d: still running after 30s", filepath.Base(bin), i)
				<-done
			}
			_, err := os.Stat(marker)
			return err == nil
		}
		want := ran(s.Bin)
		if got := ran(lockrunPath(t)); got != want {
			t.Errorf("%q %q: lockrun ran the command: %v; consul lock: %v", tc.args, tc.env, got, want)
		}
	}
}

// TestHelpWordInCommandRunsCommand: a command with -h, -help or --help
// among its arguments is run. consul lock's command-line library
// (mitchellh/cli CLI.processArgs) takes such a word anywhere before a
// "--" as a request for consul lock's own help: it prints the help and
// exits 0 without running the command, a cron job silently skipped (the
// same trap as hashicorp/consul#776 with -v, fixed there for -v only; the
// README's differences). consul lock runs the command when "--" comes
// before PREFIX, which makes it the oracle here; without the "--" its
// outcome is logged.
func TestHelpWordInCommandRunsCommand(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client()
	for _, tc := range []struct{ flags, rest []string }{
		{[]string{"-shell=true"}, []string{"test/helpword", "echo", "ran", ">", "MARK", "-h"}},
		{[]string{"-shell=false"}, []string{"test/helpword", "sh", "-c", `echo "$1" > MARK`, "sh", "--help"}},
		{[]string{"-shell=false", "-n", "2"}, []string{"test/helpword-sem", "sh", "-c", `echo "$1" > MARK`, "sh", "-help"}},
	} {
		args := append(slices.Clone(tc.flags), tc.rest...)
		want := runOutcome(t, a, c, a.Bin, append(append(append([]string{"lock"}, tc.flags...), "--"), tc.rest...))
		literal := runOutcome(t, a, c, a.Bin, append([]string{"lock"}, args...))
		t.Logf("consul lock %q: exit %d, ran %q (the difference README documents)", args, literal.code, literal.ran)
		got := runOutcome(t, a, c, lockrunPath(t), args)
		if got.code != want.code || got.ran != want.ran || !slices.Equal(got.keys, want.keys) {
			t.Errorf("lockrun %q: exit %d, ran %q, keys %q; consul lock with \"--\" before PREFIX: exit %d, ran %q, keys %q",
				args, got.code, got.ran, got.keys, want.code, want.ran, want.keys)
		}
	}
}

// TestUnixSocketAsConsulLock: an agent reached by a unix socket
// (unix:///path, by -http-addr or CONSUL_HTTP_ADDR, as the consul CLI takes
// it) serves lockrun as it serves consul lock: the command runs, for a lock
// and a semaphore.
func TestUnixSocketAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	sock := filepath.Join(t.TempDir(), "http.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skip("no unix socket:", err)
	}
	target, err := url.Parse("http://" + a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	srv := &http.Server{Handler: proxy}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	dir := t.TempDir()
	for i, tc := range []struct{ args, env []string }{
		{args: []string{"-http-addr", "unix://" + sock}},
		{env: []string{"CONSUL_HTTP_ADDR=unix://" + sock}},
		{args: []string{"-n", "2"}, env: []string{"CONSUL_HTTP_ADDR=unix://" + sock}},
	} {
		ran := func(bin string) bool {
			marker := filepath.Join(dir, fmt.Sprintf("ran-%d-%s", i, filepath.Base(bin)))
			args := append(slices.Clone(tc.args), "-timeout", "5s", "test/unixsock", "touch "+marker)
			cmd := exec.Command(bin, peerArgs(a, bin, args)...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "SHELL=/bin/sh"}, tc.env...)
			out, _ := cmd.CombinedOutput()
			t.Logf("%s %q %q: %s", filepath.Base(bin), args, tc.env, out)
			_, err := os.Stat(marker)
			return err == nil
		}
		if !ran(a.Bin) {
			t.Fatalf("%q %q: consul lock did not run the command: the socket does not serve", tc.args, tc.env)
		}
		if !ran(lockrunPath(t)) {
			t.Errorf("%q %q: lockrun did not run the command; consul lock did", tc.args, tc.env)
		}
	}
}

// TestForeignKeysKeptAsConsulLock: keys that are not the lock's (a value
// under PREFIX, the key PREFIX itself, a sibling prefix sharing its first
// letters, a key under PREFIX held by a session of someone else) are left
// as they were by a lock and a semaphore run, as by consul lock: after the
// run the whole tree around PREFIX is what consul lock leaves.
func TestForeignKeysKeptAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client()
	// A short lock-delay: a rerun (-count) may take the key again at once.
	foreign, _, err := c.Session().Create(&api.SessionEntry{Name: "foreign-keys-test", TTL: "60s", LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.Session().Destroy(foreign, nil) })
	tree := func(bin string, n string) []string {
		if _, err := c.KV().DeleteTree("test/foreignkeys", nil); err != nil {
			t.Fatal(err)
		}
		for _, kv := range []*api.KVPair{
			{Key: "test/foreignkeys/p", Value: []byte("the prefix itself")},
			{Key: "test/foreignkeys/p/data/config", Value: []byte("under it")},
			{Key: "test/foreignkeys/pp/x", Value: []byte("a sibling")},
			{Key: "test/foreignkeys/p/empty"},
		} {
			if _, err := c.KV().Put(kv, nil); err != nil {
				t.Fatal(err)
			}
		}
		if ok, _, err := c.KV().Acquire(&api.KVPair{Key: "test/foreignkeys/p/held", Value: []byte("held by another"), Session: foreign}, nil); err != nil || !ok {
			t.Fatalf("acquire the foreign key: %v %v", ok, err)
		}
		cmd := command(a, bin, peerArgs(a, bin, []string{"-n", n, "test/foreignkeys/p", "true"})...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s -n %s: %v: %s", filepath.Base(bin), n, err, out)
		}
		pairs, _, err := c.KV().List("test/foreignkeys", nil)
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, p := range pairs {
			kept = append(kept, fmt.Sprintf("%s flags %#x value %q held %v", sessionID.ReplaceAllString(p.Key, "<session>"), p.Flags, p.Value, p.Session != ""))
		}
		return kept
	}
	for _, n := range []string{"1", "2"} {
		want := tree(a.Bin, n)
		if got := tree(lockrunPath(t), n); !slices.Equal(got, want) {
			t.Errorf("-n %s: lockrun left\n  %s\nconsul lock\n  %s", n, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
}
