package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/cliapp"
	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/logging"
	"github.com/berth/berth/pkg/proctest"
	"github.com/berth/berth/pkg/supervisor"
	"github.com/hashicorp/consul/api"
)

// asLockrunEnv names a directory: set, the test binary runs as lockrun
// (TestMain), held by beforeChildStart between acquiring the lock and
// starting the child until a signal has come (runAsHeldLockrun).
const asLockrunEnv = "LOCKRUN_TEST_HELD_DIR"

// runAsHeldLockrun runs lockrun's main with the test hook set: once the
// lock is acquired it creates DIR/acquired and waits (up to 30s) for a
// stop signal to reach lockrun's signal channel (the runtime's SIGURG comes
// there too), puts back what it read, and lockrun goes on.
func runAsHeldLockrun(dir string) {
	hook := func(sigs chan os.Signal) {
		_ = os.WriteFile(filepath.Join(dir, "acquired"), nil, 0o644)
		var got []os.Signal
		defer func() {
			for _, s := range got {
				select {
				case sigs <- s:
				default: // full: dropped, as os/signal drops
				}
			}
		}()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case s := <-sigs:
				got = append(got, s)
				if s, _ := s.(syscall.Signal); isStop(s) {
					return
				}
			case <-timeout:
				return
			}
		}
	}
	cliapp.Main(func(args []string) int { return runHooked(args, os.Stdin, os.Stdout, os.Stderr, hook) })
}

// acquireHolder is a proxy to the agent that holds the answer to a lock
// acquisition (PUT .../.lock?acquire=) until released: Consul has given the
// lock, the client does not know yet.
type acquireHolder struct {
	acquired chan struct{}
	release  chan struct{}
	once     sync.Once
}

func (h *acquireHolder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || req.Method != http.MethodPut || !strings.HasSuffix(req.URL.Path, "/.lock") || !req.URL.Query().Has("acquire") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if strings.TrimSpace(string(body)) == "true" {
		h.once.Do(func() { close(h.acquired) })
		<-h.release
	}
	return resp, nil
}

// TestStopBeforeChildStartAsConsulLock: a SIGINT or SIGTERM that comes
// after the lock is acquired and before the child is started. consul lock
// checks for a shutdown there: it does not start the command, releases the
// lock and exits. The window is produced for each by other means, as
// neither waits in it on its own: consul lock's answer to its acquisition
// is held back by a proxy while the signal is sent (its acquisition is not
// cancelled by a shutdown, so it then finds the lock acquired and the
// shutdown pending); lockrun cancels an acquisition in flight on a
// signal, so it is held by the test hook beforeChildStart instead (the
// test binary runs as lockrun). Compared: the exit code, whether the
// command ran, whether the lock is free after.
func TestStopBeforeChildStartAsConsulLock(t *testing.T) {
	a := consultest.Require(t, agent)
	type seen struct {
		code          int
		ran, released bool
	}
	finish := func(p *proctest.Proc, dir, prefix string) seen {
		var s seen
		s.code = p.Wait(t, 30*time.Second)
		_, err := os.Stat(dir + "/ran")
		s.ran = err == nil
		pair, _, err := a.Client().KV().Get(prefix+"/.lock", nil)
		if err != nil {
			t.Fatal(err)
		}
		s.released = pair == nil || pair.Session == ""
		return s
	}
	held := func(prefix string) {
		pair, _, err := a.Client().KV().Get(prefix+"/.lock", nil)
		if err != nil || pair == nil || pair.Session == "" {
			t.Fatalf("lock %s not held in the window: %+v %v", prefix, pair, err)
		}
	}
	peer := func(sig syscall.Signal) seen {
		dir, prefix := t.TempDir(), "test/window-peer-"+strings.ToLower(supervisor.SignalName(sig))
		h := &acquireHolder{acquired: make(chan struct{}), release: make(chan struct{})}
		target, _ := url.Parse("http://" + a.HTTPAddr())
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.Transport = h
		srv := httptest.NewServer(rp)
		defer srv.Close()
		released := false
		defer func() {
			if !released {
				close(h.release)
			}
		}()
		cmd := command(a, a.Bin, "lock", prefix, "touch "+dir+"/ran")
		cmd.Env = append(cmd.Env, "CONSUL_HTTP_ADDR="+strings.TrimPrefix(srv.URL, "http://"))
		p := proctest.Start(t, cmd, proctest.Options{})
		select {
		case <-h.acquired:
		case <-time.After(20 * time.Second):
			t.Fatal("consul lock did not acquire")
		}
		held(prefix)
		p.Signal(t, sig)
		time.Sleep(500 * time.Millisecond) // consul lock's signal handler closes its shutdown channel
		close(h.release)
		released = true
		s := finish(p, dir, prefix)
		if !strings.Contains(p.Stderr.String(), "Shutdown triggered during lock acquisition") {
			t.Fatalf("the window was not produced for consul lock (exit %d): %q", s.code, p.Stderr.String())
		}
		return s
	}
	ours := func(sig syscall.Signal) seen {
		dir, prefix := t.TempDir(), "test/window-ours-"+strings.ToLower(supervisor.SignalName(sig))
		cmd := command(a, os.Args[0], prefix, "touch "+dir+"/ran")
		cmd.Env = append(cmd.Env, asLockrunEnv+"="+dir)
		p := proctest.Start(t, cmd, proctest.Options{})
		eventually.True(t, 20*time.Second, "lockrun held before starting its child", func() bool { _, err := os.Stat(dir + "/acquired"); return err == nil })
		held(prefix)
		p.Signal(t, sig)
		return finish(p, dir, prefix)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		want := peer(sig)
		if got := ours(sig); got != want {
			t.Errorf("%s between acquiring and starting the child: lockrun %+v; consul lock %+v", supervisor.SignalName(sig), got, want)
		}
	}
	// SIGHUP kills consul lock (a difference in the README): lockrun stops
	// as when interrupted while waiting.
	if got := ours(syscall.SIGHUP); got != (seen{code: exitInterrupted, released: true}) {
		t.Errorf("SIGHUP between acquiring and starting the child: lockrun %+v, want exit %d, not run, released", got, exitInterrupted)
	}
}

// lateAcquire is a locker whose acquisition completes after it was
// cancelled (the answer was on its way when the interrupt came).
type lateAcquire struct {
	locker
	started chan struct{}
}

func (l lateAcquire) acquire(ctx context.Context, _ *attempt) (*held, error) {
	close(l.started)
	<-ctx.Done()
	return &held{session: "late"}, nil
}

// TestStopDuringAcquisitionNotStarted: a stop signal taken while the lock
// was being acquired, the acquisition completing anyway, still keeps the
// child from starting (the race TestStopBeforeChildStartAsConsulLock's
// window has inside wait, which cannot be timed from outside).
func TestStopDuringAcquisitionNotStarted(t *testing.T) {
	a := consultest.Require(t, agent)
	sigs := make(chan os.Signal, 4)
	o := &options{timeout: 20 * time.Second, cli: cliapp.New("lockrun", io.Discard, io.Discard)}
	r := &runner{o: o, client: a.Client(), log: logging.Discard(), sigs: sigs, metrics: newMetrics()}
	keeper := &sessionKeeper{client: a.Client(), log: logging.Discard(), entry: api.SessionEntry{Name: "late-acquire", TTL: sessionTTL.String()}}
	defer keeper.destroy()
	lk := lateAcquire{started: make(chan struct{})}
	go func() { <-lk.started; sigs <- syscall.SIGTERM }()
	h, code := r.wait(keeper, lk)
	if h == nil {
		t.Fatalf("wait gave exit %d, want the late acquisition", code)
	}
	if stop, _ := r.stopBeforeStart(); stop != syscall.SIGTERM {
		t.Fatalf("stop signal before the child: %v, want SIGTERM", stop)
	}
}
