#!/usr/bin/env bash
# Benchmark of registrator (issue 5), one run:
#  - registration latency: `docker start` returning → the service visible in
#    /v1/catalog/service/NAME, p50/p99 over 50 containers, for berth's
#    registrator and for the floor (a bare Docker event subscriber making one
#    agent register call per start event: bench/registrator/main.go "floor");
#    PASS when berth's p99 ≤ 2 × the floor's p99;
#  - time to reconcile 200 running containers when registrator starts;
#  - register/deregister calls made by unchanged resyncs (must be 0).
# gliderlabs/registrator is measured too when it can be built from the Go
# module proxy (it currently refuses the module: then it is reported n/a).
#
# BENCH_VERBOSE=1 prints every latency sample; N and FLEET change the counts.
# Starts its own dev Consul agent unless CONSUL_HTTP_ADDR is set. Needs a
# Docker daemon (skips with a message otherwise). Containers are named
# berth-bench-* and labelled berth-bench=1; all are removed at the end.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
N=${N:-50}
FLEET=${FLEET:-200}

if ! docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; then
	echo "registrator bench: SKIP (no Docker daemon reachable)"
	exit 0
fi

work=$(mktemp -d /tmp/berth-bench-registrator.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -x "$work/bench" ]; then
		"$work/bench" fleet -prefix berth-bench down >/dev/null 2>&1 || true
		[ -z "${own_consul:-}" ] && "$work/bench" cleanup -consul "$CONSUL_HTTP_ADDR" >/dev/null 2>&1 || true
	fi
	docker rmi -f berth-bench-registrator:latest >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building registrator and the bench tool/image"
CGO_ENABLED=0 go build -trimpath -o "$work/registrator" ./registrator
CGO_ENABLED=0 go build -trimpath -o "$work/bench" ./bench/registrator
mkdir -p "$work/image"
cp "$work/bench" "$work/image/bench"
printf 'FROM scratch\nCOPY bench /bench\nLABEL berth-bench=1\nENTRYPOINT ["/bench"]\n' >"$work/image/Dockerfile"
docker build -q -t berth-bench-registrator:latest "$work/image" >/dev/null 2>&1
# shellcheck source=scripts/devagent/devagent.sh
. "$top/scripts/devagent/devagent.sh"
devagent_build "$work"
"$work/bench" fleet -prefix berth-bench down >/dev/null

if [ -z "${CONSUL_HTTP_ADDR:-}" ]; then
	CONSUL_BIN=${CONSUL_BIN:-$(make -s -C "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" consul-path)}
	[ -x "$CONSUL_BIN" ] || { echo "registrator bench: no consul binary (make consul)" >&2; exit 1; }
	devagent_start "$work" berth-bench || { echo "registrator bench: Consul did not start" >&2; exit 1; }
	own_consul=1
fi
export CONSUL_HTTP_TOKEN= CONSUL_HTTP_TOKEN_FILE=
echo "== Consul at $CONSUL_HTTP_ADDR; Docker $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# 1. The floor.
"$work/bench" floor -consul "$CONSUL_HTTP_ADDR" 2>"$work/floor.log" &
floor_pid=$!
pids+=($floor_pid)
sleep 0.5
echo "== latency over $N containers: floor"
read -r floor_p50 floor_p99 < <("$work/bench" latency -consul "$CONSUL_HTTP_ADDR" -n "$N" -prefix berth-bench-floor) ||
	{ echo "registrator bench: floor latency run failed; see $work/floor.log" >&2; exit 1; }
stop_pid "$floor_pid"
"$work/bench" fleet -prefix berth-bench-floor down

# 2. berth registrator, default flags.
"$work/registrator" -hostname berth-bench-lat -ip 127.0.0.1 -resync 0 -only-label berth-bench=1 "consul://$CONSUL_HTTP_ADDR" 2>"$work/reg-lat.log" &
reg_pid=$!
pids+=($reg_pid)
sleep 1
echo "== latency over $N containers: berth registrator"
read -r berth_p50 berth_p99 < <("$work/bench" latency -consul "$CONSUL_HTTP_ADDR" -n "$N" -prefix berth-bench-lat) ||
	{ echo "registrator bench: registrator latency run failed:" >&2; tail -5 "$work/reg-lat.log" >&2; exit 1; }
stop_pid "$reg_pid"
"$work/bench" fleet -prefix berth-bench-lat down

# 3. gliderlabs/registrator, when the module proxy serves it.
peer_bin=/root/go/berth-tools/peers/registrator-gliderlabs
peer_p50=n/a peer_p99=n/a peer_note="module proxy refuses github.com/gliderlabs/registrator (403)"
if [ ! -x "$peer_bin" ]; then
	if GOBIN="$work/peer" go install github.com/gliderlabs/registrator@latest >"$work/peer-build.log" 2>&1; then
		mkdir -p "$(dirname "$peer_bin")" && mv "$work/peer/registrator" "$peer_bin"
	fi
fi
if [ -x "$peer_bin" ]; then
	"$peer_bin" -ip 127.0.0.1 "consul://$CONSUL_HTTP_ADDR" 2>"$work/peer.log" &
	peer_pid=$!
	pids+=($peer_pid)
	sleep 1
	if read -r peer_p50 peer_p99 < <("$work/bench" latency -consul "$CONSUL_HTTP_ADDR" -n "$N" -prefix berth-bench-peer); then
		peer_note="gliderlabs/registrator"
	else
		peer_note="gliderlabs/registrator failed; see its log"
	fi
	stop_pid "$peer_pid"
	"$work/bench" fleet -prefix berth-bench-peer down
fi

# 4. Reconcile $FLEET running containers at start, then unchanged resyncs.
echo "== starting $FLEET containers"
"$work/bench" fleet -n "$FLEET" -prefix berth-bench-fleet up
mport=$("$work/devagent" -free-port)
"$work/registrator" -hostname berth-bench-fleet -ip 127.0.0.1 -resync 1 -only-label berth-bench=1 -metrics-addr "127.0.0.1:$mport" \
	"consul://$CONSUL_HTTP_ADDR" 2>"$work/reg-fleet.log" &
reg_pid=$!
pids+=($reg_pid)
reconcile_ms=$("$work/bench" wait -consul "$CONSUL_HTTP_ADDR" -host berth-bench-fleet -n "$FLEET")
metric() { curl -fsS "http://127.0.0.1:$mport/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
resyncs() { curl -fsS "http://127.0.0.1:$mport/metrics" | awk '$1 == "berth_registrator_reconcile_passes_total{trigger=\"resync\"}" {print $2}'; }
sleep 1.5
w0=$(( $(metric berth_registrator_registrations_total) + $(metric berth_registrator_deregistrations_total) ))
r0=$(resyncs)
for _ in $(seq 1 100); do
	r1=$(resyncs)
	[ "$((r1 - r0))" -ge 3 ] && break
	sleep 0.2
done
w1=$(( $(metric berth_registrator_registrations_total) + $(metric berth_registrator_deregistrations_total) ))
resync_writes=$((w1 - w0))
resync_passes=$((r1 - r0))
stop_pid "$reg_pid"

ratio=$(awk -v b="$berth_p99" -v f="$floor_p99" 'BEGIN { if (f <= 0) f = 0.001; printf "%.2f", b / f }')
verdict=PASS
awk -v b="$berth_p99" -v f="$floor_p99" 'BEGIN { exit !(b <= 2 * f) }' || verdict=FAIL
[ "$resync_writes" -eq 0 ] || verdict=FAIL

echo
echo "registrator benchmark (docker start returned → service in /v1/catalog/service/NAME; $N containers each)"
printf '%-34s %10s %10s\n' "subject" "p50 ms" "p99 ms"
printf '%-34s %10s %10s\n' "floor (bare subscriber + 1 register)" "$floor_p50" "$floor_p99"
printf '%-34s %10s %10s\n' "berth registrator" "$berth_p50" "$berth_p99"
printf '%-34s %10s %10s   (%s)\n' "gliderlabs/registrator" "$peer_p50" "$peer_p99" "$peer_note"
echo
printf '%-44s %s\n' "berth p99 / floor p99 (pass ≤ 2.00)" "$ratio"
printf '%-44s %s ms\n' "reconcile $FLEET running containers at start" "$reconcile_ms"
printf '%-44s %s (over %s resync passes; must be 0)\n' "writes made by unchanged resyncs" "$resync_writes" "$resync_passes"
echo "$verdict"
[ "$verdict" = PASS ]
