#!/usr/bin/env bash
# Hitless benchmark of flightdeck's strategies on the demo fleet, run by
# hand (not in CI).
#
# For each strategy it starts one demo fleet (HOSTS local hosts, their
# service processes, the built-in router), measures the probe alone for
# STEADY (steady-state p99), then runs N deploy + fleet-rollback cycles
# under RATE requests/s of probe traffic through the real engine
# (canary-abort: a canary rolled back by an operator command at 25 %).
# It reports per strategy: failed probe requests (goal 0), the longest gap
# between two successful responses (goal <= 100 ms), deploy p99 against
# steady state (goal <= 1.5x), rollback RTO (goal <= 1 s for symlink and
# blue/green, <= 5 s for a canary abort) and the peak memory of the bench
# process plus the services. Then it runs the real `flightdeck demo
# --headless` with HOSTS hosts and reports the peak memory of its whole
# process tree (goal <= 150 MB with 8 hosts), as RSS sum and PSS sum.
# With MODES=local,lab (the default) the cycles run on the local fleet and
# then, in the same run, on a lab of HOSTS containers reached over SSH
# (needs a Docker Engine); MODES=local skips the lab.
#
# Usage: bench/hitless.sh [N]     (default 50 cycles per strategy)
# To keep each fleet and its journal for inspection, run the Go program
# directly with -keep DIR (see bench/hitless/main.go).
# With ROUTERS=flightdeck,haproxy,nginx the cycles run through the built-in
# router, then a real HAProxy, then a real nginx (each started per fleet),
# on the same machine in the same run.
# Environment: RATE (2000), HOSTS (8), STEADY (5s), MODES (local,lab),
#              ROUTERS (flightdeck),
#              STRATEGIES (canary,canary-abort,bluegreen,ab,rolling,symlink)
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-50}
RATE=${RATE:-2000}
HOSTS=${HOSTS:-8}
STEADY=${STEADY:-5s}
STRATEGIES=${STRATEGIES:-canary,canary-abort,bluegreen,ab,rolling,symlink}
MODES=${MODES:-local,lab}
ROUTERS=${ROUTERS:-flightdeck}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hitless-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

go build -o "$WORK/flightdeck" ./cmd/flightdeck
go build -o "$WORK/hitless" ./bench/hitless

echo "# $(date -u +%FT%TZ) · $(nproc) cores · load $(cut -d' ' -f1-3 /proc/loadavg) · N=$N rate=$RATE hosts=$HOSTS"
"$WORK/hitless" cycles -flightdeck "$WORK/flightdeck" -n "$N" -rate "$RATE" -hosts "$HOSTS" \
	-steady "$STEADY" -strategies "$STRATEGIES" -modes "$MODES" -routers "$ROUTERS"
echo
for s in canary bluegreen; do
	"$WORK/hitless" mem -flightdeck "$WORK/flightdeck" -hosts "$HOSTS" -rate "$RATE" -strategy "$s"
done
