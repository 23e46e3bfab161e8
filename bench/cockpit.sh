#!/usr/bin/env bash
# Cockpit benchmark, run by hand (not in CI): CPU of an idle cockpit and
# memory of a cockpit over a 1,000-host fleet. Needs tmux (Debian: tmux).
#
# 1. `flightdeck demo` (8 hosts, its services, router and 200 req/s probe)
#    opens the cockpit in a 160x48 tmux pane; once its release has finished
#    (the probe stops with the run), the CPU of the flightdeck process
#    (utime+stime from /proc/PID/stat) is sampled over IDLE seconds. The
#    process also holds the demo's router, which health-checks the 8
#    backends every 100 ms: this is an upper bound of the cockpit's own
#    idle CPU (goal <= 1 % of a core).
# 2. A plan of BIG (1,000) local hosts (directories, symlink strategy; no
#    service processes, which 1,000 hosts of the demo would need) is put on
#    r1 headless, then `flightdeck deploy --release r2` opens the cockpit in
#    tmux and deploys r2 to all of them. After the run, the process's peak
#    RSS (VmHWM: engine + cockpit holding 1,000 hosts and the run's events)
#    is read (goal <= 250 MB), and its idle CPU sampled over IDLE seconds.
#
# Usage: bench/cockpit.sh        Environment: IDLE (30), BIG (1000)
set -euo pipefail

cd "$(dirname "$0")/.."
IDLE=${IDLE:-30}
BIG=${BIG:-1000}
command -v tmux >/dev/null || { echo "tmux not found: apt-get install tmux" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cockpit-bench.XXXXXX")
SOCK=$WORK/tmux.sock
cleanup() {
	tmux -S "$SOCK" kill-server 2>/dev/null || true
	chmod -R u+w "$WORK" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
FD=$WORK/flightdeck
go build -o "$FD" ./cmd/flightdeck
TICK=$(getconf CLK_TCK)
export XDG_CONFIG_HOME=$WORK/config FLIGHTDECK_ACTOR=bench
unset NO_COLOR

# wait_screen SESSION REGEX TIMEOUT: poll the pane until REGEX matches.
wait_screen() {
	local deadline=$((SECONDS + $3))
	until tmux -S "$SOCK" capture-pane -p -t "$1" | grep -Eq "$2"; do
		if ((SECONDS > deadline)); then
			echo "timeout waiting for /$2/ in $1:" >&2
			tmux -S "$SOCK" capture-pane -p -t "$1" >&2
			exit 1
		fi
		sleep 0.5
	done
}

# cpu_ticks PID: utime+stime in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# idle_cpu PID: percent of one core over IDLE seconds.
idle_cpu() {
	local a b
	a=$(cpu_ticks "$1")
	sleep "$IDLE"
	b=$(cpu_ticks "$1")
	awk -v d=$((b - a)) -v t="$TICK" -v s="$IDLE" 'BEGIN {printf "%.2f", 100 * d / t / s}'
}

kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

echo "# $(date -u +%FT%TZ) · $(nproc) cores · load $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. The demo cockpit, idle after its release.
tmux -S "$SOCK" -f /dev/null new-session -d -s demo -x 160 -y 48 "$FD" demo --hosts 8 --dir "$WORK/demo"
PID=$(tmux -S "$SOCK" display-message -p -t demo '#{pane_pid}')
wait_screen demo 'run finished' 300
echo "demo cockpit (8 hosts, router in-process): idle CPU $(idle_cpu "$PID") % of a core over ${IDLE}s; RSS $(kb "$PID" VmRSS) kB, peak $(kb "$PID" VmHWM) kB"
tmux -S "$SOCK" send-keys -t demo q
tmux -S "$SOCK" kill-session -t demo 2>/dev/null || true

# 2. The cockpit over BIG hosts.
BIGDIR=$WORK/big
mkdir -p "$BIGDIR/build"
for i in $(seq 1 10); do echo "file $i" >"$BIGDIR/build/f$i.txt"; done
{
	echo "app: big"
	echo "source: ./build"
	echo "keep_releases: 3"
	echo "environments:"
	echo "  production:"
	echo "    hosts:"
	for i in $(seq 1 "$BIG"); do echo "      - {name: web-$i, local: ./hosts/web-$i}"; done
	echo "    strategy: {kind: symlink}"
} >"$BIGDIR/flightdeck.yaml"
(cd "$BIGDIR" && "$FD" deploy --headless --release r1 >/dev/null)
echo changed >"$BIGDIR/build/f1.txt"
tmux -S "$SOCK" -f /dev/null new-session -d -s big -x 160 -y 48 -c "$BIGDIR" "$FD" deploy --release r2
PID=$(tmux -S "$SOCK" display-message -p -t big '#{pane_pid}')
wait_screen big 'run finished' 600
tmux -S "$SOCK" capture-pane -p -t big | grep -q "Fleet $BIG hosts" || {
	echo "the cockpit does not show a fleet of $BIG hosts:" >&2
	tmux -S "$SOCK" capture-pane -p -t big >&2
	exit 1
}
echo "deploy cockpit ($BIG hosts, symlink): peak RSS $(kb "$PID" VmHWM) kB, RSS now $(kb "$PID" VmRSS) kB; idle CPU $(idle_cpu "$PID") % of a core over ${IDLE}s"
tmux -S "$SOCK" send-keys -t big q

# 3. The same BIG-host cockpit with a traffic source and no traffic: a
#    built-in router (its own process) holds one pool of BIG backends
#    (nothing listens there; the hosts name none, so the deploy does not
#    wait for them), and the cockpit's live SLO sampler reads its
#    per-release and per-backend counters every second. Idle CPU of the
#    cockpit process after its run (goal <= 1 % of a core).
LIVE=$WORK/live
mkdir -p "$LIVE/build"
for i in $(seq 1 10); do echo "file $i" >"$LIVE/build/f$i.txt"; done
RPORT=$((20000 + RANDOM % 20000))
APORT=$((RPORT + 1))
"$FD" router --listen "127.0.0.1:$RPORT" --admin "127.0.0.1:$APORT" --state "$LIVE/router.json" 2>/dev/null &
RPID=$!
trap 'kill $RPID 2>/dev/null || true; cleanup' EXIT
until [ -s "$LIVE/router.token" ]; do sleep 0.1; done
{
	echo "app: live"
	echo "source: ./build"
	echo "keep_releases: 3"
	echo "environments:"
	echo "  production:"
	echo "    hosts:"
	for i in $(seq 1 "$BIG"); do echo "      - {name: web-$i, local: ./hosts/web-$i}"; done
	echo "    strategy: {kind: symlink}"
	echo "    router: {admin: 'http://127.0.0.1:$APORT', token_file: ./router.token}"
} >"$LIVE/flightdeck.yaml"
ADDRS=$(for i in $(seq 1 "$BIG"); do printf '"127.0.0.%d:%d",' $((i / 250 + 2)) $((30000 + i % 250)); done)
until curl -fsS -X PUT -H "Authorization: Bearer $(cat "$LIVE/router.token")" -d "{\"backends\":[${ADDRS%,}]}" "http://127.0.0.1:$APORT/v1/pools/fleet" >/dev/null 2>&1; do sleep 0.2; done
(cd "$LIVE" && "$FD" deploy --headless --release r1 >/dev/null)
echo changed >"$LIVE/build/f1.txt"
tmux -S "$SOCK" -f /dev/null new-session -d -s live -x 160 -y 48 -c "$LIVE" "$FD" deploy --release r2
PID=$(tmux -S "$SOCK" display-message -p -t live '#{pane_pid}')
wait_screen live 'run finished' 600
tmux -S "$SOCK" capture-pane -p -t live | grep -q "SLO live flightdeck" || {
	echo "the cockpit does not sample the router:" >&2
	tmux -S "$SOCK" capture-pane -p -t live >&2
	exit 1
}
echo "deploy cockpit ($BIG hosts, router with $BIG backends, no traffic, live SLO sampling every 1s): idle CPU $(idle_cpu "$PID") % of a core over ${IDLE}s"
tmux -S "$SOCK" send-keys -t live q
