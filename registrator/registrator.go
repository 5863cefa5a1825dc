package main

import (
	"context"
	"errors"
	"fmt"
	cerrdefs "github.com/containerd/errdefs"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth/berth/pkg/backoff"
	"github.com/berth/berth/pkg/query"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/hashicorp/consul/api"
)

// Config is everything a Registrator needs; main fills it from flags, tests
// fill it directly.
type Config struct {
	Map mapConfig
	// Resync re-lists the containers and reconciles every interval (0: off;
	// agent changes and events still reconcile).
	Resync time.Duration
	// DeregisterOnSuccess keeps the services of containers that exited
	// non-zero (gliderlabs -deregister on-success).
	DeregisterOnSuccess bool
	// Cleanup also removes the services gliderlabs-shaped IDs name for this
	// host that no container wants, owned or not (gliderlabs -cleanup).
	Cleanup bool
	// DockerHost overrides DOCKER_HOST when set.
	DockerHost string
	Consul     *api.Client
	Log        *slog.Logger
	Metrics    *metrics
	// ResolveHost gives the host's address for a host name ("" when it
	// resolves to nothing); nil: hostAddr. Asked, when -ip is empty, for
	// each container first seen running (see planInput.HostAddr).
	ResolveHost func(host string) string
	// ConsulRetryMax bounds the backoff between reconcile attempts while
	// Consul is away (default 10s).
	ConsulRetryMax time.Duration
}

// Registrator keeps the local agent's services equal to the running
// containers. Run owns every goroutine it starts.
type Registrator struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	consul *api.Client   // the agent's node name
	q      *query.Client // the catalog watch (pkg/query)
	agent  agentAPI      // what reconcile passes read and write
	docker *client.Client

	// queue of Docker events and resync requests, filled by the event loop.
	qmu    sync.Mutex
	queue  []queued
	qready chan struct{}

	consulChanged chan struct{}
	snapMu        sync.Mutex
	snap          *catalogSnap
	forceSync     atomic.Bool

	// Main-loop state (touched only by the loop goroutine).
	running  map[string]*container.InspectResponse // running containers by ID
	crashed  map[string]bool                       // containers -deregister on-success keeps the services of (see apply)
	peerAddr map[string]string                     // container ID → address of the container whose network it shares
	hostAddr map[string]string                     // container ID → the host's address resolved for its current run
	// hostAddrRun: container ID → State.StartedAt of the run hostAddr is for.
	hostAddrRun map[string]string
	// passAddr is the host's address resolved in this loop iteration
	// (passResolved), so a listing of many new containers resolves once.
	passAddr     string
	passResolved bool
	rejected     map[string]refusal // service ID → definition the agent refused
	// reapable and reaped: see noteReaped.
	reapable      map[string]string
	reaped        map[string]reapedService
	warnedForeign map[string]bool
	warned        map[string]string // container name → the mapping warnings last logged
	noted         map[string]string // container name → the ignored ports last logged
	mapped        *mapCache
	listed        bool // Docker listed at least once: desired state is known
	view          *agentView

	// Wanted TTL check states, shared with the heartbeat loop. sendMu
	// orders the sends of TTL states (registrations included), so a
	// heartbeat can never overwrite a newer status with an older one.
	tmu    sync.Mutex
	ttl    map[string]ttlState
	sendMu sync.Mutex

	dockerUp atomic.Bool
	consulOK atomic.Bool
	passes   atomic.Int64
}

// refusal remembers a definition the agent refused, so that it is not sent
// again on every pass; it is retried when it changes or after refusedRetry.
type refusal struct {
	def string
	at  time.Time
}

const refusedRetry = 5 * time.Minute

type queued struct {
	resync bool // re-list all containers (stream (re)connected)
	reason string
	id     string
	action string
}

// New prepares a Registrator; it connects nothing yet.
func New(cfg Config) (*Registrator, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = newMetrics()
	}
	if cfg.Consul == nil {
		return nil, errors.New("registrator: no Consul client")
	}
	if cfg.ResolveHost == nil {
		cfg.ResolveHost = hostAddr
	}
	if cfg.ConsulRetryMax <= 0 {
		cfg.ConsulRetryMax = 10 * time.Second
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	dc, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	// The catalog watch asks the leader (MaxStale 0), as it always has: it
	// compares with what this agent holds.
	q := query.New(query.Config{Client: cfg.Consul, Log: cfg.Log})
	_ = cfg.Metrics.reg.Register(q.Collector("registrator")) // already there when New is called again with the same metrics
	return &Registrator{
		cfg: cfg, log: cfg.Log, m: cfg.Metrics, consul: cfg.Consul, q: q, agent: consulAgent{cfg.Consul}, docker: dc,
		qready:        make(chan struct{}, 1),
		consulChanged: make(chan struct{}, 1),
		running:       map[string]*container.InspectResponse{},
		crashed:       map[string]bool{},
		peerAddr:      map[string]string{},
		hostAddr:      map[string]string{},
		hostAddrRun:   map[string]string{},
		rejected:      map[string]refusal{},
		reaped:        map[string]reapedService{},
		warnedForeign: map[string]bool{},
		warned:        map[string]string{},
		noted:         map[string]string{},
		mapped:        newMapCache(),
		ttl:           map[string]ttlState{},
	}, nil
}

// Health is nil when Docker's event stream is connected and the last
// reconcile with Consul succeeded.
func (r *Registrator) Health() error {
	switch {
	case !r.dockerUp.Load():
		return errors.New("waiting for the Docker event stream")
	case !r.consulOK.Load():
		return errors.New("waiting for the Consul agent")
	}
	return nil
}

// Run works until ctx is done.
func (r *Registrator) Run(ctx context.Context) error {
	defer r.docker.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); _ = r.q.Run(ctx) }()
	go func() { defer wg.Done(); r.eventLoop(ctx) }()
	go func() { defer wg.Done(); r.agentWatch(ctx) }()
	go func() { defer wg.Done(); r.heartbeat(ctx) }()
	defer wg.Wait()
	r.mainLoop(ctx)
	return nil
}

func (r *Registrator) push(q queued) {
	r.qmu.Lock()
	r.queue = append(r.queue, q)
	r.qmu.Unlock()
	select {
	case r.qready <- struct{}{}:
	default:
	}
}

func (r *Registrator) take() []queued {
	r.qmu.Lock()
	defer r.qmu.Unlock()
	q := r.queue
	r.queue = nil
	return q
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// eventLoop keeps a Docker event subscription open: subscribe first, then
// ask for a full listing; on any stream end, reconnect with backoff and
// resume from the last event seen.
func (r *Registrator) eventLoop(ctx context.Context) {
	bo := backoff.New(200*time.Millisecond, 10*time.Second)
	var since time.Time
	var dockerDown outage // from the first failed ping
	first := true
	for ctx.Err() == nil {
		if _, err := r.docker.Ping(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.dockerUp.Store(false)
			d := bo.Next()
			r.log.Warn("waiting for Docker", append(dockerDown.failed(), "err", err, "retry_in", d.Round(time.Millisecond))...)
			_ = backoff.SleepCtx(ctx, d)
			continue
		}
		if since.IsZero() {
			since = time.Now().Add(-time.Second)
		}
		sctx, scancel := context.WithCancel(ctx)
		msgs, errs := r.docker.Events(sctx, events.ListOptions{
			Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)), filters.Arg("type", string(events.NetworkEventType))),
			Since:   fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		})
		reason := "start"
		if !first {
			reason = "reconnect"
			r.m.reconnects.Inc()
			r.log.Info("Docker event stream reconnected; catching up", "since", since.Format(time.RFC3339Nano))
		}
		first = false
		r.dockerUp.Store(true)
		dockerDown.end()
		// The subscription replays everything from `since`, so listing now
		// cannot miss a change that happens while the stream opens.
		r.push(queued{resync: true, reason: reason})
		connected := time.Now()
		var streamErr error
	recv:
		for {
			select {
			case m := <-msgs:
				if m.TimeNano > 0 {
					since = time.Unix(0, m.TimeNano)
				}
				bo.Reset()
				if id := relevant(m); id != "" && r.labelled(m) {
					r.m.events.Inc()
					r.push(queued{id: id, action: string(m.Action)})
				}
			case err := <-errs:
				streamErr = err
				break recv
			}
		}
		scancel()
		if ctx.Err() != nil {
			return
		}
		r.dockerUp.Store(false)
		if time.Since(connected) > 10*time.Second {
			bo.Reset() // a stream that lived a while: reconnect promptly
		}
		d := bo.Next()
		r.log.Warn("Docker event stream closed; reconnecting", "err", streamErr, "retry_in", d.Round(time.Millisecond))
		_ = backoff.SleepCtx(ctx, d)
	}
}

// relevant returns the container an event may change the services of, or "".
// Network connect/disconnect events count: they change the addresses.
func relevant(m events.Message) string {
	if m.Type == events.NetworkEventType {
		if m.Action == events.ActionConnect || m.Action == events.ActionDisconnect {
			return m.Actor.Attributes["container"]
		}
		return ""
	}
	switch m.Action {
	case events.ActionStart, events.ActionRestart, events.ActionDie, events.ActionStop,
		events.ActionDestroy, events.ActionRename, events.ActionUnPause, events.ActionUpdate:
		return m.Actor.ID
	}
	if strings.HasPrefix(string(m.Action), "health_status") {
		return m.Actor.ID
	}
	return ""
}

// labelled reports whether a container event may concern a container
// -only-label lets in (Docker copies a container's labels into the
// attributes of its events); network events name no container labels and
// always pass.
func (r *Registrator) labelled(m events.Message) bool {
	key := r.cfg.Map.OnlyLabel
	if key == "" || m.Type != events.ContainerEventType {
		return true
	}
	v, ok := m.Actor.Attributes[key]
	return ok && (r.cfg.Map.OnlyValue == "" || v == r.cfg.Map.OnlyValue)
}

// agentWatch blocks on this node's services in the catalog and asks for a
// reconcile whenever they change or the agent comes back after being away:
// an agent that restarted without its data lost our registrations, and its
// anti-entropy sync (or the catalog's reset index) shows up here.
func (r *Registrator) agentWatch(ctx context.Context) {
	node := ""
	recovered := true // the first answer, and the first after errors, force a pass
	fetch := func(q *api.QueryOptions) ([]*api.AgentService, *api.QueryMeta, error) {
		if node == "" {
			n, err := r.consul.Agent().NodeName()
			if err != nil {
				return nil, nil, fmt.Errorf("agent node name: %w", err)
			}
			node = n
		}
		list, meta, err := r.consul.Catalog().NodeServiceList(node, q)
		if err != nil {
			node = ""
			return nil, nil, err
		}
		var svcs []*api.AgentService
		if list != nil {
			svcs = list.Services
		}
		return svcs, meta, nil
	}
	deliver := func(svcs []*api.AgentService) {
		r.snapMu.Lock()
		r.snap = &catalogSnap{services: svcs, force: recovered || (r.snap != nil && r.snap.force)}
		r.snapMu.Unlock()
		recovered = false
		notify(r.consulChanged)
	}
	_ = query.Watch(ctx, r.q, query.Query{Name: "node services", OnError: func(error, time.Duration) { recovered = true }}, fetch, deliver)
}

// catalogSnap is this node's services as the catalog last showed them.
type catalogSnap struct {
	services []*api.AgentService
	force    bool
}

// agentNeedsPass decides whether a change seen in the catalog calls for a
// full reconcile: yes when forced (first answer, Consul back after errors,
// a failed heartbeat) or when the catalog's copy of our services differs
// from what we believe the agent holds; our own writes showing up there
// cost nothing more.
func (r *Registrator) agentNeedsPass() bool {
	r.snapMu.Lock()
	snap := r.snap
	r.snap = nil
	r.snapMu.Unlock()
	if r.forceSync.Swap(false) || snap == nil || snap.force || r.view == nil {
		return true
	}
	seen := 0
	for _, c := range snap.services {
		if !owned(c, r.cfg.Map.Hostname) {
			continue
		}
		seen++
		v := r.view.services[c.ID]
		if v == nil || v.Service != c.Service || v.Port != c.Port || v.Address != c.Address ||
			!slices.Equal(v.Tags, c.Tags) && (len(v.Tags) != 0 || len(c.Tags) != 0) || !maps.Equal(v.Meta, c.Meta) {
			return true
		}
	}
	n := 0
	for _, v := range r.view.services {
		if owned(v, r.cfg.Map.Hostname) {
			n++
		}
	}
	return n != seen
}

// heartbeat keeps the registrator-maintained TTL checks (Docker health and
// liveness) current.
func (r *Registrator) heartbeat(ctx context.Context) {
	period := time.Duration(0)
	for _, d := range []time.Duration{r.cfg.Map.LivenessTTL, r.healthTTL()} {
		if d > 0 && (period == 0 || d/3 < period) {
			period = d / 3
		}
	}
	if period <= 0 {
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.tmu.Lock()
		checkIDs := make([]string, 0, len(r.ttl))
		for k := range r.ttl {
			checkIDs = append(checkIDs, k)
		}
		r.tmu.Unlock()
		failed := 0
		for _, id := range checkIDs {
			if ctx.Err() != nil {
				return
			}
			r.sendMu.Lock()
			r.tmu.Lock()
			st, ok := r.ttl[id]
			r.tmu.Unlock()
			var err error
			if ok {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err = r.agent.UpdateTTL(cctx, id, st.Output, st.Status)
				cancel()
			}
			r.sendMu.Unlock()
			if err != nil {
				failed++
				r.log.Debug("TTL heartbeat failed", "check", id, "err", err)
				r.forceSync.Store(true)
				continue
			}
			if ok {
				r.m.checkUpdates.Inc()
			}
		}
		if failed > 0 {
			// A check the agent does not know (it restarted, or someone
			// removed it): a fresh reconcile puts it back.
			notify(r.consulChanged)
		}
	}
}

func (r *Registrator) setTTL(m map[string]ttlState) {
	if len(m) == 0 {
		return
	}
	r.tmu.Lock()
	for k, v := range m {
		r.ttl[k] = v
	}
	r.tmu.Unlock()
}

func (r *Registrator) healthTTL() time.Duration {
	if r.cfg.Map.DockerHealth {
		return r.cfg.Map.HealthTTL
	}
	return 0
}

func (r *Registrator) mainLoop(ctx context.Context) {
	var resync <-chan time.Time
	if r.cfg.Resync > 0 {
		t := time.NewTicker(r.cfg.Resync)
		defer t.Stop()
		resync = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	bo := backoff.New(200*time.Millisecond, r.cfg.ConsulRetryMax)
	var consulDown outage // from the first failed reconcile
	// relist re-reads Docker after a failed listing or inspect.
	relist := time.NewTimer(time.Hour)
	relist.Stop()
	dbo := backoff.New(500*time.Millisecond, 10*time.Second)
	for {
		needList, needSync := false, false
		trigger := ""
		var ids []string
		select {
		case <-ctx.Done():
			return
		case <-r.qready:
			for _, q := range r.take() {
				if q.resync {
					needList = true
					trigger = q.reason
					continue
				}
				ids = append(ids, q.id)
			}
			if trigger == "" {
				trigger = "event"
			}
		case <-r.consulChanged:
			if !r.agentNeedsPass() {
				continue
			}
			needSync, trigger = true, "agent"
		case <-resync:
			needList, trigger = true, "resync"
		case <-retry.C:
			needSync, trigger = true, "retry"
		case <-relist.C:
			needList, trigger = true, "retry"
		}
		changed := false
		r.passResolved = false
		if needList {
			if err := r.listContainers(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				d := dbo.Next()
				r.log.Warn("listing containers failed; retrying", "err", err, "retry_in", d.Round(time.Millisecond))
				relist.Reset(d)
				continue
			}
			dbo.Reset()
			changed = true
		}
		// Events are applied in arrival order; a container seen several
		// times in one batch is inspected once, after its last event, which
		// gives the same final state.
		ids = lastOccurrences(ids)
		if !needList {
			for _, id := range ids {
				ch, err := r.inspect(ctx, id)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					d := dbo.Next()
					r.log.Warn("inspect failed; re-listing", "container", short(id), "err", err, "retry_in", d.Round(time.Millisecond))
					relist.Reset(d)
					continue
				}
				changed = changed || ch
			}
		}
		if !r.listed {
			continue
		}
		if !changed && !needSync && trigger != "resync" {
			continue
		}
		if err := r.reconcile(ctx, trigger); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.consulOK.Store(false)
			d := bo.Next()
			r.log.Warn("reconcile with Consul failed; keeping the desired state and retrying",
				append(consulDown.failed(), "err", err, "retry_in", d.Round(time.Millisecond))...)
			retry.Reset(d)
			continue
		}
		if bo.Active() {
			r.log.Info("Consul agent reachable again; reconciled", "after", consulDown.lasted().Round(time.Millisecond))
		}
		consulDown.end()
		bo.Reset()
		r.consulOK.Store(true)
	}
}

func lastOccurrences(ids []string) []string {
	if len(ids) < 2 {
		return ids
	}
	last := map[string]int{}
	for i, id := range ids {
		last[id] = i
	}
	out := ids[:0:0]
	for i, id := range ids {
		if last[id] == i {
			out = append(out, id)
		}
	}
	return out
}

// dockerSignalledBit is set in a container's exit code when its process
// was ended by a signal (128 + signal number: 137 for SIGKILL, 143 for
// SIGTERM).
const dockerSignalledBit = 128

// crashed reports whether a container that exited with code keeps its
// services under -deregister on-success: only when the code is non-zero and
// does not have the signalled bit, so `docker stop` and `docker kill`
// deregister and only a crash keeps the service. Rule of gliderlabs
// registrator master, bridge/bridge.go (*Bridge).shouldRemove.
func crashed(code int) bool {
	return code != 0 && code&dockerSignalledBit != dockerSignalledBit
}

var exitedRe = regexp.MustCompile(`^Exited \((-?\d+)\)`)

// listContainers re-reads every container: running ones (paused and
// restarting ones included) are inspected and mapped, stopped ones that
// failed are remembered for -deregister on-success.
func (r *Registrator) listContainers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	opts := container.ListOptions{All: true}
	if k := r.cfg.Map.OnlyLabel; k != "" {
		// Docker does the -only-label filtering: other containers on a
		// shared daemon are neither inspected nor mapped.
		if v := r.cfg.Map.OnlyValue; v != "" {
			k += "=" + v
		}
		opts.Filters = filters.NewArgs(filters.Arg("label", k))
	}
	list, err := r.docker.ContainerList(ctx, opts)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	failed := map[string]bool{}
	var running []string
	for _, c := range list {
		// Paused containers are running ones: Docker's default listing,
		// which gliderlabs master bridge/bridge.go (*Bridge).Sync reads,
		// holds them, and no event removes their services. Restarting ones
		// are inspected for apply to decide.
		switch c.State {
		case container.StateRunning, container.StatePaused, container.StateRestarting:
			running = append(running, c.ID)
			continue
		}
		if m := exitedRe.FindStringSubmatch(c.Status); m != nil {
			if code, err := strconv.Atoi(m[1]); err == nil && crashed(code) {
				failed[c.ID] = true
			}
		}
	}
	type res struct {
		id  string
		c   container.InspectResponse
		err error
	}
	results := make([]res, len(running))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, id := range running {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := r.docker.ContainerInspect(ctx, id)
			results[i] = res{id, c, err}
		}()
	}
	wg.Wait()
	r.crashed = failed // apply adds the restarting ones
	alive := map[string]bool{}
	for _, x := range results {
		if x.err != nil {
			if cerrdefs.IsNotFound(x.err) {
				continue
			}
			return fmt.Errorf("inspect %s: %w", short(x.id), x.err)
		}
		r.apply(ctx, x.id, &x.c)
		alive[x.id] = true
	}
	// Containers that are gone or no longer running have no services.
	for id := range r.running {
		if !alive[id] {
			delete(r.running, id)
			delete(r.peerAddr, id)
			r.dropHostAddr(id)
		}
	}
	r.listed = true
	return nil
}

// inspect re-reads one container after an event; it reports whether the
// desired state may have changed.
func (r *Registrator) inspect(ctx context.Context, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := r.docker.ContainerInspect(ctx, id)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			delete(r.crashed, id)
			delete(r.running, id)
			delete(r.peerAddr, id)
			r.dropHostAddr(id)
			return true, nil
		}
		return false, fmt.Errorf("inspect %s: %w", short(id), err)
	}
	r.apply(ctx, id, &c)
	return true, nil
}

// apply records one inspected container: running ones are mapped at the
// next pass, exited ones are remembered when they crashed. A container its
// restart policy is about to restart (Docker says Running and Restarting)
// has no services, and -deregister on-success keeps them, whatever its exit
// code: gliderlabs master deregisters at the die event under "always"
// (registrator.go main, bridge/bridge.go (*Bridge).shouldRemove), and under
// "on-success" shouldRemove finds the container still running and keeps
// them. For a container sharing another's network (network mode
// container:<id>) it also reads that container's address.
func (r *Registrator) apply(ctx context.Context, id string, c *container.InspectResponse) {
	delete(r.peerAddr, id)
	if c.State != nil && c.State.Running && c.State.Restarting {
		delete(r.running, id)
		r.dropHostAddr(id)
		r.crashed[id] = true
		return
	}
	if c.State == nil || !c.State.Running {
		delete(r.running, id)
		r.dropHostAddr(id)
		if c.State != nil && crashed(c.State.ExitCode) {
			r.crashed[id] = true
		} else {
			delete(r.crashed, id)
		}
		return
	}
	delete(r.crashed, id)
	r.running[id] = c
	// The host's address: resolved for each run of the container (a
	// restart is a new run even when its die and start events come in one
	// batch), as gliderlabs resolves it at every start event.
	if _, ok := r.hostAddr[id]; (!ok || r.hostAddrRun[id] != c.State.StartedAt) && r.cfg.Map.HostIP == "" {
		if !r.passResolved {
			r.passAddr, r.passResolved = r.cfg.ResolveHost(r.cfg.Map.Hostname), true
		}
		r.hostAddr[id], r.hostAddrRun[id] = r.passAddr, c.State.StartedAt
	}
	if c.HostConfig != nil && c.HostConfig.NetworkMode.IsContainer() {
		if addr, err := r.networkPeerAddr(ctx, c.HostConfig.NetworkMode.ConnectedContainer()); err != nil {
			r.log.Warn("cannot read the container whose network this one shares", "container", containerName(c), "err", err)
		} else {
			r.peerAddr[id] = addr
		}
	}
}

// networkPeerAddr is the address of container idOrName, chosen as for
// -internal (containerIP), or peerOnHostNetwork when that container uses
// the host's network.
func (r *Registrator) networkPeerAddr(ctx context.Context, idOrName string) (string, error) {
	peer, err := r.docker.ContainerInspect(ctx, idOrName)
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", short(idOrName), err)
	}
	if peer.HostConfig != nil && peer.HostConfig.NetworkMode.IsHost() {
		return peerOnHostNetwork, nil
	}
	ip, _, err := containerIP(&peer, &r.cfg.Map)
	if err != nil {
		return "", fmt.Errorf("container %s: %w", containerName(&peer), err)
	}
	return ip, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// reconcile makes the agent's owned services equal to the desired ones,
// writing only what differs: it reads the agent when needed, plans
// (planFor) and applies the plan (applyPlan).
func (r *Registrator) reconcile(ctx context.Context, trigger string) error {
	r.m.passes.WithLabelValues(trigger).Inc()
	r.passes.Add(1)
	// A hung agent must not hold the loop forever.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// Passes after Docker events compare with the agent view read by the
	// last full pass and kept up to date with our own writes; every other
	// pass (start, resync, reconnect, agent change, retry) reads the agent
	// afresh, so anything the agent lost or someone changed is repaired.
	if trigger != "event" || r.view == nil {
		prev := r.view
		r.view = nil
		v, err := readAgent(ctx, r.agent)
		if err != nil {
			return err
		}
		r.view = v
		if trigger == "agent" && prev != nil {
			r.noteReaped(prev, v)
		}
	}
	r.forgetReaped(trigger)
	reaped := make(map[string]bool, len(r.reaped))
	for id := range r.reaped {
		reaped[id] = true
	}
	p := planFor(planInput{
		Running: r.running, PeerAddr: r.peerAddr, HostAddr: r.hostAddr, Crashed: r.crashed, Agent: r.view, Map: &r.cfg.Map,
		DeregisterOnSuccess: r.cfg.DeregisterOnSuccess, Cleanup: r.cfg.Cleanup,
		Sync: trigger == "start" || trigger == "resync", Refused: r.rejected, Now: time.Now(), Cache: r.mapped, Reaped: reaped,
	})
	r.reapable = p.Reapable
	r.logPlan(p)
	writes, err := r.applyPlan(ctx, p)
	if err != nil {
		r.view = nil // a failed pass leaves the view unknown
		return err
	}
	wanted := make(map[string]bool, len(p.Wanted))
	for _, id := range p.Wanted {
		wanted[id] = true
	}
	for id := range r.rejected {
		if !wanted[id] {
			delete(r.rejected, id)
		}
	}
	r.m.writes.Add(float64(writes))
	r.m.services.Set(float64(len(p.Wanted)))
	if writes > 0 {
		r.log.Debug("reconciled", "trigger", trigger, "writes", writes, "services", len(p.Wanted))
	}
	return nil
}

// reapedService is a service Consul removed by itself: its container, and
// when that container had started.
type reapedService struct {
	container string
	startedAt string
}

// noteReaped remembers the services with SERVICE_CHECK_DEREGISTER_AFTER
// that were in the agent at the last pass and are gone now, seen by a
// pass the catalog watch started: Consul reaped them after their check
// stayed critical that long (or someone removed them). gliderlabs writes
// services only at a container's start and at its Sync (registrator.go
// main: start events and -resync), so such a service stays gone until
// then; registrator leaves it gone until the container starts again, the
// next -resync, or a restart (forgetReaped), instead of putting it back at
// once and having Consul reap it again.
func (r *Registrator) noteReaped(prev, now *agentView) {
	for id, cid := range r.reapable {
		if prev.services[id] == nil || now.services[id] != nil {
			continue
		}
		if _, ok := r.reaped[id]; ok {
			continue
		}
		started := ""
		if c := r.running[cid]; c != nil && c.State != nil {
			started = c.State.StartedAt
		}
		r.reaped[id] = reapedService{container: cid, startedAt: started}
		r.log.Warn("service removed from the agent while its check asks Consul to deregister it when critical; not registering it again until its container restarts or the next -resync (as gliderlabs)",
			"id", id, "container", short(cid))
	}
}

// forgetReaped drops the reaped services a start or -resync pass
// registers again (gliderlabs' Sync), and those whose container stopped
// or started again since.
func (r *Registrator) forgetReaped(trigger string) {
	for id, rs := range r.reaped {
		c := r.running[rs.container]
		if trigger == "start" || trigger == "resync" || c == nil || c.State == nil || c.State.StartedAt != rs.startedAt {
			delete(r.reaped, id)
		}
	}
}

// logPlan logs what the plan found wrong with the input, each once while
// it stays so: mapping warnings per container, IDs held by others.
func (r *Registrator) logPlan(p *plan) {
	for name, ws := range p.Warnings {
		key := fmt.Sprint(ws)
		if r.warned[name] == key {
			continue
		}
		r.warned[name] = key
		for _, w := range ws {
			r.log.Warn(w.Msg, append([]any{"container", name}, w.Args...)...)
		}
	}
	for name := range r.warned {
		if p.Warnings[name] == nil {
			delete(r.warned, name)
		}
	}
	// What gliderlabs master bridge/bridge.go add logs when a container
	// starts (and at its first sync), never at a resync (quiet): here once
	// while it stays so.
	for name, ns := range p.Ignored {
		key := fmt.Sprint(ns)
		if r.noted[name] == key {
			continue
		}
		r.noted[name] = key
		for _, n := range ns {
			r.log.Info(n.Msg, append([]any{"container", name}, n.Args...)...)
		}
	}
	for name := range r.noted {
		if p.Ignored[name] == nil {
			delete(r.noted, name)
		}
	}
	foreign := map[string]bool{}
	for _, c := range p.Foreign {
		foreign[c.ServiceID] = true
		if !r.warnedForeign[c.ServiceID] {
			r.log.Warn("service ID already registered by someone else; not touching it", "id", c.ServiceID, "container", c.Container)
		}
	}
	r.warnedForeign = foreign
	for _, c := range p.Duplicates {
		r.log.Warn("service ID claimed by two containers; keeping the first", "id", c.ServiceID, "container", c.Container, "kept", c.Holder)
	}
}

// outage is when the current outage of a dependency (Docker, Consul)
// began; the zero value is no outage.
type outage struct{ since time.Time }

// failed records a failure, the start of the outage unless one is on, and
// returns the log fields that say it: since (UTC, RFC 3339) and for (so
// far, in whole seconds).
func (o *outage) failed() []any {
	if o.since.IsZero() {
		o.since = time.Now()
	}
	return []any{"since", o.since.UTC().Format(time.RFC3339), "for", time.Since(o.since).Round(time.Second)}
}

// lasted is how long the outage has lasted (since its first failure).
func (o *outage) lasted() time.Duration { return time.Since(o.since) }

// end ends the outage.
func (o *outage) end() { o.since = time.Time{} }

// dropHostAddr forgets the host address resolved for container id's run.
func (r *Registrator) dropHostAddr(id string) {
	delete(r.hostAddr, id)
	delete(r.hostAddrRun, id)
}
