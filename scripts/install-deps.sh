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
# systemd-analyze checks the example units; CA certificates go into the images.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ -r /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
	echo "missing packages: ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
	[ "${CI:-}" = true ] && exit 1
	exit 0
fi
echo "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# The packages would start their daemons on install; berth's tests start
# their own. Debian's policy-rc.d hook (exit 101) keeps them from starting,
# so nothing on the machine is stopped afterwards: only a hook this script
# put there is removed again.
hook=/usr/sbin/policy-rc.d
own_hook=
if [ ! -e "$hook" ]; then
	printf '#!/bin/sh\n# berth install-deps.sh: no daemon starts during the install\nexit 101\n' >"$hook"
	chmod 755 "$hook"
	own_hook=1
fi
trap '[ -n "$own_hook" ] && rm -f "$hook"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
