#!/usr/bin/env bash
# lockrun against `consul lock`, one run, one dev agent: (a) an uncontended
# run of `true`, wall time per run; (b) hand-off latency, 3 contenders × 10 runs.
# Passes when lockrun is at or below consul lock on both (p50, and p90 for b).
# (c) reports the requests each tool sends its agent while holding the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s consul lockrun >/dev/null
go run ./bench/lockrun -lockrun bin/lockrun "$@"
