#!/usr/bin/env bash
# Benchmark for envexec (issue 4), one run:
#  (a) start overhead: invoking `envexec -prefix P -- /bin/true` to its exit,
#      against `consul kv get -recurse P` followed by exec of /bin/true,
#      30 runs each, interleaved. PASS when envexec's median is at most 1.5x
#      the reference's.
#  (b) change latency: a KV write -> the restarted child printing the new
#      value, p50/p99 over 50 writes, with -kill-timeout 1s and a child that
#      exits at once on SIGTERM. envconsul runs the same when it can be built
#      from the Go module proxy into /root/go/berth-tools/peers.
# Uses $CONSUL_HTTP_ADDR if set, else starts its own dev agent on loopback.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-30}
WRITES=${WRITES:-50}
CONSUL_BIN=${CONSUL_BIN:-$(make -s -C "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" consul-path)}
[ -x "$CONSUL_BIN" ] || { echo "bench: no consul binary at $CONSUL_BIN (make consul)" >&2; exit 1; }
PEERS=${PEERS:-/root/go/berth-tools/peers}
work=$(mktemp -d /tmp/berth-bench-envexec.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=scripts/devagent/devagent.sh
. "$top/scripts/devagent/devagent.sh"
if [ -z "${CONSUL_HTTP_ADDR:-}" ]; then
	devagent_start "$work" bench-envexec || exit 1
fi
export CONSUL_HTTP_TOKEN= CONSUL_HTTP_TOKEN_FILE=

# envexec: bin/envexec if built (make build), else build it here.
if [ -x "$top/bin/envexec" ]; then
	envexec="$top/bin/envexec"
else
	envexec="$work/envexec"
	(cd "$top" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$envexec" ./envexec)
fi
(cd "$top" && go build -o "$work/latency" ./bench/envexec)

# The peer: envconsul from the module proxy (it may not be available there).
envconsul="$PEERS/envconsul"
if [ ! -x "$envconsul" ]; then
	mkdir -p "$PEERS"
	if ! GOBIN="$PEERS" GOTOOLCHAIN=local go install github.com/hashicorp/envconsul@v0.13.3 >"$work/envconsul-build.log" 2>&1; then
		echo "note: envconsul could not be built from the module proxy ($(grep -m1 -o '40[34][^"]*' "$work/envconsul-build.log" || tail -1 "$work/envconsul-build.log")); measuring envexec against the reference only"
		envconsul=""
	fi
fi

P=bench/envexec
for i in $(seq 1 20); do "$CONSUL_BIN" kv put "$P/KEY_$i" "value $i" >/dev/null; done

# (a) start overhead, interleaved so both see the same machine load.
now() { echo "${EPOCHREALTIME/./}"; } # microseconds, no fork
ref=() ours=()
for i in $(seq 1 "$RUNS"); do
	t0=$(now)
	"$CONSUL_BIN" kv get -recurse "$P" >/dev/null
	/bin/true
	t1=$(now)
	"$envexec" -prefix "$P" -- /bin/true
	t2=$(now)
	ref+=($((t1 - t0)))
	ours+=($((t2 - t1)))
done
stats() { # prints median and mean in ms of the given microsecond values
	printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1; s+=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f %.2f\n", m/1000, s/NR/1000}'
}
read -r ref_med ref_mean < <(stats "${ref[@]}")
read -r our_med our_mean < <(stats "${ours[@]}")
ratio=$(awk -v a="$our_med" -v b="$ref_med" 'BEGIN {printf "%.2f", a/b}')
verdict=$(awk -v r="$ratio" 'BEGIN {print (r <= 1.5) ? "PASS" : "FAIL"}')

echo
echo "(a) start overhead, $RUNS runs each (ms)"
printf '%-44s %10s %10s\n' "" median mean
printf '%-44s %10s %10s\n' "consul kv get -recurse P; exec true" "$ref_med" "$ref_mean"
printf '%-44s %10s %10s\n' "envexec -prefix P -- true" "$our_med" "$our_mean"
echo "ratio envexec/reference (median): $ratio  (limit 1.5)  $verdict"

# (b) change latency.
"$CONSUL_BIN" kv delete -recurse "$P" >/dev/null
echo
echo "(b) change latency, $WRITES writes, -kill-timeout 1s (ms)"
printf '%-12s %10s %10s %10s\n' "" p50 p99 max
child='echo "$BENCH_V"; exec sleep 1000'
"$work/latency" -addr "$CONSUL_HTTP_ADDR" -key "$P/BENCH_V" -n "$WRITES" -label envexec -- \
	"$envexec" -prefix "$P" -kill-timeout 1s -log-level warn -- /bin/sh -c "$child" |
	awk '{printf "%-12s %10s %10s %10s\n", $1, $2, $3, $4}'
if [ -n "$envconsul" ]; then
	"$work/latency" -addr "$CONSUL_HTTP_ADDR" -key "$P/BENCH_V" -n "$WRITES" -label envconsul -- \
		"$envconsul" -consul-addr "$CONSUL_HTTP_ADDR" -prefix "$P" -exec-kill-timeout 1s -exec-kill-signal SIGTERM -log-level err "$child" |
		awk '{printf "%-12s %10s %10s %10s\n", $1, $2, $3, $4}'
else
	printf '%-12s %10s\n' envconsul "n/a (not buildable here)"
fi
echo
echo "envexec start overhead: $verdict"
[ "$verdict" = PASS ]
