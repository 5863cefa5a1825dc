# Sourced by scripts/demo.sh: templater renders an nginx config from the
# instances of service "web" in the demo agent, checks it with `nginx -t`
# before installing it, and re-renders when an instance joins.
tdir="$DEMO_DIR/templater"
mkdir -p "$tdir/tmp"
reg() { curl -fsS -X PUT -d "{\"ID\":\"$1\",\"Name\":\"web\",\"Address\":\"127.0.0.1\",\"Port\":$2}" "http://$CONSUL_HTTP_ADDR/v1/agent/service/register" >/dev/null; }
reg web-1 18081
reg web-2 18082
check=""
if command -v nginx >/dev/null; then
	check="check = \"nginx -t -q -p $tdir -e $tdir/error.log -c {{path}}\""
fi
cat >"$tdir/templater.hcl" <<HCL
template {
  source      = "$top/examples/nginx/nginx.conf.ctmpl"
  destination = "$tdir/nginx.conf"
  $check
  command     = "echo '  (command) nginx would reload now'"
}
HCL
echo "config ($tdir/templater.hcl):"
sed 's/^/  /' "$tdir/templater.hcl"
echo "-diff shows the plan (a diff against what is on disk) and writes nothing:"
"$BIN/templater" -config "$tdir/templater.hcl" -once -diff -log-level err | sed -n '1,40p' | grep -E '^(==|\+\+\+|---|\+ +server|would run)' | sed 's/^/  /'
NGINX_LISTEN=127.0.0.1:18080 demo_bg "$BIN/templater" -config "$tdir/templater.hcl" -log-level warn
tpid=${pids[-1]}
for _ in $(seq 1 100); do [ -s "$tdir/nginx.conf" ] && break; sleep 0.05; done
echo "rendered upstream with two instances:"
sed -n '/upstream backend/,/}/p' "$tdir/nginx.conf" | sed 's/^/  /'
echo "registering web-3; only this template re-renders, checked by nginx -t first:"
reg web-3 18083
for _ in $(seq 1 100); do grep -q 18083 "$tdir/nginx.conf" && break; sleep 0.05; done
sed -n '/upstream backend/,/}/p' "$tdir/nginx.conf" | sed 's/^/  /'
if [ -n "$check" ]; then
	echo "a bad KV value (config/web/max_fails=oops): nginx -t rejects the candidate, the live file stays:"
	curl -fsS -X PUT -d oops "http://$CONSUL_HTTP_ADDR/v1/kv/config/web/max_fails" >/dev/null
	sleep 1
	if grep -q oops "$tdir/nginx.conf"; then echo "  live file changed (unexpected)"; else echo "  live file unchanged: $(grep -c 'max_fails=3' "$tdir/nginx.conf") servers with max_fails=3"; fi
	curl -fsS -X DELETE "http://$CONSUL_HTTP_ADDR/v1/kv/config/web/max_fails" >/dev/null
fi
if [ -z "${DEMO_ONESHOT:-}" ]; then
	echo "templater (pid $tpid) keeps watching; try, from another terminal:"
	echo "  $CONSUL_BIN services register -http-addr $CONSUL_HTTP_ADDR -name web -id web-4 -port 18084"
	echo "  grep server $tdir/nginx.conf"
fi
