# Sourced by scripts/demo.sh after the per-program parts: the programs
# cooperating on one host. A container starts → registrator registers it →
# templater renders an nginx upstream for it → dnsforward answers its name →
# the container stops → all three follow.

host_demo() {
	if [ -z "${REGISTRATOR_METRICS:-}" ]; then
		echo "host demo: skipped (needs the registrator part running)"
		return 0
	fi
	local dir port i conf
	dir="$DEMO_DIR/host"
	mkdir -p "$dir"
	conf="$dir/upstream.conf"
	port=$(pick_port)

	echo "templater renders $conf from service host-web; dnsforward answers on 127.0.0.1:$port"
	demo_bg "$BIN/templater" -template "$top/examples/host/upstream.conf.tmpl:$conf" 2>"$dir/templater.log"
	demo_bg "$BIN/dnsforward" -listen "127.0.0.1:$port" -consul-dns "$CONSUL_DNS_ADDR" 2>"$dir/dnsforward.log"
	host_demo_show() {
		echo "  upstream.conf: $(grep -E 'server ' "$conf" 2>/dev/null | tr -s ' ' | tr '\n' ' ')"
		echo "  dig host-web.service.consul: $(dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 host-web.service.consul A | tr '\n' ' ') ($(dig +time=1 +tries=1 -p "$port" @127.0.0.1 host-web.service.consul A | grep -o 'status: [A-Z]*'))"
	}
	# host_demo_until CMD: retry CMD for up to 10 s.
	host_demo_until() { for i in $(seq 1 100); do "$@" && return 0; sleep 0.1; done; return 1; }

	echo "docker run host-web (SERVICE_NAME=host-web)"
	docker run -d --name berth-demo-host-web --label berth-demo=1 -p 127.0.0.1::8080 \
		-e SERVICE_NAME=host-web berth-demo-web:latest -listen :8080 >/dev/null
	# shellcheck disable=SC2064
	trap "docker rm -f berth-demo-host-web >/dev/null 2>&1; $(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")" EXIT
	host_demo_until grep -q 'server 127.0.0.1:[0-9]*;' "$conf" || echo "  (upstream not rendered in 10 s; see $dir/templater.log)"
	host_demo_until sh -c "dig +short +time=1 +tries=1 -p $port @127.0.0.1 host-web.service.consul A | grep -q ." || true
	host_demo_show

	echo "docker stop host-web"
	docker stop -t 1 berth-demo-host-web >/dev/null
	host_demo_until grep -q 'no healthy instance' "$conf" || echo "  (upstream not updated in 10 s; see $dir/templater.log)"
	host_demo_until sh -c "dig +time=1 +tries=1 -p $port @127.0.0.1 host-web.service.consul A | grep -q NXDOMAIN" || true
	host_demo_show
}

host_demo
