// Command registrator keeps the local Consul agent's services equal to the
// running Docker containers: a gliderlabs/registrator replacement that
// reconciles instead of only reacting to events, marks what it owns, and
// never loses or leaks a registration.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth/berth/pkg/backoff"
	"github.com/berth/berth/pkg/cliapp"
	"github.com/hashicorp/consul/api"
)

// Exit codes.
const (
	exitOK     = 0
	exitUsage  = 1  // bad flag values, URI or templates
	exitSyntax = 2  // the command line does not parse: unknown flag, unparsable number, extra arguments
	exitConsul = 10 // Consul unreachable at start after -retry-attempts
	exitDocker = 11 // the Docker client could not be set up (bad DOCKER_HOST)
)

func main() {
	cliapp.Main(func(args []string) int { return run(args, os.Stdout, os.Stderr) })
}

// secondsFlag accepts gliderlabs' plain numbers (in unit) or Go durations,
// negative ones too: check decides what they mean, as gliderlabs master
// registrator.go main does with its int flags. A number is read as those
// flag.Int flags read it (Go's flag package: strconv.ParseInt base 0), so
// 0x3c is 60, 010 is 8 (octal) and 1_000 is 1000. A number too large for
// a duration in unit is refused (gliderlabs multiplies it into a
// wrapped-around interval, which can be negative: time.NewTicker panics);
// one too small stays below 0.
type secondsFlag struct {
	d    *time.Duration
	unit time.Duration
}

func (s secondsFlag) String() string {
	if s.d == nil {
		return ""
	}
	return s.d.String()
}

func (s secondsFlag) Set(v string) error {
	if n, err := strconv.ParseInt(v, 0, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		max := int64(math.MaxInt64 / s.unit)
		switch {
		case n > max:
			return fmt.Errorf("%q: out of range (at most %d)", v, max)
		case n < -max:
			// Still below 0, which is all check asks of a negative value.
			*s.d = math.MinInt64
		default:
			*s.d = time.Duration(n) * s.unit
		}
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q: want a number or a duration like 30s", v)
	}
	*s.d = d
	return nil
}

type options struct {
	cfg           Config
	tags          string
	deregister    string
	retryAttempts int
	retryInterval time.Duration
	cli           *cliapp.Program
	ttl           int
	ttlRefresh    int
	onlyLabel     string
	// forceHTTPS: the URI was consul-tls:// without a host (default agent over HTTPS).
	forceHTTPS bool
}

// parse reads the command line (cliapp: every flag also from
// REGISTRATOR_*, the Consul flags from CONSUL_*), checks it and builds the
// logger and the Consul client into o.cfg (no request is made). The options
// are returned with the error too: their cli prints it.
func parse(args []string, stdout, stderr io.Writer) (*options, error) {
	p := cliapp.New("registrator", stdout, stderr)
	p.Usage = []string{"registrator [flags] [consul://[HOST:PORT] | consul-tls://[HOST:PORT] | consul-unix:///PATH]"}
	p.About = "Keeps the local Consul agent's services equal to the running Docker containers."
	o := &options{cli: p}
	mc := &o.cfg.Map
	host, _ := os.Hostname()
	o.cfg.Resync = 60 * time.Second
	o.retryInterval = 2 * time.Second
	p.String(&mc.HostIP, "ip", "", "address to register for published ports (default: the host name's address)")
	p.Bool(&mc.Internal, "internal", false, "register the container's address and exposed ports instead of the published host ports")
	p.Bool(&mc.Explicit, "explicit", false, "only register ports with SERVICE_NAME or SERVICE_<port>_NAME")
	p.String(&mc.UseIPFromLabel, "useIpFromLabel", "", "take the service address from this container label (a /cidr suffix is dropped)")
	p.Bool(&mc.ServiceTagsTemplate, "service-tags-template", false, "read SERVICE_TAGS as a Go template over the container's inspect data (gliderlabs: literal; only -tags is a template)")
	p.String(&o.tags, "tags", "", "comma-separated tags added to every service (Go templates over the container's inspect data allowed)")
	p.Var(secondsFlag{&o.cfg.Resync, time.Second}, "resync", "re-list containers and reconcile every `SECONDS` (or a duration of at least 1s); 0 or less disables; only differences are written")
	p.Bool(&o.cfg.Cleanup, "cleanup", false, "also remove this host's services in the gliderlabs ID shape (HOST:CONTAINER:PORT) no container wants, owned or not (owned ones always go)")
	p.String(&o.deregister, "deregister", "always", "always, or on-success: keep the services of containers that exited non-zero")
	p.Int(&o.retryAttempts, "retry-attempts", 0, "retries to reach Consul at start before exiting (0: one try, as gliderlabs); -1 retries forever; below -1 starts without trying")
	p.Var(secondsFlag{&o.retryInterval, time.Millisecond}, "retry-interval", "wait between those tries, in `MILLISECONDS` (or a duration of at least 1ms)")
	// In the flags' own units, as gliderlabs' -h shows them.
	p.DefaultText("resync", "60")
	p.DefaultText("retry-interval", "2000")
	p.String(&mc.Hostname, "hostname", host, "owner identity: the host part of service IDs and the owner recorded in service meta")
	p.String(&o.onlyLabel, "only-label", "", "only register containers with this label (`KEY` or KEY=VALUE); others are treated as not running")
	p.String(&mc.NetworkLabel, "network-label", "SERVICE_NETWORK", "container label naming the Docker network whose address to register (-internal)")
	p.Bool(&mc.Checks.PathSlash, "check-path-slash", false, "add a leading / to a SERVICE_CHECK_HTTP or SERVICE_CHECK_HTTPS path without one (gliderlabs: appended as written, http://ADDR:PORTpath)")
	p.Bool(&mc.Checks.ScriptTimeout, "check-timeout-script", false, "send SERVICE_CHECK_TIMEOUT for SERVICE_CHECK_SCRIPT and SERVICE_CHECK_CMD checks too (gliderlabs: HTTP, HTTPS, TCP and gRPC only; Consul's default for scripts: 30s)")
	p.Bool(&mc.Checks.HTTPSSkipVerify, "check-tls-skip-verify-https", false, "apply SERVICE_CHECK_TLS_SKIP_VERIFY, read as a boolean, to SERVICE_CHECK_HTTPS checks too (gliderlabs: gRPC over TLS only)")
	p.Bool(&mc.DockerHealth, "docker-health", false, "mirror each container's Docker HEALTHCHECK status into a TTL check registrator keeps current")
	p.Duration(&mc.HealthTTL, "docker-health-ttl", time.Minute, "TTL of the -docker-health check (refreshed every third of it)")
	p.Duration(&mc.LivenessTTL, "liveness-ttl", 0, "register a TTL check per service that registrator heartbeats (0: off)")
	p.Duration(&mc.LivenessDereg, "liveness-deregister-after", time.Minute, "deregister_critical_service_after of the liveness check (Consul reaps no sooner than 1m)")
	p.String(&o.cfg.DockerHost, "docker-host", "", "Docker daemon address (default: DOCKER_HOST, else the local socket)")
	p.Int(&o.ttl, "ttl", 0, "accepted for gliderlabs compatibility (unused by the Consul backend)")
	p.Int(&o.ttlRefresh, "ttl-refresh", 0, "accepted for gliderlabs compatibility (unused by the Consul backend)")
	res, err := p.Parse(args)
	if err != nil {
		return o, syntaxError{err}
	}
	if o.cfg.DockerHost == "" {
		o.cfg.DockerHost = dockerHostFallback(os.Getenv, socketExists)
	}
	if err := o.check(res.Args); err != nil {
		return o, err
	}
	// A host-less consul-tls:// URI: the default agent, over HTTPS.
	o.cfg.Log, o.cfg.Consul, err = p.Setup(func(cfg *api.Config) {
		if o.forceHTTPS {
			cfg.Scheme = "https"
		}
	})
	if err == nil && mc.Tags != nil {
		mc.Tags.Funcs(tagFuncs(o.cfg.Log)) // httpGet and jsonParse log here
	}
	return o, err
}

// check validates the flags and the registry URI.
func (o *options) check(rest []string) error {
	mc := &o.cfg.Map
	switch len(rest) {
	case 0:
	case 1:
		addr, https, err := parseURI(rest[0])
		if err != nil {
			return err
		}
		if addr != "" {
			o.cli.Consul.SetAddress(addr)
		} else {
			o.forceHTTPS = https
		}
	default:
		return syntaxError{fmt.Errorf("one registry URI expected, got %d arguments: %q (flags go before the URI)", len(rest), rest)}
	}
	switch o.deregister {
	case "always":
	case "on-success":
		o.cfg.DeregisterOnSuccess = true
	default:
		return fmt.Errorf("-deregister %q: want always or on-success", o.deregister)
	}
	if strings.TrimSpace(mc.Hostname) == "" {
		return errors.New("-hostname: empty (and the host name is unknown)")
	}
	if strings.ContainsAny(mc.Hostname, "/?#") {
		return fmt.Errorf("-hostname %q: may not contain / ? or #", mc.Hostname)
	}
	// gliderlabs master registers any -ip as the address (bridge.go
	// newService), host names included, and Consul takes a host name as a
	// service address: an IP or a host name is taken (with "_", as in
	// Docker container and compose service names), anything else refused.
	if mc.HostIP != "" && net.ParseIP(mc.HostIP) == nil && !isHostName(mc.HostIP) {
		return fmt.Errorf("-ip %q: not an IP address or host name", mc.HostIP)
	}
	// gliderlabs master registrator.go main starts its resync timer only
	// for -resync > 0: a negative one is off too.
	if o.cfg.Resync < 0 {
		o.cfg.Resync = 0
	}
	// gliderlabs master registrator.go main refuses these, so a command
	// line it ran is accepted and one it refused is refused.
	if o.retryInterval <= 0 {
		return fmt.Errorf("-retry-interval %s: must be greater than 0", o.retryInterval)
	}
	// A duration is berth's form; gliderlabs' flag.Int counts whole
	// seconds (-resync) or milliseconds (-retry-interval), so the shortest
	// interval it can be given is one of them. A positive duration below
	// that is refused, as -liveness-ttl refuses one below 1s: -resync 1ns
	// would re-list the containers and reconcile without a pause.
	if o.cfg.Resync > 0 && o.cfg.Resync < time.Second {
		return fmt.Errorf("-resync %s: want 0 or less (off) or at least 1s (gliderlabs counts whole seconds)", o.cfg.Resync)
	}
	if o.retryInterval < time.Millisecond {
		return fmt.Errorf("-retry-interval %s: want at least 1ms (gliderlabs counts whole milliseconds)", o.retryInterval)
	}
	if (o.ttl == 0 && o.ttlRefresh > 0) || (o.ttl > 0 && o.ttlRefresh == 0) {
		return fmt.Errorf("-ttl %d and -ttl-refresh %d: give both or neither", o.ttl, o.ttlRefresh)
	}
	if o.ttl > 0 && o.ttl <= o.ttlRefresh {
		return fmt.Errorf("-ttl %d: must be greater than -ttl-refresh %d", o.ttl, o.ttlRefresh)
	}
	if mc.DockerHealth && mc.HealthTTL < time.Second {
		return fmt.Errorf("-docker-health-ttl %s: want at least 1s", mc.HealthTTL)
	}
	if mc.LivenessTTL < 0 || (mc.LivenessTTL > 0 && mc.LivenessTTL < time.Second) {
		return fmt.Errorf("-liveness-ttl %s: want 0 (off) or at least 1s", mc.LivenessTTL)
	}
	if mc.LivenessTTL > 0 && mc.LivenessDereg < time.Minute {
		return fmt.Errorf("-liveness-deregister-after %s: Consul's minimum is 1m", mc.LivenessDereg)
	}
	if o.onlyLabel != "" {
		k, v, _ := strings.Cut(o.onlyLabel, "=")
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("-only-label %q: empty label name", o.onlyLabel)
		}
		mc.OnlyLabel, mc.OnlyValue = k, v
	}
	tt, err := parseForceTags(o.tags, nil)
	if err != nil {
		return fmt.Errorf("-tags %q: %v", o.tags, err)
	}
	mc.Tags = tt
	return nil
}

// parseURI turns gliderlabs' registry URI into a Consul HTTP address
// ("host:port", "https://host:port" or "unix:///path"). A consul://
// or consul-tls:// URI without a host means the default agent, as in
// gliderlabs master (consul/consul.go Factory.New keeps
// api.DefaultConfig()'s address, CONSUL_HTTP_ADDR or 127.0.0.1:8500, when
// the URI has no host): addr is then "" and https says whether the scheme
// must be HTTPS. consul://HOST:PORT sets only the address, as Factory.New
// does (config.Address = uri.Host on api.DefaultConfig()): the scheme stays
// api.DefaultConfig()'s, HTTPS with CONSUL_HTTP_SSL=true or an https://
// CONSUL_HTTP_ADDR.
func parseURI(s string) (addr string, https bool, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", false, fmt.Errorf("registry URI %q: %v", s, err)
	}
	switch u.Scheme {
	case "consul", "consul-tls":
		https := u.Scheme == "consul-tls"
		if u.Host == "" {
			return "", https, nil
		}
		// url.Parse lets only digits through as a port; one the agent
		// cannot listen on is refused here, naming the URI (it would
		// otherwise be refused as the address, naming -http-addr).
		if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return "", false, fmt.Errorf("registry URI %q: bad port %q (want 1 to 65535)", s, p)
			}
		}
		if https {
			return "https://" + u.Host, true, nil
		}
		return u.Host, false, nil
	case "consul-unix":
		p := u.Path
		if u.Host != "" {
			p = u.Host + u.Path
		}
		if p == "" {
			return "", false, fmt.Errorf("registry URI %q: want consul-unix:///PATH/TO/SOCKET", s)
		}
		return "unix://" + p, false, nil
	case "":
		return "", false, fmt.Errorf("registry URI %q: missing scheme (want consul://HOST:PORT)", s)
	}
	return "", false, fmt.Errorf("registry URI %q: backend %q is not supported (consul, consul-tls, consul-unix)", s, u.Scheme)
}

// syntaxError is a command line that does not parse. gliderlabs master
// registrator.go main exits 2 for these (flag.Parse's ExitOnError, and its
// check of the argument count) and 1 for values it refuses (log.Fatal).
type syntaxError struct{ err error }

func (e syntaxError) Error() string { return e.err.Error() }
func (e syntaxError) Unwrap() error { return e.err }

// run is main without the exit: it returns registrator's exit code.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stdout, stderr)
	if err != nil {
		if errors.As(err, new(syntaxError)) {
			return o.cli.Fail(err, exitSyntax)
		}
		return o.cli.Fail(err, exitUsage)
	}
	log, consul := o.cfg.Log, o.cfg.Consul
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	o.cfg.Metrics = newMetrics()
	reg, err := New(o.cfg)
	if err != nil {
		return o.cli.Fail(err, exitDocker)
	}
	metricsLn, err := o.cli.ListenMetrics()
	if err != nil {
		return o.cli.Fail(err, exitUsage)
	}
	metricsLn.Serve(ctx, o.cfg.Metrics.reg, reg.Health, log)
	// gliderlabs -retry-attempts: reach Consul before starting. Below -1
	// there is no try at all: gliderlabs master registrator.go main loops
	// while attempts == -1 || attempt <= attempts, which never runs then,
	// and starts (reconcile passes retry until the agent answers).
	waitFrom := time.Now()
	for i := 0; o.retryAttempts >= -1; i++ {
		_, err := consul.Agent().NodeName()
		if err == nil {
			break
		}
		// The agent answered but the token may not read it: gliderlabs
		// (master consul/consul.go Ping: status/leader, no permission
		// needed) runs with a token that may only write services, so
		// registrator does too; only the catalog watch needs more.
		if se := (api.StatusError{}); errors.As(err, &se) && se.Code == 403 {
			log.Warn("the token may not read the agent (agent:read) or this node (node:read): registrations work, "+
				"but agent changes are repaired by -resync only, not at once", "err", err)
			break
		}
		if o.retryAttempts != -1 && i >= o.retryAttempts {
			tries := "1 try"
			if i > 0 {
				tries = fmt.Sprintf("%d tries", i+1)
			}
			//lint:ignore ST1005 the line starts with the name Consul
			return o.cli.Fail(fmt.Errorf("Consul agent unreachable after %s (-retry-attempts %d): %v", tries, o.retryAttempts, err), exitConsul)
		}
		log.Warn("waiting for the Consul agent", "since", waitFrom.UTC().Format(time.RFC3339), "for", time.Since(waitFrom).Round(time.Second), "err", err, "retry_in", o.retryInterval)
		if backoff.SleepCtx(ctx, o.retryInterval) != nil {
			return exitOK
		}
	}
	log.Info("starting", "hostname", o.cfg.Map.Hostname, "internal", o.cfg.Map.Internal, "resync", o.cfg.Resync,
		"deregister", o.deregister, "docker_health", o.cfg.Map.DockerHealth, "liveness_ttl", o.cfg.Map.LivenessTTL)
	if err := reg.Run(ctx); err != nil {
		return o.cli.Fail(err, exitDocker)
	}
	log.Info("stopped; registrations stay in place")
	return exitOK
}

// hostAddr resolves the host name to the address gliderlabs would register
// for ports published on all interfaces: its first IPv4 address, else the
// first one; "" lets the agent use its node address.
func hostAddr(host string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return ""
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String()
		}
	}
	return ips[0].String()
}

// hostNameLabel is one label of a host name (RFC 1123 section 2.1: letters,
// digits and hyphens, 1 to 63, no hyphen first or last), with "_" allowed
// too, as Docker's embedded DNS resolves container and compose service
// names that hold it.
var hostNameLabel = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$`)

// isHostName reports whether s is a host name: dot-separated labels
// (hostNameLabel), at most 253 characters, one trailing dot allowed.
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !hostNameLabel.MatchString(l) {
			return false
		}
	}
	return true
}
