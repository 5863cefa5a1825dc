package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/berth/berth/pkg/watch"
	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/consul/api"
)

// A dep is one distinct query. Its String() is its identity: two template
// calls that need the same data share one dep and therefore one watch.
type dep interface {
	String() string
	// run fetches the data and hands every change to deliver until ctx ends.
	run(ctx context.Context, e *env, deliver func(any))
}

// env is what every watch needs.
type env struct {
	client   *api.Client
	maxStale time.Duration
	log      *slog.Logger
	onError  func(dep string, err error)
	onOK     func(dep string)
	pollTick time.Duration
	// blockWait is the longest a blocking query waits (block_query_wait; 60s).
	blockWait time.Duration
	// retryMin and retryMax bound the backoff after a failed call (0: pkg/watch's defaults).
	retryMin, retryMax time.Duration
}

// queryOpts are the read options for one call: stale by default; -max-stale 0
// asks the leader.
func (e *env) queryOpts(ctx context.Context, dc string, idx uint64, near string) *api.QueryOptions {
	q := &api.QueryOptions{Datacenter: dc, WaitIndex: idx, WaitTime: e.blockWait, AllowStale: e.maxStale > 0, Near: near}
	return q.WithContext(ctx)
}

// staleTooOld re-asks the leader when a stale answer is older than -max-stale.
func (e *env) staleTooOld(meta *api.QueryMeta) bool {
	return e.maxStale > 0 && meta != nil && meta.LastContact > e.maxStale
}

func loopConsul[T any](ctx context.Context, e *env, name string, fetch watch.FetchFunc[T], deliver func(any)) {
	lim := burstLimiter(callsPerSecond)
	limited := func(ctx context.Context, idx uint64) (T, uint64, error) {
		{
			if err := lim(ctx); err != nil {
				var zero T
				return zero, 0, err
			}
		}
		v, i, err := fetch(ctx, idx)
		if err != nil {
			if e.onError != nil && ctx.Err() == nil {
				e.onError(name, err)
			}
		} else if e.onOK != nil {
			e.onOK(name)
		}
		return v, i, err
	}
	_ = watch.Loop(ctx, limited, func(v T, _ uint64) { deliver(v) }, watch.Options{Name: name, Log: e.log, RetryMin: e.retryMin, RetryMax: e.retryMax})
}

// ---- KV ----

// kvValue is what the kv.get dep stores. When the key is deleted after it
// had a value, Last keeps that value: `key` goes on rendering it, as
// consul-template's blocking key query keeps its last data on a nil answer
// (dependency/kv_get.go Fetch with BlockOnNil; watch/view.go), while
// keyExists and keyOrDefault see the key gone.
type kvValue struct {
	Exists  bool
	Value   string
	Last    string
	HadLast bool
}

type kvGetDep struct{ path, dc string }

func (d kvGetDep) String() string { return "kv.get(" + d.path + atDC(d.dc) + ")" }

func (d kvGetDep) run(ctx context.Context, e *env, deliver func(any)) {
	var last kvValue
	loopConsul(ctx, e, d.String(), func(ctx context.Context, idx uint64) (kvValue, uint64, error) {
		for attempt := 0; ; attempt++ {
			q := e.queryOpts(ctx, d.dc, idx, "")
			if attempt > 0 {
				q.AllowStale = false
			}
			p, meta, err := e.client.KV().Get(d.path, q)
			if err != nil {
				return kvValue{}, 0, err
			}
			if attempt == 0 && e.staleTooOld(meta) {
				continue
			}
			if p == nil {
				return kvValue{Last: last.Last, HadLast: last.HadLast}, meta.LastIndex, nil
			}
			last = kvValue{Exists: true, Value: string(p.Value), Last: string(p.Value), HadLast: true}
			return last, meta.LastIndex, nil
		}
	}, deliver)
}

// KeyPair is one entry of ls/tree, with consul-template's fields in its
// order (dependency/kv_list.go KeyPair), so toJSON writes the same bytes.
type KeyPair struct {
	Path        string
	Key         string
	Value       string
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
	Flags       uint64
	Session     string
}

type kvListDep struct{ prefix, dc string }

func (d kvListDep) String() string { return "kv.list(" + d.prefix + atDC(d.dc) + ")" }

func (d kvListDep) run(ctx context.Context, e *env, deliver func(any)) {
	loopConsul(ctx, e, d.String(), func(ctx context.Context, idx uint64) ([]*KeyPair, uint64, error) {
		for attempt := 0; ; attempt++ {
			q := e.queryOpts(ctx, d.dc, idx, "")
			if attempt > 0 {
				q.AllowStale = false
			}
			// consul-template lists the prefix as written: "app" also lists
			// "apple/x" (as key "le/x"); keys are relative to the prefix
			// with leading slashes cut (dependency/kv_list.go Fetch).
			base := strings.TrimPrefix(d.prefix, "/")
			ps, meta, err := e.client.KV().List(base, q)
			if err != nil {
				return nil, 0, err
			}
			if attempt == 0 && e.staleTooOld(meta) {
				continue
			}
			out := make([]*KeyPair, 0, len(ps))
			for _, p := range ps {
				rel := strings.TrimLeft(strings.TrimPrefix(p.Key, base), "/")
				out = append(out, &KeyPair{Path: p.Key, Key: rel, Value: string(p.Value),
					CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex, LockIndex: p.LockIndex, Flags: p.Flags, Session: p.Session})
			}
			return out, meta.LastIndex, nil
		}
	}, deliver)
}

// ---- health ----

// HealthService is one instance from `service` or `connect`: consul-template's
// fields in its order (dependency/health_service.go HealthService), so toJSON
// and toYAML write the same bytes; the fields after Weights are templater's
// own and are left out of toJSON/toYAML.
type HealthService struct {
	Node                   string
	NodeID                 string
	NodeAddress            string
	NodeTaggedAddresses    map[string]string
	NodeMeta               map[string]string
	ServiceMeta            map[string]string
	Address                string
	ServiceTaggedAddresses map[string]api.ServiceAddress
	ID                     string
	Name                   string
	Tags                   ServiceTags
	Checks                 api.HealthChecks
	Status                 string
	Port                   int
	Weights                api.AgentWeights
	NodeDatacenter         string `json:"-" yaml:"-"`
	Kind                   string `json:"-" yaml:"-"`
	Namespace              string `json:"-" yaml:"-"`
	Partition              string `json:"-" yaml:"-"`
}

// ServiceTags lets templates write `.Tags | contains "x"`.
type ServiceTags []string

// Contains reports whether the tag is present.
func (t ServiceTags) Contains(s string) bool {
	for _, v := range t {
		if v == s {
			return true
		}
	}
	return false
}

type healthDep struct {
	name, tag, dc, near string
	connect             bool
}

func (d healthDep) String() string {
	kind := "health.service"
	if d.connect {
		kind = "health.connect"
	}
	s := kind + "(" + d.name
	if d.tag != "" {
		s = kind + "(" + d.tag + "." + d.name
	}
	s += atDC(d.dc)
	if d.near != "" {
		s += "~" + d.near
	}
	return s + ")"
}

func (d healthDep) run(ctx context.Context, e *env, deliver func(any)) {
	loopConsul(ctx, e, d.String(), func(ctx context.Context, idx uint64) ([]*HealthService, uint64, error) {
		for attempt := 0; ; attempt++ {
			q := e.queryOpts(ctx, d.dc, idx, d.near)
			// Consul's streaming backend serves a health query from the
			// agent's materialized view from the first request when it is
			// ?cached (without it the first answer is a full server RPC
			// per watcher); it does not stream ?near queries.
			q.UseCache = d.near == ""
			if attempt > 0 {
				q.AllowStale, q.UseCache = false, false // ?cached cannot be ?consistent
			}
			var entries []*api.ServiceEntry
			var meta *api.QueryMeta
			var err error
			if d.connect {
				entries, meta, err = e.client.Health().Connect(d.name, d.tag, false, q)
			} else {
				entries, meta, err = e.client.Health().Service(d.name, d.tag, false, q)
			}
			if err != nil {
				return nil, 0, err
			}
			if attempt == 0 && e.staleTooOld(meta) {
				continue
			}
			out := make([]*HealthService, 0, len(entries))
			for _, en := range entries {
				addr := en.Service.Address
				if addr == "" {
					addr = en.Node.Address
				}
				out = append(out, &HealthService{
					Node: en.Node.Node, NodeID: en.Node.ID, NodeAddress: en.Node.Address, NodeDatacenter: en.Node.Datacenter,
					NodeTaggedAddresses: en.Node.TaggedAddresses, NodeMeta: en.Node.Meta, ServiceMeta: en.Service.Meta,
					Address: addr, ServiceTaggedAddresses: en.Service.TaggedAddresses, ID: en.Service.ID, Name: en.Service.Service,
					Kind: string(en.Service.Kind), Tags: sortedTags(en.Service.Tags), Port: en.Service.Port,
					Status: en.Checks.AggregatedStatus(), Checks: en.Checks, Weights: en.Service.Weights,
					Namespace: en.Service.Namespace, Partition: en.Service.Partition,
				})
			}
			if d.near == "" {
				sort.SliceStable(out, func(i, j int) bool {
					if out[i].Node != out[j].Node {
						return out[i].Node < out[j].Node
					}
					return out[i].ID < out[j].ID
				})
			}
			return out, meta.LastIndex, nil
		}
	}, deliver)
}

// sortedTags copies and sorts tags, as consul-template does for every tag
// list (dependency/dependency.go deepCopyAndSortTags).
func sortedTags(t []string) ServiceTags {
	out := make([]string, len(t))
	copy(out, t)
	sort.Strings(out)
	return ServiceTags(out)
}

// ---- catalog ----

// CatalogSnippet is one entry of `services`.
type CatalogSnippet struct {
	Name string
	Tags ServiceTags
}

type servicesDep struct{ dc string }

func (d servicesDep) String() string { return "catalog.services(" + atDC(d.dc) + ")" }

func (d servicesDep) run(ctx context.Context, e *env, deliver func(any)) {
	loopConsul(ctx, e, d.String(), func(ctx context.Context, idx uint64) ([]*CatalogSnippet, uint64, error) {
		m, meta, err := e.client.Catalog().Services(e.queryOpts(ctx, d.dc, idx, ""))
		if err != nil {
			return nil, 0, err
		}
		out := make([]*CatalogSnippet, 0, len(m))
		for n, tags := range m {
			out = append(out, &CatalogSnippet{Name: n, Tags: sortedTags(tags)})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, meta.LastIndex, nil
	}, deliver)
}

// Node is one entry of `nodes`.
type Node struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
}

// CatalogNodeService is one service of a `node` (consul-template's fields,
// dependency/catalog_node.go).
type CatalogNodeService struct {
	ID                string
	Service           string
	Tags              ServiceTags
	Meta              map[string]string
	Port              int
	Address           string
	EnableTagOverride bool
}

// CatalogNode is what `node` returns.
type CatalogNode struct {
	Node     *Node
	Services []*CatalogNodeService
}

type nodesDep struct{ dc, near string }

func (d nodesDep) String() string {
	s := "catalog.nodes(" + atDC(d.dc)
	if d.near != "" {
		s += "~" + d.near
	}
	return s + ")"
}

func (d nodesDep) run(ctx context.Context, e *env, deliver func(any)) {
	loopConsul(ctx, e, d.String(), func(ctx context.Context, idx uint64) ([]*Node, uint64, error) {
		ns, meta, err := e.client.Catalog().Nodes(e.queryOpts(ctx, d.dc, idx, d.near))
		if err != nil {
			return nil, 0, err
		}
		out := make([]*Node, 0, len(ns))
		for _, n := range ns {
			out = append(out, &Node{ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter, TaggedAddresses: n.TaggedAddresses, Meta: n.Meta})
		}
		if d.near == "" {
			sort.SliceStable(out, func(i, j int) bool { return out[i].Node < out[j].Node })
		}
		return out, meta.LastIndex, nil
	}, deliver)
}

type nodeDep struct{ name, dc string }

func (d nodeDep) String() string { return "catalog.node(" + d.name + atDC(d.dc) + ")" }

// nodeData wraps the answer so a missing node is data (nil Node), not "no data".
type nodeData struct{ N *CatalogNode }

func (d nodeDep) run(ctx context.Context, e *env, deliver func(any)) {
	loopConsul(ctx, e, d.String(), func(ctx context.Context, idx uint64) (nodeData, uint64, error) {
		name := d.name
		if name == "" {
			self, err := e.client.Agent().NodeName()
			if err != nil {
				return nodeData{}, 0, err
			}
			name = self
		}
		n, meta, err := e.client.Catalog().Node(name, e.queryOpts(ctx, d.dc, idx, ""))
		if err != nil {
			return nodeData{}, 0, err
		}
		if n == nil || n.Node == nil {
			// consul-template answers an empty node (dependency/catalog_node.go).
			return nodeData{&CatalogNode{}}, meta.LastIndex, nil
		}
		cn := &CatalogNode{Services: []*CatalogNodeService{}, Node: &Node{ID: n.Node.ID, Node: n.Node.Node, Address: n.Node.Address, Datacenter: n.Node.Datacenter, TaggedAddresses: n.Node.TaggedAddresses, Meta: n.Node.Meta}}
		for _, s := range n.Services {
			cn.Services = append(cn.Services, &CatalogNodeService{ID: s.ID, Service: s.Service, Tags: sortedTags(s.Tags), Meta: s.Meta, Port: s.Port, Address: s.Address, EnableTagOverride: s.EnableTagOverride})
		}
		sort.Slice(cn.Services, func(i, j int) bool {
			return cn.Services[i].Service < cn.Services[j].Service || cn.Services[i].Service == cn.Services[j].Service && cn.Services[i].ID < cn.Services[j].ID
		})
		return nodeData{cn}, meta.LastIndex, nil
	}, deliver)
}

// datacentersDep polls: Consul has no blocking query for it.
type datacentersDep struct{}

func (datacentersDep) String() string { return "catalog.datacenters()" }

func (d datacentersDep) run(ctx context.Context, e *env, deliver func(any)) {
	var last []string
	var lastIdx uint64
	loopConsul(ctx, e, d.String(), func(ctx context.Context, idx uint64) ([]string, uint64, error) {
		if idx > 0 {
			t := time.NewTimer(e.pollTick)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, 0, ctx.Err()
			case <-t.C:
			}
		}
		dcs, err := e.client.Catalog().Datacenters()
		if err != nil {
			return nil, 0, err
		}
		sort.Strings(dcs)
		if idx == 0 || !reflect.DeepEqual(dcs, last) {
			lastIdx++
			last = dcs
		}
		return dcs, lastIdx, nil
	}, deliver)
}

// ---- file ----

type fileDep struct{ path string }

func (d fileDep) String() string { return "file(" + d.path + ")" }

// fileData wraps the contents so a missing file is "no data".
type fileData struct{ Contents string }

func (d fileDep) run(ctx context.Context, e *env, deliver func(any)) {
	abs, err := filepath.Abs(d.path)
	if err != nil {
		abs = d.path
	}
	var last *string
	read := func() {
		b, err := os.ReadFile(abs)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				e.log.Warn("file: cannot read", "path", abs, "err", err)
			}
			return
		}
		s := string(b)
		if last != nil && *last == s {
			return
		}
		last = &s
		deliver(fileData{Contents: s})
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		e.log.Warn("file: no fsnotify; polling every second", "path", abs, "err", err)
	} else {
		defer w.Close()
		if err := w.Add(filepath.Dir(abs)); err != nil {
			e.log.Warn("file: cannot watch folder; polling every second", "path", abs, "err", err)
			w.Close()
			w = nil
		}
	}
	read()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var events chan fsnotify.Event
	var errs chan error
	if w != nil {
		events, errs = w.Events, w.Errors
		tick.Reset(30 * time.Second) // belt and braces
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if filepath.Clean(ev.Name) == abs {
				read()
			}
		case <-errs:
			read()
		case <-tick.C:
			read()
		}
	}
}

func atDC(dc string) string {
	if dc == "" {
		return ""
	}
	return "@" + dc
}

// ---- query parsing ----

var (
	dcRe   = `[[:word:]\.\-]+`
	kvRe   = regexp.MustCompile(`^(?P<key>[^@]*?)(@(?P<dc>` + dcRe + `))?$`)
	nodeRe = regexp.MustCompile(`^(?P<name>[^@~]*?)(@(?P<dc>` + dcRe + `))?(~(?P<near>[[:word:]\.\-_]+))?$`)
	// consul-template's meaning: everything before the last dot is the tag.
	svcRe = regexp.MustCompile(`^((?P<tag>[[:word:]=:\-\./\s]+)\.)?(?P<name>[[:word:]\-/\s]+|\[[^\[\]@~|]+\])(@(?P<dc>` + dcRe + `))?(~(?P<near>[[:word:]\.\-_]+))?$`)
)

func parseKVQuery(s string) (path, dc string, err error) {
	if err := noQueryParams(s); err != nil {
		return "", "", err
	}
	m := kvRe.FindStringSubmatch(s)
	if m == nil {
		return "", "", fmt.Errorf("bad key query %q: want PATH[@DC]", s)
	}
	return strings.TrimPrefix(m[1], "/"), m[3], nil
}

// noQueryParams refuses consul-template's ?ns=, ?partition=, ?peer=
// query parameters (Consul Enterprise namespaces and partitions, peers),
// which templater does not support, rather than reading "?..." as part of
// the name.
func noQueryParams(s string) error {
	if strings.Contains(s, "?") {
		return fmt.Errorf("query %q: parameters after \"?\" (ns, partition, peer, sameness-group) are not supported", s)
	}
	return nil
}

// healthStates are the filter words of `service`.
var healthStates = map[string]bool{"any": true, "passing": true, "warning": true, "critical": true, "maintenance": true}

// parseServiceQuery parses `[tag.]name[@dc][~near][|filter,...]`. A name in
// brackets is taken whole, dots included: `[my.svc]`, `v1.[my.svc]@dc2`.
func parseServiceQuery(s string, extra ...string) (healthDep, []string, error) {
	if err := noQueryParams(s); err != nil {
		return healthDep{}, nil, err
	}
	q := strings.TrimSpace(s)
	var filter string
	if i := strings.Index(q, "|"); i >= 0 {
		q, filter = q[:i], q[i+1:]
	}
	for _, x := range extra {
		if filter != "" {
			filter += ","
		}
		filter += x
	}
	m := svcRe.FindStringSubmatch(q)
	if m == nil || q == "" {
		return healthDep{}, nil, fmt.Errorf("bad service query %q: want [TAG.]NAME[@DC][~NEAR][|FILTER,...] (a name with dots goes in brackets: [my.svc])", s)
	}
	name := m[svcRe.SubexpIndex("name")]
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	d := healthDep{name: name, tag: m[svcRe.SubexpIndex("tag")], dc: m[svcRe.SubexpIndex("dc")], near: m[svcRe.SubexpIndex("near")]}
	var states []string
	if strings.TrimSpace(filter) != "" {
		for _, w := range strings.Split(filter, ",") {
			w = strings.ToLower(strings.TrimSpace(w))
			if !healthStates[w] {
				return healthDep{}, nil, fmt.Errorf("bad health filter %q in service query %q: want any, passing, warning, critical or maintenance", w, s)
			}
			states = append(states, w)
		}
	}
	if len(states) == 0 {
		states = []string{"passing"}
	}
	return d, states, nil
}

func filterHealth(in []*HealthService, states []string) []*HealthService {
	want := map[string]bool{}
	for _, s := range states {
		if s == "any" {
			return in
		}
		want[s] = true
	}
	out := make([]*HealthService, 0, len(in))
	for _, h := range in {
		if want[h.Status] {
			out = append(out, h)
		}
	}
	return out
}

func parseNodeQuery(s string) (name, dc, near string, err error) {
	if err := noQueryParams(s); err != nil {
		return "", "", "", err
	}
	m := nodeRe.FindStringSubmatch(s)
	if m == nil {
		return "", "", "", fmt.Errorf("bad node query %q: want [NAME][@DC][~NEAR]", s)
	}
	return m[1], m[3], m[5], nil
}

// ---- store ----

// store holds the latest data of every watched dep, runs one watch per dep,
// and tells the runner which deps changed.
type store struct {
	env *env

	mu      sync.Mutex
	data    map[string]any
	views   map[string]*view
	changed map[string]bool
	errs    map[string]string
	// outageFrom is the first error while some watch has been failing.
	outageFrom time.Time
	notify     chan struct{}
}

type view struct {
	d      dep
	cancel context.CancelFunc
	done   chan struct{}
}

func newStore(e *env) *store {
	s := &store{env: e, data: map[string]any{}, views: map[string]*view{}, changed: map[string]bool{}, errs: map[string]string{}, notify: make(chan struct{}, 1)}
	e.onError = func(name string, err error) {
		s.mu.Lock()
		s.errs[name] = err.Error()
		if s.outageFrom.IsZero() {
			s.outageFrom = time.Now()
		}
		s.mu.Unlock()
	}
	e.onOK = func(name string) {
		s.mu.Lock()
		delete(s.errs, name)
		if len(s.errs) == 0 {
			s.outageFrom = time.Time{}
		}
		s.mu.Unlock()
	}
	return s
}

// get returns the dep's data and whether any has arrived, starting its watch
// when it is new.
func (s *store) get(ctx context.Context, d dep) (any, bool) {
	key := d.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.data[key]; ok {
		return v, true
	}
	if _, ok := s.views[key]; !ok {
		vctx, cancel := context.WithCancel(ctx)
		v := &view{d: d, cancel: cancel, done: make(chan struct{})}
		s.views[key] = v
		go func() {
			defer close(v.done)
			d.run(vctx, s.env, func(x any) { s.deliver(key, x) })
		}()
	}
	return nil, false
}

func (s *store) deliver(key string, x any) {
	s.mu.Lock()
	if _, ok := s.views[key]; !ok {
		s.mu.Unlock()
		return
	}
	if old, ok := s.data[key]; ok && reflect.DeepEqual(old, x) {
		s.mu.Unlock()
		return
	}
	s.data[key] = x
	s.changed[key] = true
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// drain returns and clears the set of changed deps.
func (s *store) drain() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.changed
	s.changed = map[string]bool{}
	return c
}

// keep stops the watches of deps no template uses any more.
func (s *store) keep(used map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.views {
		if !used[k] {
			v.cancel()
			delete(s.views, k)
			delete(s.data, k)
			delete(s.errs, k)
		}
	}
}

func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.views)
}

// failing returns the deps whose last call failed.
func (s *store) failing() (map[string]string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.errs))
	for k, v := range s.errs {
		out[k] = v
	}
	return out, s.outageFrom
}

func (s *store) stopAll() {
	s.mu.Lock()
	views := s.views
	s.views = map[string]*view{}
	s.mu.Unlock()
	for _, v := range views {
		v.cancel()
	}
	for _, v := range views {
		<-v.done
	}
}

// burstLimiter allows bursts of calls but no more than max per second: the
// minimum gap between calls only bites when a dep is hot, so a single change
// is never delayed.
func burstLimiter(max int) func(ctx context.Context) error {
	var mu sync.Mutex
	var times []time.Time
	return func(ctx context.Context) error {
		for {
			mu.Lock()
			now := time.Now()
			cut := 0
			for cut < len(times) && now.Sub(times[cut]) > time.Second {
				cut++
			}
			times = times[cut:]
			if len(times) < max {
				times = append(times, now)
				mu.Unlock()
				return nil
			}
			wait := time.Second - now.Sub(times[0])
			mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}

// callsPerSecond caps each watch's calls: a key written in a hot loop cannot
// make its watch spin, while a change after a quiet spell is never delayed.
const callsPerSecond = 100
