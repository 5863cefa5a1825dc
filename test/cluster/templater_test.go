package cluster

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// templater under cluster faults, with consul-template (the peer) on the
// same host rendering the same template: a leader kill and a 20 s cut-off of
// the host while a key and a service keep changing. The destination must
// never be empty, partial or older than the last good render; after the heal
// it must be current no later than consul-template's (+1 s); the reload
// command runs once per real change.

const tplPadLines = 1500 // ~100 KB of padding: a partial write shows

// tplTemplate is the template both programs render. BEGIN and END carry the
// same generation; the padding sits between them, so a truncated or
// interleaved file does not parse.
const tplTemplate = `BEGIN {{ key "faults/tpl/gen" }}
{{ range service "web" }}svc {{ .ID }} {{ .Address }}:{{ .Port }}
{{ end }}{{ key "faults/tpl/pad" }}END {{ key "faults/tpl/gen" }}
`

// tplState is one parsed destination.
type tplState struct {
	gen  int
	svcs string // sorted service IDs, comma-separated
	err  string // why the file is not a whole render ("" when it is)
}

func tplPad() string {
	var b strings.Builder
	for i := 0; i < tplPadLines; i++ {
		fmt.Fprintf(&b, "pad %04d %s\n", i, strings.Repeat("x", 60))
	}
	return b.String()
}

func parseTpl(b []byte, pad string) tplState {
	s := string(b)
	if len(s) == 0 {
		return tplState{err: "empty"}
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if !strings.HasSuffix(s, "\n") || len(lines) < 2 {
		return tplState{err: fmt.Sprintf("no final line (%d bytes)", len(s))}
	}
	var st tplState
	var begin, end int
	if _, err := fmt.Sscanf(lines[0], "BEGIN %d", &begin); err != nil {
		return tplState{err: "first line " + strconv.Quote(lines[0])}
	}
	if _, err := fmt.Sscanf(lines[len(lines)-1], "END %d", &end); err != nil || end != begin {
		return tplState{err: fmt.Sprintf("last line %q after BEGIN %d (%d bytes)", lines[len(lines)-1], begin, len(s))}
	}
	if !strings.Contains(s, pad) {
		return tplState{err: "padding cut"}
	}
	var ids []string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "svc" {
			ids = append(ids, f[1])
		}
	}
	sort.Strings(ids)
	st.gen, st.svcs = begin, strings.Join(ids, ",")
	return st
}

// tplSeen is a change of a destination seen by the poller.
type tplSeen struct {
	at time.Time
	st tplState
}

// tplPoller reads both destinations every 5 ms through the shared folder and
// keeps every change.
type tplPoller struct {
	mu    sync.Mutex
	seen  map[string][]tplSeen
	stop  chan struct{}
	done  chan struct{}
	files map[string]string
}

func startTplPoller(files map[string]string, pad string) *tplPoller {
	p := &tplPoller{seen: map[string][]tplSeen{}, stop: make(chan struct{}), done: make(chan struct{}), files: files}
	go func() {
		defer close(p.done)
		last := map[string][]byte{}
		for {
			for name, path := range p.files {
				b, err := os.ReadFile(path)
				if err != nil || bytes.Equal(b, last[name]) {
					continue
				}
				last[name] = b
				st := parseTpl(b, pad)
				p.mu.Lock()
				p.seen[name] = append(p.seen[name], tplSeen{at: time.Now(), st: st})
				p.mu.Unlock()
			}
			select {
			case <-p.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *tplPoller) changes(name string) []tplSeen {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]tplSeen(nil), p.seen[name]...)
}

// firstAt is when name first showed gen ≥ gen and exactly svcs ("" svcs:
// any).
func (p *tplPoller) firstAt(name string, gen int, svcs string) time.Time {
	for _, s := range p.changes(name) {
		if s.st.err == "" && s.st.gen >= gen && (svcs == "" || s.st.svcs == svcs) {
			return s.at
		}
	}
	return time.Time{}
}

// tplWriter changes the key every 300 ms and the "web" instances on the
// other host every 5th step, and remembers when each generation was
// accepted.
type tplWriter struct {
	mu       sync.Mutex
	gen      int
	accepted map[int]time.Time
	svcs     map[string]bool
	failures int
	stop     chan struct{}
	done     chan struct{}
}

func (w *tplWriter) svcList() string {
	var ids []string
	for id := range w.svcs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

func registerWeb(h *Node, n int) error {
	body := fmt.Sprintf(`{"ID":"web-%d","Name":"web","Address":"10.9.%d.%d","Port":%d}`, n, n/256, n%256, 1000+n)
	return h.Do(http.MethodPut, "/v1/agent/service/register", body)
}

func (w *tplWriter) run(c *Cluster, svcHost *Node) {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-time.After(300 * time.Millisecond):
		}
		w.mu.Lock()
		next := w.gen + 1
		w.mu.Unlock()
		if err := c.PutKV("faults/tpl/gen", strconv.Itoa(next)); err != nil {
			w.mu.Lock()
			w.failures++
			w.mu.Unlock()
			continue
		}
		w.mu.Lock()
		w.gen = next
		w.accepted[next] = time.Now()
		w.mu.Unlock()
		if next%5 == 0 {
			if registerWeb(svcHost, next) == nil {
				w.mu.Lock()
				w.svcs[fmt.Sprintf("web-%d", next)] = true
				w.mu.Unlock()
			}
			old := fmt.Sprintf("web-%d", next-15)
			if svcHost.Put("/v1/agent/service/deregister/"+old) == nil {
				w.mu.Lock()
				delete(w.svcs, old)
				w.mu.Unlock()
			}
		}
	}
}

// peerBinary finds a static build of a peer program (consul-template): the
// variable env, else the static build `make peers` keeps in berth's tools
// folder. Missing:
// fail under CI=true, skip otherwise.
func peerBinary(t *testing.T, env, name string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		home, _ := os.UserHomeDir()
		gopath := os.Getenv("GOPATH")
		if gopath == "" {
			gopath = filepath.Join(home, "go")
		}
		p = filepath.Join(strings.Split(gopath, ":")[0], "berth-tools", "peers-static", name+"-v0.41.1")
	}
	if _, err := os.Stat(p); err != nil {
		need(t, fmt.Sprintf("a static %s (%s, or make peers)", name, env), err)
	}
	return p
}

func TestTemplaterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster fault tests: not with -short")
	}
	ct := peerBinary(t, "CONSUL_TEMPLATE_BIN", "consul-template")
	c := New(t, Options{Hosts: 2, Programs: []string{"templater"}, Files: map[string]string{"consul-template": ct}})
	host, svcHost := c.Hosts[0], c.Hosts[1]
	pad := tplPad()
	if err := c.PutKV("faults/tpl/pad", pad); err != nil {
		t.Fatal(err)
	}
	if err := c.PutKV("faults/tpl/gen", "0"); err != nil {
		t.Fatal(err)
	}
	if err := registerWeb(svcHost, 0); err != nil {
		t.Fatal(err)
	}
	writeShared(t, c, "tpl/in.ctmpl", tplTemplate)
	// The reload command logs the checksum of the file it reloads.
	writeShared(t, c, "tpl/reload.sh", "md5sum /shared/tpl/$1.out >> /shared/tpl/$1.reloads\n")
	files := map[string]string{"berth": c.SharedPath("tpl/berth.out"), "ct": c.SharedPath("tpl/ct.out")}
	poll := startTplPoller(files, pad)
	defer func() {
		select {
		case <-poll.done:
		default:
			close(poll.stop)
		}
	}()
	startLogged(t, c, host, "templater", "/bin/templater", "-log-level", "debug", "-metrics-addr", "127.0.0.1:9103",
		"-template", "/shared/tpl/in.ctmpl:/shared/tpl/berth.out:/bin/sh /shared/tpl/reload.sh berth")
	startLogged(t, c, host, "consul-template", "/bin/consul-template", "-consul-addr", "127.0.0.1:8500", "-log-level", "info",
		"-template", "/shared/tpl/in.ctmpl:/shared/tpl/ct.out:/bin/sh /shared/tpl/reload.sh ct")
	for name := range files {
		if _, err := waitUntil(long, func() error {
			if poll.firstAt(name, 0, "web-0").IsZero() {
				return fmt.Errorf("%s has not rendered gen 0", name)
			}
			return nil
		}); err != nil {
			t.Fatalf("%v\n%s", err, c.LogText(map[string]string{"berth": "templater", "ct": "consul-template"}[name]))
		}
	}

	w := &tplWriter{accepted: map[int]time.Time{}, svcs: map[string]bool{"web-0": true}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(c, svcHost)
	time.Sleep(3 * time.Second)

	// Fault 1: the leader is killed while the key and service change.
	killedAt, electedAt := electLeader(t, c)
	time.Sleep(3 * time.Second)
	w.mu.Lock()
	firstAfter := 0
	for g, at := range w.accepted {
		if at.After(electedAt) && (firstAfter == 0 || g < firstAfter) {
			firstAfter = g
		}
	}
	w.mu.Unlock()
	t.Logf("leader kill: new leader after %s", electedAt.Sub(killedAt).Round(time.Millisecond))
	if firstAfter > 0 {
		acc := w.accepted[firstAfter]
		for name := range files {
			if at := poll.firstAt(name, firstAfter, ""); !at.IsZero() {
				t.Logf("leader kill: %s rendered gen %d (first accepted after the election) %s after it was accepted", name, firstAfter, at.Sub(acc).Round(time.Millisecond))
			}
		}
	}

	// Fault 2: the host is cut off for 20 s while the changes go on; the
	// last change is made during the cut.
	if err := c.Cut(host); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	time.Sleep(10 * time.Second)
	// The watches hang without an error while the host is cut off; the
	// leader probe tells /health.
	checkDegraded(t, c, host, "templater", "http://127.0.0.1:9103/health")
	time.Sleep(10 * time.Second)
	close(w.stop)
	<-w.done
	finalGen, finalSvcs := w.gen, w.svcList()
	lastChange := w.accepted[finalGen]
	healAt := time.Now() // the network is back from here on; Heal also joins
	if err := c.Heal(host); err != nil {
		t.Fatal(err)
	}
	t.Logf("cut: %s; last change (gen %d, %s) %s before the heal; %d writes refused during the election",
		healAt.Sub(cutAt).Round(time.Millisecond), finalGen, finalSvcs, healAt.Sub(lastChange).Round(time.Millisecond), w.failures)
	current := map[string]time.Time{}
	for name := range files {
		if _, err := waitUntil(long, func() error {
			if current[name] = poll.firstAt(name, finalGen, finalSvcs); current[name].IsZero() {
				ch := poll.changes(name)
				return fmt.Errorf("%s not current after the heal (last: %+v)", name, ch[len(ch)-1:])
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("cut: %s current %s after the heal", name, current[name].Sub(healAt).Round(time.Millisecond))
	}
	if current["berth"].After(current["ct"].Add(time.Second)) {
		t.Errorf("after the heal templater was current %s after consul-template (allowed: 1s)", current["berth"].Sub(current["ct"]).Round(time.Millisecond))
	}
	time.Sleep(3 * time.Second) // nothing more may happen: no change is left
	close(poll.stop)
	<-poll.done

	for name := range files {
		ch := poll.changes(name)
		bad, back, maxGen := 0, 0, -1
		for _, s := range ch {
			switch {
			case s.st.err != "":
				bad++
				if name == "berth" {
					t.Errorf("templater's destination was not a whole render at %s: %s", s.at.Format(time.StampMilli), s.st.err)
				}
			case s.st.gen < maxGen:
				back++
				if name == "berth" {
					t.Errorf("templater's destination went back from gen %d to %d", maxGen, s.st.gen)
				}
			default:
				maxGen = s.st.gen
			}
		}
		lines := strings.Split(strings.TrimSpace(c.ReadShared("tpl/"+name+".reloads")), "\n")
		dups := 0
		for i := 1; i < len(lines); i++ {
			if strings.Fields(lines[i])[0] == strings.Fields(lines[i-1])[0] {
				dups++
			}
		}
		t.Logf("%s: %d changes seen, %d not whole, %d older than the one before, %d reloads, %d of them for an unchanged file (%d generations written)",
			name, len(ch), bad, back, len(lines), dups, finalGen)
		if name == "berth" && dups > 0 {
			t.Errorf("templater ran its reload command %d times for a file that had not changed", dups)
		}
	}
	if err := c.WaitHealthy(long); err != nil {
		t.Fatal(err)
	}
	t.Run("max-stale-follower-behind", func(t *testing.T) { maxStaleBehind(t, c) })
}

// maxStaleBehind shows -max-stale with a server held behind: a follower is
// cut off from the other servers (a pause would freeze its HTTP API too, so
// its stale answer could not be seen), a key is changed on the others, and
// templater and consul-template start on that follower, reading through its
// API. With -max-stale 2s neither may render the value the follower still
// has (its last contact with a leader is older than the bound: the answer is
// asked again of the leader, which the follower cannot reach); with a bound
// of an hour both render it (any server serves reads within the bound).
// After the heal every one renders the new value.
func maxStaleBehind(t *testing.T, c *Cluster) {
	leader, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	var f *Node
	for _, s := range c.Servers {
		if s != leader {
			f = s
		}
	}
	putKVUntil(t, c, "faults/tpl/ms", "old")
	if _, err := waitUntil(long, func() error {
		var kv []struct{ Value []byte }
		if err := f.Get("/v1/kv/faults/tpl/ms?stale", &kv); err != nil || len(kv) != 1 || string(kv[0].Value) != "old" {
			return fmt.Errorf("follower %s has not the old value: %v %v", f.Short(), kv, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Cut(f); err != nil {
		t.Fatal(err)
	}
	putKVUntil(t, c, "faults/tpl/ms", "new")
	time.Sleep(3 * time.Second) // the follower's last contact is now past 2 s
	if got, err := c.Exec(f, "wget", "-qO-", "http://127.0.0.1:8500/v1/kv/faults/tpl/ms?stale&raw"); err != nil || got != "old" {
		t.Fatalf("the cut-off follower should still serve the old value stale: %q %v", got, err)
	}
	writeShared(t, c, "tpl/ms.ctmpl", "{{ key \"faults/tpl/ms\" }}\n")
	outs := map[string]string{}
	for _, run := range []struct {
		name, bound string
		argv        []string
	}{
		{"berth-2s", "2s", []string{"/bin/templater", "-max-stale", "2s"}},
		{"ct-2s", "2s", []string{"/bin/consul-template", "-consul-addr", "127.0.0.1:8500", "-max-stale", "2s"}},
		{"berth-1h", "1h", []string{"/bin/templater", "-max-stale", "1h"}},
		{"ct-1h", "1h", []string{"/bin/consul-template", "-consul-addr", "127.0.0.1:8500", "-max-stale", "1h"}},
	} {
		outs[run.name] = c.SharedPath("tpl/ms-" + run.name + ".out")
		startLogged(t, c, f, run.name, append(run.argv, "-template", "/shared/tpl/ms.ctmpl:/shared/tpl/ms-"+run.name+".out")...)
	}
	read := func(name string) string {
		b, _ := os.ReadFile(outs[name])
		return strings.TrimSpace(string(b))
	}
	seen := map[string]map[string]bool{}
	for name := range outs {
		seen[name] = map[string]bool{}
	}
	// Watch for 8 s while the follower stays behind.
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for name := range outs {
			seen[name][read(name)] = true
		}
	}
	healAt := time.Now()
	if err := c.Heal(f); err != nil {
		t.Fatal(err)
	}
	newAt := map[string]time.Duration{}
	if _, err := waitUntil(long, func() error {
		var missing []string
		for name := range outs {
			v := read(name)
			seen[name][v] = true
			if _, ok := newAt[name]; !ok && v == "new" {
				newAt[name] = time.Since(healAt).Round(100 * time.Millisecond)
			}
			if _, ok := newAt[name]; !ok {
				missing = append(missing, name+"="+strconv.Quote(v))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not current: %v", missing)
		}
		return nil
	}); err != nil {
		t.Fatalf("after the follower's heal: %v", err)
	}
	for name := range outs {
		t.Logf("max-stale, follower behind: %s rendered %v (\"\" = nothing yet); the new value %s after the heal", name, keys(seen[name]), newAt[name])
	}
	for _, name := range []string{"berth-2s", "ct-2s"} {
		if seen[name]["old"] {
			t.Errorf("%s rendered the value of a server behind by more than -max-stale", name)
		}
	}
	for _, name := range []string{"berth-1h", "ct-1h"} {
		if !seen[name]["old"] {
			t.Errorf("%s did not render from a server within -max-stale 1h (any server may answer)", name)
		}
	}
	if err := c.WaitHealthy(long); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
