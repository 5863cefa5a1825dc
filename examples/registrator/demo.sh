# Sourced by scripts/demo.sh (bash): registrator follows containers into the
# dev Consul agent. It leaves one container running and registered as the
# service "demo-web" (for the programs that follow it in a cooperative demo)
# and removes everything it created on exit: registrator_demo_cleanup, which
# this file also chains into the demo's EXIT trap.

registrator_demo_cleanup() {
	docker rm -f berth-demo-web berth-demo-web2 >/dev/null 2>&1 || true
	docker rmi -f berth-demo-web:latest >/dev/null 2>&1 || true
}

registrator_demo() {
	local reg_log img catalog i
	img="$DEMO_DIR/registrator-image"
	mkdir -p "$img"
	# No image can be pulled: the workload is a static Go HTTP server in a
	# FROM scratch image.
	if ! (cd "$top/registrator/testdata/server" && CGO_ENABLED=0 go build -trimpath -o "$img/server" .); then
		echo "registrator demo: cannot build the demo web server" >&2
		return 1
	fi
	printf 'FROM scratch\nCOPY server /server\nLABEL berth-demo=1\nENTRYPOINT ["/server"]\n' >"$img/Dockerfile"
	docker build -q -t berth-demo-web:latest "$img" >/dev/null 2>&1 || { echo "registrator demo: docker build failed" >&2; return 1; }
	registrator_demo_cleanup_containers
	# Chain our cleanup in front of the demo's own EXIT trap.
	local prev
	prev=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
	# shellcheck disable=SC2064
	trap "registrator_demo_cleanup; ${prev:-:}" EXIT

	reg_log="$DEMO_DIR/registrator.log"
	REGISTRATOR_METRICS=127.0.0.1:$(pick_port)
	export REGISTRATOR_METRICS
	echo "registrator: -hostname berth-demo -ip 127.0.0.1 -resync 10 -metrics-addr $REGISTRATOR_METRICS consul://$CONSUL_HTTP_ADDR (log: $reg_log)"
	demo_bg "$BIN/registrator" -hostname berth-demo -ip 127.0.0.1 -resync 10 -metrics-addr "$REGISTRATOR_METRICS" \
		"consul://$CONSUL_HTTP_ADDR" 2>"$reg_log"

	echo "docker run berth-demo-web with SERVICE_NAME=demo-web SERVICE_TAGS=demo SERVICE_CHECK_HTTP=/health"
	docker run -d --name berth-demo-web --label berth-demo=1 -p 127.0.0.1::8080 \
		-e SERVICE_NAME=demo-web -e SERVICE_TAGS=demo -e SERVICE_VERSION=1 \
		-e SERVICE_CHECK_HTTP=/health -e SERVICE_CHECK_INTERVAL=2s \
		berth-demo-web:latest -listen :8080 >/dev/null
	registrator_demo_wait demo-web 1 || return 1
	catalog=$(curl -fsS "http://$CONSUL_HTTP_ADDR/v1/catalog/service/demo-web")
	echo "  /v1/catalog/service/demo-web: $(echo "$catalog" | python3 -c 'import json,sys; [print(s["ServiceID"], "→", s["ServiceAddress"]+":"+str(s["ServicePort"]), "tags", s["ServiceTags"], "meta", {k: v for k, v in s["ServiceMeta"].items() if k != "berth-container-id"}) for s in json.load(sys.stdin)]')"
	for i in $(seq 1 50); do
		[ "$(curl -fsS "http://$CONSUL_HTTP_ADDR/v1/health/service/demo-web?passing" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 1 ] && break
		sleep 0.2
	done
	echo "  passing instances: $(curl -fsS "http://$CONSUL_HTTP_ADDR/v1/health/service/demo-web?passing" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"

	echo "a second container joins, then stops:"
	docker run -d --name berth-demo-web2 --label berth-demo=1 -p 127.0.0.1::8080 -e SERVICE_NAME=demo-web \
		berth-demo-web:latest -listen :8080 >/dev/null
	registrator_demo_wait demo-web 2 || return 1
	echo "  demo-web has 2 instances"
	docker stop -t 1 berth-demo-web2 >/dev/null
	registrator_demo_wait demo-web 1 || return 1
	echo "  stopped: demo-web is back to 1 instance"
	echo "  metrics: $(curl -fsS "http://$REGISTRATOR_METRICS/metrics" | grep -E '^berth_registrator_(registrations|deregistrations)_total' | tr '\n' ' ')"
	echo "berth-demo-web stays running and registered as demo-web until the demo stops."
}

registrator_demo_cleanup_containers() {
	docker rm -f berth-demo-web berth-demo-web2 >/dev/null 2>&1 || true
}

# registrator_demo_wait NAME N: wait (10 s at most) until the catalog has N instances.
registrator_demo_wait() {
	local n
	for _ in $(seq 1 100); do
		n=$(curl -fsS "http://$CONSUL_HTTP_ADDR/v1/catalog/service/$1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
		[ "$n" = "$2" ] && return 0
		sleep 0.1
	done
	echo "registrator demo: $1 has $n instances, expected $2; see $DEMO_DIR/registrator.log" >&2
	return 1
}

registrator_demo
