package main

import "testing"

// conformCases are rendered by consul-template and templater alike; the
// outputs and exit codes must be equal. One line per case: a name and the
// template text. Data is seeded by seedConform (ct/ keys, ctweb services).
var conformCases = []struct{ name, tmpl string }{
	// key, keyExists, keyOrDefault
	{"key", `{{ key "ct/name" }}`},
	{"key empty value", `[{{ key "ct/empty" }}]`},
	{"key unicode", `{{ key "ct/unicode/ключ" }}`},
	{"key dotted", `{{ key "ct/dotted.key" }}`},
	{"key multi-line", `{{ key "ct/multi" }}`},
	{"key @dc", `{{ key "ct/name@dc1" }}`},
	{"key empty name", `[{{ key "" }}]`},
	{"keyExists", `{{ keyExists "ct/name" }} {{ keyExists "ct/nope" }} {{ keyExists "ct/empty" }} {{ keyExists "ct/app/folder/" }}`},
	{"keyOrDefault", `{{ keyOrDefault "ct/nope" "d1" }} {{ keyOrDefault "ct/empty" "d2" }} {{ keyOrDefault "ct/name" "d3" }}`},
	// ls, tree, safe*
	{"ls", `{{ range ls "ct/app" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"ls trailing slash", `{{ range ls "ct/app/" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"ls prefix not a folder", `{{ range ls "ct/apple" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"ls fields", `{{ range ls "ct/app" }}{{ .Path }} {{ .Key }} {{ .Flags }} {{ .Session }};{{ end }}`},
	{"ls empty", `[{{ range ls "ct/nothing" }}x{{ end }}]`},
	{"ls unicode", `{{ range ls "ct/unicode" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"tree", `{{ range tree "ct/app" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"tree trailing slash", `{{ range tree "ct/app/" }}{{ .Key }};{{ end }}`},
	{"tree prefix not a folder", `{{ range tree "ct/appl" }}{{ .Key }};{{ end }}`},
	{"tree dotted", `{{ range tree "ct/dotted" }}{{ .Key }}={{ .Value }};{{ end }}`},
	{"safeLs with data", `{{ range safeLs "ct/app/sub" }}{{ .Key }};{{ end }}`},
	{"safeTree with data", `{{ range safeTree "ct/app/sub" }}{{ .Key }};{{ end }}`},
	// services
	{"service default passing", `{{ range service "ctweb" }}{{ .ID }}:{{ .Port }}:{{ .Status }};{{ end }}`},
	{"service any", `{{ range service "ctweb|any" }}{{ .ID }}:{{ .Status }};{{ end }}`},
	{"service filters", `{{ range service "ctweb|passing,warning" }}{{ .ID }};{{ end }}`},
	{"service critical", `{{ range service "ctweb|critical" }}{{ .ID }};{{ end }}`},
	{"service maintenance", `{{ range service "ctweb|maintenance" }}{{ .ID }};{{ end }}`},
	{"service filter argument", `{{ range service "ctweb" "warning" }}{{ .ID }};{{ end }}`},
	{"service tag", `{{ range service "prod.ctweb|any" }}{{ .ID }};{{ end }}`},
	{"service dotted is a tag", `[{{ range service "ct.dotted" }}{{ .ID }}{{ end }}]`},
	{"service @dc", `{{ range service "ctweb@dc1" }}{{ .ID }};{{ end }}`},
	{"service near", `{{ len (service "ctweb~_agent") }}`},
	{"service address fallback", `{{ range service "ctweb|any" }}{{ .Address }}|{{ .NodeAddress }};{{ end }}`},
	{"service fields", `{{ range service "ctweb|any" }}{{ .Name }} {{ .Tags }} {{ .ServiceMeta }} {{ .Weights.Passing }}/{{ .Weights.Warning }};{{ end }}`},
	{"service toJSON", `{{ service "ctweb|any" | toJSON | len }}`},
	{"missing map key", `[{{ $m := parseJSON "{\"a\":1}" }}{{ $m.b }}] [{{ (splitToMap "," "=" "a=1").z }}]`},
	{"service checks", `{{ range service "ctweb|any" }}{{ .ID }}:{{ len .Checks }};{{ end }}`},
	{"service none", `[{{ range service "nosuchsvc" }}x{{ end }}]`},
	{"connect none", `[{{ range connect "ctweb" }}x{{ end }}]`},
	{"connect native", `{{ range connect "ctnative" }}{{ .ID }}:{{ .Port }}{{ end }}`},
	{"services", `{{ range services }}{{ .Name }}:{{ .Tags }};{{ end }}`},
	{"services @dc", `{{ range services "@dc1" }}{{ .Name }};{{ end }}`},
	{"node", `{{ with node }}{{ .Node.Datacenter }} {{ .Node.Address }} {{ range .Services }}{{ .ID }}:{{ .Service }}:{{ .Port }}:{{ .Tags }},{{ end }}{{ end }}`},
	{"nodes", `{{ range nodes }}{{ .Address }} {{ .Datacenter }} {{ .TaggedAddresses }};{{ end }}`},
	{"datacenters", `{{ datacenters }}`},
	{"node toJSON", `{{ with node }}{{ toJSON . }}{{ end }}`},
	{"nodes toJSON", `{{ nodes | toJSON }}`},
	{"node missing", `[{{ with node "nosuchnode" }}{{ .Node }} {{ len .Services }}{{ end }}]`},
	{"services toYAML", `{{ services | toYAML }}`},
	// env, file
	{"env", `{{ env "CT_ENV" }} [{{ env "CT_EMPTY" }}] [{{ env "CT_UNSET" }}] [{{ env "CT_SPACES" }}]`},
	{"envOrDefault", `{{ envOrDefault "CT_ENV" "d" }} [{{ envOrDefault "CT_EMPTY" "d" }}] {{ envOrDefault "CT_UNSET" "d" }}`},
	{"mustEnv", `{{ mustEnv "CT_ENV" }}`},
	{"mustEnv missing", `{{ mustEnv "CT_UNSET" }}`},
	// by*
	{"byKey", `{{ range $k, $v := tree "ct/cfg" | byKey }}{{ $k }}:{{ range $kk, $p := $v }}{{ $kk }}={{ $p.Key }}/{{ $p.Value }},{{ end }};{{ end }}`},
	{"byTag", `{{ range $tag, $s := service "ctweb|any" | byTag }}{{ $tag }}={{ range $s }}{{ .ID }},{{ end }};{{ end }}`},
	{"byTag services", `{{ range $tag, $s := services | byTag }}{{ $tag }}={{ range $s }}{{ .Name }},{{ end }};{{ end }}`},
	{"byMeta", `{{ range $z, $s := service "ctweb|any" | byMeta "zone" }}{{ $z }}={{ range $s }}{{ .ID }},{{ end }};{{ end }}`},
	{"byPort", `{{ range $p, $s := service "ctweb|any" | byPort }}{{ $p }};{{ end }}`},
	// contains*, in
	{"contains", `{{ range service "ctweb|any" }}{{ if .Tags | contains "prod" }}{{ .ID }};{{ end }}{{ end }}`},
	{"contains string", `{{ "hello" | contains "ell" }} {{ "hello" | contains "x" }}`},
	{"containsAll", `{{ range service "ctweb|any" }}{{ containsAll (parseJSON "[\"prod\",\"v1\"]") .Tags }} {{ containsAll (parseJSON "[\"prod\",\"x\"]") .Tags }};{{ end }}`},
	{"containsAny None NotAll", `{{ range service "ctweb|any" }}{{ containsAny (parseJSON "[\"x\",\"v1\"]") .Tags }} {{ containsNone (parseJSON "[\"x\",\"y\"]") .Tags }} {{ containsNotAll (parseJSON "[\"prod\",\"x\"]") .Tags }};{{ end }}`},
	{"containsAll []string", `{{ containsAll (split "," "a") (split "," "a,b") }}`},
	{"contains mixed types", `{{ parseJSON "[1,2.5,\"3\"]" | contains 1 }} {{ parseJSON "[1,2.5,\"3\"]" | contains 2.5 }} {{ parseJSON "[1,2.5,\"3\"]" | contains "3" }}`},
	{"in", `{{ in (split "," "a,b") "b" }} {{ in (split "," "a,b") "z" }} {{ in "abc" "b" }}`},
	// explode, merge
	{"explode", `{{ with tree "ct/cfg" | explode }}{{ .db.host }}/{{ .web.port }}/{{ .top }}{{ end }}`},
	{"explode toJSON", `{{ tree "ct/app" | explode | toJSON }}`},
	{"explodeMap", `{{ parseJSON "{\"a/b\":1,\"a/c\":2,\"d\":3}" | explodeMap | toJSON }}`},
	{"mergeMap", `{{ $a := parseJSON "{\"k\":1,\"n\":{\"x\":1}}" }}{{ $b := parseJSON "{\"k\":2,\"j\":3,\"n\":{\"x\":2,\"y\":3}}" }}{{ mergeMap $a $b | toJSON }}`},
	{"mergeMapWithOverride", `{{ $a := parseJSON "{\"k\":1,\"n\":{\"x\":1}}" }}{{ $b := parseJSON "{\"k\":2,\"j\":3,\"n\":{\"x\":2,\"y\":3}}" }}{{ mergeMapWithOverride $a $b | toJSON }}`},
	{"mergeMap piped", `{{ $b := parseJSON "{\"k\":2,\"j\":3}" }}{{ parseJSON "{\"k\":1}" | mergeMap $b | toJSON }}`},
	// strings
	{"indent", `{{ indent 2 "a\nb\n\nc\n" }}|{{ key "ct/multi" | indent 3 }}`},
	{"join split", `{{ split "," "a,b,c" | join "-" }} {{ key "ct/list" | split "," | join "|" }}`},
	{"split empty", `{{ len (split "," "") }} {{ len (split "," "  ") }}`},
	{"splitToMap", `{{ $m := key "ct/map" | splitToMap "," "=" }}{{ $m.a }} {{ $m.b }} [{{ $m.c }}] {{ $m.d }} {{ len $m }}`},
	{"splitToMap direct", `{{ $m := splitToMap "," ":" "a:1,b:2" }}{{ $m.b }}`},
	{"trim", `[{{ trim "xy" "xxhixy" }}] [{{ trimSpace (key "ct/spaces") }}] [{{ trimPrefix "ab" "abc" }}] [{{ trimSuffix "bc" "abc" }}]`},
	{"case", `{{ toLower "ÀB" }} {{ toUpper "àb" }} {{ toTitle "hello wORLD ñandú" }}`},
	{"replaceAll", `{{ replaceAll "a" "b" "banana" }} {{ key "ct/name" | replaceAll "l" "L" }}`},
	{"regexMatch", `{{ regexMatch "^h.l" (key "ct/name") }} {{ "abc" | regexMatch "z" }}`},
	{"regexReplaceAll", `{{ regexReplaceAll "(l+)" "[$1]" "hello" }} {{ "a1b22" | regexReplaceAll "[0-9]+" "#" }}`},
	// parse*
	{"parseBool", `{{ parseBool "true" }} {{ parseBool "" }} {{ key "ct/bool" | parseBool }}`},
	{"parseBool bad", `{{ parseBool "maybe" }}`},
	{"parseInt", `{{ parseInt "-4" }} {{ parseInt "" }} {{ key "ct/num" | parseInt }}`},
	{"parseInt bad", `{{ parseInt " 4" }}`},
	{"parseUint", `{{ parseUint "4" }} {{ key "ct/num" | parseUint }}`},
	{"parseFloat", `{{ parseFloat "1.5" }} {{ parseFloat "" }} {{ key "ct/float" | parseFloat }} {{ parseFloat "1e3" }}`},
	{"parseJSON", `{{ with key "ct/json" | parseJSON }}{{ .a.t }} {{ .a.f }} {{ index .b 1 }} {{ .a.n }} {{ .big }}{{ end }}`},
	{"parseJSON list", `{{ range key "ct/jsonlist" | parseJSON }}{{ .name }}:{{ .port }};{{ end }}`},
	{"parseJSON empty", `{{ parseJSON "" }}`},
	{"parseYAML", `{{ with key "ct/yaml" | parseYAML }}{{ .a }} {{ index .b 1 }} {{ .c.d }}{{ end }}`},
	{"parseYAML empty", `{{ parseYAML "" }}`},
	// to*
	{"toJSON map", `{{ key "ct/json" | parseJSON | toJSON }}`},
	{"toJSON pairs", `{{ ls "ct/app" | toJSON }}`},
	{"toJSON services", `{{ services | toJSON }}`},
	{"toJSONPretty", `{{ key "ct/json" | parseJSON | toJSONPretty }}`},
	{"toJSONPretty pairs", `{{ tree "ct/cfg" | toJSONPretty }}`},
	{"toUnescapedJSON", `{{ key "ct/json" | parseJSON | toUnescapedJSON }}`},
	{"toUnescapedJSONPretty", `{{ key "ct/json" | parseJSON | toUnescapedJSONPretty }}`},
	{"toYAML", `{{ key "ct/json" | parseJSON | toYAML }}`},
	{"toYAML tree", `{{ tree "ct/cfg" | explode | toYAML }}`},
	{"toYAML nested", `{{ key "ct/yaml" | parseYAML | toYAML }}`},
	{"toTOML", `{{ tree "ct/cfg" | explode | toTOML }}|`},
	{"toTOML json", `{{ key "ct/json" | parseJSON | toTOML }}|`},
	// encoding, hashing
	{"base64", `{{ base64Encode "hi" }} {{ key "ct/b64" | base64Decode }} {{ base64URLEncode "??>" }} {{ base64URLDecode "Pz8-" }}`},
	{"base64Decode bad", `{{ base64Decode "!!" }}`},
	{"hashes", `{{ sha256Hex "hi" }} {{ md5sum "hi" }} {{ hmacSHA256Hex "msg" "key" }}`},
	// math
	{"math ints", `{{ 5 | subtract 2 }} {{ 10 | divide 2 }} {{ 7 | modulo 3 }} {{ 2 | add 3 }} {{ 4 | multiply 3 }} {{ 3 | minimum 5 }} {{ 3 | maximum 5 }}`},
	{"math floats", `{{ 1.5 | add 1 }} {{ 1 | add 1.5 }} {{ 7.5 | divide 2 }} {{ 2.5 | minimum 3 }} {{ 2 | maximum 2.5 }}`},
	{"math parsed", `{{ key "ct/num" | parseInt | add 1 }} {{ key "ct/float" | parseFloat | multiply 2 }} {{ key "ct/num" | parseUint | subtract 2 }}`},
	{"math divide by zero", `{{ 1 | divide 0 }}`},
	{"math string", `{{ "1" | add 2 }}`},
	{"loop", `{{ range loop 3 }}{{ . }}{{ end }} {{ range loop 2 5 }}{{ . }}{{ end }} {{ range $i := loop 5 2 }}x{{ end }}`},
	{"loop strings", `{{ range loop "2" "4" }}{{ . }}{{ end }}`},
	// timestamp (fixed formats only)
	{"timestamp year", `{{ timestamp "2006" }}`},
	// scratch, executeTemplate
	{"scratch", `{{ scratch.Set "a" "x" }}{{ scratch.SetX "a" "y" }}{{ scratch.Get "a" }} {{ scratch.Key "b" }} {{ scratch.MapSet "m" "k2" "2" }}{{ scratch.MapSet "m" "k1" "1" }}{{ scratch.MapSetX "m" "k1" "9" }}{{ scratch.MapValues "m" }}`},
	{"executeTemplate", `{{ define "t" }}[{{ . }}]{{ end }}{{ executeTemplate "t" "arg" }}{{ executeTemplate "t" }}`},
	{"spew_sdump", `{{ spew_sdump "a" 1 }}{{ spew_sprintf "%v|%d" "b" 2 }}`},
	// sockaddr, plugin
	{"sockaddr", `{{ sockaddr "GetAllInterfaces | include \"flag\" \"loopback\" | include \"type\" \"IPv4\" | attr \"address\"" }}`},
	{"plugin", `{{ plugin "echo" "a" " b " }}`},
	{"plugin fails", `{{ plugin "false" }}`},
	// Sprig under sprig_*; consul-template's meaning under the plain name
	{"sprig prefixed", `{{ sprig_upper "a" }} {{ sprig_add 1 2 }} {{ "x" | sprig_repeat 3 }} {{ sprig_splitList "," "a,b" }} {{ sprig_default "d" "" }}`},
	{"plain names are consul-template's", `{{ 5 | subtract 2 }} {{ "a,b" | split "," | join ";" }} {{ "hello" | contains "ell" }}`},
	// text/template itself and errors
	{"builtins", `{{ printf "%05.1f" 3.14159 }} {{ len "héllo" }} {{ index (split "," "a,b") 1 }} {{ html "<a>" }} {{ js "'" }} {{ urlquery "a b" }}`},
	{"builtin slice", `{{ slice "abcdef" 1 3 }} {{ slice (split "," "a,b,c") 1 }} {{ slice (split "," "a,b,c") 0 1 2 }}`},
	{"whitespace trim", "a  {{- key \"ct/name\" -}}  b\n"},
	{"undefined function", `{{ nosuchfunc "x" }}`},
	{"execution error", `{{ index (split "," "a") 5 }}`},
	{"syntax error", `{{ if }}`},
	{"bad service query", `{{ service "we b@" }}`},
	{"empty template", ``},
	// env sees what consul-template gives its children first
	// (manager/runner.go passes childEnv() to Execute).
	{"env child", `[{{ env "CONSUL_HTTP_SSL" }}] [{{ env "CONSUL_HTTP_SSL_VERIFY" }}] [{{ envOrDefault "CONSUL_HTTP_SSL" "d" }}] [{{ mustEnv "CONSUL_HTTP_SSL_VERIFY" }}] [{{ env "CONSUL_HTTP_ADDR" | len }}]`},
	// math: which operand a tie returns, types, errors
	{"math tie types", `{{ printf "%T %T %T %T" (2 | maximum 2.0) (2 | minimum 2.0) (2.0 | maximum 2) (parseUint "2" | maximum 2) }}`},
	{"math mixed", `{{ parseUint "5" | subtract 7 }} {{ parseUint "5" | add 1.5 }} {{ 5 | multiply (parseUint "3") }} {{ 1 | divide 0.0 }} {{ printf "%T" (parseUint "5" | add (parseUint "1")) }}`},
	{"math uint underflow", `{{ parseUint "5" | subtract (parseUint "7") }}`},
	{"math modulo float", `{{ 7.5 | modulo 2 }}`},
	{"math modulo zero", `{{ 7 | modulo 0 }}`},
	{"math bool", `{{ true | add 1 }}`},
	// argument counts and types
	{"executeTemplate too many", `{{ define "t" }}x{{ end }}{{ executeTemplate "t" 1 2 }}`},
	{"executeTemplate undefined", `{{ executeTemplate "nope" }}`},
	{"datacenters true", `{{ datacenters true }}`},
	{"datacenters two", `{{ datacenters true false }}`},
	{"timestamp two", `{{ timestamp "2006" "x" }}`},
	{"loop three", `{{ range loop 1 2 3 }}{{ . }}{{ end }}`},
	{"loop float", `{{ range loop 1.5 }}{{ . }}{{ end }}`},
	{"indent negative", `{{ indent -1 "a" }}`},
	{"regexReplaceAll bad", `{{ regexReplaceAll "(" "x" "y" }}`},
	{"regexMatch bad", `{{ regexMatch "[" "y" }}`},
	{"regexReplaceAll groups", `{{ regexReplaceAll "(?P<w>[a-z]+)" "${w}!" "ab cd" }} {{ regexReplaceAll "a" "$1" "aa" }}`},
	{"in nil", `{{ in (split "," "a") nil }}`},
	{"contains nil", `{{ "abc" | contains nil }}`},
	{"containsAll string", `{{ containsAll "ab" (split "," "a") }}`},
	{"join ints", `{{ join "," (parseJSON "[1,2]") }}`},
	{"byTag bad", `{{ byTag "x" }}`},
	{"byPort nil", `{{ byPort nil }}`},
	{"byMeta int", `{{ range $k, $s := service "ctweb|any" | byMeta "ver|int,zone" }}{{ $k }}={{ len $s }};{{ end }}`},
	{"byMeta int bad", `{{ service "ctweb|any" | byMeta "zone|int" }}`},
	{"explode conflict", `{{ parseJSON "{\"a\":1,\"a/b\":2}" | explodeMap }}`},
	{"mergeMap mutates", `{{ $a := parseJSON "{\"k\":1}" }}{{ $b := parseJSON "{\"j\":2}" }}{{ $_ := mergeMap $a $b }}{{ toJSON $a }}`},
	{"mergeMap three", `{{ $a := parseJSON "{\"k\":1}" }}{{ mergeMap $a $a $a }}`},
	{"toTOML list", `{{ split "," "a,b" | toTOML }}`},
	{"toJSON yaml map", `{{ parseYAML "a: {b: 1}" | toJSON }}`},
	{"parseYAML list", `{{ parseYAML "- a\n- b: 1" | toYAML }}`},
	{"parseYAML bad", `{{ parseYAML "a: [" }}`},
	{"parseJSON bad", `{{ key "ct/badjson" | parseJSON }}`},
	{"base64URLDecode bad", `{{ base64URLDecode "!!" }}`},
	{"writeToFile no content", `{{ writeToFile "w" "" "" "0644" }}`},
	{"writeToFile bad perms", `{{ "x" | writeToFile "w" "" "" "abc" }}`},
	{"sockaddr bad", `{{ sockaddr "Bogus" }}`},
	{"sockaddr private", `{{ sockaddr "GetPrivateIP" | len | printf "%T" }}`},
	{"plugin newline args", `{{ plugin "echo" "a\n" "" "b c" }}`},
	{"plugin missing", `{{ plugin "/no/such/plugin" }}`},
	{"spew_sprintf nested", `{{ spew_sprintf "%+v" (parseJSON "{\"a\":[1,\"x\"]}") }}`},
	{"scratch MapSet on value", `{{ scratch.Set "a" "x" }}{{ scratch.MapSet "a" "k" "v" }}{{ scratch.MapValues "a" }}`},
	{"scratch MapValues unset", `{{ scratch.MapValues "zz" }} {{ scratch.Get "zz" }}`},
	{"sprig dates and lists", `{{ sprig_list 1 "a" | sprig_last }} {{ sprig_dict "a" 1 | sprig_keys }} {{ sprig_semverCompare ">1.0" "1.2.0" }} {{ sprig_b64enc "x" }} {{ sprig_toJson (sprig_dict "a" "<") }}`},
	{"sprig fail", `{{ sprig_fail "boom" }}`},
	{"sprig required", `{{ sprig_required "need" "" }}`},
	{"toUnescapedJSON string", `{{ toUnescapedJSON "<a&b>" }} {{ toJSON "<a&b>" }}`},
	{"toYAML string", `{{ toYAML "a: b" }}|{{ toYAML (split "," "x,y") }}`},
	{"service filter args joined", `{{ range service "ctweb" "passing" "warning" }}{{ .ID }};{{ end }}`},
	{"connect filters", `{{ range connect "ctnative|any" }}{{ .ID }};{{ end }}`},
	{"connect tag", `[{{ range connect "x.ctnative" }}{{ .ID }};{{ end }}] [{{ range connect "x.ctnative|any" }}{{ .ID }};{{ end }}]`},
	{"node @dc services", `{{ with node "@dc1" }}{{ range .Services }}{{ .ID }},{{ end }}{{ end }}`},
	{"ls value types", `{{ range ls "ct/app" }}{{ printf "%T" .Value }}{{ end }}`},
	{"file empty name", `[{{ file "" }}]`},
	{"service connect no name", `[{{ service }}] [{{ connect }}]`},
	// Connect CA, peerings, exported services
	{"caRoots", `{{ range caRoots }}{{ .ID }} {{ .Name }} {{ .Active }} {{ .RootCertPEM }}{{ end }}`},
	{"caRoots toJSON", `{{ caRoots | len }} {{ caRoots | toJSON }}`},
	{"peerings exportedServices toJSON", `{{ peerings | toJSON }} {{ exportedServices | toJSON }}`},
	{"caLeaf", `{{ with caLeaf "ctweb" }}{{ .Service }} {{ .ServiceURI }} {{ .ValidBefore.After .ValidAfter }} {{ gt (len .CertPEM) 0 }} {{ gt (len .PrivateKeyPEM) 0 }}{{ end }}`},
	{"caLeaf empty", `[{{ caLeaf "" }}] [{{ caLeaf }}]`},
	{"peerings", `[{{ range peerings }}{{ .Name }}{{ end }}] {{ len peerings }}`},
	{"peerings bad form", `{{ peerings "x" }}`},
	{"exportedServices", `[{{ range exportedServices }}{{ .Service }}{{ end }}] {{ len exportedServices }}`},
	{"exportedServices two", `{{ exportedServices "a" "b" }}`},
	{"keyExists folder key", `{{ keyExists "ct/app/folder/" }} {{ keyExists "ct/app/folder" }}`},
}

func TestConformFunctions(t *testing.T) {
	seedConform(t)
	for _, tc := range conformCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			peer, ours := both(t, tc.tmpl)
			sameOutcome(t, tc.tmpl, peer, ours)
		})
	}
}

// conformDifferences are the template cases where templater deliberately
// renders what consul-template refuses (README, differences). The test runs
// both: consul-template must fail (so the difference is real and still
// there) and templater must render want.
var conformDifferences = []struct{ name, tmpl, want string }{
	// consul-template executes the first pass with empty data and fails on
	// the error (hashicorp/consul-template#83, #296); templater
	// ignores errors of passes that lack data.
	{"first pass index", `{{ (index (service "ctweb") 0).Port }}`, "8101"},
	// templater extensions.
	{"ServiceTags.Contains", `{{ range service "ctweb" }}{{ if .Tags.Contains "prod" }}{{ .ID }};{{ end }}{{ end }}`, "ctw1;ctw2;"},
	{"NodeDatacenter", `{{ range service "ctweb" }}{{ .NodeDatacenter }};{{ end }}`, "dc1;dc1;"},
	{"Sprig under its plain name", `{{ upper "a" }} {{ "x" | repeat 2 }}`, "A xx"},
	{"bracketed dotted service name", `{{ range service "[ct.dotted]" }}{{ .Name }}:{{ .Port }}{{ end }}`, "ct.dotted:9200"},
}

func TestConformDifferences(t *testing.T) {
	seedConform(t)
	for _, tc := range conformDifferences {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			peer, ours := both(t, tc.tmpl)
			if peer.Code == 0 {
				t.Errorf("consul-template no longer fails (%s): the difference is gone; move the case to conformCases", peer)
			}
			if ours.Code != 0 || ours.Out != tc.want {
				t.Errorf("templater: %s, want exit 0 and %q\n  stderr: %s", ours, tc.want, lastLines(ours.Stderr))
			}
		})
	}
}
