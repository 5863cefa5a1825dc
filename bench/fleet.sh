#!/usr/bin/env bash
# bench/fleet.sh: what each host's watches cost the Consul servers (issue 16).
# One Consul v1.21.0 server (127.0.0.2) and four client agents
# (127.0.0.11-14), each with Consul's default ports on its own loopback
# address; FLEET_PER_AGENT watchers (default 10) on every agent. For each watch
# kind -- `service` over 1,000 instances, a 500-key `tree`, `services` (berth's
# templater and consul-template v0.41.1 in the same run), and dnsforward's
# service-name and node-name lookups plus changes nobody asked about -- it
# reads the server's RPCs, bytes and CPU at start-up (all watchers at once)
# and over FLEET_CHANGES changes (default 20), per watcher, per agent and
# extrapolated to 10,000 hosts, then prints PASS/FAIL per goal of the issue.
#
# Where the figures come from (bench/fleet/meter.go says more):
#   RPCs  the server's consul_rpc_request + internal gRPC requests and
#         streams (Prometheus counters; telemetry on); by method from the
#         server's rpc_server_call lines, read at trace level through
#         /v1/agent/monitor (1.21.0 does not put consul.rpc.server.call on
#         /v1/agent/metrics); the endpoints the watchers asked from the client
#         agents' consul_api_http_count
#   bytes tcpi_bytes_sent of the server's sockets on 127.0.0.2:8300 (ss -tin),
#         the port that carries every answer to a client agent and nothing
#         else; /proc/<pid>/io would mix in raft's disk writes and gossip
#   CPU   utime+stime of the server from /proc/<pid>/stat
# An idle window (background) is measured first and subtracted. For the
# dnsforward changes nobody asked about, the forwarders' own idle cost (their
# reachability probe goes by the clock, not by changes) is measured with them
# running and printed, and subtracted too (the probe's Status.Leader calls as
# the server's trace counts them in the workload's own window). The 10,000-host
# figures are per agent x 10,000: each host one agent with FLEET_PER_AGENT
# watchers like these (FLEET_PER_AGENT=1 models one watcher per host).
#
# FLEET_ONLY=dns (or templates) runs only those workloads; the goals of the
# others then print SKIP.
# Exit: 0 all goals met; 1 a goal not met (0 with REPORT_ONLY=1); 2 the
# benchmark could not run. Takes about 5 minutes; everything it starts it
# stops; no traffic leaves loopback.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH="$PATH:/usr/sbin:/sbin"
command -v ss >/dev/null || { echo "fleet: needs ss (iproute2)" >&2; exit 2; }
GOPATH1=$(go env GOPATH | cut -d: -f1)
CONSUL_BIN=${CONSUL_BIN:-$(make -s -C "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" consul-path)}
[ -x "$CONSUL_BIN" ] || { echo "fleet: no consul binary at $CONSUL_BIN (make consul)" >&2; exit 2; }
PEERS=${PEERS:-$GOPATH1/berth-tools/peers}
CT_VERSION=v0.41.1
CT="$PEERS/consul-template"
if [ "${FLEET_ONLY:-}" != dns ] && { [ ! -x "$CT" ] || ! "$CT" -version 2>&1 | grep -q "${CT_VERSION#v}"; }; then
	echo "building consul-template $CT_VERSION into $PEERS"
	GOBIN="$PEERS" GOTOOLCHAIN=local go install "github.com/hashicorp/consul-template@$CT_VERSION"
fi
# Only the agents this script starts are asked; nothing of the caller's
# Consul environment may redirect the programs or the driver.
unset CONSUL_HTTP_ADDR CONSUL_HTTP_TOKEN CONSUL_HTTP_TOKEN_FILE CONSUL_CACERT CONSUL_CAPATH \
	CONSUL_CLIENT_CERT CONSUL_CLIENT_KEY CONSUL_HTTP_SSL CONSUL_TLS_SERVER_NAME CONSUL_NAMESPACE CONSUL_PARTITION

work=$(mktemp -d /tmp/berth-bench-fleet.XXXXXX)
drv=
cleanup() {
	if [ -n "$drv" ]; then
		kill -TERM "$drv" 2>/dev/null || true
		wait "$drv" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building templater, dnsforward and the driver"
CGO_ENABLED=0 go build -o "$work/templater" ./templater
CGO_ENABLED=0 go build -o "$work/dnsforward" ./dnsforward
go build -o "$work/fleet" ./bench/fleet

args=(-consul "$CONSUL_BIN" -templater "$work/templater" -consul-template "$CT" -dnsforward "$work/dnsforward"
	-work "$work" -per-agent "${FLEET_PER_AGENT:-10}" -changes "${FLEET_CHANGES:-20}")
[ "${REPORT_ONLY:-}" = 1 ] && args+=(-report-only)
[ -n "${FLEET_ONLY:-}" ] && args+=(-only "$FLEET_ONLY")
"$work/fleet" "${args[@]}" &
drv=$!
rc=0
wait "$drv" || rc=$?
drv=
exit "$rc"
