//go:build linux && (amd64 || arm64)

package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The fastest UDP path on Linux: blocking sockets (SO_REUSEPORT, one per
// reader), each read by its own thread with recvmmsg(MSG_WAITFORONE) and
// answered with one sendmmsg. No netpoller round trip per batch, no address
// parsing (the sender's sockaddr is copied as is into the reply).

const rawSupported = true

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// openRawUDP binds a blocking UDP socket with SO_REUSEPORT and a short
// receive timeout (so readers notice shutdown). The first socket of a
// group (first true) is bound without SO_REUSEPORT and given it after, so
// that it owns its port: bound with it, Linux lets the bind succeed on a
// port that another process of the same user holds with SO_REUSEPORT, and
// even picks such a port for port 0 (udp_lib_lport_inuse), and the two
// processes then split the datagrams between them. Bound without it, the
// bind fails with EADDRINUSE there, as dnsmasq's does; the later sockets
// join the first one's group.
func openRawUDP(addr netip.AddrPort, first bool) (int, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr
	if addr.Addr().Is4() || addr.Addr().Is4In6() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().Unmap().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	opts := []struct {
		level, opt, v int
	}{
		{unix.SOL_SOCKET, unix.SO_RCVBUF, 4 << 20},
	}
	if !first {
		opts = append(opts, struct{ level, opt, v int }{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1})
	}
	if family == unix.AF_INET6 && addr.Addr().IsUnspecified() {
		// The wildcard takes IPv4 too (as mapped addresses), whatever
		// net.ipv6.bindv6only says: "-listen :53" means both families.
		opts = append(opts, struct{ level, opt, v int }{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0})
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("setsockopt: %w", err)
		}
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("setsockopt: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if first {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("setsockopt: %w", err)
		}
	}
	return fd, nil
}

func rawLocalAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, err
	}
	switch v := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(v.Addr), uint16(v.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(v.Addr), uint16(v.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("unknown socket address %T", sa)
}

// listenRaw binds the reader sockets and the TCP listener.
func (s *Server) listenRaw() error {
	ap, err := netip.ParseAddrPort(s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("-listen %s: want ip:port: %w", s.cfg.Listen, err)
	}
	for i := 0; i < s.cfg.UDPReaders; i++ {
		fd, err := openRawUDP(ap, i == 0)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("-listen %s (udp): %w", s.cfg.Listen, err)
		}
		s.rawFDs = append(s.rawFDs, fd)
		if ap, err = rawLocalAddr(fd); err != nil {
			s.closeListeners()
			return fmt.Errorf("-listen %s (udp): %w", s.cfg.Listen, err)
		}
	}
	if s.readerCPUs != nil && len(s.rawFDs) > 1 {
		if err := steerToCPU(s.rawFDs[0], s.readerCPUs); err != nil {
			s.log.Info("UDP datagrams not steered to the reader of the CPU that received them; answering anyway, at a higher CPU cost", "err", err)
		}
	}
	s.rawAddr = ap.String()
	ln, err := net.Listen(tcpNetwork(s.rawAddr), s.rawAddr)
	if err != nil {
		s.closeListeners()
		return fmt.Errorf("-listen %s (tcp): %w", s.rawAddr, err)
	}
	s.tcp = ln
	return nil
}

func closeRaw(fd int) { _ = unix.Close(fd) }

// readerCPUs lists the CPUs this process may run on (sched_getaffinity),
// lowest first, at most maxUDPReaders: one pinned reader each. Nil when the
// set cannot be read.
func readerCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for c := 0; c < len(set)*64 && len(cpus) < maxUDPReaders; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// Classic BPF's ancillary load of the current CPU (linux/filter.h).
const (
	skfADOff = 0xfffff000 // SKF_AD_OFF, -0x1000
	skfADCPU = 36         // SKF_AD_CPU
)

// steerToCPU gives each datagram to the reader pinned to the CPU that
// received it: a classic BPF program on the SO_REUSEPORT group of fd
// (SO_ATTACH_REUSEPORT_CBPF, Linux 4.5) returns, for the receiving CPU
// (SKF_AD_CPU), the index of its socket in the group, cpus[i] for the
// i-th socket bound. A datagram received on a CPU not in cpus gets an
// index past the group, and the kernel falls back to its hash of the
// addresses (reuseport_select_sock).
//
// The reader is then woken on the CPU where the client's datagram was
// handled, and, in SCHED_BATCH (pinReader), does not preempt the sender:
// it runs when the sender sleeps, and reads its whole burst at once.
func steerToCPU(fd int, cpus []int) error {
	prog := []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfADOff + skfADCPU}}
	for i, c := range cpus {
		prog = append(prog,
			unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(c), Jt: 0, Jf: 1},
			unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: uint32(i)})
	}
	prog = append(prog, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: ^uint32(0)})
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fp); err != nil {
		return fmt.Errorf("SO_ATTACH_REUSEPORT_CBPF: %w", err)
	}
	return nil
}

// pinReader locks the calling goroutine to its thread, binds the thread to
// cpu and puts it in SCHED_BATCH: woken by a datagram, it does not preempt
// the task running there (the client that sent it, on loopback) but runs
// when that task sleeps or its slice ends.
//
// The caller must call unpin when its reader ends, even when err is not
// nil: unpin gives the thread back its affinity and scheduling attributes
// from before (sched_setaffinity, sched_setattr) and unlocks it. Should
// that fail, the goroutine stays locked and the runtime ends the thread
// with it, or parks it for good if it is the process's main thread; a
// thread pinned to one CPU never goes back to the runtime's pool.
//
// Measured at 20,000 queries a second on a 2-CPU VM, this makes a query
// cost 7.5 µs of CPU against 12 µs with unpinned readers: the reader is
// woken on the client's CPU, without an inter-processor interrupt, and
// reads a burst at once instead of one datagram a wakeup. Pinned alone,
// without SCHED_BATCH, it saved nothing (see README).
func pinReader(cpu int) (unpin func(), err error) {
	runtime.LockOSThread()
	var was unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		return runtime.UnlockOSThread, fmt.Errorf("sched_getaffinity: %w", err) // nothing changed yet
	}
	wasAttr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return runtime.UnlockOSThread, fmt.Errorf("sched_getattr: %w", err)
	}
	unpin = func() {
		if unix.SchedSetAttr(0, wasAttr, 0) == nil && unix.SchedSetaffinity(0, &was) == nil {
			runtime.UnlockOSThread()
		}
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return unpin, fmt.Errorf("sched_setaffinity: %w", err)
	}
	attr := *wasAttr
	attr.Policy = unix.SCHED_BATCH
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		return unpin, fmt.Errorf("sched_setattr(SCHED_BATCH): %w", err)
	}
	return unpin, nil
}

func sockaddrToAddrPort(rsa *unix.RawSockaddrAny) (netip.AddrPort, bool) {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := uint16(p.Port>>8) | uint16(p.Port&0xff)<<8
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port), true
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := uint16(p.Port>>8) | uint16(p.Port&0xff)<<8
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr), port), true
	}
	return netip.AddrPort{}, false
}

func rawSendTo(fd int, b []byte, to netip.AddrPort, v6 bool) {
	var sa unix.Sockaddr
	if !v6 && (to.Addr().Is4() || to.Addr().Is4In6()) {
		sa = &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().Unmap().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(to.Port()), Addr: to.Addr().As16()}
	}
	_ = unix.Sendto(fd, b, unix.MSG_DONTWAIT, sa)
}

// rawIdleAfter is how long a raw reader goes without a datagram before it
// waits in waitReadable instead of in its raw recvmmsg.
const rawIdleAfter = 250 * time.Millisecond

// waitReadable blocks until fd has a datagram or ctx is done, in a system
// call the runtime knows of (ppoll through syscall.Syscall6): the reader's P
// goes back to the scheduler, so an idle reader is not preempted every 10ms
// and sysmon can sleep. Measured idle: from 240 context switches and 7ms of
// CPU a second to a handful. It looks at ctx every 200ms.
func waitReadable(ctx context.Context, fd int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for ctx.Err() == nil {
		n, err := unix.Poll(fds, 200)
		if n > 0 || err != nil && err != unix.EINTR {
			return
		}
	}
}

// readRaw is one reader thread's loop.
func (s *Server) readRaw(ctx context.Context, fd int, read *atomic.Uint64) {
	r := newReader()
	in := make([]mmsghdr, batch)
	inIov := make([]unix.Iovec, batch)
	inName := make([]unix.RawSockaddrAny, batch)
	inBuf := make([][]byte, batch)
	out := make([]mmsghdr, batch)
	outIov := make([]unix.Iovec, batch)
	outName := make([]unix.RawSockaddrAny, batch)
	outBuf := make([][]byte, batch)
	for i := range in {
		inBuf[i] = make([]byte, maxUDPAnswer)
		inIov[i].Base = &inBuf[i][0]
		inIov[i].SetLen(len(inBuf[i]))
		in[i].hdr.Name = (*byte)(unsafe.Pointer(&inName[i]))
		in[i].hdr.Iov = &inIov[i]
		in[i].hdr.Iovlen = 1
		outBuf[i] = make([]byte, 0, 1024)
		out[i].hdr.Name = (*byte)(unsafe.Pointer(&outName[i]))
		out[i].hdr.Iov = &outIov[i]
		out[i].hdr.Iovlen = 1
	}
	lastPacket := time.Now()
	for ctx.Err() == nil {
		for i := range in {
			in[i].hdr.Namelen = unix.SizeofSockaddrAny
			in[i].hdr.Flags = 0
			in[i].len = 0
		}
		// A raw system call: the reader keeps its P while it blocks (its
		// thread has nothing else to do). Through syscall.Syscall the runtime
		// would hand the P off and back on every wait, and sysmon would
		// poll every 20us to do so: measured, a sixth of the CPU at 20k
		// qps. The runtime still stops it for GC and preemption: their
		// signal interrupts the wait (EINTR: SO_RCVTIMEO makes recvmmsg
		// not restartable), and the loop then yields (a safe point).
		// Unpinned readers (-udp-readers N) are not locked to their
		// thread: a locked one, preempted, must be handed to another
		// thread and back (measured: 50 preemptions a second idle, four
		// context switches each). Idle readers wait in waitReadable, which
		// gives the P back, so pinned ones pay that only under load.
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&in[0])), batch, unix.MSG_WAITFORONE, 0, 0)
		if errno != 0 {
			switch errno {
			case unix.EAGAIN, unix.EINTR:
				if time.Since(lastPacket) > rawIdleAfter {
					waitReadable(ctx, fd)
					lastPacket = time.Now()
					continue
				}
				runtime.Gosched() // let a waiting GC or preemption in
			default:
				s.log.Warn("udp read", "err", errno)
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		lastPacket = time.Now()
		read.Add(uint64(n))
		k := 0
		for i := 0; i < int(n); i++ {
			if in[i].hdr.Flags&unix.MSG_TRUNC != 0 {
				s.m.dropped.Add(1) // larger than any sane query
				continue
			}
			resp, job := s.handle(r, inBuf[i][:in[i].len], false)
			if len(resp) > 0 {
				outBuf[k] = append(outBuf[k][:0], resp...)
				outIov[k].Base = &outBuf[k][0]
				outIov[k].SetLen(len(outBuf[k]))
				outName[k] = inName[i]
				out[k].hdr.Namelen = in[i].hdr.Namelen
				k++
			}
			if job != nil {
				from, ok := sockaddrToAddrPort(&inName[i])
				if !ok {
					continue
				}
				v6 := inName[i].Addr.Family == unix.AF_INET6
				job.from = from
				s.spawn(ctx, job, func(b []byte) {
					if b != nil {
						rawSendTo(fd, b, from, v6)
					}
				})
			}
		}
		for sent := 0; sent < k; {
			// Raw as well: MSG_DONTWAIT, it never blocks.
			w, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&out[sent])), uintptr(k-sent), unix.MSG_DONTWAIT, 0, 0)
			switch {
			case errno == unix.EINTR:
			case errno != 0 || w == 0:
				sent++ // skip the datagram that failed (client gone)
			default:
				sent += int(w)
			}
		}
	}
}
