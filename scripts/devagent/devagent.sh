# shellcheck shell=bash
# Sourced (bash) by scripts/demo.sh and bench/*.sh: the one way they start a
# dev Consul agent, through scripts/devagent (pkg/consultest: free loopback
# ports, ready once it has a leader and its own node in the catalog).
# The agent is $CONSUL_BIN when set, else the pinned build (make consul).

devagent_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# devagent_build DIR: builds scripts/devagent into DIR/devagent (also
# `DIR/devagent -free-port` prints a loopback port free for TCP and UDP).
devagent_build() {
	(cd "$devagent_top" && go build -o "$1/devagent" ./scripts/devagent)
}

# devagent_start DIR [NODE]: builds devagent into DIR and starts it in the
# background, its PID appended to the caller's pids array (stopping it with
# SIGTERM or SIGINT stops the agent). It runs in a session of its own
# (setsid): the SIGINT of a Ctrl-C in the caller's terminal reaches the
# caller and its programs but not the agent, so the caller stops the agent
# itself after its programs, which never see it go away while they stop.
# devagent also stops when the caller exits, however it exits (see
# scripts/devagent/main.go). Waits up to 60 s for the agent, then exports
# CONSUL_HTTP_ADDR, CONSUL_DNS_ADDR, CONSUL_DNS_PORT and CONSUL_NODE (from
# DIR/agent.env) and empties CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE.
# The agent's log is DIR/consul.log. Returns 1, with the log's tail on
# standard error, when the agent did not start.
devagent_start() {
	local dir=$1 node=${2:-berth-demo} pid
	devagent_build "$dir" || return 1
	# A background job of a script (no job control) is no process group
	# leader, so setsid execs devagent in place and $! is devagent. Where
	# setsid has to fork (a shell with job control), -w keeps it as
	# devagent's parent, and killing it stops devagent (its parent exits).
	CONSUL_BIN=${CONSUL_BIN:-} setsid -w "$dir/devagent" -node "$node" -env-file "$dir/agent.env" -log "$dir/consul.log" &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 1 600); do
		[ -f "$dir/agent.env" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ ! -f "$dir/agent.env" ]; then
		echo "the dev Consul agent did not start; the end of its log ($dir/consul.log):" >&2
		tail -20 "$dir/consul.log" >&2
		return 1
	fi
	set -a
	# shellcheck source=/dev/null
	. "$dir/agent.env"
	set +a
	export CONSUL_HTTP_TOKEN='' CONSUL_HTTP_TOKEN_FILE=''
}
