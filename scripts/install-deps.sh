#!/usr/bin/env bash
# Installs the Debian packages berth's tests, demo and benchmarks need, if missing.
set -euo pipefail
need=()
command -v nginx   >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]   || need+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq)
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v dig     >/dev/null 2>&1 || need+=(bind9-dnsutils)
# A static shell for FROM-scratch test images (lockrun as PID 1).
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
	echo "missing packages: ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
	[ "${CI:-}" = true ] && exit 1
	exit 0
fi
echo "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start their daemons on install; berth's tests start their own.
for s in nginx haproxy dnsmasq; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$s" 2>/dev/null; then systemctl stop "$s" || true; fi
	pkill -x "$s" 2>/dev/null || true
done
