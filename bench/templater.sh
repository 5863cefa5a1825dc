#!/usr/bin/env bash
# bench/templater.sh: templater against consul-template v0.41.1, one run, one
# dev agent. Latency from the start of a KV write to the rendered file holding
# the new value, p50/p99 over 100 writes, plus CPU time per change and peak RSS.
#  (a) one template {{ key "bench/value" }}: passes at or below consul-template
#  (b) 50 templates over one 2,000-instance service, each with its own key;
#      one key written: passes at or below a tenth of consul-template
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
N=${BENCH_WRITES:-100}
PEERS=${PEERS:-$(go env GOPATH | cut -d: -f1)/berth-tools/peers}
CT_VERSION=v0.41.1
CT="$PEERS/consul-template"
if [ ! -x "$CT" ] || ! "$CT" -version 2>&1 | grep -q "${CT_VERSION#v}"; then
	echo "building consul-template $CT_VERSION into $PEERS"
	GOBIN="$PEERS" GOTOOLCHAIN=local go install "github.com/hashicorp/consul-template@$CT_VERSION"
fi
work=$(mktemp -d /tmp/berth-bench-templater.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/templater" ./templater
go build -o "$work/latency" ./bench/templater/latency

if [ -z "${CONSUL_HTTP_ADDR:-}" ]; then
	CONSUL_BIN=${CONSUL_BIN:-$(make -s -C "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" consul-path)}
	# shellcheck source=scripts/devagent/devagent.sh
	. "$top/scripts/devagent/devagent.sh"
	devagent_start "$work" bench || exit 1
fi
echo "agent http://$CONSUL_HTTP_ADDR; $N writes per case"

# start NAME ARGS...: start a renderer in the background; sets $rpid
start() {
	local name=$1
	shift
	"$@" >"$work/$name.log" 2>&1 &
	rpid=$!
	pids+=($rpid)
}
stop() { kill -INT "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_file() { for _ in $(seq 1 300); do [ -s "$1" ] && return 0; sleep 0.05; done; echo "no $1" >&2; return 1; }

# (a) one template each, {{ key "bench/value-<renderer>" }}: both renderers run
# at once and take turns, one write each, so machine noise falls on both alike.
mkdir -p "$work/a"
results=()
for who in ct tp; do
	echo "{{ key \"bench/value-$who\" }}" >"$work/a/$who.tmpl"
	curl -fsS -X PUT -d init "http://$CONSUL_HTTP_ADDR/v1/kv/bench/value-$who" >/dev/null
done
start ct-a "$CT" -consul-addr "$CONSUL_HTTP_ADDR" -template "$work/a/ct.tmpl:$work/a/ct.out" -log-level err
ct_pid=$rpid
start tp-a "$work/templater" -template "$work/a/tp.tmpl:$work/a/tp.out" -log-level err
tp_pid=$rpid
wait_file "$work/a/ct.out"
wait_file "$work/a/tp.out"
while read -r line; do results+=("$line"); done < <("$work/latency" -n "$N" \
	-targets "a:consul-template=bench/value-ct=$work/a/ct.out=$ct_pid,a:templater=bench/value-tp=$work/a/tp.out=$tp_pid")
stop "$ct_pid"
stop "$tp_pid"

# (b) 50 templates per renderer, each over the 2,000 instances of bench-svc and
# its own key; the writes go round the 50 keys of each renderer, taking turns.
"$work/latency" -mode seed -instances 2000
mkdir -p "$work/b"
for who in ct tp; do
	: >"$work/b/$who.hcl"
	for i in $(seq 1 50); do
		printf '{{ key "bench/%s/%d" }}\n{{ range service "bench-svc" }}{{ .Node }} {{ .Address }}:{{ .Port }} {{ .ID }}\n{{ end }}' "$who" "$i" >"$work/b/$who-$i.tmpl"
		curl -fsS -X PUT -d "init$i" "http://$CONSUL_HTTP_ADDR/v1/kv/bench/$who/$i" >/dev/null
		printf 'template {\n  source = "%s"\n  destination = "%s"\n}\n' "$work/b/$who-$i.tmpl" "$work/b/$who-$i.out" >>"$work/b/$who.hcl"
	done
done
start ct-b "$CT" -consul-addr "$CONSUL_HTTP_ADDR" -config "$work/b/ct.hcl" -log-level err
ct_pid=$rpid
start tp-b "$work/templater" -config "$work/b/tp.hcl" -log-level err
tp_pid=$rpid
for i in $(seq 1 50); do wait_file "$work/b/ct-$i.out"; wait_file "$work/b/tp-$i.out"; done
sleep 1
while read -r line; do results+=("$line"); done < <("$work/latency" -n "$N" \
	-targets "b:consul-template=bench/ct/%d=$work/b/ct-%d.out=$ct_pid,b:templater=bench/tp/%d=$work/b/tp-%d.out=$tp_pid")
stop "$ct_pid"
stop "$tp_pid"

printf '\n%-20s %10s %10s %14s %10s\n' case p50_ms p99_ms cpu_ms/change rss_kB
for r in "${results[@]}"; do
	# shellcheck disable=SC2086
	printf '%-20s %10s %10s %14s %10s\n' $r
done
fail=0
# shellcheck disable=SC2086
row() { for r in "${results[@]}"; do set -- $r; if [ "$1" = "$want" ]; then echo "$2 $3"; return; fi; done; }
want=a:consul-template; read -r ap50c ap99c <<<"$(row)"
want=a:templater; read -r ap50t ap99t <<<"$(row)"
want=b:consul-template; read -r bp50c bp99c <<<"$(row)"
want=b:templater; read -r bp50t bp99t <<<"$(row)"
echo
if awk -v t="$ap50t" -v c="$ap50c" -v t9="$ap99t" -v c9="$ap99c" 'BEGIN{exit !(t<=c && t9<=c9)}'; then
	echo "PASS (a) templater p50 ${ap50t} / p99 ${ap99t} ms <= consul-template p50 ${ap50c} / p99 ${ap99c} ms"
else
	echo "FAIL (a) templater p50 ${ap50t} / p99 ${ap99t} ms vs consul-template p50 ${ap50c} / p99 ${ap99c} ms"
	fail=1
fi
if awk -v t="$bp50t" -v c="$bp50c" -v t9="$bp99t" -v c9="$bp99c" 'BEGIN{exit !(t<=c/10 && t9<=c9/10)}'; then
	echo "PASS (b) templater p50 ${bp50t} / p99 ${bp99t} ms <= 1/10 of consul-template p50 ${bp50c} / p99 ${bp99c} ms"
else
	echo "FAIL (b) templater p50 ${bp50t} / p99 ${bp99t} ms vs 1/10 of consul-template p50 ${bp50c} / p99 ${bp99c} ms"
	fail=1
fi
exit $fail
