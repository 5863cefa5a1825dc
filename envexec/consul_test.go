package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/berth/berth/pkg/eventually"
	"github.com/berth/berth/pkg/proctest"
	"github.com/hashicorp/consul/api"
)

func TestConsulOutage(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{NodeName: "envexec-outage"})
	c := a.Client()
	put(t, c, "app/PORT", "80")
	dir := childDir(t)
	maddr := proctest.FreeAddr(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", "app", "-kill-timeout", "5s", "-metrics-addr", maddr}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	pid := starts(dir)[0]

	a.Stop()
	// envexec notices (its blocking query fails) and retries; the child runs
	// on; the log line says since when; /health says degraded, not failed.
	eventually.True(t, 20*time.Second, "envexec to notice Consul is gone", func() bool {
		return strings.Contains(p.stderr.String(), "waiting for Consul; retrying")
	})
	if !strings.Contains(p.stderr.String(), " since=") {
		t.Errorf("the waiting line does not say since when:\n%s", p.stderr)
	}
	if code, b, err := proctest.Fetch(maddr, "/health"); err != nil {
		t.Error(err)
	} else if code != 200 || !strings.HasPrefix(b, "degraded: running with the last environment; ") {
		t.Errorf("/health while Consul is down: %d %q, want 200 degraded", code, b)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the child died while Consul was down: %v", err)
	}
	if !p.run.Alive() {
		t.Fatalf("envexec exited while Consul was down: %d\n%s", p.run.Code(), p.stderr)
	}
	if len(starts(dir)) != 1 {
		t.Fatalf("the child was restarted while Consul was down: %v", events(dir))
	}

	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	// A dev agent comes back empty; write the new configuration.
	put(t, a.Client(), "app/PORT", "90")
	eventually.True(t, 60*time.Second, "the change after Consul came back", func() bool {
		s := starts(dir)
		return len(s) > 1 && childEnvOf(t, dir, s[len(s)-1])["PORT"] == "90"
	})
	if !strings.Contains(p.stderr.String(), "Consul answering again") {
		t.Errorf("no log line about Consul being back:\n%s", p.stderr)
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)
}

func TestServiceAndMetrics(t *testing.T) {
	a, c, n := nsWith(t)
	svc := "envexecweb"
	consultest.Register(t, c, &api.AgentServiceRegistration{ID: svc + "-1", Name: svc, Address: "10.1.2.3", Port: 8080, Tags: []string{"blue", "v2"}})
	put(t, c, n+"/V", "1")
	maddr := proctest.FreeAddr(t)
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", n, "-service", svc,
		"-service-format-port", "{{ service }}_HTTP_PORT", "-upcase", "-metrics-addr", maddr}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	env := onlyConsul(lastEnv(t, dir))
	// envconsul names service fields "<service>/<field>" and keeps the "/"
	// unless -sanitize; -upcase comes before -sanitize for services
	// (runner.go, appendServices).
	want := map[string]string{"V": "1", "ENVEXECWEB/ID": svc + "-1", "ENVEXECWEB/NAME": svc,
		"ENVEXECWEB/ADDRESS": "10.1.2.3", "ENVEXECWEB/TAG": "blue,v2", "ENVEXECWEB_HTTP_PORT": "8080"}
	if fmtEnv(env) != fmtEnv(want) {
		t.Errorf("environment:\n%s\nwant:\n%s", fmtEnv(env), fmtEnv(want))
	}

	if code, body := proctest.Get(t, maddr, "/health"); code != 200 {
		t.Errorf("/health %d %s", code, body)
	}
	// A new instance port is a change: restart, counted.
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: svc + "-1", Name: svc, Address: "10.1.2.3", Port: 9090, Tags: []string{"blue", "v2"}}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 20*time.Second, "restart for the new port", func() bool {
		return len(starts(dir)) == 2 && lastEnv(t, dir)["ENVEXECWEB_HTTP_PORT"] == "9090"
	})
	proctest.WantMetrics(t, maddr,
		proctest.Sample{Name: "berth_envexec_child_starts_total", Value: 2},
		proctest.Sample{Name: "berth_envexec_restarts_total", Value: 1},
		proctest.Sample{Name: "berth_envexec_sources_ready", Value: 2},
		proctest.Sample{Name: "berth_envexec_child_running", Value: 1})
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)
}

func TestConsulPausedAndSplay(t *testing.T) {
	a := consultest.StartT(t, consultest.Options{NodeName: "envexec-pause"})
	c := a.Client()
	put(t, c, "app/PORT", "80")
	dir := childDir(t)
	p := startEnvexec(t, a.HTTPAddr(), nil, append([]string{"-prefix", "app", "-splay", "300ms", "-log-level", "debug"}, childArgs(dir, "hold", 0)...)...)
	eventually.True(t, 20*time.Second, "start", func() bool { return len(starts(dir)) == 1 })
	pid := starts(dir)[0]

	// A hung Consul (SIGSTOP): the blocking query just waits; the child runs on.
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := syscall.Kill(pid, 0); err != nil || len(starts(dir)) != 1 {
		t.Fatalf("child gone or restarted while Consul was paused: %v %v", err, events(dir))
	}
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	// After it resumes, a change is picked up, after the splay.
	put(t, c, "app/PORT", "85")
	eventually.True(t, 20*time.Second, "restart after resume", func() bool {
		s := starts(dir)
		return len(s) == 2 && childEnvOf(t, dir, s[1])["PORT"] == "85"
	})
	if !strings.Contains(p.stderr.String(), "waiting for the splay") {
		t.Errorf("no splay in the log:\n%s", p.stderr)
	}
	p.signal(syscall.SIGTERM)
	p.wait(20 * time.Second)
}

func TestInterruptedWhileWaiting(t *testing.T) {
	consultest.Require(t, agent)
	dead, maddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	dir := childDir(t)
	p := startEnvexec(t, dead, nil, append([]string{"-prefix", "app", "-metrics-addr", maddr}, childArgs(dir, "exit", 0)...)...)
	// /health says what it waits for.
	eventually.True(t, 20*time.Second, "/health to answer 503 naming the prefix", func() bool {
		code, b, err := proctest.Fetch(maddr, "/health")
		return err == nil && code == 503 && strings.Contains(b, "waiting for prefix app")
	})
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != exitInterrupted {
		t.Errorf("exit %d, want %d\n%s", code, exitInterrupted, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "interrupted by SIGTERM while waiting for prefix app") {
		t.Errorf("stderr: %s", p.stderr)
	}
	if len(starts(dir)) != 0 {
		t.Errorf("the command started")
	}
}
