#!/usr/bin/env bash
# scripts/images.sh [PROGRAM...]: builds berth/PROGRAM:VERSION and
# berth/PROGRAM:latest for each program (all five by default), FROM scratch:
# the static binary, CA certificates for TLS to Consul, a passwd file with the
# non-root user berth (65532), OCI labels, PROGRAM_METRICS_ADDR=127.0.0.1:9090
# in the environment (so /metrics and /health are served there, and the
# HEALTHCHECK, which asks it without a shell, follows when a user sets it
# elsewhere, e.g. under --net host).
# Also berth/consul:CONSUL_VERSION (or CONSUL_TAG) from the pinned Consul (make consul), for the
# Compose example. Prints each image's size.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
CONSUL_BIN=${CONSUL_BIN:-$(make -s consul-path)}
CA=${CA:-/etc/ssl/certs/ca-certificates.crt}
[ -r "$CA" ] || { echo "images: no CA bundle at $CA (Debian package ca-certificates)" >&2; exit 1; }
programs=("$@")
[ ${#programs[@]} -gt 0 ] || programs=(registrator templater envexec lockrun dnsforward)
work=$(mktemp -d /tmp/berth-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

# NO_LATEST=1 leaves out the :latest tags (tests tag their own images only).
tags_for() { if [ -n "${NO_LATEST:-}" ]; then echo "-t berth/$1:$2"; else echo "-t berth/$1:$2 -t berth/$1:latest"; fi; }

# build_image NAME TAG USER ENTRYPOINT_JSON HEALTH_JSON [ENV]: context in $work/NAME/rootfs
build_image() {
	local name=$1 tag=$2 user=$3 entry=$4 health=$5 env=${6:-} ctx="$work/$1"
	mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp"
	chmod 1777 "$ctx/rootfs/tmp"
	cp "$CA" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
	cp packaging/passwd packaging/group "$ctx/rootfs/etc/"
	{
		echo "FROM scratch"
		echo "COPY rootfs/ /"
		echo "USER $user"
		[ -n "$env" ] && echo "ENV $env"
		echo "ENTRYPOINT $entry"
		[ -n "$health" ] && echo "HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD $health"
		echo "LABEL org.opencontainers.image.title=\"berth $name\" \\"
		echo "      org.opencontainers.image.version=\"$VERSION\" \\"
		echo "      org.opencontainers.image.revision=\"$COMMIT\" \\"
		echo "      org.opencontainers.image.source=\"https://github.com/berth/berth\""
	} >"$ctx/Dockerfile"
	# shellcheck disable=SC2046
	if ! docker build -q $(tags_for "$name" "$tag") "$ctx" >/dev/null 2>"$ctx/build.err"; then
		cat "$ctx/build.err" >&2
		exit 1
	fi
	printf '  %-28s %6.1f MB\n' "berth/$name:$tag" "$(docker image inspect -f '{{.Size}}' "berth/$name:$tag" | awk '{print $1/1e6}')"
}

echo "building images $VERSION"
for p in "${programs[@]}"; do
	mkdir -p "$work/$p/rootfs"
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/berth/berth/pkg/version.Version=$VERSION -X github.com/berth/berth/pkg/version.Commit=$COMMIT" \
		-o "$work/$p/rootfs/$p" "./$p"
	user=65532
	# registrator talks to the Docker socket, which only root (or the docker
	# group of the host, whose ID the image cannot know) may use.
	[ "$p" = registrator ] && user=0
	build_image "$p" "$VERSION" "$user" "[\"/$p\"]" "[\"/$p\", \"-healthcheck\"]" \
		"$(echo "$p" | tr '[:lower:]' '[:upper:]')_METRICS_ADDR=127.0.0.1:9090"
done
if [ -x "$CONSUL_BIN" ]; then
	cv=$("$CONSUL_BIN" version | awk 'NR==1{print $2}')
	mkdir -p "$work/consul/rootfs/consul/data" "$work/consul/rootfs/consul/config"
	cp "$CONSUL_BIN" "$work/consul/rootfs/consul-agent"
	chmod 777 "$work/consul/rootfs/consul/data"
	build_image consul "${CONSUL_TAG:-$cv}" 65532 '["/consul-agent"]' ''
fi
