package main

import (
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
)

// watchKeys lists the open watches of s, sorted.
func watchKeys(s *Server) []string {
	s.zone.wmu.Lock()
	defer s.zone.wmu.Unlock()
	var keys []string
	for k := range s.zone.watchers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// watchOf is the open watch for key, or nil.
func watchOf(s *Server, key string) *watcher {
	s.zone.wmu.Lock()
	defer s.zone.wmu.Unlock()
	return s.zone.watchers[key]
}

// unknownOf says whether the watch counts as a name not known to exist.
func unknownOf(s *Server, w *watcher) bool {
	s.zone.wmu.Lock()
	defer s.zone.wmu.Unlock()
	return w.unknown
}

// Only the names asked for are watched, one watch per name whatever its
// letter case: no watch of the datacenter's services or nodes.
func TestWatchesOnlyNamesAskedFor(t *testing.T) {
	a := consultest.Require(t, agent)
	seed(t, a)
	s, addr := startServer(t, baseConfig(a))
	for _, q := range []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"web.service.consul.", dns.TypeA, dns.RcodeSuccess},
		{"WEB.service.consul.", dns.TypeSRV, dns.RcodeSuccess},
		{"v1.web.service.consul.", dns.TypeA, dns.RcodeSuccess},
		{"mixedcase.service.consul.", dns.TypeA, dns.RcodeSuccess},
		{"node2.node.consul.", dns.TypeA, dns.RcodeSuccess},
		{"NODE2.node.consul.", dns.TypeTXT, dns.RcodeSuccess},
		{"nosuch.service.consul.", dns.TypeA, dns.RcodeNameError},
		{"nosuch.node.consul.", dns.TypeA, dns.RcodeNameError},
		{"0a000002.addr.consul.", dns.TypeA, dns.RcodeSuccess},
	} {
		if r := exchange(t, addr, q.name, q.qtype, "udp"); r.Rcode != q.rcode {
			t.Errorf("%s %s: %s, want %s", q.name, dns.TypeToString[q.qtype], dns.RcodeToString[r.Rcode], dns.RcodeToString[q.rcode])
		}
	}
	want := []string{"node node2", "node nosuch", "service mixedcase", "service nosuch", "service web"}
	if got := watchKeys(s); !reflect.DeepEqual(got, want) {
		t.Errorf("watches %v, want %v", got, want)
	}
	for key, unknown := range map[string]bool{"service web": false, "node node2": false, "service nosuch": true, "node nosuch": true} {
		if w := watchOf(s, key); w == nil || unknownOf(s, w) != unknown {
			t.Errorf("%s: unknown is not %v", key, unknown)
		}
	}
}

// A name asked for before it exists: NXDOMAIN, and its watch stays open a
// while (negIdle), so the registration that follows is answered from that
// watch, without asking Consul again.
func TestUnknownNameFollowsRegistration(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client()
	s, addr := startServer(t, baseConfig(a))

	if r := exchange(t, addr, "Late.service.consul.", dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError {
		t.Fatalf("late before its registration: %s", dns.RcodeToString[r.Rcode])
	}
	if r := exchange(t, addr, "latenode.node.consul.", dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError {
		t.Fatalf("latenode before its registration: %s", dns.RcodeToString[r.Rcode])
	}
	svcW, nodeW := watchOf(s, "service late"), watchOf(s, "node latenode")
	if svcW == nil || nodeW == nil || !unknownOf(s, svcW) || !unknownOf(s, nodeW) {
		t.Fatalf("no watch of the unknown names kept: %v", watchKeys(s))
	}
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "late1", Name: "LATE", Port: 80, Address: "10.62.0.1"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Agent().ServiceDeregister("late1") })
	if _, err := c.Catalog().Register(&api.CatalogRegistration{Node: "LateNode", Address: "10.62.0.2"}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.Catalog().Deregister(&api.CatalogDeregistration{Node: "LateNode"}, nil) })
	start := time.Now()
	d := pollUntil(t, addr, "late.service.consul.", start, 10*time.Second, func(m *dns.Msg) bool { return has(m, "10.62.0.1") })
	t.Logf("registered service answered after %s", d)
	d = pollUntil(t, addr, "latenode.node.consul.", start, 10*time.Second, func(m *dns.Msg) bool { return has(m, "10.62.0.2") })
	t.Logf("registered node answered after %s", d)
	if watchOf(s, "service late") != svcW || watchOf(s, "node latenode") != nodeW {
		t.Error("the registrations were answered from new watches, not from the ones kept for the unknown names")
	}
	if unknownOf(s, svcW) || unknownOf(s, nodeW) {
		t.Error("watches still count the names as unknown after their registration")
	}
}

// The watch of an unknown name is dropped after negLinger without lookups,
// before -idle-timeout; the next lookup asks again.
func TestUnknownNameWatchDroppedSooner(t *testing.T) {
	a := consultest.Require(t, agent)
	cfg := baseConfig(a)
	cfg.negLinger = 300 * time.Millisecond
	s, addr := startServer(t, cfg)
	if r := exchange(t, addr, "web.service.consul.", dns.TypeA, "udp"); r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		t.Fatalf("web: %s", dns.RcodeToString[r.Rcode])
	}
	if err := a.Client().Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "known1", Name: "known", Port: 80, Address: "10.63.0.1"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Client().Agent().ServiceDeregister("known1") })
	pollUntil(t, addr, "known.service.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return has(m, "10.63.0.1") })
	if r := exchange(t, addr, "gone.service.consul.", dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError {
		t.Fatalf("gone: %s", dns.RcodeToString[r.Rcode])
	}
	// Kept while asked for.
	first := watchOf(s, "service gone")
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(30 * time.Millisecond) {
		exchange(t, addr, "gone.service.consul.", dns.TypeA, "udp")
		if watchOf(s, "service gone") != first {
			t.Fatal("the watch of an unknown name was dropped while it was asked for")
		}
	}
	for deadline := time.Now().Add(10 * time.Second); watchOf(s, "service gone") != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watch of an unknown name was not dropped within 10s (negLinger 300ms)")
		}
	}
	if watchOf(s, "service known") == nil {
		t.Error("the watch of a known service was dropped with the unknown one (-idle-timeout 10m)")
	}
	if r := exchange(t, addr, "gone.service.consul.", dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError || watchOf(s, "service gone") == nil {
		t.Errorf("asked again: %s, watch %v", dns.RcodeToString[r.Rcode], watchOf(s, "service gone") != nil)
	}
}

// Unknown names asked in bulk keep at most maxUnknownWatches watches; the
// watches of known names are never given up for them.
func TestUnknownWatchesBounded(t *testing.T) {
	a := consultest.Require(t, agent)
	seed(t, a)
	cfg := baseConfig(a)
	cfg.maxUnknown = 3
	s, addr := startServer(t, cfg)
	if r := exchange(t, addr, "web.service.consul.", dns.TypeA, "udp"); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("web: %s", dns.RcodeToString[r.Rcode])
	}
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("bulk%d.service.consul.", i)
		if i%2 == 1 {
			name = fmt.Sprintf("bulk%d.node.consul.", i)
		}
		if r := exchange(t, addr, name, dns.TypeA, "udp"); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: %s", name, dns.RcodeToString[r.Rcode])
		}
		s.zone.wmu.Lock()
		n, open := s.zone.unknown, len(s.zone.watchers)
		s.zone.wmu.Unlock()
		if n > 3 || open > 4 {
			t.Fatalf("after %d unknown names: %d unknown watches, %d open (bound 3 unknown)", i+1, n, open)
		}
	}
	if watchOf(s, "service web") == nil {
		t.Error("the watch of a known service was dropped for unknown names")
	}
	if r := exchange(t, addr, "web.service.consul.", dns.TypeA, "udp"); r.Rcode != dns.RcodeSuccess {
		t.Errorf("web after the bulk: %s", dns.RcodeToString[r.Rcode])
	}
}

// A node's watch follows that node; a service named in another case
// follows its changes through the one streamed watch.
func TestNodeAndMixedCaseFollowChanges(t *testing.T) {
	a := consultest.Require(t, agent)
	c := a.Client()
	reg := func(addr string) {
		t.Helper()
		if _, err := c.Catalog().Register(&api.CatalogRegistration{Node: "MoveNode", Address: addr,
			Service: &api.AgentService{ID: "fc1", Service: "FreshCase", Port: 80, Address: addr}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	reg("10.64.0.1")
	t.Cleanup(func() { _, _ = c.Catalog().Deregister(&api.CatalogDeregistration{Node: "MoveNode"}, nil) })
	s, addr := startServer(t, baseConfig(a))
	pollUntil(t, addr, "movenode.node.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return has(m, "10.64.0.1") })
	pollUntil(t, addr, "freshcase.service.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return has(m, "10.64.0.1") })
	for i := 2; i <= 4; i++ {
		ip := fmt.Sprintf("10.64.0.%d", i)
		reg(ip)
		pollUntil(t, addr, "MoveNode.node.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return has(m, ip) })
		pollUntil(t, addr, "FRESHCASE.service.consul.", time.Now(), 10*time.Second, func(m *dns.Msg) bool { return has(m, ip) })
	}
	if got, want := watchKeys(s), []string{"node movenode", "service freshcase"}; !reflect.DeepEqual(got, want) {
		t.Errorf("watches %v, want %v", got, want)
	}
}
