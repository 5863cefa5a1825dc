package main

import (
	"context"
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

	"github.com/berth/berth/pkg/query"
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
	// q runs every Consul query (pkg/query: wait, -max-stale, limits,
	// retries, recovery) and knows which are failing.
	q        *query.Client
	log      *slog.Logger
	pollTick time.Duration
	// giveUpAfter failed calls in a row of one query stop templater (0:
	// never; query.FailuresToGiveUp of the retry settings); the query's
	// last error then goes to giveUp.
	giveUpAfter int
	giveUp      chan error
}

// loopConsul watches one Consul query for the dep called name and hands
// every answer with a new index to deliver. After e.giveUpAfter failed
// calls in a row it reports the last error to e.giveUp and stops.
func loopConsul[T any](ctx context.Context, e *env, q query.Query, fetch query.Fetch[T], deliver func(any)) {
	if e.giveUpAfter > 0 {
		// consul-template v0.41.1 watch/view.go poll: failures in a row,
		// the count started again by any successful call; the last one is
		// logged as giving up, not as a retry (watch.Loop).
		q.GiveUp = func(failures int) bool { return failures >= e.giveUpAfter }
	}
	if err := query.Watch(ctx, e.q, q, fetch, func(v T) { deliver(v) }); ctx.Err() == nil && err != nil {
		select {
		case e.giveUp <- err:
		default:
		}
	}
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
	loopConsul(ctx, e, query.Query{Name: d.String(), Datacenter: d.dc}, func(q *api.QueryOptions) (*api.KVPair, *api.QueryMeta, error) {
		return e.q.API().KV().Get(d.path, q)
	}, func(p any) {
		if p := p.(*api.KVPair); p != nil {
			last = kvValue{Exists: true, Value: string(p.Value), Last: string(p.Value), HadLast: true}
			deliver(last)
			return
		}
		deliver(kvValue{Last: last.Last, HadLast: last.HadLast})
	})
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
	loopConsul(ctx, e, query.Query{Name: d.String(), Datacenter: d.dc}, func(q *api.QueryOptions) ([]*KeyPair, *api.QueryMeta, error) {
		// consul-template lists the prefix as written: "app" also lists
		// "apple/x" (as key "le/x"); keys are relative to the prefix
		// with leading slashes cut (dependency/kv_list.go Fetch).
		base := strings.TrimPrefix(d.prefix, "/")
		ps, meta, err := e.q.API().KV().List(base, q)
		if err != nil {
			return nil, nil, err
		}
		out := make([]*KeyPair, 0, len(ps))
		for _, p := range ps {
			rel := strings.TrimLeft(strings.TrimPrefix(p.Key, base), "/")
			out = append(out, &KeyPair{Path: p.Key, Key: rel, Value: string(p.Value),
				CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex, LockIndex: p.LockIndex, Flags: p.Flags, Session: p.Session})
		}
		return out, meta, nil
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
	// Consul streams health service queries: ?cached serves them from the
	// agent's materialized view from the first request (pkg/query). Not a
	// connect query with a tag: Consul's streamed view filters it by the
	// tag where its plain blocking query (consul-template's, dependency/
	// health_service.go Fetch) does not, so the two answer differently.
	qq := query.Query{Name: d.String(), Datacenter: d.dc, Near: d.near, Cached: !(d.connect && d.tag != "")}
	loopConsul(ctx, e, qq, func(q *api.QueryOptions) ([]*HealthService, *api.QueryMeta, error) {
		var entries []*api.ServiceEntry
		var meta *api.QueryMeta
		var err error
		if d.connect {
			entries, meta, err = e.q.API().Health().Connect(d.name, d.tag, false, q)
		} else {
			entries, meta, err = e.q.API().Health().Service(d.name, d.tag, false, q)
		}
		if err != nil {
			return nil, nil, err
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
		return out, meta, nil
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
	loopConsul(ctx, e, query.Query{Name: d.String(), Datacenter: d.dc}, func(q *api.QueryOptions) ([]*CatalogSnippet, *api.QueryMeta, error) {
		m, meta, err := e.q.API().Catalog().Services(q)
		if err != nil {
			return nil, nil, err
		}
		out := make([]*CatalogSnippet, 0, len(m))
		for n, tags := range m {
			out = append(out, &CatalogSnippet{Name: n, Tags: sortedTags(tags)})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, meta, nil
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
	loopConsul(ctx, e, query.Query{Name: d.String(), Datacenter: d.dc, Near: d.near}, func(q *api.QueryOptions) ([]*Node, *api.QueryMeta, error) {
		ns, meta, err := e.q.API().Catalog().Nodes(q)
		if err != nil {
			return nil, nil, err
		}
		out := make([]*Node, 0, len(ns))
		for _, n := range ns {
			out = append(out, &Node{ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter, TaggedAddresses: n.TaggedAddresses, Meta: n.Meta})
		}
		if d.near == "" {
			sort.SliceStable(out, func(i, j int) bool { return out[i].Node < out[j].Node })
		}
		return out, meta, nil
	}, deliver)
}

type nodeDep struct{ name, dc string }

func (d nodeDep) String() string { return "catalog.node(" + d.name + atDC(d.dc) + ")" }

// nodeData wraps the answer so a missing node is data (nil Node), not "no data".
type nodeData struct{ N *CatalogNode }

func (d nodeDep) run(ctx context.Context, e *env, deliver func(any)) {
	loopConsul(ctx, e, query.Query{Name: d.String(), Datacenter: d.dc}, func(q *api.QueryOptions) (nodeData, *api.QueryMeta, error) {
		name := d.name
		if name == "" {
			self, err := e.q.API().Agent().NodeName()
			if err != nil {
				return nodeData{}, nil, err
			}
			name = self
		}
		n, meta, err := e.q.API().Catalog().Node(name, q)
		if err != nil {
			return nodeData{}, nil, err
		}
		if n == nil || n.Node == nil {
			// consul-template answers an empty node (dependency/catalog_node.go).
			return nodeData{&CatalogNode{}}, meta, nil
		}
		cn := &CatalogNode{Services: []*CatalogNodeService{}, Node: &Node{ID: n.Node.ID, Node: n.Node.Node, Address: n.Node.Address, Datacenter: n.Node.Datacenter, TaggedAddresses: n.Node.TaggedAddresses, Meta: n.Node.Meta}}
		for _, s := range n.Services {
			cn.Services = append(cn.Services, &CatalogNodeService{ID: s.ID, Service: s.Service, Tags: sortedTags(s.Tags), Meta: s.Meta, Port: s.Port, Address: s.Address, EnableTagOverride: s.EnableTagOverride})
		}
		sort.Slice(cn.Services, func(i, j int) bool {
			return cn.Services[i].Service < cn.Services[j].Service || cn.Services[i].Service == cn.Services[j].Service && cn.Services[i].ID < cn.Services[j].ID
		})
		return nodeData{cn}, meta, nil
	}, deliver)
}

// datacentersDep polls: Consul has no blocking query for it.
type datacentersDep struct{}

func (datacentersDep) String() string { return "catalog.datacenters()" }

func (d datacentersDep) run(ctx context.Context, e *env, deliver func(any)) {
	var last []string
	var lastIdx uint64
	// Not a blocking query: the layer still gives it its limits, retries
	// and recovery; the index is made up, bumped when the list changes.
	loopConsul(ctx, e, query.Query{Name: d.String()}, func(q *api.QueryOptions) ([]string, *api.QueryMeta, error) {
		if q.WaitIndex > 0 {
			t := time.NewTimer(e.pollTick)
			select {
			case <-q.Context().Done():
				t.Stop()
				return nil, nil, q.Context().Err()
			case <-t.C:
			}
		}
		dcs, err := e.q.API().Catalog().Datacenters()
		if err != nil {
			return nil, nil, err
		}
		sort.Strings(dcs)
		if q.WaitIndex == 0 || !reflect.DeepEqual(dcs, last) {
			lastIdx++
			last = dcs
		}
		return dcs, &api.QueryMeta{LastIndex: lastIdx}, nil
	}, deliver)
}

// ---- file ----

type fileDep struct{ path string }

func (d fileDep) String() string { return "file(" + d.path + ")" }

// fileData is the file's contents, or Err when it cannot be read: `file`
// then fails, as consul-template's file dependency fails on a missing or
// unreadable file instead of waiting for it (so the first execution
// stops templater, exit 14, whatever error_fatal says: in consul-template
// it is the watcher's error, not the template's; after a render the error
// is logged and the old destination kept, as for any template error).
type fileData struct {
	Contents string
	Err      *fileError
}

// fileError is a file dependency that cannot be read (fileData.Err).
type fileError struct{ err error }

func (e *fileError) Error() string { return e.err.Error() }
func (e *fileError) Unwrap() error { return e.err }

func (d fileDep) run(ctx context.Context, e *env, deliver func(any)) {
	abs, err := filepath.Abs(d.path)
	if err != nil {
		abs = d.path
	}
	var last *string
	lastErr := ""
	read := func() {
		b, err := os.ReadFile(abs)
		if err != nil {
			if msg := err.Error(); msg != lastErr {
				lastErr, last = msg, nil
				deliver(fileData{Err: &fileError{fmt.Errorf("%s: %w", d, err)}})
			}
			return
		}
		s := string(b)
		if last != nil && *last == s {
			return
		}
		last, lastErr = &s, ""
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
	// Tag and name take consul-template's characters (no slash, no space);
	// a bracketed name is templater's.
	svcRe = regexp.MustCompile(`^((?P<tag>[[:word:]=:\-\.]+)\.)?(?P<name>[[:word:]\-]+|\[[^\[\]@~|]+\])(@(?P<dc>` + dcRe + `))?(~(?P<near>[[:word:]\.\-_]+))?$`)

	// The forms consul-template v0.41.1 accepts for each function (its
	// dependency package's query grammars, checked by
	// TestConformArgumentForms); anything else is an error, not a query.
	kvFormRe       = regexp.MustCompile(`^/?[^@]+(@` + dcRe + `)?$`)
	nodeFormRe     = regexp.MustCompile(`^[[:word:]\.\-]+(@` + dcRe + `)?$`)
	nodesFormRe    = regexp.MustCompile(`^(@` + dcRe + `)?(~[[:word:]\.\-]+)?$`)
	servicesFormRe = regexp.MustCompile(`^(@` + dcRe + `)?$`)
	svcFilterRe    = regexp.MustCompile(`^[[:word:],]+$`)
)

func parseKVQuery(s string) (path, dc string, err error) {
	if err := noQueryParams(s); err != nil {
		return "", "", err
	}
	m := kvRe.FindStringSubmatch(s)
	if m == nil || (s != "" && !kvFormRe.MatchString(s)) {
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

// parseServiceQuery parses `[tag.]name[@dc][~near][|filter,...]`. Further
// arguments are filters too: they are joined to s with "|", as
// consul-template joins them, so `service "web" "any"` is "web|any". A name
// in brackets is taken whole, dots included: `[my.svc]`, `v1.[my.svc]@dc2`.
func parseServiceQuery(s string, extra ...string) (healthDep, []string, error) {
	q := strings.Join(append([]string{s}, extra...), "|")
	if err := noQueryParams(q); err != nil {
		return healthDep{}, nil, err
	}
	whole := q // named whole in the error, filters included
	bad := func() error {
		return fmt.Errorf("bad service query %q: want [TAG.]NAME[@DC][~NEAR][|FILTER,...] (a name with dots goes in brackets: [my.svc])", whole)
	}
	var filter string
	hasFilter := false
	if i := strings.Index(q, "|"); i >= 0 {
		q, filter, hasFilter = q[:i], q[i+1:], true
	}
	if hasFilter && !svcFilterRe.MatchString(filter) {
		return healthDep{}, nil, bad()
	}
	m := svcRe.FindStringSubmatch(q)
	if m == nil {
		return healthDep{}, nil, bad()
	}
	name := m[svcRe.SubexpIndex("name")]
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	d := healthDep{name: name, tag: m[svcRe.SubexpIndex("tag")], dc: m[svcRe.SubexpIndex("dc")], near: m[svcRe.SubexpIndex("near")]}
	var states []string
	for _, w := range strings.Split(filter, ",") {
		if w == "" {
			continue
		}
		if !healthStates[w] {
			return healthDep{}, nil, fmt.Errorf("bad health filter %q in service query %q: want any, passing, warning, critical or maintenance", w, s)
		}
		states = append(states, w)
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

// checkForm refuses a query string outside consul-template's form for fn:
// `node` takes [NAME[@DC]], `nodes` [@DC][~NEAR], `services` [@DC].
func checkForm(fn, s string) error {
	switch fn {
	case "node":
		if s != "" && !nodeFormRe.MatchString(s) {
			return fmt.Errorf("bad node query %q: want NAME[@DC] or nothing", s)
		}
	case "nodes":
		if !nodesFormRe.MatchString(s) {
			return fmt.Errorf("bad nodes query %q: want [@DC][~NEAR]", s)
		}
	case "services":
		if !servicesFormRe.MatchString(s) {
			return fmt.Errorf("bad services query %q: want [@DC]", s)
		}
	}
	return nil
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
	notify  chan struct{}
}

type view struct {
	d      dep
	cancel context.CancelFunc
	done   chan struct{}
}

func newStore(e *env) *store {
	return &store{env: e, data: map[string]any{}, views: map[string]*view{}, changed: map[string]bool{}, notify: make(chan struct{}, 1)}
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
		}
	}
}

func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.views)
}

// failing returns the deps whose last call failed, and since when some
// dep has been failing without a break.
func (s *store) failing() (map[string]string, time.Time) {
	return s.env.q.Failing()
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
