#!/usr/bin/env bash
# The lab's figures, run by hand (not in CI; needs a Docker Engine):
# `flightdeck lab up --hosts HOSTS` cold (no lab image: it is made first)
# and warm (image cached; goal <= 5 s to every host answering SSH), the
# image's size (goal <= 50 MB), and the memory of the lab's containers
# idle and with the demo service on every host (goal <= 200 MB for 8).
#
# Usage: bench/lab.sh [RUNS]     (default 5 warm runs)
# Environment: HOSTS (8)
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${1:-5}
HOSTS=${HOSTS:-8}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lab-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

go build -o "$WORK/flightdeck" ./cmd/flightdeck
go build -o "$WORK/labup" ./bench/labup

echo "# $(date -u +%FT%TZ) · $(nproc) cores · load $(cut -d' ' -f1-3 /proc/loadavg)"
"$WORK/labup" -flightdeck "$WORK/flightdeck" -hosts "$HOSTS" -runs "$RUNS"
