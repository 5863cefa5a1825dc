package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnsSettings are the settings that decide what Consul's DNS answers: the
// flags, or, for each flag not given, the agent's own (its `domain`,
// `alt_domain` and `dns_config`, read from GET /v1/agent/self at start,
// whenever Consul is reached again after an outage, every agentRefresh and
// on SIGHUP), so that the same question gets the same answer from
// dnsforward as from the agent.
type dnsSettings struct {
	domains      []string // lower case FQDNs; the first is the primary
	onlyPassing  bool
	nodeTTL      time.Duration
	serviceTTL   time.Duration            // when no per-service TTL applies
	ttlStrict    map[string]time.Duration // dns_config.service_ttl "name"
	ttlPrefix    []ttlPrefix              // dns_config.service_ttl "prefix*", longest first
	soa          soaConfig
	aRecordLimit int // 0: no limit
	// udpAnswerLimit > 0: at most this many answer records to a UDP
	// client without EDNS0, TC set only with enableTruncate (the agent's
	// udp_answer_limit, capped at 8, and enable_truncate). 0 (flags only):
	// as many as fit 512 bytes, TC when cut.
	udpAnswerLimit int
	enableTruncate bool
	// noNodeMetaTXT: the agent's dns_config.enable_additional_node_meta_txt
	// is false, so node meta is left out of the additional section (node
	// A/AAAA answers, SRV answers); TXT and ANY questions of a node still
	// get it in the answer (Consul's handleNodeQuery).
	noNodeMetaTXT bool
	// noCompress: the agent's dns_config.disable_compression is true, so
	// its DNS packs every answer without name compression (agent/dns.go:
	// m.Compress = !cfg.DisableCompression in handleQuery, handlePtr,
	// handleRecurse) and measures what fits a client uncompressed
	// (trimUDPResponse, trimTCPResponse: resp.Len()); answers of the Consul
	// domain, from memory or passed from the agent, are packed so too.
	noCompress bool
}

// maxUDPAnswerLimit caps udp_answer_limit as Consul does (agent/dns.go).
const maxUDPAnswerLimit = 8

type ttlPrefix struct {
	prefix string
	ttl    time.Duration
}

// soaConfig is dns_config.soa (Consul's defaults: 3600 600 86400 0).
type soaConfig struct {
	refresh, retry, expire, minttl uint32
}

var defaultSOA = soaConfig{refresh: 3600, retry: 600, expire: 86400, minttl: 0}

// ttlFor is a service's TTL as Consul picks it (agent/dns.go
// GetTTLForService): an exact name first, then the longest "prefix*".
func (st *dnsSettings) ttlFor(service string) time.Duration {
	if d, ok := st.ttlStrict[service]; ok {
		return d
	}
	for _, p := range st.ttlPrefix {
		if strings.HasPrefix(service, p.prefix) {
			return p.ttl
		}
	}
	return st.serviceTTL
}

// settingsFromFlags is the settings before the agent was asked.
func settingsFromFlags(cfg *Config) *dnsSettings {
	return &dnsSettings{domains: cfg.Domains, onlyPassing: cfg.OnlyPassing, nodeTTL: cfg.NodeTTL, serviceTTL: cfg.ServiceTTL, soa: defaultSOA}
}

// agentDNSConfig is the part of /v1/agent/self's DebugConfig we read.
type agentDNSConfig struct {
	DNSDomain             string
	DNSAltDomain          string
	DNSOnlyPassing        bool
	DNSNodeTTL            jsonDuration
	DNSServiceTTL         map[string]jsonDuration
	DNSARecordLimit       int
	DNSSOA                struct{ Refresh, Retry, Expire, Minttl uint32 }
	DNSEnableTruncate     bool
	DNSUDPAnswerLimit     int
	DNSNodeMetaTXT        *bool // absent from older agents: true, Consul's default
	DNSDisableCompression bool
}

// jsonDuration reads a duration the agent reports as "10s" or as ns.
type jsonDuration time.Duration

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = jsonDuration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration %s: %w", b, err)
	}
	*d = jsonDuration(n)
	return nil
}

// mergeAgent returns the settings with the agent's values for every
// setting whose flag was not given (explicit names the flags given).
func mergeAgent(cfg *Config, a *agentDNSConfig) (*dnsSettings, error) {
	st := settingsFromFlags(cfg)
	given := func(flag string) bool { return cfg.Explicit[flag] }
	if !given("domain") && a.DNSDomain != "" {
		d, err := normDomain(a.DNSDomain)
		if err != nil {
			return nil, fmt.Errorf("agent domain: %w", err)
		}
		doms := []string{d}
		if a.DNSAltDomain != "" {
			alt, err := normDomain(a.DNSAltDomain)
			if err != nil {
				return nil, fmt.Errorf("agent alt_domain: %w", err)
			}
			doms = append(doms, alt)
		}
		for _, x := range cfg.Domains[1:] { // -alt-domain flags add to them
			if !contains(doms, x) {
				doms = append(doms, x)
			}
		}
		st.domains = doms
	}
	if !given("only-passing") {
		st.onlyPassing = a.DNSOnlyPassing
	}
	if !given("node-ttl") {
		st.nodeTTL = time.Duration(a.DNSNodeTTL)
	}
	if !given("service-ttl") {
		st.ttlStrict = map[string]time.Duration{}
		for k, v := range a.DNSServiceTTL {
			k = strings.ToLower(k)
			if p, ok := strings.CutSuffix(k, "*"); ok {
				st.ttlPrefix = append(st.ttlPrefix, ttlPrefix{p, time.Duration(v)})
			} else {
				st.ttlStrict[k] = time.Duration(v)
			}
		}
		sort.Slice(st.ttlPrefix, func(i, j int) bool { return len(st.ttlPrefix[i].prefix) > len(st.ttlPrefix[j].prefix) })
		st.serviceTTL = 0
	}
	if a.DNSSOA.Refresh != 0 || a.DNSSOA.Retry != 0 || a.DNSSOA.Expire != 0 || a.DNSSOA.Minttl != 0 {
		st.soa = soaConfig{refresh: a.DNSSOA.Refresh, retry: a.DNSSOA.Retry, expire: a.DNSSOA.Expire, minttl: a.DNSSOA.Minttl}
	}
	st.aRecordLimit = a.DNSARecordLimit
	if a.DNSUDPAnswerLimit > 0 {
		st.udpAnswerLimit = min(a.DNSUDPAnswerLimit, maxUDPAnswerLimit)
		st.enableTruncate = a.DNSEnableTruncate
	}
	st.noNodeMetaTXT = a.DNSNodeMetaTXT != nil && !*a.DNSNodeMetaTXT
	st.noCompress = a.DNSDisableCompression
	return st, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// settingsWait bounds how long Serve waits for the agent's settings
// before it answers.
const settingsWait = 2 * time.Second

// waitSettings waits until the agent's settings were read once, at most d.
func (z *consulZone) waitSettings(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-z.learned:
	case <-t.C:
		z.log.Warn("the agent's DNS settings are not read yet: answering with the flags' until they are", "waited", d)
	case <-ctx.Done():
	}
}

// agentRefresh is how often the agent's settings are read again once known,
// so that a `consul reload` changing dns_config, domain or alt_domain is
// followed (GET /v1/agent/self: answered by the local agent, no server RPC).
const agentRefresh = 15 * time.Second

// learnAgent reads the agent's datacenter and DNS settings until it gets
// them (backing off while Consul is unreachable), then again every
// agentRefresh until ctx is done.
func (z *consulZone) learnAgent(ctx context.Context) {
	delay := 100 * time.Millisecond
	for {
		err := z.readAgent()
		if err == nil {
			z.learnedOnce.Do(func() { close(z.learned) })
			break
		}
		z.log.Warn("waiting for the Consul agent's settings (names with a datacenter go to the agent's DNS meanwhile)", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		if delay < 10*time.Second {
			delay *= 2
		}
	}
	every := z.s.cfg.AgentRefresh
	if every <= 0 {
		every = agentRefresh
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if z.down.Load() {
			continue // read again when the probe sees Consul back
		}
		if err := z.readAgent(); err != nil {
			z.log.Debug("reading the agent's settings again", "err", err)
		}
	}
}

// readAgent asks GET /v1/agent/self once and applies what it says; kept
// answers are dropped only when the datacenter or the settings changed.
func (z *consulZone) readAgent() error {
	self, err := z.client.Agent().Self()
	if err != nil {
		return fmt.Errorf("agent self: %w", err)
	}
	changed := false
	if z.s.cfg.Datacenter == "" {
		cfg, ok := self["Config"]
		dc, _ := cfg["Datacenter"].(string)
		if !ok || dc == "" {
			return errors.New("agent self: no Config.Datacenter")
		}
		dc = strings.ToLower(dc)
		if old := z.dc.Load(); old == nil || *old != dc {
			z.dc.Store(&dc)
			changed = true
		}
	}
	if z.s.cfg.AgentDNSConfig {
		raw, err := json.Marshal(self["DebugConfig"])
		if err != nil {
			return fmt.Errorf("agent self: DebugConfig: %w", err)
		}
		var a agentDNSConfig
		if err := json.Unmarshal(raw, &a); err != nil {
			return fmt.Errorf("agent self: DebugConfig: %w", err)
		}
		st, err := mergeAgent(&z.s.cfg, &a)
		if err != nil {
			return err
		}
		if z.s.cfg.Explicit["domain"] && a.DNSDomain != "" && !z.warnedDomain.Swap(true) {
			if d, err := normDomain(a.DNSDomain); err == nil && d != z.s.cfg.Domains[0] {
				z.log.Warn("-domain differs from the agent's domain: names there are not the agent's", "domain", z.s.cfg.Domains[0], "agent_domain", d)
			}
		}
		if old := z.s.settings.Swap(st); !reflect.DeepEqual(old, st) {
			changed = true
			if z.settingsRead.Load() {
				z.log.Info("the agent's DNS settings changed: answering with the new ones")
			}
		}
		z.settingsRead.Store(true)
	}
	if changed {
		z.invalidate()
	}
	return nil
}

// soaRR is the SOA record Consul puts in negative answers for domain.
func (st *dnsSettings) soaRR(domain string) dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: st.soa.minttl},
		Ns:      "ns." + domain,
		Mbox:    "hostmaster." + domain,
		Serial:  uint32(time.Now().Unix()),
		Refresh: st.soa.refresh,
		Retry:   st.soa.retry,
		Expire:  st.soa.expire,
		Minttl:  st.soa.minttl,
	}
}
