#!/usr/bin/env bash
# Benchmark: dnsforward vs dnsmasq (server=/consul/, cache, min-cache-ttl=5)
# vs Consul's own DNS, in one run, with dnsperf -c 8 on the same query file
# of Consul names (service A, tagged A, SRV). Also: p99 latency, cache-hit
# qps for upstream names (a hermetic loopback upstream), and staleness after
# a deregistration. Passes with dnsforward >= 1.2x dnsmasq and >= 5x Consul.
#
#   bash bench/dnsforward.sh            (BENCH_SECONDS=10 per run by default)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
DUR=${BENCH_SECONDS:-10}
CLIENTS=${BENCH_CLIENTS:-8}
export PATH="$PATH:/usr/sbin:/sbin"
for c in dnsperf dnsmasq dig go curl; do
	command -v "$c" >/dev/null || { echo "bench: needs $c (make deps)" >&2; exit 1; }
done
CONSUL_BIN=${CONSUL_BIN:-$(go env GOPATH | cut -d: -f1)/berth-tools/consul-v1.21.0/consul}
[ -x "$CONSUL_BIN" ] || { echo "bench: no consul binary at $CONSUL_BIN (make consul)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/berth-bench-dnsforward.XXXXXX)
pids=()
cleanup() {
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== building dnsforward and the bench helper"
(cd "$top" && CGO_ENABLED=0 go build -o "$tmp/dnsforward" ./dnsforward && go build -o "$tmp/helper" ./bench/dnsforward)
mapfile -t P < <("$tmp/helper" ports 9)
http=${P[0]} cdns=${P[1]} server=${P[2]} serf=${P[3]} serfw=${P[4]} up=${P[5]} pdf=${P[6]} pdm=${P[7]}

echo "== dev Consul agent (http $http, dns $cdns)"
cat >"$tmp/agent.hcl" <<EOF
node_name = "bench"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
advertise_addr = "127.0.0.1"
ports { http = $http
  dns = $cdns
  server = $server
  serf_lan = $serf
  serf_wan = $serfw
  grpc = -1
  grpc_tls = -1 }
log_level = "warn"
disable_update_check = true
EOF
"$CONSUL_BIN" agent -dev -config-file "$tmp/agent.hcl" >"$tmp/consul.log" 2>&1 &
consul_pid=$!
pids+=($consul_pid)
api="http://127.0.0.1:$http"
l=
for _ in $(seq 1 300); do
	kill -0 "$consul_pid" 2>/dev/null || break
	l=$(curl -fsS "$api/v1/status/leader" 2>/dev/null || true)
	[ -n "$l" ] && [ "$l" != '""' ] && break
	sleep 0.1
done
if [ -z "$l" ] || [ "$l" = '""' ]; then
	echo "bench: the Consul agent did not come up; its log:" >&2
	tail -20 "$tmp/consul.log" >&2
	exit 1
fi
# The catalog must hold the agent's node before services can be registered.
for _ in $(seq 1 100); do
	curl -fsS "$api/v1/catalog/node/bench" 2>/dev/null | grep -q '"Node"' && break
	sleep 0.1
done
reg() { curl -fsS -X PUT "$api/v1/agent/service/register" -d "$1" >/dev/null; }
reg '{"ID":"web1","Name":"web","Tags":["v1"],"Port":8080,"Address":"10.0.0.1"}'
reg '{"ID":"web2","Name":"web","Tags":["v1"],"Port":8081,"Address":"10.0.0.2"}'
reg '{"ID":"web3","Name":"web","Tags":["v2"],"Port":8082,"Address":"10.0.0.3"}'

"$tmp/helper" upstream "127.0.0.1:$up" &
pids+=($!)
"$tmp/dnsforward" -listen "127.0.0.1:$pdf" -http-addr "127.0.0.1:$http" -consul-dns "127.0.0.1:$cdns" \
	-upstream "127.0.0.1:$up" -log-level warn &
pids+=($!)
dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces --listen-address=127.0.0.1 --port="$pdm" \
	--server="/consul/127.0.0.1#$cdns" --server="127.0.0.1#$up" --cache-size=10000 --min-cache-ttl=5 \
	--pid-file="$tmp/dnsmasq.pid" --user="$(id -un)" --log-facility=- 2>"$tmp/dnsmasq.log" &
pids+=($!)
sleep 1

printf 'web.service.consul A\nv1.web.service.consul A\nweb.service.consul SRV\n_web._v1.service.consul SRV\n' >"$tmp/consul.txt"
printf 'a.example A\nb.example A\nc.example A\nd.example A\n' >"$tmp/upstream.txt"

names=(dnsforward dnsmasq consul)
declare -A port=([dnsforward]=$pdf [dnsmasq]=$pdm [consul]=$cdns)
for n in "${names[@]}"; do
	for q in web.service.consul v1.web.service.consul; do
		[ -n "$(dig +short +time=2 +tries=2 -p "${port[$n]}" @127.0.0.1 "$q" A)" ] || { echo "bench: $n does not answer $q" >&2; exit 1; }
	done
done

# perf PORT FILE: qps and lost queries of one dnsperf run.
perf() {
	dnsperf -s 127.0.0.1 -p "$1" -d "$2" -c "$CLIENTS" -l "$DUR" -t 2 >"$tmp/perf.out" 2>&1 || true
	qps=$(awk '/Queries per second/ {print $4}' "$tmp/perf.out")
	lost=$(awk '/Queries lost/ {print $3}' "$tmp/perf.out")
	echo "${qps:-0} ${lost:-?}"
}
# p99 PORT FILE: 99th percentile latency (ms) from a 3 s verbose run.
p99() {
	dnsperf -v -s 127.0.0.1 -p "$1" -d "$2" -c "$CLIENTS" -l 3 -t 2 2>/dev/null |
		awk '/^> / {print $NF}' | sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "?"; exit} i=int(NR*0.99); if (i<1) i=1; printf "%.3f", a[i]*1000}'
}
# stale NAME: ms until a deregistered instance is gone from NAME's answers.
stale() {
	local p=${port[$1]}
	reg '{"ID":"web3","Name":"web","Tags":["v2"],"Port":8082,"Address":"10.0.0.3"}'
	for _ in $(seq 1 2000); do
		dig +short +time=1 -p "$p" @127.0.0.1 web.service.consul A | grep -q 10.0.0.3 && break
		sleep 0.01
	done
	"$tmp/helper" stale "127.0.0.1:$p" web.service.consul 10.0.0.3 "$api/v1/agent/service/deregister/web3"
}

declare -A qps lost lat uqps stl
for n in "${names[@]}"; do
	echo "== dnsperf -c $CLIENTS -l $DUR: $n, Consul names"
	perf "${port[$n]}" "$tmp/consul.txt" >/dev/null # warm-up run (short runs are noisy)
	read -r q l < <(perf "${port[$n]}" "$tmp/consul.txt")
	qps[$n]=$q lost[$n]=$l
	lat[$n]=$(p99 "${port[$n]}" "$tmp/consul.txt")
done
for n in dnsforward dnsmasq; do
	echo "== dnsperf -c $CLIENTS -l $DUR: $n, upstream names (cache hits)"
	read -r q _ < <(perf "${port[$n]}" "$tmp/upstream.txt")
	uqps[$n]=$q
done
uqps[consul]="-"
for n in "${names[@]}"; do
	echo "== staleness after a deregistration: $n"
	stl[$n]=$(stale "$n")
done

echo
printf '%-12s %14s %8s %10s %18s %14s\n' server "consul qps" lost "p99 ms" "upstream-hit qps" "stale ms"
for n in "${names[@]}"; do
	printf '%-12s %14s %8s %10s %18s %14s\n' "$n" "${qps[$n]}" "${lost[$n]}" "${lat[$n]}" "${uqps[$n]}" "${stl[$n]}"
done
r1=$(awk -v a="${qps[dnsforward]}" -v b="${qps[dnsmasq]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
r2=$(awk -v a="${qps[dnsforward]}" -v b="${qps[consul]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
r3=$(awk -v a="${uqps[dnsforward]}" -v b="${uqps[dnsmasq]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
echo
echo "dnsforward / dnsmasq (Consul names): ${r1}x (need >= 1.2)"
echo "dnsforward / Consul DNS:             ${r2}x (need >= 5)"
echo "dnsforward / dnsmasq (upstream hits): ${r3}x (reported)"
if awk -v a="$r1" -v b="$r2" 'BEGIN {exit !(a >= 1.2 && b >= 5)}'; then
	echo "PASS"
else
	echo "FAIL"
	exit 1
fi
