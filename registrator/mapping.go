package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/hashicorp/consul/api"
)

// Meta keys that mark a service as ours. A service is owned by this
// registrator exactly when both match; nothing else is ever touched.
const (
	metaSource       = "external-source"
	metaSourceValue  = "berth-registrator"
	metaHost         = "berth-registrator-host"
	metaContainerID  = "berth-container-id"
	checkNotesPrefix = "berth-registrator def "
)

// mapConfig is what the container → services mapping depends on.
type mapConfig struct {
	Hostname       string // owner identity and ID prefix
	HostIP         string // -ip
	DefaultAddr    string // the host's address for a container without its own in planInput.HostAddr (tests)
	Internal       bool
	Explicit       bool
	UseIPFromLabel string
	NetworkLabel   string
	// OnlyLabel, when set, limits registration to containers carrying this
	// label (with OnlyValue, when set, as its value).
	OnlyLabel, OnlyValue string
	Tags                 *template.Template // -tags: one template over the inspect data (nil: none)
	ServiceTagsTemplate  bool               // -service-tags-template: SERVICE_TAGS is a template too
	DockerHealth         bool
	HealthTTL            time.Duration
	LivenessTTL          time.Duration
	LivenessDereg        time.Duration
	Checks               checkOpts // opt-in departures from gliderlabs' SERVICE_CHECK_* rules
}

// checkOpts are the opt-in flags that build a SERVICE_CHECK_* check other
// than gliderlabs master consul/consul.go buildCheck does. All off: as
// gliderlabs.
type checkOpts struct {
	// PathSlash (-check-path-slash): a SERVICE_CHECK_HTTP(S) path without a
	// leading "/" gets one; buildCheck appends the path as written
	// (http://addr:porthealth).
	PathSlash bool
	// ScriptTimeout (-check-timeout-script): SERVICE_CHECK_TIMEOUT is sent
	// for SERVICE_CHECK_SCRIPT and SERVICE_CHECK_CMD checks too; buildCheck
	// sets it for HTTP, HTTPS, TCP and gRPC only (scripts get Consul's
	// default, 30s).
	ScriptTimeout bool
	// HTTPSSkipVerify (-check-tls-skip-verify-https):
	// SERVICE_CHECK_TLS_SKIP_VERIFY, read as a boolean, applies to
	// SERVICE_CHECK_HTTPS checks too; buildCheck reads it for gRPC over TLS
	// only.
	HTTPSSkipVerify bool
}

// desiredService is one service a running container should have.
type desiredService struct {
	Reg         *api.AgentServiceRegistration
	ContainerID string
	Container   string
	// TTL checks registrator keeps current: check ID → status/output.
	TTL map[string]ttlState
}

type ttlState struct {
	Status string
	Output string
}

// mapping is the result for one container: its services and the warnings
// (each naming the container and the key at fault).
type mapping struct {
	Services []*desiredService
	Warnings []warning
	// Ignored names the ports left out on purpose, logged at info as
	// gliderlabs master bridge/bridge.go add logs them ("ignored: ...").
	Ignored []warning
}

// warning is one log line about bad input in a container's definition.
type warning struct {
	Msg  string
	Args []any // key/value pairs, always including "key" or "port" where known
}

func (w warning) String() string { return fmt.Sprint(w.Msg, w.Args) }

type portInfo struct {
	Exposed  string // "8080"
	Proto    string // "tcp" / "udp"
	HostIP   string
	HostPort string
}

var metaKeyRe = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// Consul's limits on service meta (agent/structs ValidateServiceMetadata).
const (
	metaMaxPairs    = 64
	metaMaxKeyLen   = 128
	metaMaxValueLen = 512
)

// attrs holds a container's SERVICE_* keys: generic ones and per-port ones,
// labels overriding env vars.
type attrs struct {
	generic map[string]string
	perPort map[string]map[string]string // exposed port → key → value
	// source names where a key came from, for log lines: "label SERVICE_80_NAME".
	source map[string]string
}

func (a *attrs) fromPort(port, key string) bool {
	_, ok := a.perPort[port][key]
	return ok
}

func (a *attrs) src(port, key string) string {
	if s, ok := a.source[port+"/"+key]; ok {
		return s
	}
	if s, ok := a.source["/"+key]; ok {
		return s
	}
	return "SERVICE_" + strings.ToUpper(key)
}

// merged gives the port's view: generic keys overridden by port-specific ones.
func (a *attrs) merged(port string) map[string]string {
	m := make(map[string]string, len(a.generic))
	for k, v := range a.generic {
		m[k] = v
	}
	for k, v := range a.perPort[port] {
		m[k] = v
	}
	return m
}

func parseAttrs(c *container.InspectResponse, warn func(string, ...any)) *attrs {
	a := &attrs{generic: map[string]string{}, perPort: map[string]map[string]string{}, source: map[string]string{}}
	add := func(kind, k, v string) {
		if !strings.HasPrefix(k, "SERVICE_") {
			return
		}
		key := strings.ToLower(strings.TrimPrefix(k, "SERVICE_"))
		if key == "" {
			// gliderlabs master sends it as the meta key "", which the
			// agent refuses ("Key cannot be blank") with the whole
			// registration; berth leaves it out, as other bad keys.
			warn("empty meta key; key left out", "key", kind+" "+k)
			return
		}
		parts := strings.SplitN(key, "_", 2)
		// A port key is one whose first part strconv.Atoi reads, sign
		// included, as gliderlabs master bridge/util.go serviceMetaData
		// decides: SERVICE_-1_VERSION is a port key no port matches (it
		// stays out of meta), not the meta key -1_version.
		if n, err := strconv.Atoi(parts[0]); len(parts) == 2 && err == nil {
			if n < 1 || n > 65535 || !isDigits(parts[0]) {
				warn("bad port number in key; key ignored", "key", kind+" "+k)
				return
			}
			if parts[1] == "" {
				warn("empty key after the port; key ignored", "key", kind+" "+k)
				return
			}
			// Compared as written, as gliderlabs master bridge/util.go
			// serviceMetaData does: SERVICE_080_NAME is not port 80's.
			port := parts[0]
			if a.perPort[port] == nil {
				a.perPort[port] = map[string]string{}
			}
			a.perPort[port][parts[1]] = v
			a.source[port+"/"+parts[1]] = kind + " " + k
			return
		}
		a.generic[key] = v
		a.source["/"+key] = kind + " " + k
	}
	if c.Config != nil {
		for _, kv := range c.Config.Env {
			// An entry without "=" is no key (serviceMetaData: len(kvp) > 1).
			if k, v, ok := strings.Cut(kv, "="); ok {
				add("env", k, v)
			}
		}
		// Labels override env vars: apply them last, in a fixed order.
		keys := make([]string, 0, len(c.Config.Labels))
		for k := range c.Config.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			add("label", k, c.Config.Labels[k])
		}
	}
	return a
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// parseBool reads SERVICE_IGNORE style values. Empty is false.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return false, nil
	case "1", "t", "true", "yes", "y", "on":
		return true, nil
	case "0", "f", "false", "no", "n", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}

// containerPorts collects the container's ports: exposed ones and the
// published bindings, one entry per port/proto, in a fixed order.
func containerPorts(c *container.InspectResponse) []portInfo {
	ports := map[nat.Port]portInfo{}
	if c.Config != nil {
		for p := range c.Config.ExposedPorts {
			ports[p] = portInfo{Exposed: p.Port(), Proto: p.Proto()}
		}
	}
	if c.NetworkSettings != nil {
		for p, bindings := range c.NetworkSettings.Ports {
			pi := portInfo{Exposed: p.Port(), Proto: p.Proto()}
			if b, ok := pickBinding(bindings); ok {
				pi.HostIP, pi.HostPort = b.HostIP, b.HostPort
			}
			ports[p] = pi
		}
	}
	out := make([]portInfo, 0, len(ports))
	for _, p := range ports {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.Atoi(out[i].Exposed)
		b, _ := strconv.Atoi(out[j].Exposed)
		if a != b {
			return a < b
		}
		return out[i].Proto < out[j].Proto
	})
	return out
}

// pickBinding chooses one host binding deterministically: IPv4 before IPv6,
// then the lowest address and port.
func pickBinding(bs []nat.PortBinding) (nat.PortBinding, bool) {
	var best nat.PortBinding
	found := false
	rank := func(b nat.PortBinding) string {
		v := "1"
		if ip := net.ParseIP(b.HostIP); b.HostIP == "" || (ip != nil && ip.To4() != nil) {
			v = "0"
		}
		return v + b.HostIP + "|" + fmt.Sprintf("%05s", b.HostPort)
	}
	for _, b := range bs {
		if b.HostPort == "" {
			continue
		}
		if !found || rank(b) < rank(best) {
			best, found = b, true
		}
	}
	return best, found
}

func unspecified(ip string) bool {
	if ip == "" {
		return true
	}
	p := net.ParseIP(ip)
	return p == nil || p.IsUnspecified()
}

// containerName is the name without Docker's leading slash.
func containerName(c *container.InspectResponse) string {
	if c.ContainerJSONBase == nil {
		return ""
	}
	return strings.TrimPrefix(c.Name, "/")
}

// imageBaseName is the image's base name without registry, tag or digest.
func imageBaseName(image string) string {
	image, _, _ = strings.Cut(image, "@")
	base := path.Base(image)
	base, _, _ = strings.Cut(base, ":")
	return base
}

// containerIP chooses the container address: the network named by the
// network label, else the container's own network mode, else the first
// network by name. IPv4 first, then the global IPv6 address.
func containerIP(c *container.InspectResponse, cfg *mapConfig) (ip, network string, err error) {
	if c.NetworkSettings == nil || len(c.NetworkSettings.Networks) == 0 {
		return "", "", fmt.Errorf("container has no network")
	}
	nets := c.NetworkSettings.Networks
	ipOf := func(name string) string {
		e := nets[name]
		if e == nil {
			return ""
		}
		if e.IPAddress != "" {
			return e.IPAddress
		}
		return e.GlobalIPv6Address
	}
	if want := networkLabel(c, cfg); want != "" {
		if _, ok := nets[want]; !ok {
			return "", "", fmt.Errorf("%s names network %q, which the container is not attached to", cfg.NetworkLabel, want)
		}
		if ip := ipOf(want); ip != "" {
			return ip, want, nil
		}
		return "", "", fmt.Errorf("%s names network %q, where the container has no address", cfg.NetworkLabel, want)
	}
	if c.HostConfig != nil {
		mode := string(c.HostConfig.NetworkMode)
		if mode == "default" {
			mode = "bridge"
		}
		if ip := ipOf(mode); ip != "" {
			return ip, mode, nil
		}
	}
	names := make([]string, 0, len(nets))
	for n := range nets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if ip := ipOf(n); ip != "" {
			return ip, n, nil
		}
	}
	return "", "", fmt.Errorf("container has no address on any network")
}

func networkLabel(c *container.InspectResponse, cfg *mapConfig) string {
	if cfg.NetworkLabel == "" || c.Config == nil {
		return ""
	}
	if v, ok := c.Config.Labels[cfg.NetworkLabel]; ok {
		return strings.TrimSpace(v)
	}
	for _, kv := range c.Config.Env {
		if k, v, _ := strings.Cut(kv, "="); k == cfg.NetworkLabel {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// reservedKey reports whether a SERVICE_<key> is not copied into service
// meta. As gliderlabs registrator master bridge/bridge.go newService, which
// drops id, tags and name from the attributes it sends as meta (check_*
// keys stay in the meta, and so does every other key: the consul adapter,
// consul/consul.go Register, sends service.Attrs whole as Meta). So an
// empty SERVICE_IGNORE (a service with a non-empty one is not registered)
// is the meta key ignore with an empty value, and the -network-label key
// (SERVICE_NETWORK by default), which picks the network, is meta too, as
// gliderlabs, which has no network label, sends SERVICE_NETWORK as the
// meta key network.
func reservedKey(k string) bool {
	switch k {
	case "name", "tags", "id":
		return true
	}
	return false
}

// mapper holds what mapping one container needs across its ports.
type mapper struct {
	c       *container.InspectResponse
	cfg     *mapConfig
	name    string // container name without the leading slash
	a       *attrs
	m       *mapping
	hostNet bool
	// noNet: network mode none. Docker lists no ports for it, so
	// gliderlabs master bridge/bridge.go add takes every exposed port as
	// published on itself, and util.go servicePort gives it the address
	// of the "none" network: none.
	noNet bool
	// netPeer: network mode container:<id>; peerAddr is that container's address.
	netPeer  bool
	peerAddr string
	// hostAddr is the host's address registered for ports published on
	// all interfaces and host networking when -ip is empty: resolved when
	// the container was first seen running (see planInput.HostAddr).
	hostAddr string
	// labelIP is the -useIpFromLabel address when the label is set and
	// not empty (labelSet): an IP address or a host name, as written.
	labelIP  string
	labelSet bool
	cIP      string // container address for -internal
	cIPErr   error
}

func (mp *mapper) warn(msg string, kv ...any) {
	mp.m.Warnings = append(mp.m.Warnings, warning{Msg: msg, Args: kv})
}

// eligible reports whether c is a running container -only-label lets in;
// one waiting for its restart policy to restart it is not (Docker says
// Running while it waits; see (*Registrator).apply).
func eligible(c *container.InspectResponse, cfg *mapConfig) bool {
	if c.ContainerJSONBase == nil || c.Config == nil || c.State == nil || !c.State.Running || c.State.Restarting {
		return false
	}
	if cfg.OnlyLabel != "" {
		v, ok := c.Config.Labels[cfg.OnlyLabel]
		if !ok || (cfg.OnlyValue != "" && v != cfg.OnlyValue) {
			return false
		}
	}
	return true
}

// mapContainer turns one running container into its services. Bad input
// degrades or skips only the service it belongs to, with a warning.
//
// Which ports: gliderlabs registrator master bridge/bridge.go (*Bridge).add:
// the exposed and published ports; without -internal only those published
// on the host (host networking: every exposed port). The -<port> name
// suffix applies when more than one port is left after that filter.
func mapContainer(c *container.InspectResponse, cfg *mapConfig) mapping {
	return mapSharing(c, cfg, "", cfg.DefaultAddr)
}

// mapSharing is mapContainer for a container that may share the network
// of another (network mode container:<id>), whose address is peerAddr
// ("" when unknown). As gliderlabs master bridge/bridge.go newService, its
// exposed ports are registered on that container's address. hostAddr is
// the host's address for ports published on all interfaces.
func mapSharing(c *container.InspectResponse, cfg *mapConfig, peerAddr, hostAddr string) mapping {
	var m mapping
	if !eligible(c, cfg) {
		return m
	}
	mp := &mapper{c: c, cfg: cfg, name: containerName(c), m: &m, peerAddr: peerAddr, hostAddr: hostAddr}
	mp.a = parseAttrs(c, mp.warn)
	mp.hostNet = c.HostConfig != nil && c.HostConfig.NetworkMode.IsHost()
	mp.netPeer = c.HostConfig != nil && c.HostConfig.NetworkMode.IsContainer()
	mp.noNet = c.HostConfig != nil && c.HostConfig.NetworkMode.IsNone()
	mp.resolveAddresses()
	var ports []portInfo
	all := containerPorts(c)
	if len(all) == 0 {
		// gliderlabs master bridge/bridge.go add: "ignored: ID no
		// published ports" for a container without any port.
		m.Ignored = append(m.Ignored, warning{Msg: "ignored: no published ports"})
	}
	for _, p := range all {
		if mp.hostNet || mp.netPeer || mp.noNet || cfg.Internal || p.HostPort != "" {
			ports = append(ports, p)
		} else {
			// add: "ignored: ID port P not published on host".
			m.Ignored = append(m.Ignored, warning{Msg: "ignored: port not published on host", Args: []any{"port", p.Exposed}})
		}
	}
	isGroup := len(ports) > 1
	seen := map[string]bool{}
	for _, p := range ports {
		ds := mp.mapPort(p, isGroup)
		if ds == nil {
			continue
		}
		if id := ds.Reg.ID; seen[id] {
			mp.warn("service ID used twice in this container; later one skipped", "key", mp.a.src(p.Exposed, "id"), "id", id)
			continue
		}
		seen[ds.Reg.ID] = true
		m.Services = append(m.Services, ds)
	}
	return m
}

// resolveAddresses reads the -useIpFromLabel address and, for -internal,
// the container's own address. As gliderlabs master bridge/bridge.go
// newService: a label set and not empty gives the address whatever it
// holds (an IP or a host name; Consul takes both), from its last "/" on
// dropped (a /cidr suffix); an empty or missing label leaves the usual
// address. Surrounding spaces are trimmed (gliderlabs keeps them: an
// address nobody can reach).
func (mp *mapper) resolveAddresses() {
	if l := mp.cfg.UseIPFromLabel; l != "" {
		if v := strings.TrimSpace(mp.c.Config.Labels[l]); v != "" {
			if i := strings.LastIndex(v, "/"); i >= 0 {
				v = v[:i]
			}
			mp.labelIP, mp.labelSet = v, true
		}
	}
	if mp.cfg.Internal && !mp.hostNet && !mp.netPeer && !mp.noNet && !mp.labelSet {
		mp.cIP, _, mp.cIPErr = containerIP(mp.c, mp.cfg)
	}
}

// mapPort builds the service of one port, or nil (with a warning when the
// input is at fault).
func (mp *mapper) mapPort(p portInfo, isGroup bool) *desiredService {
	port := p.Exposed
	md := mp.a.merged(port)
	// Any non-empty SERVICE_IGNORE / SERVICE_<port>_IGNORE value ignores
	// (gliderlabs master bridge/bridge.go newService; its PR #14 chose "any
	// value" on purpose, and users write SERVICE_IGNORE=always).
	if md["ignore"] != "" || mp.cfg.Explicit && md["name"] == "" {
		// gliderlabs master bridge/bridge.go add logs "ignored: ID
		// service on port P" when newService gives none for these.
		mp.m.Ignored = append(mp.m.Ignored, warning{Msg: "ignored: service on port", Args: []any{"port", port}})
		return nil
	}
	addr, svcPort, ok := mp.portAddr(p)
	if !ok {
		return nil
	}
	svcName, id, ok := mp.identity(p, md, isGroup)
	if !ok {
		return nil
	}
	reg := &api.AgentServiceRegistration{
		ID:      id,
		Name:    svcName,
		Tags:    mp.tags(p, md),
		Port:    svcPort,
		Address: addr,
		Meta:    mp.meta(port, md),
	}
	ds := &desiredService{Reg: reg, ContainerID: mp.c.ID, Container: mp.name}
	if !mp.checks(ds, port, md) {
		return nil
	}
	return ds
}

// peerOnHostNetwork stands for the address of a network peer (network
// mode container:<id>) that uses the host's network; it is no address.
const peerOnHostNetwork = "host network"

// portAddr gives the address and port registered for p: host networking
// and -internal register the exposed port, published mode the host port; the
// address is the -useIpFromLabel one, else -ip, the binding's address or the
// host's for published ports, the container's for -internal.
func (mp *mapper) portAddr(p portInfo) (string, int, bool) {
	port := p.Exposed
	var addr string
	var svcPort int
	switch {
	case mp.netPeer:
		// The network container's address wins over -ip and the label,
		// as in gliderlabs master (newService sets it last).
		svcPort, _ = strconv.Atoi(port)
		if mp.peerAddr == peerOnHostNetwork {
			// gliderlabs master newService takes the peer's
			// NetworkSettings.IPAddress, empty on the host network: the
			// agent's node address, which is the right one there.
			return "", svcPort, true
		}
		if mp.peerAddr == "" {
			mp.warn("the address of the container whose network this one shares is unknown; service skipped",
				"port", port+"/"+p.Proto, "network_mode", string(mp.c.HostConfig.NetworkMode))
			return "", 0, false
		}
		addr = mp.peerAddr
	case mp.hostNet:
		svcPort, _ = strconv.Atoi(port)
		addr = firstNonEmpty(mp.cfg.HostIP, mp.hostAddr)
		if mp.cfg.Internal || mp.labelSet {
			// gliderlabs master bridge.go newService under -internal takes
			// the container's own address, which is empty on the host
			// network (util.go servicePort): the agent's node address; the
			// label's wins.
			addr = mp.labelIP
		}
	case mp.noNet:
		// The exposed port on no address (the agent's node address), -ip
		// unless -internal, the label's over both: gliderlabs master
		// bridge.go newService on the empty address servicePort gives.
		svcPort, _ = strconv.Atoi(port)
		addr = mp.labelIP
		if !mp.labelSet && !mp.cfg.Internal {
			addr = mp.cfg.HostIP
		}
	case mp.cfg.Internal:
		svcPort, _ = strconv.Atoi(port)
		if mp.labelSet {
			addr = mp.labelIP
		} else {
			if mp.cIPErr != nil {
				mp.warn("no container address; service skipped", "port", port+"/"+p.Proto, "err", mp.cIPErr)
				return "", 0, false
			}
			addr = mp.cIP
		}
	default:
		hp, err := strconv.Atoi(p.HostPort)
		if err != nil || hp < 1 || hp > 65535 {
			mp.warn("bad host port; service skipped", "port", port+"/"+p.Proto, "host_port", p.HostPort)
			return "", 0, false
		}
		svcPort = hp
		switch {
		case mp.labelSet:
			addr = mp.labelIP
		case mp.cfg.HostIP != "":
			addr = mp.cfg.HostIP
		case !unspecified(p.HostIP):
			addr = p.HostIP
		default:
			addr = mp.hostAddr
		}
	}
	if svcPort < 1 || svcPort > 65535 {
		mp.warn("bad port number; service skipped", "port", port)
		return "", 0, false
	}
	return addr, svcPort, true
}

// identity gives the service name and ID (gliderlabs master bridge/bridge.go
// newService): the name is SERVICE_NAME or the image's base name, with
// -<port> in a group unless named per port; the ID is
// <hostname>:<container>:<port>[:udp] unless SERVICE_ID is set.
func (mp *mapper) identity(p portInfo, md map[string]string, isGroup bool) (name, id string, ok bool) {
	port := p.Exposed
	name = imageBaseName(mp.c.Config.Image)
	// Taken as written, spaces included (bridge.go newService mapDefault):
	// only an empty value means unset.
	if v := md["name"]; v != "" {
		name = v
	}
	if isGroup && !mp.a.fromPort(port, "name") {
		name += "-" + port
	}
	if name == "" {
		mp.warn("no service name (image has no base name); service skipped", "port", port)
		return "", "", false
	}
	id = mp.cfg.Hostname + ":" + mp.name + ":" + port
	if p.Proto == "udp" {
		id += ":udp"
	}
	// Taken as written, / ? and # included (gliderlabs master
	// bridge/bridge.go newService): the agent accepts them, and the API
	// client escapes them in the deregister and check paths.
	if v := md["id"]; v != "" {
		id = v
	}
	return name, id, true
}

// tags: SERVICE_TAGS, then -tags, then udp for UDP ports; each split on
// commas not escaped as \, (gliderlabs master bridge/util.go combineTags).
// SERVICE_TAGS is taken literally, as gliderlabs master bridge/bridge.go
// newService passes it (only -tags is a template there), unless
// -service-tags-template makes it a template too.
func (mp *mapper) tags(p portInfo, md map[string]string) []string {
	var tags []string
	if v, ok := md["tags"]; ok && !mp.cfg.ServiceTagsTemplate {
		tags = append(tags, splitTags(v)...)
	} else if ok {
		t, err := expandTemplate("SERVICE_TAGS", v, newTagData(mp.c))
		if err != nil {
			mp.warn("bad tags template; those tags left out", "key", mp.a.src(p.Exposed, "tags"), "err", err)
		} else {
			tags = append(tags, splitTags(t)...)
		}
	}
	if tt := mp.cfg.Tags; tt != nil {
		var buf bytes.Buffer
		if err := tt.Execute(&buf, newTagData(mp.c)); err != nil {
			mp.warn("-tags template failed for this container; those tags left out", "key", "-tags", "err", err)
		} else {
			tags = append(tags, splitTags(buf.String())...)
		}
	}
	if p.Proto == "udp" {
		tags = append(tags, "udp")
	}
	return tags
}

// meta turns the other SERVICE_* keys into service meta, leaving out (with
// a warning) what Consul would refuse, and adds the ownership marks.
func (mp *mapper) meta(port string, md map[string]string) map[string]string {
	meta := map[string]string{}
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if reservedKey(k) {
			continue
		}
		v := md[k]
		switch {
		case !metaKeyRe.MatchString(k):
			mp.warn("meta key has characters Consul refuses (allowed: letters, digits, _ and -); key left out", "key", mp.a.src(port, k))
			continue
		case len(k) > metaMaxKeyLen:
			mp.warn("meta key longer than 128 characters; key left out", "key", mp.a.src(port, k))
			continue
		case strings.HasPrefix(k, "consul-") || k == metaSource || k == metaHost || k == metaContainerID:
			mp.warn("meta key is reserved; key left out", "key", mp.a.src(port, k))
			continue
		case len(v) > metaMaxValueLen:
			mp.warn("meta value longer than 512 characters; key left out", "key", mp.a.src(port, k))
			continue
		case len(meta) >= metaMaxPairs-3:
			mp.warn("more than 61 meta keys; key left out", "key", mp.a.src(port, k))
			continue
		}
		meta[k] = v
	}
	meta[metaSource] = metaSourceValue
	meta[metaHost] = mp.cfg.Hostname
	meta[metaContainerID] = mp.c.ID
	return meta
}

// checks adds the SERVICE_CHECK_* check (ID service:<id>), the Docker
// health mirror and the liveness check to ds; false when the check spec is
// invalid (the service is then skipped).
func (mp *mapper) checks(ds *desiredService, port string, md map[string]string) bool {
	reg, id, cfg := ds.Reg, ds.Reg.ID, mp.cfg
	check, err := buildCheck(md, reg.Address, reg.Port, mp.c.ID, cfg.Checks)
	if err != nil {
		mp.warn("invalid check spec; service skipped", "key", mp.a.src(port, err.key), "err", err.err)
		return false
	}
	if check != nil {
		// The ID Consul gives a service's single check (gliderlabs
		// master consul/consul.go Register sends one check without an
		// ID): applications heartbeat SERVICE_CHECK_TTL by this ID.
		check.CheckID = mainCheckID(id)
		check.Name = "Service '" + reg.Name + "' check"
		reg.Checks = append(reg.Checks, check)
	}
	c := mp.c
	if cfg.DockerHealth && c.State.Health != nil && c.Config.Healthcheck != nil &&
		!(len(c.Config.Healthcheck.Test) > 0 && c.Config.Healthcheck.Test[0] == "NONE") {
		st := dockerHealthState(c.State.Health)
		reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
			CheckID: dockerHealthCheckID(id),
			Name:    "Docker HEALTHCHECK of " + mp.name,
			TTL:     cfg.HealthTTL.String(),
			Status:  st.Status,
		})
		ds.setTTL(dockerHealthCheckID(id), st)
	}
	if cfg.LivenessTTL > 0 {
		reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
			CheckID:                        livenessCheckID(id),
			Name:                           "registrator liveness on " + cfg.Hostname,
			TTL:                            cfg.LivenessTTL.String(),
			Status:                         api.HealthPassing,
			DeregisterCriticalServiceAfter: cfg.LivenessDereg.String(),
		})
		ds.setTTL(livenessCheckID(id), ttlState{Status: api.HealthPassing, Output: "registrator on " + cfg.Hostname + " is running"})
	}
	for _, ch := range reg.Checks {
		ch.Notes = checkNotes(ch)
	}
	return true
}

func (ds *desiredService) setTTL(checkID string, st ttlState) {
	if ds.TTL == nil {
		ds.TTL = map[string]ttlState{}
	}
	ds.TTL[checkID] = st
}

// mainCheckID is the ID of the SERVICE_CHECK_* check of service id:
// "service:<id>", the name Consul's agent gives the one check of a service
// registered without a check ID. berth's own TTL checks use
// dockerHealthCheckID and livenessCheckID, which never collide with it.
func mainCheckID(id string) string { return "service:" + id }

// dockerHealthCheckID is the ID of the -docker-health check: "<id>:docker-health".
func dockerHealthCheckID(id string) string { return id + ":docker-health" }

// livenessCheckID is the ID of the -liveness-ttl check: "<id>:liveness".
func livenessCheckID(id string) string { return id + ":liveness" }

// ownCheck reports whether checkID is one registrator writes for service
// id (its main, Docker health or liveness check). Any other check of the
// service, such as Consul's maintenance-mode check
// ("_service_maintenance:<id>") or one added by hand, is left alone.
func ownCheck(id, checkID string) bool {
	return checkID == mainCheckID(id) || checkID == dockerHealthCheckID(id) || checkID == livenessCheckID(id)
}

func dockerHealthState(h *container.Health) ttlState {
	st := ttlState{Status: api.HealthCritical}
	if h.Status == container.Healthy {
		st.Status = api.HealthPassing
	}
	st.Output = "docker health: " + string(h.Status)
	if h.FailingStreak > 0 {
		st.Output += fmt.Sprintf(" (failing streak %d)", h.FailingStreak)
	}
	if n := len(h.Log); n > 0 && h.Log[n-1] != nil {
		out := strings.TrimSpace(h.Log[n-1].Output)
		if len(out) > 200 {
			out = out[:200]
		}
		if out != "" {
			st.Output += ": " + out
		}
	}
	return st
}

// checkNotes fingerprints a check definition (without its status, which
// registrator updates on its own) so the reconciler can compare the agent's
// copy with the wanted one by a field the agent returns verbatim.
func checkNotes(ch *api.AgentServiceCheck) string {
	c := *ch
	c.Status = ""
	c.Notes = ""
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return checkNotesPrefix + hex.EncodeToString(sum[:8])
}

type checkErr struct {
	key string
	err error
}

func (e *checkErr) Error() string { return e.key + ": " + e.err.Error() }

// buildCheck makes the check gliderlabs users declare with SERVICE_CHECK_*,
// by gliderlabs master consul/consul.go (*ConsulAdapter).buildCheck's rules
// unless opts says otherwise.
func buildCheck(md map[string]string, addr string, port int, containerID string, opts checkOpts) (*api.AgentServiceCheck, *checkErr) {
	hostPort := net.JoinHostPort(addr, strconv.Itoa(port))
	if addr == "" {
		hostPort = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	path := func(p string) string {
		// buildCheck: fmt.Sprintf("http://%s:%d%s", ...), the path as
		// written.
		if opts.PathSlash && !strings.HasPrefix(p, "/") {
			return "/" + p
		}
		return p
	}
	ch := &api.AgentServiceCheck{}
	needsInterval := true
	// buildCheck sets the timeout on the HTTP, HTTPS, TCP and gRPC checks
	// only.
	timeout := true
	switch {
	case md["check_http"] != "":
		ch.HTTP = "http://" + hostPort + path(md["check_http"])
		ch.Method = md["check_http_method"]
	case md["check_https"] != "":
		ch.HTTP = "https://" + hostPort + path(md["check_https"])
		ch.Method = md["check_https_method"] // gliderlabs master consul/consul.go buildCheck
		// buildCheck reads SERVICE_CHECK_TLS_SKIP_VERIFY for gRPC only;
		// with -check-tls-skip-verify-https it is a boolean here, so
		// "false" keeps verification.
		if v := md["check_tls_skip_verify"]; v != "" && opts.HTTPSSkipVerify {
			b, err := parseBool(v)
			if err != nil {
				return nil, &checkErr{"check_tls_skip_verify", err}
			}
			ch.TLSSkipVerify = b
		}
	case md["check_cmd"] != "":
		// Run inside the container: Consul's Docker check (needs the
		// agent's enable_script_checks and access to the Docker socket).
		ch.DockerContainerID = containerID
		ch.Shell = "/bin/sh"
		ch.Args = []string{"/bin/sh", "-c", md["check_cmd"]}
		timeout = opts.ScriptTimeout
	case md["check_script"] != "":
		s := strings.ReplaceAll(md["check_script"], "$SERVICE_IP", addr)
		s = strings.ReplaceAll(s, "$SERVICE_PORT", strconv.Itoa(port))
		ch.Args = []string{"sh", "-c", s}
		timeout = opts.ScriptTimeout
	case md["check_ttl"] != "":
		if _, err := parseDur(md["check_ttl"]); err != nil {
			return nil, &checkErr{"check_ttl", err}
		}
		ch.TTL = md["check_ttl"]
		needsInterval, timeout = false, false
	case md["check_tcp"] != "":
		// As gliderlabs master consul/consul.go buildCheck: any value asks
		// for the check (SERVICE_CHECK_TCP=false too).
		ch.TCP = hostPort
	case md["check_grpc"] != "":
		ch.GRPC = hostPort
		// A true value (gliderlabs' documented "true") checks the whole
		// server; any other value names the gRPC service (berth).
		if b, err := parseBool(md["check_grpc"]); err != nil || !b {
			ch.GRPC += "/" + md["check_grpc"]
		}
		// Any value turns TLS on, and with it any value turns
		// verification off ("false" too), as gliderlabs master
		// consul/consul.go buildCheck.
		ch.GRPCUseTLS = md["check_grpc_use_tls"] != ""
		ch.TLSSkipVerify = ch.GRPCUseTLS && md["check_tls_skip_verify"] != ""
	default:
		return nil, nil
	}
	if needsInterval {
		ch.Interval = "10s"
		if v := md["check_interval"]; v != "" {
			if _, err := parseDur(v); err != nil {
				return nil, &checkErr{"check_interval", err}
			}
			ch.Interval = v
		}
	}
	if v := md["check_timeout"]; v != "" && timeout {
		if _, err := parseDurAny(v); err != nil {
			return nil, &checkErr{"check_timeout", err}
		}
		ch.Timeout = v
	}
	if v := md["check_deregister_after"]; v != "" {
		if _, err := parseDurAny(v); err != nil {
			return nil, &checkErr{"check_deregister_after", err}
		}
		ch.DeregisterCriticalServiceAfter = v
	}
	if v := md["check_initial_status"]; v != "" {
		switch v {
		case api.HealthPassing, api.HealthWarning, api.HealthCritical:
			ch.Status = v
		default:
			return nil, &checkErr{"check_initial_status", fmt.Errorf("%q: want passing, warning or critical", v)}
		}
	}
	return ch, nil
}

// parseDur reads a check interval or TTL, which Consul refuses unless
// positive.
func parseDur(s string) (time.Duration, error) {
	d, err := parseDurAny(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be positive", s)
	}
	return d, nil
}

// parseDurAny reads a check timeout or deregister-after, which Consul takes
// at any value (0 or less: its default, or never), as gliderlabs passes
// them on (consul/consul.go buildCheck).
func parseDurAny(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 10s", s)
	}
	return d, nil
}

// tagData is what a tags template sees: the container as gliderlabs
// master's templates see it, a go-dockerclient Container (bridge/bridge.go
// newService executes -tags on one). Its fields have the Docker API's names,
// as the inspect data's do, but Created, State.StartedAt and
// State.FinishedAt are time.Time there (RFC 3339 strings in the API), so
// {{.State.StartedAt.Unix}} works and they print as time.Time prints.
type tagData struct {
	*container.InspectResponse
	Created time.Time
	State   tagState
}

// tagState is the container's State with its times as time.Time.
type tagState struct {
	*container.State
	StartedAt, FinishedAt time.Time
}

// newTagData wraps c; a time the API gives in no RFC 3339 form is the zero
// time, as go-dockerclient decodes Docker's "0001-01-01T00:00:00Z".
func newTagData(c *container.InspectResponse) tagData {
	at := func(s string) time.Time {
		t, _ := time.Parse(time.RFC3339Nano, s)
		return t
	}
	d := tagData{InspectResponse: c}
	if c.ContainerJSONBase != nil {
		d.Created = at(c.Created)
		if c.State != nil {
			d.State = tagState{State: c.State, StartedAt: at(c.State.StartedAt), FinishedAt: at(c.State.FinishedAt)}
		}
	}
	return d
}

func expandTemplate(name, text string, data any) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
