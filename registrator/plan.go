package main

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/hashicorp/consul/api"
)

// planInput is everything one reconcile pass decides from. planFor reads
// it and changes nothing.
type planInput struct {
	// Running holds the running containers as inspected, by container ID.
	Running map[string]*container.InspectResponse
	// PeerAddr holds, by container ID, the address of the container whose
	// network a container shares (network mode container:<id>).
	PeerAddr map[string]string
	// HostAddr holds, by container ID, the host's address as resolved when
	// the container was first seen running: gliderlabs master
	// bridge/bridge.go newService resolves the host name each time it
	// builds a container's services (at its start, or the first sync that
	// sees it) and re-registers those on resync, so a container keeps the
	// address it started with and the next one gets the current one. A
	// container without an entry gets Map.DefaultAddr.
	HostAddr map[string]string
	// Crashed holds the IDs of exited containers whose exit code was a
	// crash (see crashed) and of restarting ones: -deregister on-success
	// keeps their services.
	Crashed map[string]bool
	// Agent is the agent's services and their checks.
	Agent *agentView
	// Map is the mapping configuration (flags).
	Map *mapConfig
	// DeregisterOnSuccess is -deregister on-success.
	DeregisterOnSuccess bool
	// Cleanup is -cleanup: at a Sync, services in the default gliderlabs
	// ID shape for this host that no container wants are deregistered
	// too, owned or not (see legacyDangling).
	Cleanup bool
	// Sync: this pass is one gliderlabs runs its Sync at (registrator's
	// start and each -resync), the only passes -cleanup acts at; it then
	// also removes what -deregister on-success kept (see planFor).
	Sync bool
	// Refused holds, by service ID, the definitions the agent refused; one
	// is not sent again while unchanged for refusedRetry after Now.
	Refused map[string]refusal
	Now     time.Time
	// Reaped holds the IDs of services Consul removed itself
	// (deregister_critical_service_after): not registered again by this
	// pass while missing from the agent (see Registrator.noteReaped).
	Reaped map[string]bool
	// Cache, when not nil, memoizes the mapping of each container between
	// passes (see mapCache); it never changes the plan.
	Cache *mapCache
}

// mapCache keeps each container's mapping while its inspect data (the
// same *container.InspectResponse: a new inspect replaces the pointer) and
// the address of its network peer stay the same, so a pass after one
// Docker event maps one container, not all.
type mapCache struct {
	entries map[string]cachedMapping // by container ID
}

type cachedMapping struct {
	c        *container.InspectResponse
	peerAddr string
	hostAddr string
	m        mapping
}

func newMapCache() *mapCache { return &mapCache{entries: map[string]cachedMapping{}} }

// mapping returns c's mapping, from the cache when c is unchanged.
func (mc *mapCache) mapping(c *container.InspectResponse, cfg *mapConfig, peerAddr, hostAddr string) mapping {
	if mc == nil {
		return mapSharing(c, cfg, peerAddr, hostAddr)
	}
	if e, ok := mc.entries[c.ID]; ok && e.c == c && e.peerAddr == peerAddr && e.hostAddr == hostAddr {
		return e.m
	}
	m := mapSharing(c, cfg, peerAddr, hostAddr)
	mc.entries[c.ID] = cachedMapping{c: c, peerAddr: peerAddr, hostAddr: hostAddr, m: m}
	return m
}

// keep drops the entries of containers not in running.
func (mc *mapCache) keep(running map[string]*container.InspectResponse) {
	if mc == nil {
		return
	}
	for id := range mc.entries {
		if running[id] == nil {
			delete(mc.entries, id)
		}
	}
}

// opKind names a write to the agent.
type opKind string

const (
	opRegister   opKind = "register"   // PUT /v1/agent/service/register (replacing its checks)
	opDeregister opKind = "deregister" // PUT /v1/agent/service/deregister/:id
	opUpdateTTL  opKind = "update-ttl" // PUT /v1/agent/check/update/:check_id
)

// op is one write to the agent.
type op struct {
	Kind      opKind
	ServiceID string
	// Service is the wanted service (register, update-ttl).
	Service *desiredService
	// CheckID and TTL: the TTL check to set (update-ttl).
	CheckID string
	TTL     ttlState
	// Name is the agent's service name (deregister; for the log).
	Name string
}

// claim is a wanted service ID that is not ours to write.
type claim struct {
	ServiceID string
	Container string // the container that wants it
	Holder    string // "foreign" (a service we do not own) or the container that keeps it
}

// plan is what one pass writes, in order, and what it leaves to the
// heartbeat loop.
type plan struct {
	Ops []op
	// Wanted holds the IDs of the services the containers want, in order.
	Wanted []string
	// TTL holds the registrator-kept TTL checks of the wanted services that
	// are (or after Ops will be) registered: check ID → state.
	TTL map[string]ttlState
	// Warnings holds the mapping warnings by container name; Ignored the
	// ports each container has left out on purpose (logged at info).
	Warnings, Ignored map[string][]warning
	// Foreign lists wanted IDs a service we do not own holds (left alone);
	// Duplicates lists IDs a second container also wants (first one kept).
	Foreign, Duplicates []claim
	// Reapable holds the wanted services whose checks ask Consul to remove
	// them after a time critical (SERVICE_CHECK_DEREGISTER_AFTER): service
	// ID → container ID.
	Reapable map[string]string
}

// writes counts the operations that change a registration.
func (p *plan) writes() int {
	n := 0
	for _, o := range p.Ops {
		if o.Kind != opUpdateTTL {
			n++
		}
	}
	return n
}

// planFor decides the writes that make the agent's owned services equal to
// the services the running containers want: register what is missing or
// differs, update TTL statuses that differ, deregister owned services no
// container wants (except those -deregister on-success keeps). It never
// writes a service this registrator does not own, except one in the
// default gliderlabs ID shape for this host, which it adopts. An unchanged
// agent gives a plan without operations.
func planFor(in planInput) *plan {
	p := &plan{TTL: map[string]ttlState{}, Warnings: map[string][]warning{}, Ignored: map[string][]warning{}, Reapable: map[string]string{}}
	desired := p.desired(in)
	host := in.Map.Hostname
	for _, id := range p.Wanted {
		d := desired[id]
		a := in.Agent.services[id]
		if a != nil && !owned(a, host) && !legacyID(id, host) {
			p.Foreign = append(p.Foreign, claim{ServiceID: id, Container: d.Container, Holder: "foreign"})
			continue
		}
		if slices.ContainsFunc(d.Reg.Checks, func(c *api.AgentServiceCheck) bool {
			after, err := time.ParseDuration(c.DeregisterCriticalServiceAfter)
			return err == nil && after > 0
		}) {
			p.Reapable[id] = d.ContainerID
		}
		if a == nil && in.Reaped[id] {
			continue
		}
		checks := in.Agent.checks[id]
		if a == nil || !sameService(a, d.Reg, checks) {
			if rj, ok := in.Refused[id]; ok && rj.def == fingerprint(d.Reg) && in.Now.Sub(rj.at) < refusedRetry {
				continue
			}
			p.Ops = append(p.Ops, op{Kind: opRegister, ServiceID: id, Service: d})
		} else {
			p.Ops = append(p.Ops, ttlUpdates(d, checks)...)
		}
		maps.Copy(p.TTL, d.TTL)
	}
	var gone []string
	for id, a := range in.Agent.services {
		if !owned(a, host) && in.Cleanup && in.Sync && legacyDangling(a, host, desired) {
			gone = append(gone, id)
			continue
		}
		if owned(a, host) && desired[id] == nil {
			// Kept while its container crashed (-deregister on-success),
			// but for -cleanup at a sync: gliderlabs master
			// bridge/bridge.go remove drops a crashed container's
			// services from what it holds, so (*Bridge).Sync with Cleanup
			// finds them dangling when their ID has the default shape.
			keep := in.DeregisterOnSuccess && in.Crashed[a.Meta[metaContainerID]]
			if keep && in.Cleanup && in.Sync && legacyDangling(a, host, desired) {
				keep = false
			}
			if keep {
				continue
			}
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		p.Ops = append(p.Ops, op{Kind: opDeregister, ServiceID: id, Name: in.Agent.services[id].Service})
	}
	return p
}

// desired maps the running containers, in a fixed order (by name, then
// ID), into the wanted services by ID; a service ID a second container
// claims goes to the first.
func (p *plan) desired(in planInput) map[string]*desiredService {
	cs := make([]*container.InspectResponse, 0, len(in.Running))
	for _, c := range in.Running {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool {
		ni, nj := containerName(cs[i]), containerName(cs[j])
		if ni != nj {
			return ni < nj
		}
		return cs[i].ID < cs[j].ID
	})
	in.Cache.keep(in.Running)
	desired := map[string]*desiredService{}
	for _, c := range cs {
		hostAddr, ok := in.HostAddr[c.ID]
		if !ok {
			hostAddr = in.Map.DefaultAddr
		}
		m := in.Cache.mapping(c, in.Map, in.PeerAddr[c.ID], hostAddr)
		if len(m.Warnings) > 0 {
			p.Warnings[containerName(c)] = m.Warnings
		}
		if len(m.Ignored) > 0 {
			p.Ignored[containerName(c)] = m.Ignored
		}
		for _, s := range m.Services {
			if prev, dup := desired[s.Reg.ID]; dup {
				if prev.ContainerID != s.ContainerID {
					p.Duplicates = append(p.Duplicates, claim{ServiceID: s.Reg.ID, Container: s.Container, Holder: prev.Container})
				}
				continue
			}
			desired[s.Reg.ID] = s
			p.Wanted = append(p.Wanted, s.Reg.ID)
		}
	}
	return desired
}

// ttlUpdates gives the status updates of d's registrator-kept TTL checks
// whose status in the agent differs, in check ID order.
func ttlUpdates(d *desiredService, checks []*api.AgentCheck) []op {
	have := map[string]string{}
	for _, ch := range checks {
		have[ch.CheckID] = ch.Status
	}
	ids := slices.Sorted(maps.Keys(d.TTL))
	var ops []op
	for _, cid := range ids {
		if st := d.TTL[cid]; have[cid] != st.Status {
			ops = append(ops, op{Kind: opUpdateTTL, ServiceID: d.Reg.ID, Service: d, CheckID: cid, TTL: st})
		}
	}
	return ops
}

// owned reports whether a carries this registrator's ownership marks for
// host: meta external-source=berth-registrator and berth-registrator-host.
func owned(a *api.AgentService, host string) bool {
	return a.Meta[metaSource] == metaSourceValue && a.Meta[metaHost] == host
}

// legacyID reports whether id has the default gliderlabs shape for host
// (<host>:<container>:<port>[:udp], gliderlabs master bridge/bridge.go
// serviceIDPattern): a registration gliderlabs/registrator left, which is
// adopted by re-registering it with the ownership marks.
func legacyID(id, host string) bool {
	rest, ok := strings.CutPrefix(id, host+":")
	if !ok {
		return false
	}
	parts := strings.Split(rest, ":")
	if len(parts) == 3 && parts[2] == "udp" {
		parts = parts[:2]
	}
	if len(parts) != 2 {
		return false
	}
	_, err := strconv.Atoi(parts[1])
	return err == nil
}

// legacyIDRe is the default gliderlabs service ID: <host>:<container>:<port>
// with :udp for UDP (gliderlabs master bridge/bridge.go serviceIDPattern,
// the host part as short as it can be).
var legacyIDRe = regexp.MustCompile(`^(.+?):([a-zA-Z0-9][a-zA-Z0-9_.-]+):[0-9]+(?::udp)?$`)

// legacyDangling reports whether -cleanup removes a, a service this
// registrator does not own: gliderlabs master bridge/bridge.go
// (*Bridge).Sync with Cleanup deregisters every agent service whose ID has
// the default shape with this host's name, unless a service it registers
// has the same name and the ID's container name. desired is what the
// running containers want, by ID.
func legacyDangling(a *api.AgentService, host string, desired map[string]*desiredService) bool {
	m := legacyIDRe.FindStringSubmatch(a.ID)
	if m == nil || m[1] != host {
		return false
	}
	if desired[a.ID] != nil {
		return false // adopted
	}
	for _, d := range desired {
		if d.Reg.Name == a.Service && d.Container == m[2] {
			return false
		}
	}
	return true
}

// sameService compares the agent's copy of a service and its checks with
// the wanted registration, field by field (checks by ID and the definition
// fingerprint kept in their notes).
func sameService(a *api.AgentService, w *api.AgentServiceRegistration, checks []*api.AgentCheck) bool {
	if a.Service != w.Name || a.Port != w.Port || a.Address != w.Address || a.EnableTagOverride != w.EnableTagOverride {
		return false
	}
	if len(a.Tags) != len(w.Tags) || (len(w.Tags) > 0 && !slices.Equal(a.Tags, w.Tags)) {
		return false
	}
	if !maps.Equal(a.Meta, w.Meta) {
		return false
	}
	have := map[string]string{}
	for _, ch := range checks {
		if ownCheck(a.ID, ch.CheckID) {
			have[ch.CheckID] = ch.Notes
		}
	}
	if len(have) != len(w.Checks) {
		return false
	}
	for _, ch := range w.Checks {
		if n, ok := have[ch.CheckID]; !ok || n != ch.Notes {
			return false
		}
	}
	return true
}

// fingerprint identifies a registration's full definition.
func fingerprint(reg *api.AgentServiceRegistration) string {
	b, _ := json.Marshal(reg)
	return string(b)
}

// agentView is the agent's services and their checks as last read, updated
// with every write this registrator makes.
type agentView struct {
	services map[string]*api.AgentService
	checks   map[string][]*api.AgentCheck // by service ID
}

func newAgentView(services map[string]*api.AgentService, checks map[string]*api.AgentCheck) *agentView {
	v := &agentView{services: services, checks: map[string][]*api.AgentCheck{}}
	if v.services == nil {
		v.services = map[string]*api.AgentService{}
	}
	for _, ch := range checks {
		if ch.ServiceID != "" {
			v.checks[ch.ServiceID] = append(v.checks[ch.ServiceID], ch)
		}
	}
	return v
}

func (v *agentView) registered(reg *api.AgentServiceRegistration) {
	v.services[reg.ID] = &api.AgentService{ID: reg.ID, Service: reg.Name, Tags: reg.Tags, Port: reg.Port,
		Address: reg.Address, Meta: reg.Meta, EnableTagOverride: reg.EnableTagOverride}
	// Checks that are not ours (maintenance mode, added by hand) stay.
	chs := slices.DeleteFunc(slices.Clone(v.checks[reg.ID]), func(c *api.AgentCheck) bool { return ownCheck(reg.ID, c.CheckID) })
	for _, c := range reg.Checks {
		st := c.Status
		if st == "" {
			st = api.HealthCritical
		}
		chs = append(chs, &api.AgentCheck{CheckID: c.CheckID, Name: c.Name, Notes: c.Notes, Status: st, ServiceID: reg.ID})
	}
	v.checks[reg.ID] = chs
}

func (v *agentView) deregistered(id string) {
	delete(v.services, id)
	delete(v.checks, id)
}

func (v *agentView) setStatus(serviceID, checkID, status string) {
	for _, c := range v.checks[serviceID] {
		if c.CheckID == checkID {
			c.Status = status
		}
	}
}
