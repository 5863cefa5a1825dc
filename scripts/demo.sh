#!/usr/bin/env bash
# make demo: starts a dev Consul agent on loopback, shows each berth program
# working against it (the parts are examples/*/demo.sh), and stops everything
# on Ctrl-C. DEMO_ONESHOT=1 stops after showing (used by CI).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export BIN="$top/bin"
CONSUL_BIN=${CONSUL_BIN:-$(make -s -C "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" consul-path)}
[ -x "$CONSUL_BIN" ] || CONSUL_BIN=$(command -v consul || true)
if [ -z "$CONSUL_BIN" ] || [ ! -x "$CONSUL_BIN" ]; then
	echo "demo: no consul binary; run 'make consul' first" >&2
	exit 1
fi
export CONSUL_BIN
# shellcheck source=scripts/devagent/devagent.sh
. "$top/scripts/devagent/devagent.sh"

DEMO_DIR=$(mktemp -d /tmp/berth-demo.XXXXXX)
export DEMO_DIR
pids=()
# demo_bg CMD...: start a background process that the demo stops at the end,
# last started first (the Consul agent last).
demo_bg() { "$@" & pids+=($!); }
# pick_port [HINT]: a loopback port free for TCP and UDP (the hint is ignored).
pick_port() { "$DEMO_DIR/devagent" -free-port; }
cleanup() {
	# Ignore further signals, so that a second Ctrl-C does not cut short the
	# ordered stop (it also reaches the programs, which stop anyway).
	trap '' INT TERM HUP
	trap - EXIT
	echo
	echo "== stopping"
	local i p n
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p=${pids[$i]}
		kill "$p" 2>/dev/null || continue
		for ((n = 0; n < 100; n++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	[ -n "${DEMO_KEEP:-}" ] || rm -rf "$DEMO_DIR"
	echo "== stopped"
}
# demo_signal STATUS: on INT, TERM or HUP. The programs get the SIGINT of a
# Ctrl-C from the terminal too, but the dev agent does not (devagent_start
# runs it in a session of its own): cleanup stops it after the programs.
demo_signal() {
	trap '' INT TERM HUP
	exit "$1"
}
trap cleanup EXIT
trap 'demo_signal 130' INT
trap 'demo_signal 143' TERM
trap 'demo_signal 129' HUP

devagent_start "$DEMO_DIR" berth-demo || { DEMO_KEEP=1; exit 1; }
echo "== dev Consul agent on http://$CONSUL_HTTP_ADDR (DNS $CONSUL_DNS_ADDR), log in $DEMO_DIR/consul.log"

# Each program's part, then the programs cooperating on one host. A part
# runs in this shell: it sees $top (the repository), $BIN, $DEMO_DIR, the
# CONSUL_* variables, demo_bg and pick_port. The parts that run containers
# (registrator, host) need a Docker daemon.
have_docker=
docker version >/dev/null 2>&1 && have_docker=1
for part in lockrun envexec templater dnsforward registrator host; do
	f="$top/examples/$part/demo.sh"
	if [ -f "$f" ] && { [ -x "$BIN/$part" ] || [ "$part" = host ]; }; then
		echo
		echo "== $part"
		case "$part" in registrator | host)
			[ -n "$have_docker" ] || { echo "$part demo: skipped (no Docker daemon reachable)"; continue; } ;;
		esac
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
# Bash runs a trap only once a foreground command has ended, but a trapped
# signal ends wait at once: so this waits on a background sleep.
demo_bg sleep infinity
wait "${pids[-1]}"
