//go:build linux && (amd64 || arm64)

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth/berth/pkg/eventually"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// TestReadersPinnedPerCPU: by default (-udp-readers 0) each CPU the
// process may run on has one UDP reader thread, bound to that CPU alone and
// in SCHED_BATCH, and a datagram sent from a CPU is read by that CPU's
// reader (SO_ATTACH_REUSEPORT_CBPF). Each CPU's datagrams come from 16
// sockets: spread by the kernel's hash of the addresses instead, they
// would all reach one reader once in 2^15 runs on a 2-CPU machine. When
// the server stops, no thread stays pinned: the earlier tests' servers
// (run with the default) left none either, and neither does this one.
func TestReadersPinnedPerCPU(t *testing.T) {
	noPinnedThread := func(when string) {
		t.Helper()
		eventually.Holds(t, 10*time.Second, "no SCHED_BATCH thread bound to one CPU "+when, func() (bool, string) {
			got := batchThreadCPUs(t)
			return len(got) == 0, fmt.Sprintf("SCHED_BATCH threads bound to %v", got)
		})
	}
	noPinnedThread("before the server starts")
	cfg := baseConfig(agent)
	cfg.UDPReaders = 0
	s, stop := startStoppable(t, cfg)
	addr := s.Addr()
	want := readerCPUs()
	if fmt.Sprint(s.readerCPUs) != fmt.Sprint(want) || len(s.rawFDs) != len(want) {
		t.Fatalf("readers on CPUs %v with %d sockets, want one on each of %v", s.readerCPUs, len(s.rawFDs), want)
	}
	eventually.Holds(t, 10*time.Second, "a SCHED_BATCH reader thread bound to each CPU", func() (bool, string) {
		got := batchThreadCPUs(t)
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("SCHED_BATCH threads bound to %v", got)
	})
	counts := func() []uint64 {
		var c []uint64
		for i := range s.m.readers {
			c = append(c, s.m.readers[i].n.Load())
		}
		return c
	}
	for i, cpu := range want {
		before := counts()
		sendFromCPU(t, cpu, addr, 16)
		after := counts()
		for j := range after {
			grew := after[j] - before[j]
			if j == i && grew != 16 || j != i && grew != 0 {
				t.Fatalf("16 queries sent from CPU %d: datagrams read by each reader %v, want all 16 by reader %d (CPU %d)", cpu, diff(after, before), i, cpu)
			}
		}
	}
	stop()
	noPinnedThread("after the server stopped")
}

func diff(a, b []uint64) []uint64 {
	d := make([]uint64, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d
}

// batchThreadCPUs lists, for each of this process's threads in SCHED_BATCH
// bound to a single CPU, that CPU, lowest first.
func batchThreadCPUs(t *testing.T) []int {
	t.Helper()
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for _, e := range tids {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil || attr.Policy != unix.SCHED_BATCH {
			continue
		}
		var set unix.CPUSet
		if unix.SchedGetaffinity(tid, &set) != nil || set.Count() != 1 {
			continue
		}
		for c := 0; c < len(set)*64; c++ {
			if set.IsSet(c) {
				cpus = append(cpus, c)
			}
		}
	}
	slices.Sort(cpus)
	return cpus
}

// sendFromCPU asks addr n questions, each from its own UDP socket, from a
// thread bound to cpu, and waits for each answer. The thread is unbound
// before it goes back to the runtime.
func sendFromCPU(t *testing.T, cpu int, addr string, n int) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var was, set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &was); err != nil {
			errc <- fmt.Errorf("reading the client's CPUs: %w", err)
			return
		}
		defer func() {
			// Unlocked only once unbound (else the thread ends here).
			if unix.SchedSetaffinity(0, &was) == nil {
				runtime.UnlockOSThread()
			}
		}()
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- fmt.Errorf("binding the client to CPU %d: %w", cpu, err)
			return
		}
		q := new(dns.Msg)
		q.SetQuestion("reader-test.example.", dns.TypeA)
		pkt, err := q.Pack()
		if err != nil {
			errc <- err
			return
		}
		var errs []string
		for range n {
			if err := askOnce(addr, pkt); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			errc <- fmt.Errorf("from CPU %d: %s", cpu, strings.Join(errs, "; "))
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// askOnce sends pkt to addr from a new socket and waits for a reply.
func askOnce(addr string, pkt []byte) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		return err
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		return fmt.Errorf("no answer: %w", err)
	}
	return nil
}

// TestListenOwnsPort: a port that another socket of the same user holds
// with SO_REUSEPORT is refused with "address already in use", as dnsmasq's
// bind is, on both UDP paths. Bound with SO_REUSEPORT from the start, the
// first reader socket would join the other socket's group and the kernel
// would split the datagrams between the two (and bind to port 0 could pick
// such a port: a test server once answered for another one).
func TestListenOwnsPort(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	other, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, portable := range []bool{false, true} {
		cfg := baseConfig(agent)
		cfg.Listen = other.LocalAddr().String()
		cfg.portableUDP = portable
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Listen()
		if err == nil {
			s.closeListeners()
			t.Fatalf("portable %v: listening on %s, which another socket holds with SO_REUSEPORT, succeeded", portable, cfg.Listen)
		}
		if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), cfg.Listen) {
			t.Errorf("portable %v: error %q, want address in use naming %s", portable, err, cfg.Listen)
		}
	}
}
