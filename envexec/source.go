package main

import (
	"fmt"
	"html/template"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/berth/berth/pkg/query"
	"github.com/hashicorp/consul/api"
)

// source is one thing envexec watches: a KV prefix or a service.
type source interface {
	// String names the source in logs and messages ("prefix app/config").
	String() string
	// query says what to ask (pkg/query builds the options of every call).
	query() query.Query
	// fetch performs one call with the options pkg/query gives it.
	fetch(c *api.Client, q *api.QueryOptions) (any, *api.QueryMeta, error)
	// vars turns the fetched data into candidate variables.
	vars(data any, n naming) []namedVar
	// problem is why the source cannot be watched (its text did not
	// parse), or nil.
	problem() error
}

// sourceProblem is the problem of the first source in o.order that has
// one. envconsul keeps any text as a -prefix or -service (config_prefix.go
// ParsePrefixConfig, config_service.go ParseServiceConfig never fail; a
// file's path or query is decoded as is) and refuses a bad one only when
// it builds its runner (runner.go init: dep.NewKVListQuery for each prefix,
// then dep.NewCatalogServiceQuery for each service), with
// ExitCodeRunnerError, so after -version and the command check (cli.go Run).
func sourceProblem(o *options) error {
	for _, s := range o.order {
		if err := s.problem(); err != nil {
			return err
		}
	}
	return nil
}

// prefixSpec is one -prefix PATH[?QUERY][@DC].
type prefixSpec struct {
	path     string // the path listed: as Consul's agent cleans it, without leading or trailing slashes
	written  string // the path as given, less one leading slash: names are made relative to it
	given    string // the prefix as given (with any @DC or ?ns=), rendered if a template: no_prefix=false puts it in front of names
	dc       string
	scope    scope
	format   *template.Template
	fmtSrc   string
	noPrefix bool  // keep the prefix path out of names (envconsul's no_prefix; default true)
	blank    bool  // the path was given empty (before any template): see envconsulPrefixList
	bad      error // the text did not parse (badPrefix)
}

// badPrefix keeps the place of a prefix whose text s did not parse, err
// saying why (see sourceProblem): a -format after it names it.
func badPrefix(s string, err error) *prefixSpec {
	return &prefixSpec{written: s, given: s, noPrefix: true, bad: err}
}

func (p *prefixSpec) problem() error { return p.bad }

// parsePrefix parses PATH[?QUERY][@DC]. The path is first rendered as an
// html/template whose env function reads envexec's environment, as
// envconsul's applyPathTemplate (runner.go) does for every prefix:
// "app/{{ env \"ENV\" }}", a value's "&", "<", "+" ... escaped as HTML; a
// path without "{{" only loses its HTML comments ("<!-- -->"), and one
// that leaves an HTML context open ("app/<b") is refused, as envconsul's
// runner refuses it (Execute's error). The result must have the form consul-template
// accepts (checkKVQuery). An empty path, or one Consul's agent cleans to
// nothing ("/" in a file, "a/.."), lists the whole KV store, as envconsul's
// KV query does with it (consul-template v0.41.1 dependency/kv_list.go
// NewKVListQuery lets "" through; Fetch lists it): names are then the
// whole keys.
func parsePrefix(s string) (*prefixSpec, error) {
	blank := s == ""
	s, err := renderPath(s)
	if err != nil {
		return nil, err
	}
	if err := checkKVQuery(s); err != nil {
		return nil, err
	}
	given := s
	p, dc, err := splitDC(s)
	if err != nil {
		return nil, err
	}
	p, sc, err := splitQuery(p)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	// envconsul holds the path less one leading "/" (consul-template
	// v0.41.1 dependency/dependency.go prefixRe) and lists it; the API
	// client drops one more leading "/" (api kv.go getInternal) and the
	// agent cleans the URL path, answering a//b, a/./b or a/../a/b with a
	// redirect to a/b. Names are the keys less the path as given
	// (kv_list.go Fetch: TrimPrefix, then TrimLeft "/"): for such a path,
	// where no key starts with it, the whole key.
	written := strings.TrimPrefix(p, "/")
	const kvRoot = "/v1/kv/"
	clean := path.Clean(kvRoot + strings.TrimPrefix(written, "/"))
	if clean+"/" == kvRoot {
		clean = kvRoot // the whole KV store
	}
	if !strings.HasPrefix(clean, kvRoot) {
		return nil, fmt.Errorf("%q: \"..\" leads out of the KV store", s)
	}
	return &prefixSpec{path: strings.TrimPrefix(clean, kvRoot), written: written, given: given, dc: dc, scope: sc, noPrefix: true, blank: blank}, nil
}

// kvQueryForm is the form of a KV list query consul-template v0.41.1
// accepts (dependency/kv_list.go NewKVListQuery: KVListQueryRe, made of
// dependency.go's prefixRe, queryRe and dcRe): a path of one or more
// characters other than "@" and "?" (any others, non-ASCII too), then
// optionally "?" and a query of ASCII letters, digits, "_", "-", "=" and
// "&", then optionally "@" and a datacenter of ASCII letters, digits, "_",
// "-" and ".". Go's [[:word:]] is ASCII only.
var kvQueryForm = regexp.MustCompile(`\A/?[^@?]+(\?[0-9A-Za-z_=&-]+)?(@[0-9A-Za-z_.-]+)?\z`)

// dcForm is a datacenter in kvQueryForm.
var dcForm = regexp.MustCompile(`\A[0-9A-Za-z_.-]+\z`)

// checkKVQuery refuses a -prefix (or a file's prefix path) that envconsul
// refuses when it builds its runner (runner.go init: dep.NewKVListQuery,
// which lets only the empty string through besides kvQueryForm), with the
// part at fault named.
func checkKVQuery(s string) error {
	if s == "" || kvQueryForm.MatchString(s) {
		return nil
	}
	const form = "want PATH[?ns=NS&partition=P][@DC]"
	name, dc, hasDC := strings.Cut(s, "@")
	name, q, hasQ := strings.Cut(name, "?")
	switch {
	case strings.TrimPrefix(name, "/") == "":
		return fmt.Errorf("%q: empty key path before %q (%s)", s, s[len(name):len(name)+1], form)
	case strings.Contains(dc, "@"):
		return fmt.Errorf("%q: more than one \"@\" (%s)", s, form)
	case strings.Contains(dc, "?"):
		return fmt.Errorf("%q: the ?query comes before the @datacenter (%s)", s, form)
	case hasDC && dc == "":
		return fmt.Errorf("%q: empty datacenter after \"@\" (%s)", s, form)
	case hasDC && !dcForm.MatchString(dc):
		return fmt.Errorf("%q: datacenter %q: only ASCII letters, digits, \"_\", \"-\" and \".\" (%s)", s, dc, form)
	case hasQ && q == "":
		return fmt.Errorf("%q: empty query after \"?\" (%s)", s, form)
	case hasQ && strings.Contains(q, "?"):
		return fmt.Errorf("%q: more than one \"?\" (%s)", s, form)
	default:
		return fmt.Errorf("%q: query %q: only ASCII letters, digits, \"_\", \"-\", \"=\" and \"&\" (%s)", s, q, form)
	}
}

// scope is the Consul Enterprise namespace and admin partition one source
// asks in, from its ?ns=NS&partition=P.
type scope struct {
	namespace string
	partition string
}

// splitQuery splits "thing?ns=NS&partition=P" as consul-template's KV and
// catalog queries read it (dependency/dependency.go: queryRe and
// GetConsulQueryOpts; kv_list.go and catalog_service.go ask in the
// namespace and partition given). peer and sameness-group, which
// consul-template accepts but neither query uses, and any other parameter
// are refused.
func splitQuery(s string) (string, scope, error) {
	name, raw, ok := strings.Cut(s, "?")
	if !ok {
		return s, scope{}, nil
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return "", scope{}, fmt.Errorf("query %q: %w", raw, err)
	}
	for k := range vals {
		if k != "ns" && k != "partition" {
			return "", scope{}, fmt.Errorf("query %q: parameter %q not supported (ns and partition are)", raw, k)
		}
	}
	return name, scope{namespace: vals.Get("ns"), partition: vals.Get("partition")}, nil
}

// String is the scope as a query suffix ("?ns=team"), or "".
func (sc scope) String() string {
	v := url.Values{}
	if sc.namespace != "" {
		v.Set("ns", sc.namespace)
	}
	if sc.partition != "" {
		v.Set("partition", sc.partition)
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// options returns q asking in the scope (a copy; q itself is left alone).
func (sc scope) options(q *api.QueryOptions) *api.QueryOptions {
	if sc == (scope{}) {
		return q
	}
	c := *q
	if sc.namespace != "" {
		c.Namespace = sc.namespace
	}
	if sc.partition != "" {
		c.Partition = sc.partition
	}
	return &c
}

// renderPath renders a prefix path template (html/template, as envconsul's
// applyPathTemplate); env NAME fails when NAME is not set.
func renderPath(s string) (string, error) {
	t, err := template.New("path").Option("missingkey=error").Funcs(template.FuncMap{
		"env": func(name string) (string, error) {
			v, ok := os.LookupEnv(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			return v, nil
		},
	}).Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, nil); err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	return b.String(), nil
}

// splitDC splits "thing@dc", refusing an empty datacenter, several "@" and
// control characters.
func splitDC(s string) (string, string, error) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", "", fmt.Errorf("%q: control character in the path", s)
		}
	}
	name, dc, hasDC := strings.Cut(s, "@")
	if hasDC {
		if dc == "" {
			return "", "", fmt.Errorf("%q: empty datacenter after \"@\"", s)
		}
		if strings.Contains(dc, "@") {
			return "", "", fmt.Errorf("%q: more than one \"@\"", s)
		}
		if strings.ContainsAny(dc, "/ \t") {
			return "", "", fmt.Errorf("%q: datacenter %q is not a datacenter name", s, dc)
		}
	}
	return name, dc, nil
}

func (p *prefixSpec) String() string {
	if p.path == "" {
		return "prefix /" + p.scope.String() + dcSuffix(p.dc) // the whole KV store
	}
	if p.dc != "" {
		return "prefix " + p.path + p.scope.String() + "@" + p.dc
	}
	return "prefix " + p.path + p.scope.String()
}

// dcSuffix is "@DC", or "" without a datacenter.
func dcSuffix(dc string) string {
	if dc == "" {
		return ""
	}
	return "@" + dc
}

// queryKey identifies the KV query as envconsul does (consul-template
// v0.41.1 dependency/kv_list.go String: the path as given, less one leading
// "/", with its datacenter, namespace and partition).
func (p *prefixSpec) queryKey() string {
	return p.written + p.scope.String() + "@" + p.dc
}

func (p *prefixSpec) query() query.Query { return query.Query{Name: p.String(), Datacenter: p.dc} }

// base is what every key below the prefix starts with: PATH/, or nothing
// for the whole KV store.
func (p *prefixSpec) base() string {
	if p.path == "" {
		return ""
	}
	return p.path + "/"
}

// fetch lists the keys below PATH/ (whole segments only: prefix "app" never
// sees "app2/x"), or the whole KV store for an empty path.
func (p *prefixSpec) fetch(c *api.Client, q *api.QueryOptions) (any, *api.QueryMeta, error) {
	pairs, meta, err := c.KV().List(p.base(), p.scope.options(q))
	if err != nil {
		return nil, nil, fmt.Errorf("list %s/: %w", p.path, err)
	}
	return pairs, meta, nil
}

func (p *prefixSpec) vars(data any, n naming) []namedVar {
	pairs, _ := data.(api.KVPairs)
	out := make([]namedVar, 0, len(pairs))
	base := p.base()
	for _, kv := range pairs {
		if !strings.HasPrefix(kv.Key, base) {
			continue // cannot happen with List(base); kept as a guard
		}
		rel := strings.TrimLeft(strings.TrimPrefix(kv.Key, p.written), "/")
		if strings.TrimSpace(rel) == "" || strings.HasSuffix(rel, "/") {
			// The prefix itself, a folder key, or a blank key, which
			// envconsul drops before the prefix path, the format or
			// -sanitize can make a name of it (runner.go, appendPrefixes).
			continue
		}
		name, err := n.kvName(p, rel)
		out = append(out, namedVar{key: kv.Key, name: name, value: string(kv.Value), err: err})
	}
	return out
}

// serviceFields are the per-instance variables, in envconsul's names.
func serviceFields() []string { return []string{"id", "name", "address", "tag", "port"} }

// serviceSpec is one -service [TAG.]NAME[?QUERY][@DC][~NODE].
type serviceSpec struct {
	name    string
	tag     string
	dc      string
	scope   scope
	near    string // ~NODE: Consul sorts the instances by round-trip time from NODE
	formats map[string]*template.Template
	bad     error // the text did not parse (badService)
}

// badService keeps the place of a service whose text s did not parse, err
// saying why (see sourceProblem): a -service-format-* after it names it.
func badService(s string, err error) *serviceSpec {
	return &serviceSpec{name: s, formats: map[string]*template.Template{}, bad: err}
}

func (s *serviceSpec) problem() error { return s.bad }

// serviceQueryForm is the form of a catalog service query consul-template
// v0.41.1 accepts (dependency/catalog_service.go NewCatalogServiceQuery:
// CatalogServiceQueryRe, of dependency.go's tagRe, serviceNameRe, queryRe,
// dcRe and nearRe), all in ASCII: [TAG.]NAME[?QUERY][@DC][~NODE].
var serviceQueryForm = regexp.MustCompile(`\A([0-9A-Za-z_=:.-]+\.)?[0-9A-Za-z_-]+(\?[0-9A-Za-z_=&-]+)?(@[0-9A-Za-z_.-]+)?(~[0-9A-Za-z_.-]+)?\z`)

// parseService parses a -service (or a file's service query), refusing what
// envconsul refuses when it builds its runner (runner.go init:
// dep.NewCatalogServiceQuery): the form of serviceQueryForm, and of the
// query parameters ns and partition (splitQuery).
func parseService(s string) (*serviceSpec, error) {
	if !serviceQueryForm.MatchString(s) {
		return nil, fmt.Errorf("%q: not a service query: want [TAG.]NAME[?ns=NS&partition=P][@DC][~NODE] in ASCII: NAME of letters, digits, \"_\" and \"-\"; TAG also \".\", \"=\", \":\"; DC and NODE also \".\"; the query also \"=\" and \"&\"", s)
	}
	// A ~NODE suffix sorts the instances by round-trip time from NODE
	// ("_agent": the agent's own), as consul-template's catalog query
	// (dependency/catalog_service.go: nearRe, after the datacenter).
	s0, near, hasNear := strings.Cut(s, "~")
	if hasNear && (near == "" || strings.ContainsAny(near, "~@?/ ")) {
		return nil, fmt.Errorf("%q: %q after \"~\" is not a node name", s, near)
	}
	q, dc, err := splitDC(s0)
	if err != nil {
		return nil, err
	}
	q, sc, err := splitQuery(q)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	spec := &serviceSpec{dc: dc, scope: sc, near: near, formats: map[string]*template.Template{}}
	if i := strings.LastIndex(q, "."); i >= 0 {
		spec.tag, spec.name = q[:i], q[i+1:]
		if spec.tag == "" {
			return nil, fmt.Errorf("%q: empty tag before \".\"", s)
		}
	} else {
		spec.name = q
	}
	if spec.name == "" {
		return nil, fmt.Errorf("%q: empty service name", s)
	}
	if strings.ContainsAny(spec.name, "/ ") {
		return nil, fmt.Errorf("%q: %q is not a service name", s, spec.name)
	}
	return spec, nil
}

func (s *serviceSpec) String() string {
	out := "service " + s.name
	if s.tag != "" {
		out = "service " + s.tag + "." + s.name
	}
	out += s.scope.String()
	if s.dc != "" {
		out += "@" + s.dc
	}
	if s.near != "" {
		out += "~" + s.near
	}
	return out
}

func (s *serviceSpec) query() query.Query {
	return query.Query{Name: s.String(), Datacenter: s.dc, Near: s.near}
}

func (s *serviceSpec) fetch(c *api.Client, q *api.QueryOptions) (any, *api.QueryMeta, error) {
	svcs, meta, err := c.Catalog().Service(s.name, s.tag, s.scope.options(q))
	if err != nil {
		return nil, nil, fmt.Errorf("catalog service %s: %w", s.name, err)
	}
	return svcs, meta, nil
}

// vars gives id, name, address, tag and port of each instance; with several
// instances the last one (by node, then service ID) wins, as in envconsul;
// with ~NODE the last in Consul's order (the farthest from NODE), as
// envconsul keeps that order. An instance without its own address has an
// empty address, as envconsul gives it (consul-template v0.41.1
// dependency/catalog_service.go Fetch copies the catalog's ServiceAddress,
// which envconsul's runner.go appendServices sets as is); with
// -service-node-address it gets its node's address.
func (s *serviceSpec) vars(data any, n naming) []namedVar {
	svcs, _ := data.([]*api.CatalogService)
	svcs = append([]*api.CatalogService(nil), svcs...)
	if s.near == "" {
		sort.SliceStable(svcs, func(i, j int) bool {
			if svcs[i].Node != svcs[j].Node {
				return svcs[i].Node < svcs[j].Node
			}
			return svcs[i].ServiceID < svcs[j].ServiceID
		})
	}
	var out []namedVar
	for _, svc := range svcs {
		addr := svc.ServiceAddress
		if addr == "" && n.nodeAddress {
			addr = svc.Address
		}
		// The tags sorted, whatever order they were registered in
		// (consul-template dependency/catalog_service.go, Fetch:
		// deepCopyAndSortTags, which envconsul's appendServices joins).
		tags := append([]string(nil), svc.ServiceTags...)
		sort.Strings(tags)
		vals := map[string]string{
			"id":      svc.ServiceID,
			"name":    svc.ServiceName,
			"address": addr,
			"tag":     strings.Join(tags, ","),
			"port":    strconv.Itoa(svc.ServicePort),
		}
		for _, f := range serviceFields() {
			name, err := n.serviceName(s, svc.ServiceName, f)
			out = append(out, namedVar{key: "service " + svc.ServiceName + " (" + svc.ServiceID + ") " + f, name: name, value: vals[f], err: err})
		}
	}
	return out
}
