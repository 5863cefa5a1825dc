#!/usr/bin/env bash
# make demo: starts a dev Consul agent on loopback, shows each berth program
# working against it (the parts are examples/*/demo.sh), and stops everything
# on Ctrl-C. DEMO_ONESHOT=1 stops after showing (used by CI).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export BIN="$top/bin"
CONSUL_BIN=${CONSUL_BIN:-$(go env GOPATH | cut -d: -f1)/berth-tools/consul-v1.21.0/consul}
[ -x "$CONSUL_BIN" ] || CONSUL_BIN=$(command -v consul || true)
if [ -z "$CONSUL_BIN" ] || [ ! -x "$CONSUL_BIN" ]; then
	echo "demo: no consul binary; run 'make consul' first" >&2
	exit 1
fi
export CONSUL_BIN

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }

DEMO_DIR=$(mktemp -d /tmp/berth-demo.XXXXXX)
export DEMO_DIR
pids=()
# demo_bg CMD...: start a background process that the demo stops at the end.
demo_bg() { "$@" & pids+=($!); }
cleanup() {
	trap - INT TERM EXIT
	echo
	echo "== stopping"
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "${DEMO_KEEP:-}" ] || rm -rf "$DEMO_DIR"
	echo "== stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

http=$(pick_port 8500)
dns=$(pick_port 8600)
serf=$(pick_port 18301)
serfw=$(pick_port $((serf + 1)))
server=$(pick_port 18300)
export CONSUL_HTTP_ADDR="127.0.0.1:$http" CONSUL_DNS_ADDR="127.0.0.1:$dns"
export CONSUL_HTTP_TOKEN= CONSUL_HTTP_TOKEN_FILE=
echo "== dev Consul agent on http://$CONSUL_HTTP_ADDR (DNS $CONSUL_DNS_ADDR), log in $DEMO_DIR/consul.log"
demo_bg "$CONSUL_BIN" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node berth-demo \
	-http-port "$http" -dns-port "$dns" -serf-lan-port "$serf" -serf-wan-port "$serfw" \
	-server-port "$server" -grpc-port -1 -hcl 'ports { grpc_tls = -1 }' >"$DEMO_DIR/consul.log" 2>&1
consul_pid=${pids[-1]}
for _ in $(seq 1 200); do
	kill -0 "$consul_pid" 2>/dev/null || { echo "demo: Consul exited; see $DEMO_DIR/consul.log:" >&2; grep -m3 ERROR "$DEMO_DIR/consul.log" >&2; exit 1; }
	leader=$(curl -fsS "http://$CONSUL_HTTP_ADDR/v1/status/leader" 2>/dev/null || true)
	[ -n "$leader" ] && [ "$leader" != '""' ] && break
	sleep 0.1
done
[ -n "${leader:-}" ] && [ "$leader" != '""' ] || { echo "demo: Consul did not elect a leader; see $DEMO_DIR/consul.log" >&2; exit 1; }

for part in lockrun envexec templater dnsforward registrator; do
	f="$top/examples/$part/demo.sh"
	if [ -f "$f" ] && [ -x "$BIN/$part" ]; then
		echo
		echo "== $part"
		# shellcheck source=/dev/null
		source "$f"
	fi
done

echo
if [ -n "${DEMO_ONESHOT:-}" ]; then
	echo "== demo done (DEMO_ONESHOT)"
	exit 0
fi
echo "== all running against the dev agent; Ctrl-C stops everything"
while true; do sleep 3600; done
