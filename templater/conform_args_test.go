package main

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berth/berth/pkg/consultest"
)

// argFormWait is how long one argument-form case may run: a form that makes
// consul-template wait (a missing key, an unknown datacenter) is still
// running then, is killed and recorded as waiting (exit -1), and templater
// must wait too.
const argFormWait = 8 * time.Second

// argFormCases are argument forms of the query functions: datacenters,
// nearness, tags, filters, slashes, empty and malformed strings. Each is
// rendered with -once by consul-template and templater; exit code and bytes
// must match.
var argFormCases = []struct{ name, tmpl string }{
	// key
	{"key", `{{ key "ct/name" }}`},
	{"key leading slash", `{{ key "/ct/name" }}`},
	{"key trailing slash", `{{ key "ct/name/" }}`},
	{"key double slash", `{{ key "ct//name" }}`},
	{"key @dc", `{{ key "ct/name@dc1" }}`},
	{"key @unknown dc", `{{ key "ct/name@nodc" }}`},
	{"key @ only", `{{ key "ct/name@" }}`},
	{"key empty", `{{ key "" }}`},
	{"key only @dc", `{{ key "@dc1" }}`},
	{"key two @", `{{ key "a@b@c" }}`},
	{"key ~near", `{{ key "ct/name~_agent" }}`},
	{"key dotted", `{{ key "ct/dotted.key" }}`},
	{"key folder", `{{ key "ct/app/folder/" }}`},
	// keyOrDefault
	{"keyOrDefault", `{{ keyOrDefault "ct/name" "d" }}`},
	{"keyOrDefault missing", `{{ keyOrDefault "ct/nope" "d" }}`},
	{"keyOrDefault leading slash", `{{ keyOrDefault "/ct/name" "d" }}`},
	{"keyOrDefault trailing slash", `{{ keyOrDefault "ct/name/" "d" }}`},
	{"keyOrDefault @dc", `{{ keyOrDefault "ct/name@dc1" "d" }}`},
	{"keyOrDefault empty", `{{ keyOrDefault "" "d" }}`},
	{"keyOrDefault two @", `{{ keyOrDefault "a@b@c" "d" }}`},
	{"keyOrDefault empty value", `[{{ keyOrDefault "ct/empty" "d" }}]`},
	// ls, tree, safeLs, safeTree
	{"ls", `{{ range ls "ct/app" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"ls trailing slash", `{{ range ls "ct/app/" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"ls leading slash", `{{ range ls "/ct/app/" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"ls @dc", `{{ range ls "ct/app/@dc1" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"ls @unknown dc", `{{ range ls "ct/app/@nodc" }}{{ .Key }};{{ end }}`},
	{"ls missing", `[{{ range ls "ct/nope/" }}{{ .Key }};{{ end }}]`},
	{"ls empty", `{{ range ls "" }}{{ .Key }};{{ end }}`},
	{"ls slash", `{{ range ls "/" }}{{ .Key }};{{ end }}`},
	{"ls two @", `{{ range ls "a@b@c" }}{{ .Key }};{{ end }}`},
	{"ls only @dc", `{{ range ls "@dc1" }}{{ .Key }};{{ end }}`},
	{"tree slash", `{{ range tree "/" }}{{ .Key }};{{ end }}`},
	{"keyOrDefault only @dc", `{{ keyOrDefault "@dc1" "d" }}`},
	{"ls deep", `{{ range ls "ct/cfg" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"tree", `{{ range tree "ct/cfg" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"tree trailing slash", `{{ range tree "ct/cfg/" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"tree leading slash", `{{ range tree "/ct/cfg/" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"tree @dc", `{{ range tree "ct/cfg@dc1" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"tree missing", `[{{ range tree "ct/nope" }}{{ .Key }};{{ end }}]`},
	{"tree two @", `{{ range tree "a@b@c" }}{{ .Key }};{{ end }}`},
	{"tree double slash", `{{ range tree "ct//cfg" }}{{ .Key }};{{ end }}`},
	{"safeLs", `{{ range safeLs "ct/app/" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"safeLs missing", `[{{ range safeLs "ct/nope/" }}{{ .Key }};{{ end }}]`},
	{"safeLs @dc", `{{ range safeLs "ct/app/@dc1" }}{{ .Key }};{{ end }}`},
	{"safeLs leading slash", `{{ range safeLs "/ct/app/" }}{{ .Key }};{{ end }}`},
	{"safeTree", `{{ range safeTree "ct/cfg/" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"safeTree missing", `[{{ range safeTree "ct/nope" }}{{ .Key }};{{ end }}]`},
	{"safeTree two @", `{{ range safeTree "a@b@c" }}{{ .Key }};{{ end }}`},
	// service
	{"service", `{{ range service "ctweb" }}{{ .ID }}:{{ .Port }};{{ end }}`},
	{"service tag", `{{ range service "prod.ctweb" }}{{ .ID }};{{ end }}`},
	{"service @dc", `{{ range service "ctweb@dc1" }}{{ .ID }};{{ end }}`},
	{"service @unknown dc", `{{ range service "ctweb@nodc" }}{{ .ID }};{{ end }}`},
	{"service ~near", `{{ range service "ctweb~_agent" }}{{ .ID }};{{ end }}`},
	{"service tag @dc ~near |any", `{{ range service "prod.ctweb@dc1~_agent|any" }}{{ .ID }};{{ end }}`},
	{"service |any", `{{ range service "ctweb|any" }}{{ .ID }};{{ end }}`},
	{"service second argument", `{{ range service "ctweb" "passing,warning" }}{{ .ID }};{{ end }}`},
	{"service |critical", `{{ range service "ctweb|critical" }}{{ .ID }};{{ end }}`},
	{"service empty", `{{ range service "" }}{{ .ID }};{{ end }}`},
	{"service two @", `{{ range service "a@b@c" }}{{ .ID }};{{ end }}`},
	{"service @ only", `{{ range service "ctweb@" }}{{ .ID }};{{ end }}`},
	{"service ~ only", `{{ range service "ctweb~" }}{{ .ID }};{{ end }}`},
	{"service | only", `{{ range service "ctweb|" }}{{ .ID }};{{ end }}`},
	{"service leading slash", `{{ range service "/ctweb" }}{{ .ID }};{{ end }}`},
	{"service trailing slash", `{{ range service "ctweb/" }}{{ .ID }};{{ end }}`},
	{"service unknown", `[{{ range service "nosuchsvc" }}{{ .ID }};{{ end }}]`},
	{"service two tags", `{{ range service "a.prod.ctweb" }}{{ .ID }};{{ end }}`},
	{"service empty tag", `{{ range service ".ctweb" }}{{ .ID }};{{ end }}`},
	{"service dotted", `{{ range service "ct.dotted" }}{{ .ID }};{{ end }}`},
	{"service space", `{{ range service "ct web" }}{{ .ID }};{{ end }}`},
	{"service leading space", `{{ range service " ctweb" }}{{ .ID }};{{ end }}`},
	{"service filter upper case", `{{ range service "ctweb|ANY" }}{{ .ID }};{{ end }}`},
	{"service filter with space", `{{ range service "ctweb|passing, warning" }}{{ .ID }};{{ end }}`},
	{"service filter empty word", `{{ range service "ctweb|passing,,warning" }}{{ .ID }};{{ end }}`},
	{"service filter unknown", `{{ range service "ctweb|bogus" }}{{ .ID }};{{ end }}`},
	{"service filter and argument", `{{ range service "ctweb|any" "passing" }}{{ .ID }};{{ end }}`},
	{"service two arguments", `{{ range service "ctweb" "critical" "warning" }}{{ .ID }};{{ end }}`},
	{"service empty with filter", `[{{ range service "" "any" }}{{ .ID }};{{ end }}]`},
	{"connect empty", `[{{ range connect "" }}{{ .ID }};{{ end }}]`},
	{"service tag with slash", `{{ range service "a/b.ctweb" }}{{ .ID }};{{ end }}`},
	// services
	{"services", `{{ range services }}{{ .Name }}{{ .Tags }};{{ end }}`},
	{"services @dc", `{{ range services "@dc1" }}{{ .Name }};{{ end }}`},
	{"services @unknown dc", `{{ range services "@nodc" }}{{ .Name }};{{ end }}`},
	{"services empty", `{{ range services "" }}{{ .Name }};{{ end }}`},
	{"services no @", `{{ range services "dc1" }}{{ .Name }};{{ end }}`},
	{"services two @", `{{ range services "@a@b" }}{{ .Name }};{{ end }}`},
	{"services ~near", `{{ range services "~_agent" }}{{ .Name }};{{ end }}`},
	// node
	{"node", `{{ with node }}{{ .Node.Datacenter }}:{{ len .Services }}{{ end }}`},
	{"node @dc", `{{ with node "@dc1" }}{{ .Node.Datacenter }}{{ end }}`},
	{"node empty", `{{ with node "" }}{{ .Node.Datacenter }}{{ end }}`},
	{"node unknown", `[{{ with node "nosuchnode" }}{{ .Node.Node }}{{ end }}]`},
	{"node two @", `{{ with node "a@b@c" }}{{ .Node.Node }}{{ end }}`},
	{"node ~near", `{{ with node "~_agent" }}{{ .Node.Datacenter }}{{ end }}`},
	{"node @unknown dc", `{{ with node "@nodc" }}{{ .Node.Node }}{{ end }}`},
	// nodes
	{"nodes", `{{ range nodes }}{{ .Datacenter }};{{ end }}`},
	{"nodes @dc", `{{ range nodes "@dc1" }}{{ .Datacenter }};{{ end }}`},
	{"nodes ~near", `{{ range nodes "~_agent" }}{{ .Datacenter }};{{ end }}`},
	{"nodes @dc ~near", `{{ range nodes "@dc1~_agent" }}{{ .Datacenter }};{{ end }}`},
	{"nodes empty", `{{ range nodes "" }}{{ .Datacenter }};{{ end }}`},
	{"nodes name", `{{ range nodes "x" }}{{ .Datacenter }};{{ end }}`},
	{"nodes two @", `{{ range nodes "@a@b" }}{{ .Datacenter }};{{ end }}`},
	{"nodes @unknown dc", `{{ range nodes "@nodc" }}{{ .Datacenter }};{{ end }}`},
}

func TestConformArgumentForms(t *testing.T) {
	seedConform(t)
	ct := peerBinary(t)
	a := consultest.Require(t, agent)
	for _, tc := range argFormCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var res [2]outcome
			var wg sync.WaitGroup
			for i, bin := range []string{ct, binary(t)} {
				dir := filepath.Join(t.TempDir(), []string{"peer", "ours"}[i])
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				src, dst := filepath.Join(dir, "in.tmpl"), filepath.Join(dir, "out")
				if err := os.WriteFile(src, []byte(tc.tmpl), 0o644); err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func(i int, bin string) {
					defer wg.Done()
					res[i] = runTool(t, bin, dir, dst, argFormWait, "-once", "-consul-addr", a.HTTPAddr(), "-log-level", "err", "-template", src+":"+dst)
				}(i, bin)
			}
			wg.Wait()
			sameOutcome(t, tc.tmpl, res[0], res[1])
		})
	}
}
