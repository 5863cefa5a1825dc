#!/usr/bin/env bash
# scripts/nginx-base.sh [TAG]: makes berth/nginx-base:TAG (default local), a
# FROM scratch image holding Debian's nginx package as installed on this
# machine (make deps) with the shared libraries it links, and Debian's static
# busybox for a shell. No image can be pulled here; a user with a registry
# names their usual nginx image instead (NGINX_BASE in examples/host/compose).
set -euo pipefail
tag=${1:-local}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "nginx-base: nginx not installed (Debian package nginx; make deps)" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "nginx-base: /bin/busybox missing (Debian package busybox-static)" >&2; exit 1; }
work=$(mktemp -d /tmp/berth-nginx-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/usr/sbin" "$root/bin" "$root/etc/nginx/conf.d" "$root/var/lib/nginx" "$root/var/log/nginx" \
	"$root/run" "$root/tmp" "$root/var/lock"
chmod 1777 "$root/tmp"
cp "$nginx" "$root/usr/sbin/nginx"
# The dynamic loader and every library nginx links, at their paths.
for lib in $(ldd "$nginx" | grep -o '/[^ ]*'); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
cp /etc/nginx/mime.types "$root/etc/nginx/"
cp /bin/busybox "$root/bin/busybox"
for a in sh kill cat ls; do ln -s busybox "$root/bin/$a"; done
printf 'root:x:0:0:root:/:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\nnobody:x:65534:\n' >"$root/etc/group"
cat >"$work/Dockerfile" <<'DF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/sbin:/bin
LABEL org.opencontainers.image.title="nginx (Debian package) for berth examples"
ENTRYPOINT ["/usr/sbin/nginx", "-g", "daemon off;"]
DF
docker build -q -t "berth/nginx-base:$tag" "$work" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
echo "berth/nginx-base:$tag ($(docker image inspect -f '{{.Size}}' "berth/nginx-base:$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
