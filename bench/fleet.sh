#!/usr/bin/env bash
# Fleet benchmark of flightdeck's SSH target, run by hand (not in CI).
#
# For each fleet size it starts that many sshd servers on 127.0.0.1
# (bench/fleet serve), then, under /usr/bin/time -v:
#   - connects to every host (cold), deploys r1 (500 files, 20 MB, all sent)
#     and r2 (10 files changed, the rest hard-linked), switching each fleet-wide;
#   - times RUNS fleet rollbacks r2 -> r1 over the open connections (all hosts
#     in parallel, each switch checking r1), reporting the median total and
#     the median first-to-last switch skew, and the driver's peak RSS; and,
#     in each run, the same rollback as a rollback run makes it: r1 checked
#     on every host first, then every host switched without listing it
#     again (the check's time, the switches' time and their skew apart).
# When ansible-playbook and cap are installed (apt-get install ansible
# capistrano) it times the same rollback (ln -s + mv -T over current, one
# revisions.log line) with each, warm (connections already open), RUNS times.
#
# Deploy comparison (COMPARE contains "deploy"): one release tree (500 files,
# 20 MB, written once by `fleet release`) is deployed cold RUNS times by each
# tool into a fresh deploy_to on every host (releases/r1 + current switched
# + one revisions.log line), each run one CLI process timed from this script:
#   - flightdeck: `fleet push` (manifest, connect, prepare 16 hosts at once,
#     switch all), the SSH target with its defaults;
#   - Ansible: ansible-playbook, forks = hosts, pipelining on, host keys
#     checked against the cluster's known_hosts: file (releases dir),
#     synchronize (rsync over its own ssh; copy when rsync is missing), raw
#     ln -s + mv -T + revisions.log;
#   - Capistrano: cap with SSHKit in: :parallel: tar -cf of the tree (once),
#     upload! (scp) of the tarball to every host, tar -xf, rm, ln -s + mv -T
#     + revisions.log.
# The tools take turns within each run; after each tool's run every host is
# checked (current -> releases/r1, every file byte-identical) and the
# deploy_to removed, untimed. No warm-up: every run opens its connections.
#
# End to end (COMPARE contains "cli"): the flightdeck binary as an operator
# runs it (`fleet cli`): a git repository with the same 500-file release, a
# plan listing every host (symlink strategy, parallel = hosts), one cold
# full deploy, RUNS one-file deploys (one file changed and committed before
# each) and RUNS rollbacks, each one CLI process, with its peak RSS and
# where its time went (from the run's events).
#
# State in etcd vs files (COMPARE contains "state"): the one-file deploy of
# "cli" with the journal and the lock in files and in a 3-member etcd
# (Debian's etcd, defaults: fsync on) started on loopback by `fleet etcd`,
# alternating file, etcd, file, etcd… PAIRS times (default 10) in one
# invocation (FIRST=etcd: etcd, file, etcd, file…), each kind into its own deploy_to. The file state directory and
# the members' data directories are both below STATE_DIR (default a fresh
# directory under /var/tmp, i.e. on disk, not on tmpfs), so both journals
# pay the same disk's fsync; the hosts stay under TMPDIR like the other modes.
#
# With PERSIST=60s the cli mode's plan sets ssh persist: the cold deploy
# starts a connection keeper, and the one-file deploys and rollbacks after
# it reach the hosts through the keeper's connections (no handshakes).
#
# Usage: bench/fleet.sh [SIZES...]       (default: 20 100; RUNS=5;
#        COMPARE="cli rollback deploy onefile" by default, any subset of the words
#        or "state"; PAIRS=10, FIRST=file and STATE_DIR=/var/tmp for "state")
# Needs: openssh-server (/usr/sbin/sshd), GNU time (/usr/bin/time), root or
# a user sshd lets in. Work files go to $TMPDIR (default /dev/shm when it
# exists, so that the disk is not what is measured).
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=("${@:-20 100}")
read -r -a SIZES <<<"${SIZES[*]}"
RUNS=${RUNS:-5}
# Ansible and Capistrano run only on fleets of at most PEERS_MAX hosts (with
# forks = hosts, Ansible needs a Python process per host).
PEERS_MAX=${PEERS_MAX:-100}
COMPARE=${COMPARE:-cli rollback deploy onefile}
if [[ -z "${TMPDIR:-}" && -d /dev/shm ]]; then export TMPDIR=/dev/shm; fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fleet-bench.XXXXXX")
BIN=$WORK/fleet
FD=$WORK/flightdeck
SERVE_PID=""

cleanup() {
	if [[ -n "$SERVE_PID" ]]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

go build -o "$BIN" ./bench/fleet
go build -o "$FD" ./cmd/flightdeck
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

# cap_project DIR CAPDIR: a Capistrano project whose stage "bench" lists the
# cluster's servers (deploy_dir: the rollback's app, deploy_root: the
# server's deploy directory) and loads CAPDIR/bench_task.rb.
cap_project() {
	local dir=$1 capdir=$2
	mkdir -p "$capdir/config/deploy"
	printf '%s\n' 'require "capistrano/setup"' 'require "capistrano/deploy"' \
		'require "capistrano/scm/git"' 'install_plugin Capistrano::SCM::Git' 'load "bench_task.rb"' >"$capdir/Capfile"
	cat >"$capdir/config/deploy.rb" <<'RB'
set :application, "fleet"
set :repo_url, "unused: no stock deploy task runs"
RB
	python3 - "$dir/cluster.json" "$capdir/config/deploy/bench.rb" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for port, d in zip(c["ports"], c["deploy_to"]):
        f.write(f'server "127.0.0.1", port: {port}, user: "{c["user"]}", roles: %w[app], deploy_dir: "{d}/app", deploy_root: "{d}"\n')
    f.write("set :ssh_options, { keys: [%r], keys_only: true, auth_methods: %%w[publickey], "
            "user_known_hosts_file: %r, verify_host_key: :always }\n" % (c["client_key"], c["known_hosts"]))
PY
}

# cap_rollback DIR: RUNS warm rollbacks with Capistrano/SSHKit in one cap
# process (SSHKit keeps its connections between runs). Each host has its own
# deploy_to here (all servers share this machine), so the task runs the
# commands of deploy:rollback's switch (ln -s, mv -T, revisions.log) with
# SSHKit itself rather than `cap deploy:rollback`, which has one global deploy_to.
cap_rollback() {
	local dir=$1 capdir=$1/cap
	cap_project "$dir" "$capdir"
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

# deploy_compare DIR: the deploy comparison described at the top.
deploy_compare() {
	local dir=$1 cf=$1/cluster.json rel=$1/release n
	n=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["ports"]))' "$cf")
	"$BIN" release -dir "$rel" -id r1

	local tools=(flightdeck)
	# Ansible: its own inventory (no shared ControlPath: every run is cold).
	local adir=$dir/ansible-deploy sync=synchronize
	if command -v ansible-playbook >/dev/null; then
		tools+=(ansible)
		mkdir -p "$adir"
		command -v rsync >/dev/null || sync=copy
		python3 - "$cf" "$adir/inventory.ini" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    f.write("[fleet]\n")
    for i, (port, d) in enumerate(zip(c["ports"], c["deploy_to"])):
        f.write(f"h{i:03d} ansible_host=127.0.0.1 ansible_port={port} deploy_root={d}\n")
    f.write("[fleet:vars]\n")
    f.write(f"ansible_user={c['user']}\nansible_ssh_private_key_file={c['client_key']}\n")
    f.write(f"ansible_ssh_common_args='-o UserKnownHostsFile={c['known_hosts']} -o StrictHostKeyChecking=yes'\n")
PY
		cat >"$adir/ansible.cfg" <<CFG
[defaults]
forks = $n
host_key_checking = True
retry_files_enabled = False
stdout_callback = minimal
interpreter_python = /usr/bin/python3
gathering = explicit
[ssh_connection]
pipelining = True
# Ansible's default minus -C: the payload is random bytes, compression only costs CPU.
ssh_args = -o ControlMaster=auto -o ControlPersist=60s
CFG
		local upload
		if [[ $sync == synchronize ]]; then
			upload='    - name: upload the release (rsync over ssh, from the control machine)
      ansible.posix.synchronize:
        src: "{{ release_dir }}/"
        dest: "{{ deploy_root }}/{{ sub }}/releases/{{ release }}/"
        use_ssh_args: true
        verify_host: true'
		else
			upload='    - name: upload the release (recursive copy)
      copy:
        src: "{{ release_dir }}/"
        dest: "{{ deploy_root }}/{{ sub }}/releases/{{ release }}/"'
		fi
		cat >"$adir/deploy.yml" <<YML
- hosts: fleet
  gather_facts: false
  tasks:
    - name: releases directory
      file:
        path: "{{ deploy_root }}/{{ sub }}/releases"
        state: directory
$upload
    - name: switch current
      raw: cd {{ deploy_root }}/{{ sub }} && ln -s releases/{{ release }} current.tmp-ansible && mv -T current.tmp-ansible current && echo "\$(date -u +%FT%TZ) deploy release={{ release }} previous=- actor=ansible" >> revisions.log
YML
		echo "ansible: forks $n, pipelining on, upload with $sync"
	else
		echo "ansible: not installed (apt-get install ansible)"
	fi
	# Capistrano: tarball made once per run, upload! to every host, extract, switch.
	local capdir=$dir/cap-deploy
	if command -v cap >/dev/null; then
		tools+=(cap)
		cap_project "$dir" "$capdir"
		cat >"$capdir/bench_task.rb" <<'RB'
SSHKit.config.output_verbosity = Logger::ERROR
task :fleet_deploy do
  release, sub, src = ENV.fetch("RELEASE"), ENV.fetch("SUB"), ENV.fetch("RELEASE_DIR")
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  tarball = File.join(ENV.fetch("TARBALL_DIR"), "#{release}-#{sub}.tar")
  system("tar", "-cf", tarball, "-C", src, ".") or raise "tar -cf #{src} failed"
  on roles(:app), in: :parallel do |host|
    deploy_to = File.join(host.properties.deploy_root, sub)
    release_path = "#{deploy_to}/releases/#{release}"
    execute :mkdir, "-p", release_path
    upload! tarball, "#{release_path}.tar"
    execute :tar, "-xf", "#{release_path}.tar", "-C", release_path
    execute :rm, "-f", "#{release_path}.tar"
    within deploy_to do
      execute :ln, "-s", "releases/#{release}", "current.tmp-cap"
      execute :mv, "-T", "current.tmp-cap", "current"
      execute :sh, "-c", "'echo \"$(date -u +%FT%TZ) deploy release=#{release} previous=- actor=cap\" >> revisions.log'"
    end
  end
  File.delete(tarball)
  puts "cap task (ms, without ruby/cap start-up): #{((Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000).round}"
end
RB
	else
		echo "capistrano: not installed (apt-get install capistrano)"
	fi

	declare -A times=() failed=()
	local run tool sub t0 t cm log
	for run in $(seq "$RUNS"); do
		for tool in "${tools[@]}"; do
			[[ -n "${failed[$tool]:-}" ]] && continue
			sub=deploy-$tool-$run
			log=$dir/deploy-$tool-$run.log
			case $tool in
			flightdeck)
				t0=$(now_ms)
				"$BIN" push -cluster "$cf" -release "$rel" -id r1 -subdir "$sub" >"$log" 2>&1 || failed[$tool]=1
				t=$(( $(now_ms) - t0 )) ;;
			ansible)
				cm=$(mktemp -d /tmp/fcm.XXXX) # control sockets need a short path
				t0=$(now_ms)
				(cd "$adir" && ANSIBLE_CONFIG=$adir/ansible.cfg ANSIBLE_SSH_CONTROL_PATH_DIR=$cm \
					ansible-playbook -i inventory.ini deploy.yml -e "sub=$sub release=r1 release_dir=$rel") >"$log" 2>&1 || failed[$tool]=1
				t=$(( $(now_ms) - t0 ))
				for f in "$cm"/*; do [[ -S "$f" ]] && ssh -o ControlPath="$f" -O exit x 2>/dev/null || true; done
				rm -rf "$cm" ;;
			cap)
				t0=$(now_ms)
				(cd "$capdir" && RELEASE=r1 SUB=$sub RELEASE_DIR=$rel TARBALL_DIR=$dir cap bench fleet_deploy) >"$log" 2>&1 || failed[$tool]=1
				t=$(( $(now_ms) - t0 )) ;;
			esac
			if [[ -n "${failed[$tool]:-}" ]]; then
				echo "$tool deploy run $run failed:"; tail -20 "$log"
			elif ! "$BIN" verify -cluster "$cf" -release "$rel" -id r1 -subdir "$sub" >>"$log" 2>&1; then
				failed[$tool]=1; echo "$tool deploy run $run did not verify:"; tail -5 "$log"
			else
				times[$tool]+="$t "
				echo "deploy run $run $tool: $t ms $(grep -hE '^(flightdeck push|cap task)' "$log" | sed 's/^/| /')"
			fi
			"$BIN" verify -cluster "$cf" -release "$rel" -id r1 -subdir "$sub" -remove >/dev/null 2>&1 || true
		done
	done
	local med fd_med="" line="RESULT deploy hosts=$n"
	for tool in "${tools[@]}"; do
		[[ -n "${failed[$tool]:-}" || -z "${times[$tool]:-}" ]] && { line+=" ${tool}=failed"; continue; }
		med=$(printf '%s\n' ${times[$tool]} | median)
		echo "$tool deploy runs (ms): ${times[$tool]}"
		line+=" ${tool}_median_ms=$med"
		if [[ $tool == flightdeck ]]; then fd_med=$med
		elif [[ -n $fd_med ]]; then line+=" ${tool}/flightdeck=$(awk -v a="$med" -v b="$fd_med" 'BEGIN {printf "%.1fx", a/b}')"; fi
	done
	echo "$line"
	rm -rf "$rel"
}

# onefile_compare DIR: one-file deploys from git with Ansible and Capistrano,
# as each is used for it, RUNS times after an untimed first deploy, each
# run one CLI process into the same deploy_to (flightdeck's are `fleet cli`'s):
#   - Ansible: the commit exported once on the control machine (git archive,
#     run_once on localhost), synchronize (rsync over ssh) into releases/<id>
#     with --link-dest to the previous release (unchanged files hard-linked,
#     as flightdeck does), raw ln -s + mv -T + revisions.log;
#   - Capistrano: its git strategy with SSHKit on every host in parallel:
#     the repository mirror on the host updated (git remote update; cloned
#     on the first deploy), git archive of the commit | tar -x into
#     releases/<id>, ln -s + mv -T, revisions.log.
# The last release is checked byte for byte on every host (fleet verify).
onefile_compare() {
	local dir=$1 cf=$1/cluster.json repo=$1/peer-repo n
	n=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["ports"]))' "$cf")
	"$BIN" release -dir "$repo" -id r0 >/dev/null
	git -C "$repo" init -q -b main && git -C "$repo" add -A && git -C "$repo" -c user.name=b -c user.email=b@x commit -qm r0
	local tools=()
	command -v ansible-playbook >/dev/null && tools+=(ansible)
	command -v cap >/dev/null && tools+=(cap)
	[[ ${#tools[@]} -gt 0 ]] || { echo "onefile: neither ansible nor capistrano installed"; return 0; }
	local adir=$dir/ansible-1f capdir=$dir/cap-1f
	if [[ " ${tools[*]} " == *" ansible "* ]]; then
		mkdir -p "$adir"
		python3 - "$cf" "$adir/inventory.ini" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    f.write("[fleet]\n")
    for i, (port, d) in enumerate(zip(c["ports"], c["deploy_to"])):
        f.write(f"h{i:03d} ansible_host=127.0.0.1 ansible_port={port} deploy_to={d}/ans1f\n")
    f.write("[fleet:vars]\n")
    f.write(f"ansible_user={c['user']}\nansible_ssh_private_key_file={c['client_key']}\n")
    f.write(f"ansible_ssh_common_args='-o UserKnownHostsFile={c['known_hosts']} -o StrictHostKeyChecking=yes'\n")
PY
		cat >"$adir/ansible.cfg" <<CFG
[defaults]
forks = $n
host_key_checking = True
retry_files_enabled = False
stdout_callback = minimal
interpreter_python = /usr/bin/python3
gathering = explicit
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s
CFG
		cat >"$adir/deploy.yml" <<'YML'
- hosts: fleet
  gather_facts: false
  tasks:
    - name: export the commit on the control machine
      run_once: true
      delegate_to: localhost
      shell: rm -rf {{ build }} && mkdir -p {{ build }} && git -C {{ repo }} archive {{ ref }} | tar -x -C {{ build }}
    - name: releases directory
      file:
        path: "{{ deploy_to }}/releases"
        state: directory
    - name: upload the release, unchanged files hard-linked from the previous one
      ansible.posix.synchronize:
        src: "{{ build }}/"
        dest: "{{ deploy_to }}/releases/{{ release }}/"
        link_dest: "{{ [deploy_to + '/releases/' + previous] if previous else omit }}"
        use_ssh_args: true
        verify_host: true
    - name: switch current
      raw: cd {{ deploy_to }} && ln -s releases/{{ release }} current.tmp-ansible && mv -T current.tmp-ansible current && echo "$(date -u +%FT%TZ) deploy release={{ release }} actor=ansible" >> revisions.log
YML
	fi
	if [[ " ${tools[*]} " == *" cap "* ]]; then
		cap_project "$dir" "$capdir"
		cat >"$capdir/bench_task.rb" <<'RB'
SSHKit.config.output_verbosity = Logger::ERROR
task :fleet_deploy_git do
  release, repo = ENV.fetch("RELEASE"), ENV.fetch("REPO")
  on roles(:app), in: :parallel do |host|
    deploy_to = File.join(host.properties.deploy_root, "cap1f")
    mirror, release_path = "#{deploy_to}/repo", "#{deploy_to}/releases/#{release}"
    if test("[ -f #{mirror}/HEAD ]")
      within(mirror) { execute :git, :remote, :update, "--prune" }
    else
      execute :git, :clone, "--mirror", repo, mirror
    end
    execute :mkdir, "-p", release_path
    within(mirror) { execute :git, :archive, "main", "| /usr/bin/env tar -x -f - -C", release_path }
    within deploy_to do
      execute :ln, "-s", "releases/#{release}", "current.tmp-cap"
      execute :mv, "-T", "current.tmp-cap", "current"
      execute :sh, "-c", "'echo \"$(date -u +%FT%TZ) deploy release=#{release} actor=cap\" >> revisions.log'"
    end
  end
end
RB
	fi
	onefile_run() { # TOOL RELEASE PREVIOUS
		case $1 in
		ansible) (cd "$adir" && ANSIBLE_CONFIG=$adir/ansible.cfg ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks ansible-playbook -i inventory.ini deploy.yml \
			-e "release=$2 previous=$3 repo=$repo ref=main build=$adir/build") ;;
		cap) (cd "$capdir" && RELEASE=$2 REPO=$repo cap bench fleet_deploy_git) ;;
		esac
	}
	declare -A times=()
	local tool run t0 prev id line="RESULT onefile hosts=$n" log=$dir/onefile.log
	for tool in "${tools[@]}"; do
		onefile_run "$tool" r0 "" >"$log" 2>&1 || { echo "$tool first deploy failed:"; tail -20 "$log"; continue; }
	done
	prev=r0
	for run in $(seq "$RUNS"); do
		id=r$run
		python3 - "$repo/assets/00/file0000.bin" "$id" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[:8] = sys.argv[2].ljust(8).encode(); open(sys.argv[1], "wb").write(b)
PY
		git -C "$repo" -c user.name=b -c user.email=b@x commit -qam "$id"
		for tool in "${tools[@]}"; do
			t0=$(now_ms)
			if onefile_run "$tool" "$id" "$prev" >"$log" 2>&1; then
				times[$tool]+="$(( $(now_ms) - t0 )) "
				if [[ $run == "$RUNS" ]]; then grep -E -- '-- [0-9.]+s$' "$log" | sed "s/^/| $tool: /" || true; fi
			else
				echo "$tool one-file deploy $id failed:"; tail -20 "$log"
			fi
		done
		prev=$id
	done
	rm -rf "$dir/expect" && mkdir -p "$dir/expect" && git -C "$repo" archive main | tar -x -C "$dir/expect"
	for tool in "${tools[@]}"; do
		local sub=ans1f; [[ $tool == cap ]] && sub=cap1f
		"$BIN" verify -cluster "$cf" -release "$dir/expect" -id "$prev" -subdir "$sub" || echo "$tool: last release does not verify"
		echo "$tool one-file deploy runs (ms): ${times[$tool]:-none}"
		[[ -n "${times[$tool]:-}" ]] && line+=" ${tool}_median_ms=$(printf '%s\n' ${times[$tool]} | median)"
	done
	echo "$line"
}

# state_compare DIR N: the state comparison described at the top.
state_compare() {
	local dir=$1 n=$2 sd epid
	sd=$(mktemp -d "${STATE_DIR:-/var/tmp}/fleet-state.XXXXXX")
	mkdir -p "$sd/etcd" "$sd/work"
	echo "state: file state and etcd data under $sd ($(df --output=source,fstype "$sd" | tail -1))"
	mkfifo "$sd/hold"
	"$BIN" etcd -dir "$sd/etcd" <"$sd/hold" >"$sd/etcd.log" 2>&1 &
	epid=$!
	exec 8>"$sd/hold"
	for _ in $(seq 600); do [[ -f "$sd/etcd/etcd.json" ]] && break; kill -0 "$epid" || break; sleep 0.1; done
	if [[ -f "$sd/etcd/etcd.json" ]]; then
		uptime
		"$BIN" state -cluster "$dir/cluster.json" -etcd "$sd/etcd/etcd.json" -bin "$FD" -work "$sd/work" \
			-pairs "${PAIRS:-10}" -first "${FIRST:-file}" -parallel "$n" || echo "state: failed"
		uptime
	else
		echo "etcd did not start:"; cat "$sd/etcd.log"; tail -5 "$sd"/etcd/m*.log
	fi
	exec 8>&-
	wait "$epid" || true
	rm -rf "$sd"
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

	if [[ " $COMPARE " == *" cli "* ]]; then
		uptime
		"$BIN" cli -cluster "$dir/cluster.json" -bin "$FD" -runs "$RUNS" -parallel "$n" -persist "${PERSIST:-0s}"
		uptime
	fi
	if [[ " $COMPARE " == *" state "* ]]; then state_compare "$dir" "$n"; fi
	if [[ " $COMPARE " == *" rollback "* ]]; then
		/usr/bin/time -v "$BIN" deploy -cluster "$dir/cluster.json" -runs "$RUNS" 2>"$dir/time.txt"
		echo "driver peak RSS (time -v): $(awk -F': ' '/Maximum resident/ {printf "%.1f MB", $2/1024}' "$dir/time.txt")"

		if (( n > PEERS_MAX )); then echo "ansible, capistrano: skipped above PEERS_MAX=$PEERS_MAX hosts"
		elif command -v ansible-playbook >/dev/null; then ansible_rollback "$dir" || echo "ansible: failed"; else echo "ansible: not installed (apt-get install ansible)"; fi
		if (( n > PEERS_MAX )); then :
		elif command -v cap >/dev/null; then cap_rollback "$dir" || echo "capistrano: failed"; else echo "capistrano: not installed (apt-get install capistrano)"; fi
	fi
	if [[ " $COMPARE " == *" deploy "* ]]; then deploy_compare "$dir"; fi
	if [[ " $COMPARE " == *" onefile "* ]] && (( n <= PEERS_MAX )); then onefile_compare "$dir"; fi

	exec 9>&-
	wait "$SERVE_PID" || true
	SERVE_PID=""
	rm -rf "$dir"
done
