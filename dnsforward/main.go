// Command dnsforward is a per-host resolver: it answers the Consul domain
// from memory kept current by blocking queries, and forwards every other
// name to upstream resolvers with a cache. It replaces dnsmasq or CoreDNS in
// front of Consul's DNS interface.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/consulclient"
	"github.com/berth/berth/pkg/logging"
	"github.com/berth/berth/pkg/telemetry"
	"github.com/berth/berth/pkg/version"
	"github.com/miekg/dns"
)

// Exit codes.
const (
	exitOK     = 0
	exitUsage  = 1 // bad flags
	exitListen = 2 // cannot bind -listen or -metrics-addr
)

func main() {
	if code, ok := telemetry.Healthcheck(os.Args[1:], os.Stderr); ok {
		os.Exit(code)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	cancel()
	os.Exit(code)
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

type options struct {
	cfg         Config
	domain      string
	altDomains  listFlag
	upstreams   listFlag
	resolvConf  string
	metricsAddr string
	showVersion bool
	consul      consulclient.Flags
	logs        logging.Flags
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	c := &o.cfg
	fs := flag.NewFlagSet("dnsforward", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: dnsforward [flags]\n\nAnswers the Consul domain from memory and forwards other names upstream.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:53", "UDP and TCP `IP[:port]` to answer on (port 53 when left out; \":53\" is every address of both IPv4 and IPv6)")
	fs.StringVar(&o.domain, "domain", "consul.", "the Consul domain")
	fs.Var(&o.altDomains, "alt-domain", "another domain answered like -domain (repeatable)")
	fs.StringVar(&c.ConsulDNS, "consul-dns", "127.0.0.1:8600", "Consul agent DNS `IP[:port]` (port 8600 when left out) for names not answered natively (.query, .connect, .virtual, .ingress, PTR, other datacenters)")
	fs.Var(&o.upstreams, "upstream", "upstream resolver `IP[:port]` (port 53 when left out; repeatable, comma lists too; host names are refused: they would need a resolver to find the resolver; default: the nameservers of -resolv-conf)")
	fs.StringVar(&o.resolvConf, "resolv-conf", "/etc/resolv.conf", "where to read upstreams when no -upstream is given")
	fs.StringVar(&c.Policy, "policy", policySequential, "upstream order: sequential, random or round_robin")
	fs.DurationVar(&c.TryTimeout, "upstream-timeout", time.Second, "timeout of one try of one upstream")
	fs.DurationVar(&c.Budget, "upstream-budget", 4*time.Second, "overall time for a forwarded query, across tries and upstreams; then SERVFAIL")
	fs.IntVar(&c.CacheSize, "cache-size", 10000, "entries in the upstream answer cache (0 disables it)")
	fs.DurationVar(&c.CacheMaxTTL, "cache-max-ttl", time.Hour, "cap on how long a positive upstream answer is cached")
	fs.DurationVar(&c.CacheNegMaxTTL, "cache-neg-max-ttl", 5*time.Minute, "cap on how long a negative upstream answer (NXDOMAIN, NODATA by its SOA minimum) is cached")
	fs.BoolVar(&c.ServeStale, "serve-stale", false, "when every upstream fails, answer from expired cache entries (TTL 30)")
	fs.DurationVar(&c.ServeStaleMax, "serve-stale-max", 24*time.Hour, "how long after expiry an upstream answer may be served with -serve-stale")
	fs.DurationVar(&c.ServiceTTL, "service-ttl", 0, "TTL of service answers")
	fs.DurationVar(&c.NodeTTL, "node-ttl", 0, "TTL of node and address answers")
	fs.BoolVar(&c.OnlyPassing, "only-passing", false, "leave out instances with a warning check too (critical ones always are)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 10*time.Minute, "drop the watch of a service nobody asked for this long")
	fs.DurationVar(&c.MaxStale, "max-stale", 72*time.Hour, "while Consul is unreachable, serve the last answers for this long (0: forever), then SERVFAIL")
	fs.DurationVar(&c.StaleTTL, "stale-ttl", 0, "TTL of Consul answers served while Consul is unreachable")
	fs.IntVar(&c.UDPReaders, "udp-readers", max(1, runtime.NumCPU()/2), "UDP sockets (SO_REUSEPORT), one reader thread each (default: half the CPUs, leaving the rest to clients and the kernel)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /health on this `address` (off when empty)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	o.consul.Register(fs)
	o.logs.Register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.showVersion {
		return o, nil
	}
	c.AgentDNSConfig = true
	c.Explicit = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { c.Explicit[f.Name] = true })
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (dnsforward takes only flags)", fs.Arg(0))
	}
	var err error
	if c.Listen, err = normListen(c.Listen); err != nil {
		return nil, err
	}
	for _, d := range append([]string{o.domain}, o.altDomains...) {
		fq, err := normDomain(d)
		if err != nil {
			return nil, err
		}
		c.Domains = append(c.Domains, fq)
	}
	if c.ConsulDNS, err = normAddr(c.ConsulDNS, "8600"); err != nil {
		return nil, fmt.Errorf("-consul-dns: %v", err)
	}
	switch c.Policy {
	case policySequential, policyRandom, policyRoundRobin:
	default:
		return nil, fmt.Errorf("-policy %q: want sequential, random or round_robin", c.Policy)
	}
	for name, d := range map[string]time.Duration{"-upstream-timeout": c.TryTimeout, "-upstream-budget": c.Budget, "-cache-max-ttl": c.CacheMaxTTL, "-idle-timeout": c.IdleTimeout} {
		if d <= 0 {
			return nil, fmt.Errorf("%s %s: must be positive", name, d)
		}
	}
	for name, d := range map[string]time.Duration{"-cache-neg-max-ttl": c.CacheNegMaxTTL, "-serve-stale-max": c.ServeStaleMax, "-service-ttl": c.ServiceTTL, "-node-ttl": c.NodeTTL, "-max-stale": c.MaxStale, "-stale-ttl": c.StaleTTL} {
		if d < 0 {
			return nil, fmt.Errorf("%s %s: must not be negative", name, d)
		}
	}
	if c.CacheSize < 0 {
		return nil, fmt.Errorf("-cache-size %d: must not be negative", c.CacheSize)
	}
	if c.UDPReaders < 1 || c.UDPReaders > 256 {
		return nil, fmt.Errorf("-udp-readers %d: want 1 to 256", c.UDPReaders)
	}
	for _, u := range o.upstreams {
		a, err := normAddr(u, "53")
		if err != nil {
			return nil, fmt.Errorf("-upstream: %v", err)
		}
		c.Upstreams = append(c.Upstreams, a)
	}
	c.Datacenter = o.consul.Datacenter()
	return o, nil
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
	o, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "dnsforward: %v\n", err)
		return exitUsage
	}
	if o.showVersion {
		fmt.Fprintln(stdout, version.String("dnsforward"))
		return exitOK
	}
	log, err := o.logs.New(stderr, "dnsforward")
	if err != nil {
		fmt.Fprintf(stderr, "dnsforward: %v\n", err)
		return exitUsage
	}
	client, err := o.consul.Client()
	if err != nil {
		fmt.Fprintf(stderr, "dnsforward: %v\n", err)
		return exitUsage
	}
	cfg := o.cfg
	cfg.Client, cfg.Log = client, log
	if len(cfg.Upstreams) == 0 {
		ups, err := upstreamsFromResolvConf(o.resolvConf)
		if err != nil {
			log.Warn("no upstreams: names outside the Consul domain get REFUSED", "err", err)
		}
		cfg.Upstreams = ups
	}
	var kept []string
	for _, u := range cfg.Upstreams {
		if isSelf(u, cfg.Listen) || u == cfg.ConsulDNS {
			log.Warn("not forwarding to this upstream: it is dnsforward itself or the Consul agent's DNS", "upstream", u)
			continue
		}
		kept = append(kept, u)
	}
	cfg.Upstreams = kept
	if len(kept) == 0 {
		log.Warn("no upstream resolvers: names outside the Consul domain get REFUSED")
	}
	s, err := New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "dnsforward: %v\n", err)
		return exitUsage
	}
	if err := s.Listen(); err != nil {
		fmt.Fprintf(stderr, "dnsforward: %v\n", err)
		return exitListen
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.metricsAddr != "" {
		errc := make(chan error, 1)
		go func() { errc <- telemetry.Serve(ctx, o.metricsAddr, s.m.reg, s.health, log, nil) }()
		select {
		case err := <-errc:
			if err != nil {
				s.closeListeners()
				fmt.Fprintf(stderr, "dnsforward: %v\n", err)
				return exitListen
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
	if ready != nil {
		ready(s.Addr())
	}
	if err := s.Serve(ctx); err != nil {
		fmt.Fprintf(stderr, "dnsforward: %v\n", err)
		return exitListen
	}
	log.Info("stopped")
	return exitOK
}

// health is unhealthy only when Consul has been unreachable past -max-stale
// (answers are then SERVFAIL); a shorter outage is served from memory and
// reported degraded (200 "degraded: …").
func (s *Server) health() error {
	if !s.zone.started.Load() {
		return errors.New("starting")
	}
	w := &s.zone.conn
	if w.failing.Load() {
		if w.lastOK.Load() == 0 {
			//lint:ignore ST1005 a /health message: it starts with the name Consul
			return errors.New("Consul not reached yet (Consul names go to the agent's DNS)")
		}
		from := time.Unix(0, w.failSince.Load())
		since := time.Since(from)
		if s.cfg.MaxStale > 0 && since > s.cfg.MaxStale {
			//lint:ignore ST1005 a /health message: it starts with the name Consul
			return fmt.Errorf("Consul unreachable since %s (%s, over -max-stale)", from.UTC().Format(time.RFC3339), since.Round(time.Millisecond))
		}
		return telemetry.Degraded("Consul unreachable since %s (%s); answering from memory", from.UTC().Format(time.RFC3339), since.Round(time.Second))
	}
	return nil
}
