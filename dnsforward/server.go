package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/telemetry"
	"github.com/hashicorp/consul/api"
	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Config is everything a Server needs; main fills it from flags.
type Config struct {
	Listen         string
	Domains        []string // lower case FQDNs; the first is the primary
	ConsulDNS      string
	Upstreams      []string
	Policy         string
	TryTimeout     time.Duration
	Budget         time.Duration
	CacheSize      int
	CacheMaxTTL    time.Duration
	CacheNegMaxTTL time.Duration
	ServeStale     bool
	ServeStaleMax  time.Duration
	ServiceTTL     time.Duration
	NodeTTL        time.Duration
	OnlyPassing    bool
	IdleTimeout    time.Duration
	MaxStale       time.Duration
	StaleTTL       time.Duration
	Datacenter     string
	UDPReaders     int
	// DomainNeeded: A, AAAA and ANY questions (class IN) of a name without
	// a dot that the hosts files do not answer get NXDOMAIN here instead
	// of going upstream (dnsmasq's --domain-needed).
	DomainNeeded bool
	// BogusPriv: PTR and ANY questions (class IN) of a reverse name of a
	// private address (bogusPrivate) that neither the hosts files nor the
	// agent answer get NXDOMAIN instead of going upstream (dnsmasq's
	// --bogus-priv).
	BogusPriv bool
	// HostsFiles are read in order for A, AAAA, ANY and PTR answers (main:
	// /etc/hosts unless -no-hosts, and -addn-hosts), TTL LocalTTL.
	HostsFiles []string
	// HostsDirs (-hostsdir) are directories whose files are read after
	// HostsFiles and read again whenever one of them is created, changed,
	// moved or removed, as dnsmasq's --hostsdir.
	HostsDirs []string
	LocalTTL  time.Duration
	// AgentDNSConfig: take the agent's domain, alt_domain and dns_config
	// for every setting whose flag is not in Explicit (flag names).
	AgentDNSConfig bool
	// AgentRefresh is how often the agent's settings are read again once
	// known (0: every 15 s, agentRefresh); not a flag.
	AgentRefresh time.Duration
	Explicit     map[string]bool
	Client       *api.Client
	portableUDP  bool // tests: use the portable UDP path on Linux too
	// Tests: negLinger and maxUnknownWatches when > 0.
	negLinger  time.Duration
	maxUnknown int
	Log        *slog.Logger
}

// Server is a running dnsforward.
type Server struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	zone  *consulZone
	fwd   *forwarder
	agent *agentPasses
	// settings decide Consul answers (flags and the agent's dns_config).
	settings atomic.Pointer[dnsSettings]
	// hosts answers names and addresses of the hosts files (nil: none).
	hosts atomic.Pointer[hostsTable]
	// hostsMu orders the readings of the hosts files (SIGHUP, -hostsdir
	// changes), so the last one stored is the newest.
	hostsMu sync.Mutex
	ctx     context.Context

	touchGran int64 // ns between updates of a watch's last use

	slowSlots chan struct{}
	tcpSlots  chan struct{}
	jobs      sync.WaitGroup // spawned slow-path goroutines

	udp    []*net.UDPConn // portable path
	rawFDs []int          // Linux fast path (see rawudp_linux.go)
	// readerCPUs[i] is the CPU rawFDs[i]'s reader is pinned to; nil when
	// the readers are not pinned (-udp-readers given, or no raw path).
	readerCPUs []int
	rawAddr    string
	tcp        net.Listener
	wg         sync.WaitGroup
}

// New checks cfg and builds a Server; Listen then Serve (or Run) start it.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	var cpus []int
	if cfg.UDPReaders <= 0 {
		// One reader per CPU, pinned where the raw path can (Linux).
		if rawSupported && !cfg.portableUDP {
			cpus = readerCPUs()
		}
		cfg.UDPReaders = len(cpus)
		if cfg.UDPReaders == 0 {
			cfg.UDPReaders = min(runtime.NumCPU(), maxUDPReaders)
		}
	}
	s := &Server{cfg: cfg, log: cfg.Log, ctx: context.Background(), readerCPUs: cpus,
		slowSlots: make(chan struct{}, maxSlowJobs), tcpSlots: make(chan struct{}, maxTCPConns)}
	s.fwd = newForwarder(s, cfg.Upstreams)
	s.agent = newAgentPasses()
	s.settings.Store(settingsFromFlags(&cfg))
	s.m = newMetrics(s.fwd.cacheLen)
	s.m.readers = make([]readerCounter, cfg.UDPReaders)
	for i, cpu := range cpus {
		s.m.readers[i].cpu = strconv.Itoa(cpu)
	}
	s.zone = newConsulZone(s, cfg.Client)
	s.touchGran = int64(min(time.Second, cfg.IdleTimeout/8, s.zone.negLinger/8))
	return s, nil
}

// now is the wall clock in Unix nanoseconds (a vDSO read, tens of ns). A
// goroutine ticking a shared clock instead woke the process 100 times a
// second while it had nothing to do: measured, half its idle CPU.
func (s *Server) now() int64 { return time.Now().UnixNano() }

// Listen binds the UDP sockets (several with SO_REUSEPORT, one reader each)
// and the TCP listener on the same address.
func (s *Server) Listen() error {
	// With port 0 the UDP port is chosen first; retry if TCP has it taken.
	_, port, _ := net.SplitHostPort(s.cfg.Listen)
	for i := 0; ; i++ {
		err := s.listen()
		if err != nil && s.cfg.Listen == net.JoinHostPort("::", port) && errors.Is(err, syscall.EAFNOSUPPORT) {
			// ":53" on a host without IPv6: IPv4 only.
			s.cfg.Listen = net.JoinHostPort("0.0.0.0", port)
			err = s.listen()
		}
		if errors.Is(err, syscall.EACCES) {
			return telemetry.WithBindHint(err)
		}
		if err == nil || port != "0" || i >= 20 {
			return err
		}
	}
}

// tcpNetwork is the network to listen on TCP for addr: the IPv6 wildcard
// takes both families (as the UDP sockets), an IPv4 address only IPv4 (Go
// would make 0.0.0.0 dual-stack).
func tcpNetwork(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is4() {
		return "tcp4"
	}
	return "tcp"
}

func (s *Server) listen() error {
	s.udp, s.rawFDs, s.tcp = nil, nil, nil
	if rawSupported && !s.cfg.portableUDP {
		return s.listenRaw()
	}
	reusePort := func(c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}
	// The first socket is bound without SO_REUSEPORT and given it after,
	// so that it owns its port (see openRawUDP); the others join it.
	var first net.ListenConfig
	later := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error { return reusePort(c) }}
	addr := s.cfg.Listen
	for i := 0; i < s.cfg.UDPReaders; i++ {
		network := "udp"
		if tcpNetwork(addr) == "tcp4" {
			network = "udp4"
		}
		lc := &later
		if i == 0 {
			lc = &first
		}
		pc, err := lc.ListenPacket(context.Background(), network, addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("-listen %s (udp): %w", s.cfg.Listen, err)
		}
		u := pc.(*net.UDPConn)
		if i == 0 {
			rc, err := u.SyscallConn()
			if err == nil {
				err = reusePort(rc)
			}
			if err != nil {
				u.Close()
				s.closeListeners()
				return fmt.Errorf("-listen %s (udp): SO_REUSEPORT: %w", s.cfg.Listen, err)
			}
		}
		_ = u.SetReadBuffer(4 << 20)
		s.udp = append(s.udp, u)
		addr = u.LocalAddr().String() // the port chosen for :0
	}
	ln, err := net.Listen(tcpNetwork(addr), addr)
	if err != nil {
		s.closeListeners()
		return fmt.Errorf("-listen %s (tcp): %w", addr, err)
	}
	s.tcp = ln
	return nil
}

func (s *Server) closeListeners() {
	for _, u := range s.udp {
		u.Close()
	}
	s.udp = nil
	if s.tcp != nil {
		s.tcp.Close()
	}
	s.closeRawFDs()
}

// Reload is what SIGHUP does, as for dnsmasq: the cache of upstream answers
// is emptied, the hosts files are read again, and the agent's datacenter
// and DNS settings are read again (when they come from the agent) rather
// than at the next agentRefresh.
func (s *Server) Reload() {
	s.fwd.flush()
	s.log.Info("SIGHUP: upstream cache emptied")
	s.readHosts()
	if !s.zone.fromAgent() {
		return
	}
	go func() {
		if err := s.zone.readAgent(); err != nil {
			s.log.Warn("SIGHUP: reading the agent's settings", "err", err)
		}
	}()
}

// readHosts reads the hosts files (when Serve starts and on SIGHUP, as
// dnsmasq), when there are any.
func (s *Server) readHosts() {
	if len(s.cfg.HostsFiles) > 0 || len(s.cfg.HostsDirs) > 0 {
		s.hostsMu.Lock()
		defer s.hostsMu.Unlock()
		s.hosts.Store(loadHosts(s.cfg.HostsFiles, s.cfg.HostsDirs, s.cfg.LocalTTL, s.log))
	}
}

func (s *Server) closeRawFDs() {
	for _, fd := range s.rawFDs {
		closeRaw(fd)
	}
	s.rawFDs = nil
}

// Addr is the bound address (UDP and TCP share the port).
func (s *Server) Addr() string {
	if len(s.rawFDs) > 0 {
		return s.rawAddr
	}
	return s.udp[0].LocalAddr().String()
}

// Serve answers queries until ctx is done. Listen must have succeeded.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = ctx
	s.readHosts() // before the first question: the hosts files come first
	if len(s.cfg.HostsDirs) > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.watchHostsDirs(ctx) }()
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.zone.run(ctx) }()
	if s.cfg.AgentDNSConfig {
		// Answer with the agent's domain and settings from the first
		// query when the agent answers soon; otherwise start with the
		// flags' and switch when it does.
		s.zone.waitSettings(ctx, settingsWait)
	}
	for i, u := range s.udp {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.readUDP(ctx, u, s.m.reader(i)) }()
	}
	var readers sync.WaitGroup
	if n := len(s.rawFDs) + 1; len(s.rawFDs) > 0 && runtime.GOMAXPROCS(0) < n {
		// Raw readers keep their P while they wait for packets (see
		// readRaw): leave at least one P for everything else.
		runtime.GOMAXPROCS(n)
	}
	var pinFailed sync.Once
	for i, fd := range s.rawFDs {
		readers.Add(1)
		go func() {
			defer readers.Done()
			if s.readerCPUs != nil {
				unpin, err := pinReader(s.readerCPUs[i])
				defer unpin()
				if err != nil {
					pinFailed.Do(func() {
						s.log.Info("a UDP reader could not be pinned to its CPU; answering anyway, at a higher CPU cost", "cpu", s.readerCPUs[i], "err", err)
					})
				}
			}
			s.readRaw(ctx, fd, s.m.reader(i))
		}()
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.acceptTCP(ctx) }()
	s.log.Info("answering DNS", "addr", s.Addr(), "domains", strings.Join(s.settings.Load().domains, ","), "upstreams", strings.Join(s.cfg.Upstreams, ","), "consul_dns", s.cfg.ConsulDNS)
	<-ctx.Done()
	for _, u := range s.udp {
		u.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
	// Raw sockets close only once their readers are gone (no fd reuse
	// under a reader's feet); readers notice ctx within their timeout.
	readers.Wait()
	s.wg.Wait()
	s.jobs.Wait() // they may still send on the raw sockets
	s.closeRawFDs()
	return nil
}

// reader holds one reader's buffers, reused for every packet.
type reader struct {
	buf  []byte
	out  []byte
	name []byte
	key  []byte
	q    query
}

func newReader() *reader {
	return &reader{buf: make([]byte, 65536), out: make([]byte, 0, 65536+16), name: make([]byte, 0, 256), key: make([]byte, 0, 260)}
}

// batchConn reads and writes several datagrams per system call
// (recvmmsg/sendmmsg).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// batch is how many datagrams one system call moves at most.
const batch = 32

// maxUDPReaders caps -udp-readers (and the readers of its per-CPU default).
const maxUDPReaders = 256

// readUDP answers datagrams in batches: one recvmmsg, the answers from
// memory, one sendmmsg. Work that must wait (first lookups, forwarding)
// goes to its own goroutine and is sent on its own.
func (s *Server) readUDP(ctx context.Context, u *net.UDPConn, read *atomic.Uint64) {
	var bc batchConn
	if la, ok := u.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil {
		bc = ipv6.NewPacketConn(u)
	} else {
		bc = ipv4.NewPacketConn(u)
	}
	r := newReader()
	in := make([]ipv4.Message, batch)
	out := make([]ipv4.Message, batch)
	bufs := make([][]byte, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, maxUDPAnswer)}
		out[i].Buffers = make([][]byte, 1)
		bufs[i] = make([]byte, 0, 1024)
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if s.stopOrPause(ctx, "udp read", err) {
				return
			}
			continue
		}
		read.Add(uint64(n))
		k := 0
		for i := 0; i < n; i++ {
			m := &in[i]
			if m.Flags&syscall.MSG_TRUNC != 0 {
				s.m.dropped.Add(1) // larger than any sane query
				continue
			}
			resp, job := s.handle(r, m.Buffers[0][:m.N], false)
			if resp != nil {
				bufs[k] = append(bufs[k][:0], resp...)
				out[k].Buffers[0] = bufs[k]
				out[k].Addr = m.Addr
				k++
			}
			if job != nil {
				ua, ok := m.Addr.(*net.UDPAddr)
				if !ok {
					continue
				}
				from := ua.AddrPort()
				job.from = from
				s.spawn(ctx, job, func(b []byte) {
					if b != nil {
						_, _ = u.WriteToUDPAddrPort(b, from)
					}
				})
			}
		}
		for sent := 0; sent < k; {
			w, err := bc.WriteBatch(out[sent:k], 0)
			if err != nil || w <= 0 {
				// Send the rest one by one (an unreachable client must
				// not cost the others their answers).
				for _, m := range out[sent:k] {
					_, _ = u.WriteTo(m.Buffers[0], m.Addr)
				}
				break
			}
			sent += w
		}
	}
}

// stopOrPause handles err from reading or accepting on a socket: it
// reports true when the server is stopping (ctx done or the socket closed);
// otherwise it logs err as what and pauses 10 ms before the next try.
func (s *Server) stopOrPause(ctx context.Context, what string, err error) (stop bool) {
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return true
	}
	s.log.Warn(what, "err", err)
	time.Sleep(10 * time.Millisecond)
	return false
}

func (s *Server) acceptTCP(ctx context.Context) {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if s.stopOrPause(ctx, "tcp accept", err) {
				return
			}
			continue
		}
		select {
		case s.tcpSlots <- struct{}{}:
		default:
			s.m.dropped.Add(1) // too many connections: refuse this one
			c.Close()
			continue
		}
		conns.Add(1)
		go func() {
			defer func() { <-s.tcpSlots; conns.Done() }()
			s.serveTCP(ctx, c)
		}()
	}
}

// tcpIdle closes TCP connections without a query for this long.
const tcpIdle = 10 * time.Second

func (s *Server) serveTCP(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r := newReader()
	var wmu sync.Mutex
	var jobs sync.WaitGroup
	defer jobs.Wait()
	send := func(b []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(tcpIdle))
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(b)))
		_, _ = c.Write(append(l[:], b...))
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdle))
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, r.buf[:n]); err != nil {
			return
		}
		resp, job := s.handle(r, r.buf[:n], true)
		if resp != nil {
			send(resp)
		}
		if job != nil {
			jobs.Add(1)
			if !s.spawn(ctx, job, func(b []byte) {
				defer jobs.Done()
				if b != nil {
					send(b)
				}
			}) {
				jobs.Done()
			}
		}
	}
}

// Bounds on concurrent work, so a flood cannot exhaust memory.
const (
	maxSlowJobs = 10000 // queries waiting on a watch, the agent or upstreams
	maxTCPConns = 1000
)

// spawn runs s.slow for job in a goroutine and hands the answer to send,
// exactly once (nil when there is nothing to send). It returns false, and
// drops the query, when too many are in flight already.
func (s *Server) spawn(ctx context.Context, job *query, send func([]byte)) bool {
	select {
	case s.slowSlots <- struct{}{}:
	default:
		s.m.dropped.Add(1)
		return false
	}
	s.jobs.Add(1)
	go func() {
		defer func() { <-s.slowSlots; s.jobs.Done() }()
		send(s.slow(ctx, job))
	}()
	return true
}

// handle answers a packet from memory when it can. It returns the reply (in
// r.out) or a job for s.slow (a copy of the query) or neither (drop).
func (s *Server) handle(r *reader, raw []byte, tcp bool) ([]byte, *query) {
	b, job := s.handleFast(r, raw, tcp)
	if len(b) > 3 && b[3]&0x0f == dns.RcodeNameError {
		b = s.hostsNoNX(&r.q, b, false)
	}
	return b, job
}

// hostsNoNX turns NXDOMAIN into NOERROR when the name is in the hosts
// files, with AA, as dnsmasq does to an answer from its servers for a
// name it has local data for (b is copied first when copyFirst).
func (s *Server) hostsNoNX(q *query, b []byte, copyFirst bool) []byte {
	if len(b) < 12 || b[3]&0x0f != dns.RcodeNameError || !s.hosts.Load().has(q.name) {
		return b
	}
	if copyFirst {
		b = append([]byte(nil), b...)
	}
	b[3] &^= 0x0f
	b[2] |= 0x04 // AA, as dnsmasq sets it there
	return b
}

func (s *Server) handleFast(r *reader, raw []byte, tcp bool) ([]byte, *query) {
	q := &r.q
	switch parseFast(raw, r.name, q) {
	case parseDrop:
		s.m.dropped.Add(1)
		return nil, nil
	case parseNeedSlow:
		rcode, err := parseSlow(raw, q)
		if errors.Is(err, errNotQuery) {
			s.m.dropped.Add(1)
			return nil, nil
		}
		if err != nil {
			s.log.Debug("bad query", "err", err, "rcode", dns.RcodeToString[rcode])
			s.m.query(zoneNone, 0, rcode)
			if rcode == dns.RcodeBadVers {
				q.tcp = tcp
				b, err := rcodeReply(q, rcode, nil)
				if err != nil {
					return nil, nil
				}
				return b, nil
			}
			r.out = errorReply(raw, rcode, r.out)
			return r.out, nil
		}
	}
	q.tcp = tcp
	// Whatever the question's class: Consul's DNS does not look at it (a
	// name in its domain, or under arpa., gets its IN records), and
	// dnsmasq forwards every class as asked, as the upstreams get it here.
	now := s.now()
	r.key = append(append(r.key[:0], q.name...), byte(q.qtype>>8), byte(q.qtype))
	// The hosts files first, the Consul domain too: dnsmasq answers a
	// name in them before it looks at its servers, server=/consul/ too.
	if q.qclass == dns.ClassINET {
		if a := s.hosts.Load().lookup(r.key); a != nil {
			return s.send(r, q, a, now), nil
		}
	}
	if s.inConsulDomain(q.name) {
		a := s.zone.cached(r.key)
		if a != nil && a.expires != 0 && now >= a.expires {
			a = nil // upstream records chased for a host name expired
		}
		if a == nil {
			s.m.misses[cacheConsul].Add(1)
			// Build it here when the data is in memory; only a lookup
			// that must wait for a new watch (or the agent) goes async.
			a, res, err := s.zone.resolve(s.ctx, string(q.name), q.qtype, false)
			if err != nil || res != resAnswer {
				return nil, q.clone()
			}
			return s.withECS(q, s.sendConsul(r, q, a, now)), nil
		}
		s.m.hits[cacheConsul].Add(1)
		return s.withECS(q, s.sendConsul(r, q, a, now)), nil
	}
	// DO set: always asked upstream, as dnsmasq (without DNSSEC of its
	// own) asks it, so the client gets the upstream's DNSSEC records.
	if q.qtype == dns.TypePTR || isReverse(q.name) || s.cfg.CacheSize <= 0 || q.do {
		return nil, q.clone()
	}
	r.key = append(r.key, byte(q.qclass>>8), byte(q.qclass))
	a, fresh := s.fwd.cached(r.key, now)
	if a == nil || !fresh {
		s.m.misses[cacheUpstream].Add(1)
		return nil, q.clone()
	}
	s.m.hits[cacheUpstream].Add(1)
	return s.send(r, q, a, now), nil
}

func (s *Server) sendConsul(r *reader, q *query, a *answer, now int64) []byte {
	if w := a.watch; w != nil {
		w.touch(now, s.touchGran)
		if since, failing := s.zone.failing(w); failing {
			s.m.stale[cacheConsul].Add(1)
			if s.cfg.MaxStale > 0 && time.Now().UnixNano()-since > int64(s.cfg.MaxStale) {
				s.m.query(zoneConsul, q.qtype, dns.RcodeServerFailure)
				b, _ := rcodeReply(q, dns.RcodeServerFailure, nil)
				return b
			}
		} else if a.staleChase {
			s.m.stale[cacheConsul].Add(1)
		}
	}
	return s.send(r, q, a, now)
}

func (s *Server) send(r *reader, q *query, a *answer, now int64) []byte {
	s.m.query(a.zone, q.qtype, a.rcode)
	count, tc := 0, false
	if a.zone == zoneConsul && !q.tcp && q.limit() <= dns.MinMsgSize && q.qEnd != 0 {
		// The agent's udp_answer_limit for clients without EDNS0 or with
		// a 512-byte buffer (Consul takes the larger of 512 and theirs), TC
		// as its enable_truncate says (agent/dns.go trimUDPResponse).
		if st := s.settings.Load(); st.udpAnswerLimit > 0 && a.nAnswer > st.udpAnswerLimit {
			if out, ok := a.writeCut(q, r.out, dns.MinMsgSize, st.udpAnswerLimit, st.enableTruncate); ok {
				r.out = out
				return out
			}
			count, tc = st.udpAnswerLimit, st.enableTruncate
		}
	}
	if count == 0 {
		if out, ok := a.write(q, r.out, now); ok {
			r.out = out
			return out
		}
	}
	b, err := a.writeSlow(q, now, count, tc)
	if err != nil {
		s.log.Warn("cannot write answer", "name", string(q.name), "err", err)
		return nil
	}
	return b
}

// withECS adds the client-subnet option the question came with (RFC 7871)
// to the OPT record of reply b, as Consul's DNS echoes it (agent/dns.go
// setEDNS): scope 0, valid for every client, except in a prepared query's
// answer, which is for the source prefix unless its rcode is NXDOMAIN,
// SERVFAIL, REFUSED or NOTIMP. Without the option, or an OPT record to put
// it in, b is returned as it is.
func (s *Server) withECS(q *query, b []byte) []byte {
	if q.ecs == nil || len(b) == 0 {
		return b
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return b
	}
	opt := m.IsEdns0()
	if opt == nil {
		return b
	}
	e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: q.ecs.Family, SourceNetmask: q.ecs.SourceNetmask, Address: q.ecs.Address}
	switch m.Rcode {
	case dns.RcodeNameError, dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeNotImplemented:
	default:
		if s.isPreparedQuery(q.name) {
			e.SourceScope = q.ecs.SourceNetmask
		}
	}
	opt.Option = append(opt.Option, e)
	m.Truncate(q.limit()) // the option's bytes may not fit beside every record
	// After Truncate, which turns compression off when the message fits
	// uncompressed: answers are compressed, as Consul's are, unless the
	// agent has dns_config.disable_compression (then compressed only when
	// Truncate had to cut).
	if !s.settings.Load().noCompress {
		m.Compress = true
	}
	out, err := m.Pack()
	if err != nil {
		return b
	}
	return out
}

// isPreparedQuery reports whether name (lower case) is
// <query>.query[.<datacenter>].<domain>.
func (s *Server) isPreparedQuery(name []byte) bool {
	_, rest, ok := cutDomain(s.settings.Load().domains, string(name))
	if !ok {
		return false
	}
	labels := strings.Split(rest, ".")
	n := len(labels)
	return n >= 2 && labels[n-1] == "query" || n >= 3 && labels[n-2] == "query"
}

// cutDomain splits name (lower case, fully qualified) into the first of
// domains it lies under and the labels before it: "web.service.consul."
// gives "consul.", "web.service", true. The apex itself and names outside
// every domain give ok false.
func cutDomain(domains []string, name string) (domain, rest string, ok bool) {
	for _, d := range domains {
		if rest, ok := strings.CutSuffix(name, "."+d); ok {
			return d, rest, true
		}
	}
	return "", "", false
}

func (s *Server) inConsulDomain(name []byte) bool {
	for _, d := range s.settings.Load().domains {
		if len(name) == len(d) && string(name) == d {
			return true
		}
		if len(name) > len(d) && name[len(name)-len(d)-1] == '.' && string(name[len(name)-len(d):]) == d {
			return true
		}
	}
	return false
}

// isReverse reports whether name (lower case) is a reverse lookup name,
// under in-addr.arpa. or ip6.arpa.
func isReverse(name []byte) bool {
	return bytes.HasSuffix(name, []byte(".in-addr.arpa.")) || bytes.HasSuffix(name, []byte(".ip6.arpa."))
}

// slow answers what handle could not from memory: first lookups of a
// Consul name, names passed to the agent's DNS, forwarded names.
func (s *Server) slow(ctx context.Context, q *query) []byte {
	return s.hostsNoNX(q, s.slowAnswer(ctx, q), true)
}

func (s *Server) slowAnswer(ctx context.Context, q *query) []byte {
	r := &reader{}
	name := string(q.name)
	if s.agent.isOwn(q) {
		// Our own question to the agent, sent back by its recursors: a
		// loop. Refusing it makes the agent give up on it.
		s.m.loops.Add(1)
		s.log.Debug("question came back from the agent's recursors: refused", "name", name, "type", dns.TypeToString[q.qtype])
		return s.fail(q, zoneNone, dns.RcodeRefused)
	}
	if s.inConsulDomain(q.name) {
		return s.withECS(q, s.slowConsul(ctx, r, q))
	}
	if s.cfg.DomainNeeded && plainName(q) {
		if s.hosts.Load().has(q.name) {
			// The other family of a name of the hosts files: NOERROR
			// without AA from dnsmasq (not its NXDOMAIN turned NOERROR
			// with AA, see hostsNoNX).
			return s.fail(q, zoneHosts, dns.RcodeSuccess)
		}
		return s.fail(q, zoneNone, dns.RcodeNameError)
	}
	key := name + string([]byte{byte(q.qtype >> 8), byte(q.qtype), byte(q.qclass >> 8), byte(q.qclass)})
	if isReverse(q.name) {
		// Consul's own addresses first (not cached: Consul's answer is
		// current), then the upstreams, whose answers are cached. Any
		// type: Consul answers every question under arpa. with its PTR
		// record (agent/dns.go handlePtr), an A question too.
		if a, fresh := s.fwd.cached([]byte(key), s.now()); a != nil && fresh && !q.do {
			s.m.hits[cacheUpstream].Add(1)
			return s.send(r, q, a, s.now())
		}
		if b := s.passToAgent(ctx, q, true); b != nil {
			return s.withECS(q, b)
		}
		if s.cfg.BogusPriv && bogusPrivate(q) {
			// dnsmasq's --bogus-priv answer: NXDOMAIN, AA, no SOA. The
			// agent was asked first, as without the flag, so an address
			// Consul knows keeps its name (dnsmasq asks a server only
			// when one is set for the reverse zone, --server=/.../).
			b := s.fail(q, zoneNone, dns.RcodeNameError)
			if len(b) > 2 {
				b[2] |= 0x04
			}
			return b
		}
	}
	// Asked in the client's letter case, with its CD and DO bits and, for
	// a TCP client, over TCP, as dnsmasq asks.
	a, err := s.fwd.resolve(ctx, key, upQuestion{name: q.request().Question[0].Name, qtype: q.qtype, qclass: q.qclass, tcp: q.tcp, cd: q.cd, do: q.do}, source{q.from, q.id})
	if errors.Is(err, errRepeated) {
		return nil // the client's first datagram gets the answer
	}
	if err != nil {
		if errors.Is(err, errNoUpstream) {
			return s.fail(q, zoneUpstream, dns.RcodeRefused)
		}
		if old, _ := s.fwd.cached([]byte(key), s.now()); old != nil && s.cfg.ServeStale && s.now() < old.staleEnd && !q.do {
			s.m.stale[cacheUpstream].Add(1)
			return s.send(r, q, staleCopy(old), s.now())
		}
		s.log.Debug("forward failed", "name", name, "err", err)
		if errors.Is(err, errAllRefused) {
			return s.fail(q, zoneUpstream, dns.RcodeRefused)
		}
		return s.fail(q, zoneUpstream, dns.RcodeServerFailure)
	}
	if q.do {
		// The upstream was asked with DO: the reply says so too (RFC 3225
		// section 3), as dnsmasq relays the upstream's.
		return withDO(s.send(r, q, a, s.now()))
	}
	return s.send(r, q, a, s.now())
}

// plainName reports whether q is a question dnsmasq 2.90 with
// --domain-needed answers NXDOMAIN to without forwarding it: class IN,
// type A, AAAA or ANY, a name of one label ("config NAME is NXDOMAIN" in
// its log; other types and classes are forwarded, measured with it in
// TestDomainNeededAsDnsmasq). A name of the hosts files was answered before.
func plainName(q *query) bool {
	if q.qclass != dns.ClassINET || q.qtype != dns.TypeA && q.qtype != dns.TypeAAAA && q.qtype != dns.TypeANY {
		return false
	}
	n := len(q.name)
	return n > 1 && bytes.IndexByte(q.name[:n-1], '.') < 0
}

// withDO sets the DO bit in the OPT record that ends reply b, when it does
// (our own: no options).
func withDO(b []byte) []byte {
	n := len(b)
	if n >= 12+11 && b[n-11] == 0 && binary.BigEndian.Uint16(b[n-10:]) == dns.TypeOPT && binary.BigEndian.Uint16(b[n-2:]) == 0 {
		b[n-4] |= 0x80
	}
	return b
}

// slowConsul answers a name in the Consul domain: from memory once its
// watch has data, else from the agent's DNS.
func (s *Server) slowConsul(ctx context.Context, r *reader, q *query) []byte {
	a, res, err := s.zone.resolve(ctx, string(q.name), q.qtype, true)
	if err != nil {
		s.log.Warn("consul answer", "name", string(q.name), "err", err)
		return s.fail(q, zoneConsul, dns.RcodeServerFailure)
	}
	if res == resAnswer {
		return s.sendConsul(r, q, a, s.now())
	}
	return s.passToAgent(ctx, q, false)
}

func (s *Server) fail(q *query, zone, rcode int) []byte {
	s.m.query(zone, q.qtype, rcode)
	b, err := rcodeReply(q, rcode, nil)
	if err != nil {
		return nil
	}
	return b
}

// passToAgent asks the Consul agent's DNS. With fallback set (reverse
// names), only a positive answer is used and nil lets the caller forward
// upstream instead.
// A TCP client's question goes to the agent over TCP (the whole answer); a
// UDP client's answer is cut to its limit with TC set (finish).
func (s *Server) passToAgent(ctx context.Context, q *query, fallback bool) []byte {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Budget)
	defer cancel()
	// The name as the client wrote it: Consul's answer then has the
	// letter case Consul gives that client (see askAgent).
	resp, err := s.askAgent(ctx, q.request().Question[0].Name, q.qtype, q.rd, q.tcp, q.ecs)
	if fallback {
		if err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
			return nil
		}
	}
	if err != nil {
		s.log.Warn("consul agent DNS", "addr", s.cfg.ConsulDNS, "name", string(q.name), "err", err)
		return s.fail(q, zoneAgent, dns.RcodeServerFailure)
	}
	s.m.query(zoneAgent, q.qtype, resp.Rcode)
	m := resp.Copy() // shared with identical questions in flight
	m.Truncated = false
	// Each additional record once, as in the answers built from memory
	// (Consul repeats a node's records for each of its instances).
	m.Extra = dns.Dedup(m.Extra, nil)
	if st := s.settings.Load(); !q.tcp && q.limit() <= dns.MinMsgSize && st.udpAnswerLimit > 0 && len(m.Answer) > st.udpAnswerLimit {
		// The agent's udp_answer_limit for a 512-byte UDP client, as in
		// send: the first records (the agent shuffled them), the
		// additional records that go with them, TC as enable_truncate says
		// (agent/dns.go trimUDPResponse, syncExtra).
		m.Answer = m.Answer[:st.udpAnswerLimit]
		syncExtra(m, glueIndex(m.Extra))
		m.Truncated = st.enableTruncate
	}
	b, err := finish(q, m, true, false, !s.settings.Load().noCompress)
	if err != nil {
		return nil
	}
	return b
}

// isSelf reports whether upstream addr is the address we listen on.
func isSelf(upstream, listen string) bool {
	up, err := netip.ParseAddrPort(upstream)
	if err != nil {
		return false
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port != fmt.Sprint(up.Port()) {
		return false
	}
	lip, err := netip.ParseAddr(host)
	if host == "" || err == nil && lip.IsUnspecified() {
		// Listening everywhere: any local address is us.
		if up.Addr().IsLoopback() || up.Addr().IsUnspecified() {
			return true
		}
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == up.Addr().Unmap() {
				return true
			}
		}
		return false
	}
	return err == nil && lip.Unmap() == up.Addr().Unmap()
}
