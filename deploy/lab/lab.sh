#!/usr/bin/env bash
# A district in network namespaces: a hub, three community nodes and two gates per node, the
# real `menjin` binary in each, wired with veth pairs and bridges:
#
#   WAN 10.77.0.0/24, bridge br0 in namespace <P>-wan:
#       hub 10.77.0.1 (ns <P>-hub, eth wan0)   node k 10.77.0.1k (ns <P>-nk, eth wan0)
#   LAN k 10.77.k.0/24, bridge br0 in namespace <P>-lank:
#       node k 10.77.k.1 (eth lan0)   gates 10.77.k.11, 10.77.k.12 (ns <P>-gka, <P>-gkb, eth lan0)
#
# A link is cut where a cable would be pulled: the bridge port of that host goes down, so the
# host sees its carrier drop. Latency and loss are tc netem on both ends of a WAN link; where
# the kernel has no sch_netem (many containers), nodes reach the hub through wanem.py, a UDP
# relay in the hub's namespace that adds the same delay and loss in user space (the traffic
# still crosses the veth pairs and bridges). `status` says which.
#
# Nodes advertise themselves by mDNS on their LAN interface (`[mdns]`, lan0) and gates find
# their node there (`[discovery]`, lan0), the static `node` address in gate.toml being the
# fallback. Each gate runs `menjin gate run --json`: its scanner is the FIFO
# $LAB_DIR/gates/<gate>.in (`echo '36.5 MJ:...' > ...`), its decisions and notices go to
# $LAB_DIR/gates/<gate>.out, one JSON object per line.
#
# Usage (as root):  lab.sh up | down | status | cut NODE | restore NODE
#                   | netem NODE DELAY LOSS | netem-clear NODE | kill PROC | restart PROC
#                   | exec HOST CMD...
#   NODE is n1, n2 or n3; PROC is hub, n1..n3, g1a..g3b; HOST is hub, n1..n3, g1a..g3b.
# Environment: LAB_PREFIX (namespace prefix, default mjlab), LAB_DIR (state, logs and data;
# default /tmp/menjin-lab-<prefix>), MENJIN (the binary; default target/debug/menjin).
#
# Sourced by scenario.sh as a library (LAB_SOURCED=1): then only the functions are defined.

set -euo pipefail

LAB_PREFIX=${LAB_PREFIX:-mjlab}
LAB_DIR=${LAB_DIR:-/tmp/menjin-lab-$LAB_PREFIX}
# Who runs the lab of this prefix (a scenario's pid), whatever its LAB_DIR.
LAB_OWNER_FILE=/tmp/menjin-lab-$LAB_PREFIX.owner
LAB_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MENJIN=${MENJIN:-$LAB_REPO/target/debug/menjin}
LAB_NODES=(n1 n2 n3)
LAB_COMMUNITY_BASE=440304100 # node k is community 440304100+k
LAB_HUB_PORT=7400
LAB_WANEM_PORT=7401 # wanem.py, when the kernel has no netem
LAB_NODE_PORT=7300
# Every wait in the lab ends by then (seconds).
LAB_WAIT_S=${LAB_WAIT_S:-30}

lab_log() { printf '[lab %s] %s\n' "$(date +%T)" "$*" >&2; }
lab_die() {
	lab_log "error: $*"
	exit 1
}

ns() { printf '%s-%s' "$LAB_PREFIX" "$1"; }
node_index() { printf '%s' "${1#n}"; }
community_of() { printf '%s' $((LAB_COMMUNITY_BASE + $1)); }
node_lan_ip() { printf '10.77.%s.1' "$1"; }
node_wan_ip() { printf '10.77.0.1%s' "$1"; }
gates_of() { printf '%s ' "g${1}a" "g${1}b"; }
lab_hosts() { printf '%s\n' hub "${LAB_NODES[@]}" g1a g1b g2a g2b g3a g3b; }

# Runs a command in HOST's namespace.
lab_exec() {
	local host=$1
	shift
	ip netns exec "$(ns "$host")" "$@"
}

# `menjin --json ARGS` in HOST's namespace; stdout is the JSON object.
lab_menjin() {
	local host=$1
	shift
	RUST_LOG=${RUST_LOG:-warn} lab_exec "$host" "$MENJIN" --json "$@"
}

# The link IFACE of HOST is up (carrier) and has its IPv4 address.
link_ready() {
	ip -n "$(ns "$1")" -o link show dev "$2" | grep -q 'state UP' &&
		ip -n "$(ns "$1")" -o -4 addr show dev "$2" | grep -q inet
}

# Polls `CMD...` every 50 ms until it succeeds or LAB_WAIT_S seconds pass.
lab_wait() {
	local what=$1
	shift
	local deadline=$((SECONDS + LAB_WAIT_S))
	until "$@"; do
		((SECONDS < deadline)) || {
			lab_log "timed out after ${LAB_WAIT_S}s waiting for: $what"
			return 1
		}
		sleep 0.05
	done
}

lab_probe_netns() {
	local probe
	probe="$(ns probe)"
	ip netns add "$probe" 2>/dev/null || return 1
	ip netns del "$probe"
}

# True if this kernel has sch_netem (containers often lack it and cannot load it).
lab_probe_netem() {
	local probe ok=1
	probe="$(ns probe)"
	ip netns add "$probe" 2>/dev/null || return 1
	ip -n "$probe" link set lo up
	if ip netns exec "$probe" tc qdisc add dev lo root netem delay 1ms 2>/dev/null; then ok=0; fi
	ip netns del "$probe"
	return $ok
}

# --- processes ---------------------------------------------------------------------------

# Starts PROC (hub or nK) in its namespace: `menjin hub|node run`, log in $LAB_DIR/logs.
lab_start() {
	local proc=$1 role dir
	if [[ $proc == hub ]]; then role=hub; else role=node; fi
	dir=$LAB_DIR/data/$proc
	rm -f "$dir/node.addr"
	# A simple command (not a function) in the background: $! is the pid that `ip netns exec`
	# turns into menjin, so kill reaches the daemon itself.
	RUST_LOG=${LAB_RUST_LOG:-info} NO_COLOR=1 ip netns exec "$(ns "$proc")" "$MENJIN" "$role" run --dir "$dir" \
		>>"$LAB_DIR/logs/$proc.log" 2>&1 &
	echo $! >"$LAB_DIR/pids/$proc"
	# Out of the job table: no "Killed" notice when the lab kills it on purpose.
	disown $!
	lab_wait "$proc to serve (node.addr)" test -s "$dir/node.addr" || {
		lab_log "$proc did not start; its log:"
		tail -n 30 "$LAB_DIR/logs/$proc.log" >&2
		return 1
	}
}

# Starts GATE's daemon, `menjin gate run --json`, in its namespace. Its standard input is the
# FIFO gates/GATE.in, opened read-write so that writers may come and go without ending it;
# its output is appended to gates/GATE.out, its log (stderr) to logs/GATE.log. Does not wait:
# see lab_wait_gate_online.
lab_start_gate() {
	local gate=$1 fifo=$LAB_DIR/gates/$1.in
	[[ -p $fifo ]] || mkfifo -m 600 "$fifo"
	RUST_LOG=${LAB_RUST_LOG:-info} NO_COLOR=1 ip netns exec "$(ns "$gate")" "$MENJIN" --json gate run \
		--dir "$LAB_DIR/data/$gate" <>"$fifo" >>"$LAB_DIR/gates/$gate.out" 2>>"$LAB_DIR/logs/$gate.log" &
	echo $! >"$LAB_DIR/pids/$gate"
	disown $!
}

# Lines GATE's daemon has printed so far (a mark for lab_gate_find).
lab_gate_mark() { wc -l <"$LAB_DIR/gates/$1.out"; }
# lab_gate_find GATE MARK REGEX: the first line GATE's daemon printed after MARK lines that
# matches REGEX (awk), on stdout; fails if there is none yet.
lab_gate_find() {
	awk -v m="$2" -v re="$3" 'NR > m && $0 ~ re { print; found = 1; exit } END { exit !found }' \
		"$LAB_DIR/gates/$1.out"
}
lab_gate_seen() { lab_gate_find "$@" >/dev/null; }

# Waits until GATE's daemon announced, after MARK lines, that it is connected to its node.
lab_wait_gate_online() {
	lab_wait "$1 to reach its node" lab_gate_seen "$1" "${2:-0}" '"notice":"online"'
}

lab_pid_alive() { [[ -f $LAB_DIR/pids/$1 ]] && kill -0 "$(cat "$LAB_DIR/pids/$1")" 2>/dev/null; }

# SIGKILL, as a power cut would.
lab_kill() {
	local proc=$1 pid
	lab_pid_alive "$proc" || lab_die "$proc is not running"
	pid=$(cat "$LAB_DIR/pids/$proc")
	kill -9 "$pid"
	# Reap it if it is our child (a zombie would still answer kill -0).
	wait "$pid" 2>/dev/null || true
	lab_wait "$proc (pid $pid) to die" bash -c "! kill -0 $pid 2>/dev/null"
	rm -f "$LAB_DIR/pids/$proc"
	lab_log "killed $proc (pid $pid)"
}

lab_restart() {
	local proc=$1
	if lab_pid_alive "$proc"; then lab_kill "$proc"; fi
	if [[ $proc == g* ]]; then
		local mark
		mark=$(lab_gate_mark "$proc")
		lab_start_gate "$proc"
		lab_wait_gate_online "$proc" "$mark"
	else
		lab_start "$proc"
	fi
	lab_log "restarted $proc"
}

# --- links -------------------------------------------------------------------------------

# A veth pair from bridge namespace BRNS (port PORT, enslaved to br0) to host HOST (IFACE).
lab_wire() {
	local brns=$1 port=$2 host=$3 iface=$4 addr=$5
	ip -n "$(ns "$brns")" link add "$port" type veth peer name "$iface" netns "$(ns "$host")"
	ip -n "$(ns "$brns")" link set "$port" master br0 up
	ip -n "$(ns "$host")" addr add "$addr" dev "$iface"
	ip -n "$(ns "$host")" link set "$iface" up
}

lab_cut() {
	local node=$1
	ip -n "$(ns wan)" link set "$node" down
	lab_log "cut the WAN link of $node"
}

lab_restore() {
	local node=$1
	ip -n "$(ns wan)" link set "$node" up
	lab_log "restored the WAN link of $node"
}

# How latency and loss are made in this lab: kernel (tc netem), relay (wanem.py) or none.
lab_wanem_mode() { cat "$LAB_DIR/wanem_mode" 2>/dev/null || echo none; }

# Latency (e.g. 100ms) and loss (e.g. 5%) on NODE's WAN link, each direction.
lab_netem() {
	local node=$1 delay=$2 loss=$3
	case $(lab_wanem_mode) in
	kernel)
		ip netns exec "$(ns wan)" tc qdisc replace dev "$node" root netem delay "$delay" loss "$loss"
		ip netns exec "$(ns "$node")" tc qdisc replace dev wan0 root netem delay "$delay" loss "$loss"
		lab_log "netem on $node's WAN link: delay $delay, loss $loss (each direction)"
		;;
	relay)
		echo "${delay%ms} ${loss%\%}" >"$LAB_DIR/wanem/$(node_wan_ip "$(node_index "$node")")"
		lab_log "wanem relay for $node: delay $delay, loss $loss (each direction; no sch_netem here)"
		;;
	*) lab_die "no way to add latency or loss here: the kernel has no sch_netem and python3 is missing" ;;
	esac
}

lab_netem_clear() {
	local node=$1
	ip netns exec "$(ns wan)" tc qdisc del dev "$node" root 2>/dev/null || true
	ip netns exec "$(ns "$node")" tc qdisc del dev wan0 root 2>/dev/null || true
	rm -f "$LAB_DIR/wanem/$(node_wan_ip "$(node_index "$node")")"
}

# Starts wanem.py in the hub's namespace, in front of the hub.
lab_start_wanem() {
	mkdir -p "$LAB_DIR/wanem"
	ip netns exec "$(ns hub)" python3 -u "$LAB_REPO/deploy/lab/wanem.py" "10.77.0.1:$LAB_WANEM_PORT" \
		"10.77.0.1:$LAB_HUB_PORT" "$LAB_DIR/wanem" >>"$LAB_DIR/logs/wanem.log" 2>&1 &
	echo $! >"$LAB_DIR/pids/wanem"
	disown $!
	lab_wait "wanem to listen" grep -qs "^wanem:" "$LAB_DIR/logs/wanem.log" || {
		tail -n 20 "$LAB_DIR/logs/wanem.log" >&2
		return 1
	}
}

# --- up and down -------------------------------------------------------------------------

# Kills every process of this lab and removes its namespaces (leftovers of an earlier run
# with the same prefix included). Idempotent; never fails.
lab_down() {
	local pidfile pid n
	if [[ -d $LAB_DIR/pids ]]; then
		for pidfile in "$LAB_DIR"/pids/*; do
			[[ -f $pidfile ]] || continue
			pid=$(cat "$pidfile")
			kill -9 "$pid" 2>/dev/null || true
			rm -f "$pidfile"
		done
	fi
	# Whatever still runs inside our namespaces (commands started by hand with `exec`).
	for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${LAB_PREFIX}-" || true); do
		for pid in $(ip netns pids "$n" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
		ip netns del "$n" 2>/dev/null || true
	done
	if [[ -f $LAB_OWNER_FILE && $(cat "$LAB_OWNER_FILE") == "${LAB_OWNER_PID:-}" ]]; then
		rm -f "$LAB_OWNER_FILE"
	fi
}

# Refuses to touch a lab of the same prefix that another live process owns.
lab_claim() {
	mkdir -p "$LAB_DIR"
	if [[ -f $LAB_OWNER_FILE ]]; then
		local owner
		owner=$(cat "$LAB_OWNER_FILE")
		if [[ $owner != "$$" ]] && kill -0 "$owner" 2>/dev/null && [[ ${LAB_TAKEOVER:-0} != 1 ]]; then
			lab_die "a lab with prefix $LAB_PREFIX is in use by pid $owner; set LAB_PREFIX, or LAB_TAKEOVER=1"
		fi
	fi
	lab_down
	# The scenario records itself as the owner; a lab brought `up` by hand has none.
	if [[ -n ${LAB_OWNER_PID:-} ]]; then echo "$LAB_OWNER_PID" >"$LAB_OWNER_FILE"; fi
	# From here on a failure cleans up (never before: it would be another run's lab).
	LAB_CLAIMED=1
}

# Builds the namespaces and links, creates the district, hub, nodes and gates with the CLI
# and starts the hub and the nodes (not the gates: lab_start_gates). Data, logs and pids in
# $LAB_DIR.
lab_up() {
	[[ -x $MENJIN ]] || lab_die "no menjin binary at $MENJIN (cargo build -p menjin-cli)"
	lab_claim
	rm -rf "$LAB_DIR/data" "$LAB_DIR/logs" "$LAB_DIR/pids" "$LAB_DIR/gates"
	mkdir -p "$LAB_DIR/data" "$LAB_DIR/logs" "$LAB_DIR/pids" "$LAB_DIR/gates"
	chmod 700 "$LAB_DIR/data"

	local h k g
	for h in wan lan1 lan2 lan3 $(lab_hosts); do
		ip netns add "$(ns "$h")"
		ip -n "$(ns "$h")" link set lo up
	done
	for h in wan lan1 lan2 lan3; do
		ip -n "$(ns "$h")" link add br0 type bridge
		ip -n "$(ns "$h")" link set br0 up
	done
	lab_wire wan hub hub wan0 10.77.0.1/24
	for k in 1 2 3; do
		lab_wire wan "n$k" "n$k" wan0 "$(node_wan_ip "$k")/24"
		lab_wire "lan$k" "n$k" "n$k" lan0 "$(node_lan_ip "$k")/24"
		lab_wire "lan$k" "g${k}a" "g${k}a" lan0 "10.77.$k.11/24"
		lab_wire "lan$k" "g${k}b" "g${k}b" lan0 "10.77.$k.12/24"
		# Nodes listen on their LAN address (gates and console); the hub answers there too.
		ip -n "$(ns hub)" route add "10.77.$k.0/24" via "$(node_wan_ip "$k")"
	done
	# Wait until every host link is up with its address, then let the bridges settle, before
	# any daemon starts. (A node started while its link was still settling, ~1 s after its
	# veth came up, used to stay silent to mDNS queries until restarted; the node now
	# re-advertises when a link comes up (ARCHITECTURE.md, Discovery), so this wait is no
	# longer needed for that. It stays: it keeps the scenario's timings about the district,
	# not about links coming up.)
	for h in hub n1 n2 n3 $(lab_hosts); do
		for k in wan0 lan0; do
			ip -n "$(ns "$h")" link show dev "$k" >/dev/null 2>&1 || continue
			lab_wait "$h $k up with its address" link_ready "$h" "$k"
		done
	done
	sleep "${LAB_SETTLE_S:-2}"
	lab_log "namespaces and links up (prefix $LAB_PREFIX)"

	local data=$LAB_DIR/data hub_port=$LAB_HUB_PORT
	"$MENJIN" --json district init --dir "$data/district" >/dev/null
	"$MENJIN" --json hub create --district "$data/district" --dir "$data/hub" \
		--name "lab district" --listen "10.77.0.1:$LAB_HUB_PORT" >/dev/null
	lab_start hub
	if lab_probe_netem; then
		echo kernel >"$LAB_DIR/wanem_mode"
	elif command -v python3 >/dev/null; then
		echo relay >"$LAB_DIR/wanem_mode"
		lab_start_wanem
		hub_port=$LAB_WANEM_PORT
		lab_log "no sch_netem in this kernel: nodes reach the hub through wanem.py (user-space delay and loss)"
	else
		echo none >"$LAB_DIR/wanem_mode"
		lab_log "no sch_netem in this kernel and no python3: no latency or loss in this lab"
	fi
	for k in 1 2 3; do
		"$MENJIN" --json node create --district "$data/district" --dir "$data/n$k" \
			--community "$(community_of "$k")" --name "community $k" \
			--listen "$(node_lan_ip "$k"):$LAB_NODE_PORT" --hub "10.77.0.1:$hub_port" \
			--mdns lan0 >/dev/null
		lab_menjin hub hub enrol --dir "$data/hub" --cert "$data/n$k/node.cert" >/dev/null
		lab_start "n$k"
		for g in $(gates_of "$k"); do
			# Enrolled from the community workstation (the node's namespace); gate.toml gets
			# discovery on the gate's LAN interface, and the node's LAN address as the fallback.
			lab_menjin "n$k" gate enrol --node-dir "$data/n$k" --gate-id "$g" --dir "$data/$g" \
				--discover lan0 >/dev/null
		done
	done
	lab_log "district up: hub, 3 nodes, 6 gates enrolled (data in $data)"
}

# Starts every gate daemon, then waits for each to reach its node.
lab_start_gates() {
	local g
	for g in $(gates_of 1) $(gates_of 2) $(gates_of 3); do lab_start_gate "$g"; done
	for g in $(gates_of 1) $(gates_of 2) $(gates_of 3); do lab_wait_gate_online "$g" || return 1; done
	lab_log "6 gate daemons online"
}

lab_status() {
	ip netns list | grep -E "^${LAB_PREFIX}-" || echo "no namespaces with prefix $LAB_PREFIX"
	echo "latency and loss: $(lab_wanem_mode)"
	local p
	for p in hub "${LAB_NODES[@]}" $(gates_of 1) $(gates_of 2) $(gates_of 3); do
		if lab_pid_alive "$p"; then echo "$p: running (pid $(cat "$LAB_DIR/pids/$p"))"; else echo "$p: stopped"; fi
	done
}

lab_main() {
	[[ $(id -u) == 0 ]] || lab_die "the lab needs root (network namespaces)"
	local cmd=${1:-}
	shift || true
	case $cmd in
	up)
		# A failed `up` leaves nothing behind; a good one leaves the lab running for `down`.
		trap 'rc=$?; if ((rc != 0)) && [[ ${LAB_CLAIMED:-0} == 1 ]]; then lab_log "up failed; cleaning up"; lab_down; fi' EXIT
		lab_up
		lab_start_gates
		;;
	down) lab_down ;;
	status) lab_status ;;
	cut) lab_cut "$1" ;;
	restore) lab_restore "$1" ;;
	netem) lab_netem "$1" "$2" "$3" ;;
	netem-clear) lab_netem_clear "$1" ;;
	kill) lab_kill "$1" ;;
	restart) lab_restart "$1" ;;
	exec) lab_exec "$@" ;;
	*)
		sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 2
		;;
	esac
}

if [[ ${LAB_SOURCED:-0} != 1 ]]; then
	lab_main "$@"
fi
