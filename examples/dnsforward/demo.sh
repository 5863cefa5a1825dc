# Sourced by scripts/demo.sh: dnsforward on a free loopback port answers
# Consul names from memory; a deregistration shows up at once.
df_port=$(pick_port 15353)
df="127.0.0.1:$df_port"
demo_bg "$BIN/dnsforward" -listen "$df" -consul-dns "$CONSUL_DNS_ADDR" -resolv-conf /dev/null \
	-log-level warn >"$DEMO_DIR/dnsforward.log" 2>&1
df_reg() { curl -fsS -X PUT "http://$CONSUL_HTTP_ADDR/v1/agent/service/register" -d "$1" >/dev/null; }
df_reg '{"ID":"dns-web1","Name":"dns-web","Tags":["v1"],"Port":8080,"Address":"10.10.0.1"}'
df_reg '{"ID":"dns-web2","Name":"dns-web","Tags":["v2"],"Port":8081,"Address":"10.10.0.2"}'
df_reg '{"ID":"dns-db","Name":"dns-db","Port":5432}'
df_dig() { dig +time=2 +tries=2 -p "$df_port" @127.0.0.1 "$@"; }
for _ in $(seq 1 100); do
	[ -n "$(df_dig +short dns-web.service.consul A 2>/dev/null)" ] && break
	sleep 0.1
done
echo "dnsforward answering on $df (log in $DEMO_DIR/dnsforward.log)"
for q in "dns-web.service.consul A" "v1.dns-web.service.consul A" "dns-web.service.consul SRV" \
	"dns-db.service.consul SRV" "nosuch.service.consul A"; do
	echo "\$ dig -p $df_port @127.0.0.1 $q"
	# shellcheck disable=SC2086
	df_dig +noall +answer +additional +comments $q | grep -E 'status:|IN' | sed 's/^/  /'
done
echo "deregistering dns-web2, then asking again at once:"
curl -fsS -X PUT "http://$CONSUL_HTTP_ADDR/v1/agent/service/deregister/dns-web2" >/dev/null
sleep 0.05
df_dig +short dns-web.service.consul A | sed 's/^/  /'
