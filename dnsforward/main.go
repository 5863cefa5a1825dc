// Command dnsforward is a per-host resolver: it answers the Consul domain
// from memory kept current by blocking queries, and forwards every other
// name to upstream resolvers with a cache. It replaces dnsmasq or CoreDNS in
// front of Consul's DNS interface.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/cliapp"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/miekg/dns"
)

// Exit codes.
const (
	exitOK     = 0
	exitUsage  = 1 // bad flags
	exitListen = 2 // cannot bind -listen or -metrics-addr
)

func main() {
	cliapp.Main(func(args []string) int {
		ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer cancel()
		return run(ctx, args, os.Stdout, os.Stderr, nil)
	})
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	if strings.Trim(s, ", \t") == "" {
		return fmt.Errorf("%q: empty", s)
	}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// fileFlag collects a repeatable flag whose every value is one path.
type fileFlag []string

func (l *fileFlag) String() string { return strings.Join(*l, " ") }
func (l *fileFlag) Set(s string) error {
	if s == "" {
		return errors.New("empty path")
	}
	*l = append(*l, s)
	return nil
}

type options struct {
	cfg        Config
	noHosts    bool
	addnHosts  fileFlag
	hostsDirs  fileFlag
	domain     string
	altDomains listFlag
	upstreams  listFlag
	resolvConf string
	cli        *cliapp.Program
}

// parse reads the command line (cliapp: every flag also from
// DNSFORWARD_*, the Consul flags from CONSUL_*), checks it and builds the
// logger and the Consul client into o.cfg (no request is made). The options
// are returned with the error too: their cli prints it.
func parse(args []string, stdout, stderr io.Writer) (*options, error) {
	p := cliapp.New("dnsforward", stdout, stderr)
	p.Usage = []string{"dnsforward [flags]"}
	p.About = "Answers the Consul domain from memory and forwards other names upstream."
	o := &options{cli: p}
	c := &o.cfg
	p.String(&c.Listen, "listen", "127.0.0.1:53", "UDP and TCP `IP[:port]` to answer on (port 53 when left out; \":53\" is every address of both IPv4 and IPv6)")
	p.String(&o.domain, "domain", "consul.", "the Consul domain")
	p.Var(&o.altDomains, "alt-domain", "another `DOMAIN` answered like -domain (repeatable)")
	p.String(&c.ConsulDNS, "consul-dns", "127.0.0.1:8600", "Consul agent DNS `IP[:port]` (port 8600 when left out) for names not answered natively (.query, .connect, .virtual, .ingress, PTR, other datacenters)")
	p.Var(&o.upstreams, "upstream", "upstream resolver `IP[:port]` (port 53 when left out; repeatable, comma lists too; host names are refused: they would need a resolver to find the resolver; default: the nameservers of -resolv-conf)")
	p.String(&o.resolvConf, "resolv-conf", "/etc/resolv.conf", "where to read upstreams when no -upstream is given")
	p.String(&c.Policy, "policy", policySequential, "upstream order: sequential, random or round_robin")
	p.Duration(&c.TryTimeout, "upstream-timeout", time.Second, "timeout of one try of one upstream before the next is asked (the last one asked waits out -upstream-budget)")
	p.Duration(&c.Budget, "upstream-budget", 4*time.Second, "overall time for a forwarded query, across tries and upstreams; then SERVFAIL")
	p.Int(&c.CacheSize, "cache-size", 10000, "entries in the upstream answer cache (0 disables it)")
	p.Duration(&c.CacheMaxTTL, "cache-max-ttl", time.Hour, "cap on how long a positive upstream answer is cached")
	p.Duration(&c.CacheNegMaxTTL, "cache-neg-max-ttl", 5*time.Minute, "cap on how long a negative upstream answer (NXDOMAIN, NODATA by its SOA minimum) is cached")
	p.Bool(&c.DomainNeeded, "domain-needed", false, "answer A, AAAA and ANY questions of names without a dot that the hosts files do not have with NXDOMAIN instead of forwarding them (dnsmasq's --domain-needed)")
	p.Bool(&c.BogusPriv, "bogus-priv", false, "answer PTR and ANY questions of reverse names of private addresses (RFC 1918, loopback, link-local, documentation ranges, fd00::/8, ...) that neither the hosts files nor the agent answer with NXDOMAIN instead of forwarding them (dnsmasq's --bogus-priv)")
	p.Bool(&c.ServeStale, "serve-stale", false, "when every upstream fails, answer from expired cache entries (TTL 30)")
	p.Duration(&c.ServeStaleMax, "serve-stale-max", 24*time.Hour, "how long after expiry an upstream answer may be served with -serve-stale")
	p.Duration(&c.ServiceTTL, "service-ttl", 0, "TTL of service answers")
	p.Duration(&c.NodeTTL, "node-ttl", 0, "TTL of node and address answers")
	p.Bool(&c.OnlyPassing, "only-passing", false, "leave out instances with a warning check too (critical ones always are)")
	p.Duration(&c.IdleTimeout, "idle-timeout", 10*time.Minute, "drop the watch of a service nobody asked for this long")
	p.Duration(&c.MaxStale, "max-stale", 72*time.Hour, "while Consul is unreachable, serve the last answers for this long (0: forever), then SERVFAIL")
	p.Duration(&c.StaleTTL, "stale-ttl", 0, "TTL of Consul answers served while Consul is unreachable")
	// Left out, these follow the agent's configuration (AgentDNSConfig); the
	// values above are used only until the agent first answers.
	p.DefaultText("domain", `the agent's domain, else "consul."`)
	p.DefaultText("alt-domain", "the agent's alt_domain")
	p.DefaultText("service-ttl", "the agent's dns_config.service_ttl, else 0")
	p.DefaultText("node-ttl", "the agent's dns_config.node_ttl, else 0")
	p.DefaultText("only-passing", "the agent's dns_config.only_passing, else false")
	p.Bool(&o.noHosts, "no-hosts", false, "do not read "+defaultHostsFile+" (dnsmasq's --no-hosts)")
	p.Var(&o.addnHosts, "addn-hosts", "also answer from this hosts `FILE` or the files in this directory (repeatable; dnsmasq's --addn-hosts); hosts files are read again on SIGHUP")
	p.Var(&o.hostsDirs, "hostsdir", "also answer from the files in this `DIR`, read again when one is created, changed, moved or removed (repeatable; dnsmasq's --hostsdir)")
	p.Duration(&c.LocalTTL, "local-ttl", 0, "TTL of answers from the hosts files (dnsmasq's --local-ttl)")
	p.Int(&c.UDPReaders, "udp-readers", 0, "UDP sockets (SO_REUSEPORT), one reader thread each; 0: one per CPU this process may run on, each reader pinned to its CPU and given the datagrams the kernel received there (Linux)")
	p.DefaultText("udp-readers", "0")
	res, err := p.Parse(args)
	if err != nil {
		return o, err
	}
	// Settings given by a flag or its variable win over the agent's DNS
	// configuration.
	c.Explicit = p.Explicit(res)
	if len(res.Args) > 0 {
		return o, fmt.Errorf("unexpected argument %q (dnsforward takes only flags)", res.Args[0])
	}
	if err := o.check(); err != nil {
		return o, err
	}
	c.Log, c.Client, err = p.Setup(nil)
	return o, err
}

// check validates and normalises the flags into o.cfg.
func (o *options) check() error {
	c := &o.cfg
	c.AgentDNSConfig = true
	var err error
	if c.Listen, err = normListen(c.Listen); err != nil {
		return err
	}
	for i, d := range append([]string{o.domain}, o.altDomains...) {
		fq, err := normDomain(d)
		if err != nil {
			if i == 0 {
				return fmt.Errorf("-domain: %v", err)
			}
			return fmt.Errorf("-alt-domain: %v", err)
		}
		c.Domains = append(c.Domains, fq)
	}
	if c.ConsulDNS, err = normAddr(c.ConsulDNS, "8600"); err != nil {
		return fmt.Errorf("-consul-dns: %v", err)
	}
	switch c.Policy {
	case policySequential, policyRandom, policyRoundRobin:
	default:
		return fmt.Errorf("-policy %q: want sequential, random or round_robin", c.Policy)
	}
	for name, d := range map[string]time.Duration{"-upstream-timeout": c.TryTimeout, "-upstream-budget": c.Budget, "-cache-max-ttl": c.CacheMaxTTL, "-idle-timeout": c.IdleTimeout} {
		if d <= 0 {
			return fmt.Errorf("%s %s: must be positive", name, d)
		}
	}
	for name, d := range map[string]time.Duration{"-cache-neg-max-ttl": c.CacheNegMaxTTL, "-serve-stale-max": c.ServeStaleMax, "-service-ttl": c.ServiceTTL, "-node-ttl": c.NodeTTL, "-max-stale": c.MaxStale, "-stale-ttl": c.StaleTTL, "-local-ttl": c.LocalTTL} {
		if d < 0 {
			return fmt.Errorf("%s %s: must not be negative", name, d)
		}
	}
	if c.CacheSize < 0 {
		return fmt.Errorf("-cache-size %d: must not be negative", c.CacheSize)
	}
	if c.UDPReaders < 0 || c.UDPReaders > maxUDPReaders {
		return fmt.Errorf("-udp-readers %d: want 0 (one per CPU) to %d", c.UDPReaders, maxUDPReaders)
	}
	for _, u := range o.upstreams {
		a, err := normAddr(u, "53")
		if err != nil {
			return fmt.Errorf("-upstream: %v", err)
		}
		c.Upstreams = append(c.Upstreams, a)
	}
	c.HostsFiles = hostsPaths(o.noHosts, o.addnHosts)
	c.HostsDirs = o.hostsDirs
	c.Datacenter = o.cli.Consul.Datacenter()
	return nil
}

// normDomain lower-cases a domain and makes it fully qualified.
func normDomain(d string) (string, error) {
	d = strings.ToLower(strings.TrimSpace(d))
	if d == "" || d == "." {
		return "", fmt.Errorf("domain %q: must not be empty or the root", d)
	}
	if _, ok := dns.IsDomainName(d); !ok {
		return "", fmt.Errorf("domain %q: not a domain name", d)
	}
	return dns.Fqdn(d), nil
}

// normListen turns -listen into ip:port: port 53 when left out, and an
// empty host (":53") into the IPv6 wildcard, which (dual-stack, see
// openRawUDP) takes IPv4 too.
func normListen(s string) (string, error) {
	if host, port, err := net.SplitHostPort(s); err == nil && host == "" {
		s = net.JoinHostPort("::", port)
	}
	a, err := normAddr(s, "53")
	if err != nil {
		return "", fmt.Errorf("-listen: %v", err)
	}
	return a, nil
}

// normAddr turns IP or IP:port into ip:port (defPort when left out).
func normAddr(s, defPort string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), defPort
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("%q: want an IP address with an optional port (IP[:port]); host names are not resolved", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%q: bad port %q", s, port)
	}
	return netip.AddrPortFrom(ip, uint16(p)).String(), nil
}

// upstreamsFromResolvConf reads nameservers, leaving out ourselves.
func upstreamsFromResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("-resolv-conf %s: %w", path, err)
	}
	var out []string
	for _, s := range cc.Servers {
		a, err := normAddr(net.JoinHostPort(s, cc.Port), "53")
		if err == nil {
			out = append(out, a)
		}
	}
	return out, nil
}

// run is main without the exit; ready, when set, gets the bound address.
// It returns when ctx is done (main cancels it on SIGINT and SIGTERM).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(dnsAddr string)) int {
	o, err := parse(args, stdout, stderr)
	if err != nil {
		return o.cli.Fail(err, exitUsage)
	}
	cfg, log := o.cfg, o.cfg.Log
	cfg.Upstreams = o.upstreamsOrResolvConf()
	s, err := New(cfg)
	if err != nil {
		return o.cli.Fail(err, exitUsage)
	}
	if err := s.Listen(); err != nil {
		return o.cli.Fail(err, exitListen)
	}
	metricsLn, err := o.cli.ListenMetrics()
	if err != nil {
		s.closeListeners()
		return o.cli.Fail(err, exitListen)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	metricsDone := metricsLn.Serve(ctx, s.m.reg, s.health, log)
	defer func() { cancel(); <-metricsDone }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				s.Reload()
			}
		}
	}()
	if ready != nil {
		ready(s.Addr())
	}
	if err := s.Serve(ctx); err != nil {
		return o.cli.Fail(err, exitListen)
	}
	log.Info("stopped")
	return exitOK
}

// upstreamsOrResolvConf returns the -upstream flags, else the nameservers
// of -resolv-conf, leaving out dnsforward itself and the agent's DNS.
func (o *options) upstreamsOrResolvConf() []string {
	ups, log := o.cfg.Upstreams, o.cfg.Log
	if len(ups) == 0 {
		var err error
		if ups, err = upstreamsFromResolvConf(o.resolvConf); err != nil {
			log.Warn("no upstreams: names outside the Consul domain get REFUSED", "err", err)
		}
	}
	var kept []string
	for _, u := range ups {
		if isSelf(u, o.cfg.Listen) || u == o.cfg.ConsulDNS {
			log.Warn("not forwarding to this upstream: it is dnsforward itself or the Consul agent's DNS", "upstream", u)
			continue
		}
		kept = append(kept, u)
	}
	if len(kept) == 0 {
		log.Warn("no upstream resolvers: names outside the Consul domain get REFUSED")
	}
	return kept
}

// health is unhealthy only when Consul has been unreachable past -max-stale
// (answers are then SERVFAIL); a shorter outage is served from memory and
// reported degraded (200 "degraded: …").
func (s *Server) health() error {
	if !s.zone.started.Load() {
		return errors.New("starting")
	}
	if down, from, _ := s.zone.q.Down(); down {
		if !s.zone.q.Reached() {
			//lint:ignore ST1005 a /health message: it starts with the name Consul
			return errors.New("Consul not reached yet (Consul names go to the agent's DNS)")
		}
		since := time.Since(from)
		if s.cfg.MaxStale > 0 && since > s.cfg.MaxStale {
			//lint:ignore ST1005 a /health message: it starts with the name Consul
			return fmt.Errorf("Consul unreachable since %s (%s, over -max-stale)", from.UTC().Format(time.RFC3339), since.Round(time.Millisecond))
		}
		return telemetry.Degraded("Consul unreachable since %s (%s); answering from memory", from.UTC().Format(time.RFC3339), since.Round(time.Second))
	}
	return nil
}
