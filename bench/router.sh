#!/usr/bin/env bash
# bench/router.sh — compare the built-in router with nginx as a reverse
# proxy in front of the same two loopback backends. Run by hand (not CI):
#
#   bench/router.sh [RATE] [DURATION]      defaults: 2000 10s
#   RUNS=5 bench/router.sh                  interleaved runs (default 6)
#   MODES=fixed CPU_RATE=0 bench/router.sh  only the fixed-rate runs, no CPU figure
#
# Installs nginx (Debian package) and vegeta (Go tool) when missing, then
# runs vegeta at a fixed rate and at maximum throughput against each proxy
# and prints throughput, p50, p99, the latency each proxy adds to the
# backend alone, and the router/nginx ratios.
# Everything listens on 127.0.0.1; every load run stops by itself.
# ROUTER_GOGC sets GOGC for the router process (default: the router's own, 400).
set -euo pipefail

RATE=${1:-2000}
DURATION=${2:-10s}
MAX_WORKERS=${MAX_WORKERS:-64}
RUNS=${RUNS:-6}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d -t flightdeck-routerbench.XXXXXX)
PIDS=()

cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v nginx >/dev/null; then
	echo "== installing nginx (Debian package)"
	SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
	$SUDO apt-get install -y nginx >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
VEGETA="$(go env GOPATH)/bin/vegeta"
if [ ! -x "$VEGETA" ]; then
	echo "== installing vegeta"
	go install github.com/tsenart/vegeta/v12@v12.13.0
fi

echo "== building"
cd "$ROOT"
go build -o "$WORK/backend" ./bench/backend
if go run ./cmd/flightdeck router --help >/dev/null 2>&1; then
	go build -o "$WORK/flightdeck" ./cmd/flightdeck
	ROUTER=("$WORK/flightdeck" router)
else
	go build -o "$WORK/routerbin" ./bench/routerbin
	ROUTER=("$WORK/routerbin")
fi

B1=127.0.0.1:18081 B2=127.0.0.1:18082
NGINX_ADDR=127.0.0.1:18080
ROUTER_ADDR=127.0.0.1:18090 ADMIN_ADDR=127.0.0.1:18091

"$WORK/backend" -listen "$B1" -name b1 & PIDS+=($!)
"$WORK/backend" -listen "$B2" -name b2 & PIDS+=($!)

mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx/body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fastcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
	upstream pool {
		server $B1;
		server $B2;
		keepalive 256;
	}
	server {
		listen $NGINX_ADDR;
		location / {
			proxy_pass http://pool;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host \$host;
			proxy_set_header X-Forwarded-For \$remote_addr;
			proxy_buffering on;
		}
	}
}
NGINX
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' & PIDS+=($!)
NGINX_PID=$!

env ${ROUTER_GOGC:+GOGC=$ROUTER_GOGC} "${ROUTER[@]}" --listen "$ROUTER_ADDR" --admin "$ADMIN_ADDR" --state "$WORK/router.json" 2>"$WORK/router.log" & PIDS+=($!)
ROUTER_PID=$!

wait_http() { # url
	for _ in $(seq 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
	echo "no answer from $1" >&2; return 1
}
wait_http "http://$B1/"; wait_http "http://$B2/"; wait_http "http://$NGINX_ADDR/"
for _ in $(seq 200); do [ -s "$WORK/router.token" ] && break; sleep 0.05; done
TOKEN=$(cat "$WORK/router.token")
admin() { # method path [body]
	curl -fsS -X "$1" -H "Authorization: Bearer $TOKEN" ${3:+-d "$3"} "http://$ADMIN_ADDR$2" >/dev/null
}
wait_http "http://$ADMIN_ADDR/metrics"
admin PUT /v1/pools/blue "{\"backends\":[\"$B1\",\"$B2\"]}"
admin PUT /v1/route '{"stable":"blue"}'
for _ in $(seq 200); do
	n=$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://$ADMIN_ADDR/v1/state" | jq '[.backends[] | select(.healthy)] | length')
	[ "$n" = 2 ] && break; sleep 0.05
done
wait_http "http://$ROUTER_ADDR/"

attack() { # name url mode -> prints "rps p50_ms p99_ms success"; keeps the results in $WORK/name.bin
	local args=(-duration="$DURATION" -keepalive=true -timeout=5s)
	if [ "$3" = max ]; then args+=(-rate=0 -max-workers="$MAX_WORKERS"); else args+=(-rate="$RATE"); fi
	echo "GET $2" | "$VEGETA" attack "${args[@]}" >"$WORK/$1.bin"
	"$VEGETA" report -type=json <"$WORK/$1.bin" |
		jq -r '"\(.throughput) \(.latencies["50th"]/1e6) \(.latencies["99th"]/1e6) \(.success)"'
}

pooled() { # name mode -> "p50_ms p99_ms" over every request of every run
	"$VEGETA" report -type=json "$WORK/$1-$2-"*.bin | jq -r '"\(.latencies["50th"]/1e6) \(.latencies["99th"]/1e6)"'
}

median() { # values... -> the median
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Throughput is the median of the runs. Latency percentiles are taken over
# all the runs' requests pooled: a p99 of a single 10 s run moves by tens
# of percent with whatever else the shared cores did in those seconds, and
# the added latency, a difference of two such figures, moves even more.
printf "\n%d interleaved runs per proxy and mode; median throughput, percentiles of all runs' requests pooled\n" "$RUNS"
printf "%-8s %-7s %12s %10s %10s %8s %12s %12s\n" mode proxy "req/s" "p50 ms" "p99 ms" success "added p50" "added p99"
for mode in ${MODES:-fixed max}; do
	# warm both proxies' connection pools
	echo "GET http://$NGINX_ADDR/" | "$VEGETA" attack -duration=1s -rate=500 >/dev/null
	echo "GET http://$ROUTER_ADDR/" | "$VEGETA" attack -duration=1s -rate=500 >/dev/null
	declare -A col=() med=()
	for run in $(seq "$RUNS"); do
		# The backend alone gives the latency both proxies add to.
		for target in "direct http://$B1/" "nginx http://$NGINX_ADDR/" "router http://$ROUTER_ADDR/"; do
			set -- $target
			read -r rps p50 p99 ok < <(attack "$1-$mode-$run" "$2" "$mode")
			col[$1.rps]+="$rps "; col[$1.ok]+="$ok "; col[$1.p99]+="$p99 "
		done
	done
	for name in direct nginx router; do
		med[$name.rps]=$(median ${col[$name.rps]})
		med[$name.ok]=$(median ${col[$name.ok]})
		med[$name.runp99]=$(median ${col[$name.p99]})
		read -r med[$name.p50] med[$name.p99] < <(pooled "$name" "$mode")
	done
	for name in direct nginx router; do
		awk -v m="$mode" -v n="$name" -v rps="${med[$name.rps]}" -v p50="${med[$name.p50]}" -v p99="${med[$name.p99]}" \
			-v ok="${med[$name.ok]}" -v d50="${med[direct.p50]}" -v d99="${med[direct.p99]}" 'BEGIN {
			if (n == "direct") printf "%-8s %-7s %12.0f %10.3f %10.3f %8s\n", m, n, rps, p50, p99, ok
			else printf "%-8s %-7s %12.0f %10.3f %10.3f %8s %12.3f %12.3f\n", m, n, rps, p50, p99, ok, p50-d50, p99-d99 }'
	done
	awk -v m="$mode" -v nr="${med[nginx.rps]}" -v rr="${med[router.rps]}" -v np="${med[nginx.p99]}" -v rp="${med[router.p99]}" \
		-v n50="${med[nginx.p50]}" -v r50="${med[router.p50]}" -v d50="${med[direct.p50]}" -v dp="${med[direct.p99]}" \
		-v rnp="${med[nginx.runp99]}" -v rrp="${med[router.runp99]}" -v rdp="${med[direct.runp99]}" 'BEGIN {
		na = np - dp; ra = rp - dp; na50 = n50 - d50; ra50 = r50 - d50; rna = rnp - rdp; rra = rrp - rdp
		printf "%-8s ratio   throughput router/nginx %.2f (goal >= 0.80)\n", m, rr/nr
		printf "%-8s ratio   p99 router/nginx %.2f; added p50 router/nginx %.2f; added p99 router/nginx %.2f (goal <= 1.50)\n", m, rp/np, (na50 > 0 ? ra50/na50 : 0), (na > 0 ? ra/na : 0)
		printf "%-8s ratio   added p99 router/nginx from the median of the per-run p99s instead: %.3f / %.3f ms = %.2f\n", m, rra, rna, (rna > 0 ? rra/rna : 0) }'
	unset col med
done

# CPU time each proxy spends per request at a fixed rate, read from /proc:
# unlike the maximum-rate figures, it does not depend on how the two cores
# are shared with the load generator.
CPU_RATE=${CPU_RATE:-5000}
[ "$CPU_RATE" -gt 0 ] || exit 0
cpu_ticks() { # pids... -> utime+stime, in clock ticks
	local t=0 pid
	for pid in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat"))); done
	echo "$t"
}
printf "\nCPU per request at %d req/s for %s\n" "$CPU_RATE" "$DURATION"
declare -A cpu=()
for target in "nginx http://$NGINX_ADDR/" "router http://$ROUTER_ADDR/"; do
	set -- $target
	if [ "$1" = nginx ]; then pids=("$NGINX_PID" $(pgrep -P "$NGINX_PID")); else pids=("$ROUTER_PID"); fi
	before=$(cpu_ticks "${pids[@]}")
	echo "GET $2" | "$VEGETA" attack -duration="$DURATION" -rate="$CPU_RATE" -keepalive=true -timeout=5s >"$WORK/cpu-$1.bin"
	after=$(cpu_ticks "${pids[@]}")
	n=$("$VEGETA" report -type=json <"$WORK/cpu-$1.bin" | jq '.requests')
	cpu[$1]=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
	printf "%-7s %8s µs of CPU per request (%d requests)\n" "$1" "${cpu[$1]}" "$n"
done
awk -v n="${cpu[nginx]}" -v r="${cpu[router]}" 'BEGIN { printf "ratio   router/nginx CPU per request %.2f\n", r / n }'
