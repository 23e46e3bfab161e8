#!/usr/bin/env bash
# Fleet benchmark of flightdeck's SSH target, run by hand (not in CI).
#
# For each fleet size it starts that many sshd servers on 127.0.0.1
# (bench/fleet serve), then, under /usr/bin/time -v:
#   - connects to every host (cold), deploys r1 (500 files, 20 MB, all sent)
#     and r2 (10 files changed, the rest hard-linked), switching each fleet-wide;
#   - times RUNS fleet rollbacks r2 -> r1 over the open connections (all hosts
#     in parallel), reporting the median total and the median first-to-last
#     switch skew, and the driver's peak RSS.
# When ansible-playbook and cap are installed (apt-get install ansible
# capistrano) it times the same rollback (ln -s + mv -T over current, one
# revisions.log line) with each, warm (connections already open), RUNS times.
#
# Usage: bench/fleet.sh [SIZES...]       (default: 20 100; RUNS=5)
# Needs: openssh-server (/usr/sbin/sshd), GNU time (/usr/bin/time), root or
# a user sshd lets in. Work files go to $TMPDIR (default /dev/shm when it
# exists, so that the disk is not what is measured).
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=("${@:-20 100}")
read -r -a SIZES <<<"${SIZES[*]}"
RUNS=${RUNS:-5}
if [[ -z "${TMPDIR:-}" && -d /dev/shm ]]; then export TMPDIR=/dev/shm; fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fleet-bench.XXXXXX")
BIN=$WORK/fleet
SERVE_PID=""

cleanup() {
	if [[ -n "$SERVE_PID" ]]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

go build -o "$BIN" ./bench/fleet
[[ -x /usr/sbin/sshd ]] || { echo "sshd not found: apt-get install openssh-server" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { date +%s%3N; }
# quiet CMD...: run CMD, showing its output only when it fails.
quiet() { local log; log=$(mktemp "$WORK/log.XXXXXX"); "$@" >"$log" 2>&1 || { tail -20 "$log" >&2; return 1; }; }

# ansible_rollback DIR: RUNS warm rollbacks with ansible-playbook (raw module:
# no Python shipped to the hosts, the fastest way Ansible can do it).
ansible_rollback() {
	local dir=$1 cf=$1/cluster.json inv=$1/inventory.ini pb=$1/rollback.yml cm
	cm=$(mktemp -d /tmp/fcm.XXXX) # control sockets need a short path
	python3 - "$cf" "$inv" "$cm" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    f.write("[fleet]\n")
    for i, (addr, port, d) in enumerate(zip(c["addrs"], c["ports"], c["deploy_to"])):
        f.write(f"h{i:03d} ansible_host=127.0.0.1 ansible_port={port} deploy_to={d}/app\n")
    f.write("[fleet:vars]\n")
    f.write(f"ansible_user={c['user']}\nansible_ssh_private_key_file={c['client_key']}\n")
    f.write(f"ansible_ssh_common_args='-o UserKnownHostsFile={c['known_hosts']} -o StrictHostKeyChecking=yes "
            "-o ControlMaster=auto -o ControlPersist=300s -o ControlPath=" + sys.argv[3] + "/%C'\n")
PY
	cat >"$pb" <<'YML'
- hosts: fleet
  gather_facts: false
  tasks:
    - name: switch current
      raw: cd {{ deploy_to }} && ln -s releases/{{ release }} current.tmp-ansible && mv -T current.tmp-ansible current && echo "$(date -u +%FT%TZ) rollback release={{ release }} previous=- actor=ansible" >> revisions.log
YML
	local n forks
	n=$(grep -c '^h' "$inv"); forks=$n
	export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_RETRY_FILES_ENABLED=False ANSIBLE_STDOUT_CALLBACK=minimal
	quiet ansible-playbook -i "$inv" -f "$forks" "$pb" -e release=r2 || return 1 # warm up: open control masters
	local times=() t0
	for _ in $(seq "$RUNS"); do
		t0=$(now_ms); quiet ansible-playbook -i "$inv" -f "$forks" "$pb" -e release=r1 || return 1; times+=($(( $(now_ms) - t0 )))
		quiet ansible-playbook -i "$inv" -f "$forks" "$pb" -e release=r2 || return 1
	done
	echo "ansible runs (ms): ${times[*]}"
	echo "RESULT ansible hosts=$n rollback_median_ms=$(printf '%s\n' "${times[@]}" | median)"
	for f in "$cm"/*; do [[ -S "$f" ]] && ssh -o ControlPath="$f" -O exit x 2>/dev/null || true; done
	rm -rf "$cm"
}

# cap_rollback DIR: RUNS warm rollbacks with Capistrano/SSHKit in one cap
# process (SSHKit keeps its connections between runs). Each host has its own
# deploy_to here (all servers share this machine), so the task runs the
# commands of deploy:rollback's switch (ln -s, mv -T, revisions.log) with
# SSHKit itself rather than `cap deploy:rollback`, which has one global deploy_to.
cap_rollback() {
	local dir=$1 capdir=$1/cap
	mkdir -p "$capdir/config/deploy"
	printf '%s\n' 'require "capistrano/setup"' 'require "capistrano/deploy"' \
		'require "capistrano/scm/git"' 'install_plugin Capistrano::SCM::Git' 'load "bench_task.rb"' >"$capdir/Capfile"
	cat >"$capdir/config/deploy.rb" <<'RB'
set :application, "fleet"
set :repo_url, "unused: no deploy task runs"
RB
	python3 - "$dir/cluster.json" "$capdir/config/deploy/bench.rb" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for port, d in zip(c["ports"], c["deploy_to"]):
        f.write(f'server "127.0.0.1", port: {port}, user: "{c["user"]}", roles: %w[app], deploy_dir: "{d}/app"\n')
    f.write("set :ssh_options, { keys: [%r], keys_only: true, auth_methods: %%w[publickey], "
            "user_known_hosts_file: %r, verify_host_key: :always }\n" % (c["client_key"], c["known_hosts"]))
PY
	cat >"$capdir/bench_task.rb" <<RB
SSHKit.config.output_verbosity = Logger::ERROR
def switch_all(release)
  on roles(:app), in: :parallel do |host|
    within host.properties.deploy_dir do
      execute :ln, "-s", "releases/#{release}", "current.tmp-cap"
      execute :mv, "-T", "current.tmp-cap", "current"
      execute :sh, "-c", "'echo \"\$(date -u +%FT%TZ) rollback release=#{release} previous=- actor=cap\" >> revisions.log'"
    end
  end
end
task :fleet_rollback do
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  switch_all("r2") # warm up: open every connection
  puts "cap cold run (ms): #{((Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000).round(1)}"
  times = []
  $RUNS.times do
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    switch_all("r1")
    times << ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000).round(1)
    switch_all("r2")
  end
  puts "cap runs (ms): #{times.join(' ')}"
  s = times.sort
  med = s.size.odd? ? s[s.size / 2] : (s[s.size / 2 - 1] + s[s.size / 2]) / 2.0
  puts "RESULT cap hosts=#{roles(:app).size} rollback_median_ms=#{med}"
end
RB
	(cd "$capdir" && cap bench fleet_rollback >"$capdir/out.log" 2>&1) || true
	grep -E '^(cap cold run|cap runs|RESULT)' "$capdir/out.log" || { tail -20 "$capdir/out.log" >&2; return 1; }
}

for n in "${SIZES[@]}"; do
	dir=$WORK/fleet$n
	mkdir -p "$dir"
	echo "=== $n hosts"
	# serve runs until its stdin closes: a FIFO held open by this script.
	mkfifo "$dir/hold"
	"$BIN" serve -hosts "$n" -dir "$dir" <"$dir/hold" >"$dir/serve.log" 2>&1 &
	SERVE_PID=$!
	exec 9>"$dir/hold"
	for _ in $(seq 600); do [[ -f "$dir/cluster.json" ]] && break; kill -0 "$SERVE_PID" || { cat "$dir/serve.log"; exit 1; }; sleep 0.1; done
	[[ -f "$dir/cluster.json" ]] || { echo "servers did not start" >&2; exit 1; }

	/usr/bin/time -v "$BIN" deploy -cluster "$dir/cluster.json" -runs "$RUNS" 2>"$dir/time.txt"
	echo "driver peak RSS (time -v): $(awk -F': ' '/Maximum resident/ {printf "%.1f MB", $2/1024}' "$dir/time.txt")"

	if command -v ansible-playbook >/dev/null; then ansible_rollback "$dir" || echo "ansible: failed"; else echo "ansible: not installed (apt-get install ansible)"; fi
	if command -v cap >/dev/null; then cap_rollback "$dir" || echo "capistrano: failed"; else echo "capistrano: not installed (apt-get install capistrano)"; fi

	exec 9>&-
	wait "$SERVE_PID" || true
	SERVE_PID=""
	rm -rf "$dir"
done
