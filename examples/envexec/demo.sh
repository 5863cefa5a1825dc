# Sourced by scripts/demo.sh (bash). Shows envexec: names, export, restart
# on change.
"$CONSUL_BIN" kv put demo/envexec/app/greeting 'hello from Consul' >/dev/null
"$CONSUL_BIN" kv put demo/envexec/app/port 8080 >/dev/null
"$CONSUL_BIN" kv put demo/envexec/app/db/host db1.internal >/dev/null
"$CONSUL_BIN" kv put demo/envexec/app2/port 9999 >/dev/null # a sibling: never matched

echo "keys below demo/envexec/app as variables (-sanitize -upcase), run once:"
"$BIN/envexec" -prefix demo/envexec/app -sanitize -upcase -once \
	sh -c 'echo "  GREETING=$GREETING PORT=$PORT DB_HOST=$DB_HOST"'

echo "the same environment exported for systemd EnvironmentFile / docker --env-file (-export dotenv):"
"$BIN/envexec" -prefix demo/envexec/app -sanitize -upcase -export dotenv | sed 's/^/  /'

echo "a long-running app under envexec; a change of demo/envexec/app/port restarts it:"
demo_bg "$BIN/envexec" -prefix demo/envexec/app -sanitize -upcase -kill-timeout 2s -log-level warn "$top/examples/envexec/app.sh"
ex_pid=${pids[-1]}
sleep 1
"$CONSUL_BIN" kv put demo/envexec/app/port 8081 >/dev/null
echo "  (consul kv put demo/envexec/app/port 8081)"
sleep 1.5
"$CONSUL_BIN" kv put demo/envexec/app2/port 1 >/dev/null
echo "  (consul kv put demo/envexec/app2/port 1: outside the prefix, nothing happens)"
sleep 1
kill -0 "$ex_pid" 2>/dev/null && echo "  envexec (pid $ex_pid) keeps the app running"
