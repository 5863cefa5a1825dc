#!/usr/bin/env bash
# Fails when a tracked file is a binary or larger than 1 MB, or a Go file is
# not gofmt'd: build output and
# data dumps stay out of git (make build writes to bin/, which is ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue
	size=$(stat -c %s "$f")
	if [ "$size" -gt 1048576 ]; then
		echo "check-tree: $f is $size bytes (over 1 MB): keep large files out of git" >&2
		bad=1
	elif [ "$size" -gt 0 ] && ! grep -qI . "$f"; then
		echo "check-tree: $f is a binary file: keep build output out of git" >&2
		bad=1
	fi
done < <(git ls-files -z)
# Go files as gofmt writes them.
unformatted=$(git ls-files -z '*.go' | xargs -0 gofmt -l)
if [ -n "$unformatted" ]; then
	echo "check-tree: not gofmt'd (run make fmt): $unformatted" >&2
	bad=1
fi
exit $bad
