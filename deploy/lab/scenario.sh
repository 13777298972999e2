#!/usr/bin/env bash
# End-to-end scenario on the network lab (lab.sh): a district of a hub, three community
# nodes and six gates in network namespaces, the real `menjin` binary everywhere. Every gate
# is a long-lived `menjin gate run` daemon fed scanner lines through a FIFO.
#
#  1. mDNS: every gate daemon finds its node across its veth LAN (the static fallback
#     address of one gate per community points at nobody), and `gate discover` agrees.
#  2. Residents declare at every node; every gate lets them in; the hub converges.
#  3. Node n1's WAN link is cut for LAB_CUT_S seconds (default 60; 10 when CI=true). During
#     the cut n1's gates keep letting residents in, a code revoked during the cut (a
#     re-declaration with symptoms) is refused, and the hub locks community 1 down.
#  4. The link comes back: the lockdown must reach n1's gates within 2 s
#     (LAB_LOCKDOWN_BOUND_MS): every gate link at n1 shows the new epoch applied and
#     acknowledged. The hub must hold every gate event exactly once.
#  5. n2 is killed with SIGKILL while its gates run: they decide alone from their cache (a
#     resident let in, a code revoked before the kill refused), and upload those events once
#     n2 is back: n2's log and the hub hold each exactly once.
#  6. 100 ms of latency and 5% loss on every WAN link (tc netem, or wanem.py where the
#     kernel has no sch_netem): more events and declarations, and the hub still converges
#     (within LAB_CONVERGE_BOUND_S).
#
# Prints one line per figure, then one JSON object (last line of stdout). Exit 0: passed or
# skipped (a `SKIP` line says why: not root, or no network namespaces); 1: failed (the logs
# of every daemon are printed). Environment: LAB_CUT_S, LAB_PREFIX, LAB_KEEP=1 (keep the
# data directory), MENJIN (the binary).

set -euo pipefail

SCENARIO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ $(id -u) != 0 ]]; then
	echo "SKIP lab scenario: needs root to create network namespaces"
	exit 0
fi

export LAB_PREFIX=${LAB_PREFIX:-mjsc}
LAB_DIR=$(mktemp -d /tmp/menjin-scenario-XXXXXX)
export LAB_DIR
LAB_SOURCED=1 source "$SCENARIO_DIR/lab.sh"

if ! lab_probe_netns; then
	echo "SKIP lab scenario: cannot create network namespaces here (ip netns add failed)"
	rm -rf "$LAB_DIR"
	exit 0
fi
command -v jq >/dev/null || lab_die "the scenario needs jq"

if [[ -n ${LAB_CUT_S:-} ]]; then
	CUT_S=$LAB_CUT_S
elif [[ ${CI:-} == true ]]; then
	CUT_S=10
else
	CUT_S=60
fi
LOCKDOWN_BOUND_MS=${LAB_LOCKDOWN_BOUND_MS:-2000}
CONVERGE_BOUND_S=${LAB_CONVERGE_BOUND_S:-30}
RESIDENTS=4 # per community

cleanup() {
	local rc=$?
	if ((rc != 0)); then
		echo "scenario FAILED (exit $rc); daemon logs:" >&2
		local f
		for f in "$LAB_DIR"/logs/*.log; do
			[[ -f $f ]] || continue
			echo "----- $(basename "$f") (last 40 lines)" >&2
			tail -n 40 "$f" >&2
		done
		for f in "$LAB_DIR"/gates/*.out; do
			[[ -f $f ]] || continue
			echo "----- gate output $(basename "$f") (last 10 lines)" >&2
			tail -n 10 "$f" >&2
		done
	fi
	if [[ ${LAB_CLAIMED:-0} == 1 ]]; then lab_down; fi
	if [[ ${LAB_KEEP:-0} == 1 ]]; then
		echo "data and logs kept in $LAB_DIR" >&2
	else
		rm -rf "$LAB_DIR"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
now_ms() { date +%s%3N; }
data() { printf '%s/data/%s' "$LAB_DIR" "$1"; }

# Events each community's gates produced, as counted from the answers (`seq` present).
declare -A MADE=([1]=0 [2]=0 [3]=0)
# Resident codes per community (index = resident number).
declare -A CODE HOLDER

# An 18-digit resident ID (region 440304, born 1980-01-01), valid check digit: serial → person.
resident_id() {
	local serial=$1 body sum=0 i
	local -a w=(7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2) check=(1 0 X 9 8 7 6 5 4 3 2)
	body=$(printf '44030419800101%03d' $((serial % 500 * 2 + serial % 2)))
	for i in {0..16}; do sum=$((sum + ${body:i:1} * w[i])); done
	printf '%s%s' "$body" "${check[sum % 11]}"
}

# declare K SERIAL [extra flags]: JSON receipt on stdout.
declare_person() {
	local k=$1 serial=$2
	shift 2
	local gender=female
	((serial % 2 == 1)) && gender=male
	lab_menjin "n$k" declare --node-dir "$(data "n$k")" --name "居民$serial" --gender "$gender" \
		--doc-number "$(resident_id "$serial")" --phone 13800138000 \
		--building "$k" --door "$((100 + serial % 100))" "$@"
}

# ---- Gate daemons ------------------------------------------------------------------------
# A check is a scanner line written to the gate's FIFO (lab_start_gate); its answer is the
# next decision line the daemon prints. Offline decisions wait ONLINE_CHECK_TIMEOUT_MS (1.5 s)
# for the node first.
GATE_ANSWER_S=10
declare -A GATE_FD GATE_MARK
OFFLINE_DECISIONS=0
OFFLINE_SEQS=() # gate:gate_seq of each offline decision

# gate_send GATE LINE. The scenario holds the FIFO open read-write: opening and writing never
# block, even if the daemon died (the wait for its answer then times out).
gate_send() {
	local gate=$1 fd
	if [[ -z ${GATE_FD[$gate]:-} ]]; then
		exec {fd}<>"$LAB_DIR/gates/$gate.in"
		GATE_FD[$gate]=$fd
	fi
	GATE_MARK[$gate]=$(lab_gate_mark "$gate")
	printf '%s\n' "$2" >&"${GATE_FD[$gate]}"
}

# gate_answer GATE: the decision to the last line sent, in OUT (the JSON line) and A_ALLOWED,
# A_REASON, A_OFFLINE; counts the event it logged (at the node, or in the gate's buffer).
gate_answer() {
	local gate=$1 k=${1:1:1} seq gate_seq deadline=$((SECONDS + GATE_ANSWER_S))
	until OUT=$(lab_gate_find "$gate" "${GATE_MARK[$gate]}" '"(answer|error)":'); do
		((SECONDS < deadline)) || fail "$gate printed no decision within ${GATE_ANSWER_S}s"
		sleep 0.02
	done
	jq -e 'has("answer")' <<<"$OUT" >/dev/null || fail "$gate could not decide: $OUT"
	read -r A_ALLOWED A_REASON A_OFFLINE seq gate_seq < <(jq -r \
		'[.answer.allowed, .answer.reason, .offline, .answer.seq, (.gate_seq // 0)] | @tsv' <<<"$OUT")
	if [[ $A_OFFLINE == true ]]; then
		MADE[$k]=$((MADE[$k] + 1))
		OFFLINE_DECISIONS=$((OFFLINE_DECISIONS + 1))
		OFFLINE_SEQS+=("$gate:$gate_seq")
	elif ((seq > 0)); then
		MADE[$k]=$((MADE[$k] + 1))
	fi
}

# gate_check GATE CODE: one person at 36.5 °C. (Not in a command substitution: the counts and
# descriptors must survive.)
gate_check() {
	gate_send "$1" "36.5 $2"
	gate_answer "$1"
}

# expect_allowed GATE CODE [offline] / expect_refused GATE CODE REASON [offline]: decided by
# the node, or with `offline` by the gate alone.
expect_allowed() {
	gate_check "$1" "$2"
	[[ $A_ALLOWED == true && $A_OFFLINE == "$(want_offline "${3:-}")" ]] ||
		fail "$1 should let the person in${3:+ (decided $3)}: $OUT"
}
expect_refused() {
	gate_check "$1" "$2"
	[[ $A_ALLOWED == false && $A_REASON == "$3" && $A_OFFLINE == "$(want_offline "${4:-}")" ]] ||
		fail "$1 should refuse with $3${4:+ (decided $4)}: $OUT"
}
want_offline() { if [[ $1 == offline ]]; then echo true; else echo false; fi; }

node_status() { lab_menjin "n$1" node status --dir "$(data "n$1")"; }
hub_status() { lab_menjin hub hub status --dir "$(data hub)"; }

# True when the hub holds exactly MADE[k] events for each community, each node logged as
# many, and the hub's roster counts match the nodes'.
converged() {
	local hub k c n have
	hub=$(hub_status) || return 1
	for k in 1 2 3; do
		c=$(community_of "$k")
		n=$(node_status "$k") || return 1
		have=$(jq -c --argjson c "$c" '.communities[] | select(.community == $c) | [.events, .residents, .codes_active]' <<<"$hub")
		[[ $have == "[${MADE[$k]},$(jq -r .residents <<<"$n"),$(jq -r .codes_active <<<"$n")]" ]] || return 1
		[[ $(jq -r .events_logged <<<"$n") == "${MADE[$k]}" ]] || return 1
	done
}

# Waits for convergence; prints the milliseconds it took from START_MS.
wait_converged() {
	local start=$1 bound_s=$2
	LAB_WAIT_S=$bound_s lab_wait "the hub to converge" converged || {
		hub_status >&2 || true
		for k in 1 2 3; do node_status "$k" >&2 || true; done
		fail "no convergence within ${bound_s}s (made: ${MADE[*]})"
	}
	echo $(($(now_ms) - start))
}

# Every (community, seq) at the hub exactly once, and exactly 1..MADE[k] for each community.
assert_exactly_once() {
	local log k c got want
	log=$(lab_menjin hub hub log --dir "$(data hub)" --limit 10000)
	[[ $(jq '[.[] | [.community, .event.seq]] | length == (unique | length)' <<<"$log") == true ]] ||
		fail "an event is stored twice at the hub"
	for k in 1 2 3; do
		c=$(community_of "$k")
		got=$(jq -c --argjson c "$c" '[.[] | select(.community == $c) | .event.seq] | sort' <<<"$log")
		want=$(jq -c -n --argjson n "${MADE[$k]}" '[range(1; $n + 1)]')
		[[ $got == "$want" ]] || fail "community $c at the hub: seqs $got, want 1..${MADE[$k]}"
	done
	got=$(jq '[.[] | select(.event.offline != null) | [.community, .event.gate, .event.offline.gate_seq]] | unique | length' <<<"$log")
	[[ $got == "$OFFLINE_DECISIONS" ]] ||
		fail "the hub holds $got distinct offline events, the gates decided $OFFLINE_DECISIONS alone"
}

# ---- Lockdown reaching the gates --------------------------------------------------------
# From START_MS (the link back), polls node k's status (50 ms apart) until every gate link
# shows lockdown EPOCH applied and acknowledged by its gate daemon. Sets LOCKDOWN_NODE_MS (the
# node enforces it) and LOCKDOWN_GATES_MS (every gate acknowledged it), each when the status
# call that showed it returned: upper bounds by one poll (LOCKDOWN_POLL_MS, the mean; a status
# call is most of it). While a status call runs, the gate daemons' outputs are read every
# 20 ms: LOCKDOWN_NOTICE_MS is when the last gate had printed its `lockdown` notice (the
# gate enforces it from then on). MARKS: each gate's output mark at START_MS.
measure_lockdown_reach() {
	local k=$1 start=$2 epoch=$3 deadline=$((SECONDS + LAB_WAIT_S)) s state t g polls=0 pid
	local -A notice_ms=()
	local gates=($(gates_of "$k"))
	local status_file=$LAB_DIR/lockdown-status.json
	LOCKDOWN_NODE_MS='' LOCKDOWN_GATES_MS='' LOCKDOWN_NOTICE_MS=''
	see_notices() {
		for g in "${gates[@]}"; do
			if [[ -z ${notice_ms[$g]:-} ]] && lab_gate_seen "$g" "${MARKS[$g]}" '"notice":"lockdown"'; then
				notice_ms[$g]=$(($(now_ms) - start))
			fi
		done
	}
	while :; do
		node_status "$k" >"$status_file" 2>/dev/null &
		pid=$!
		while kill -0 "$pid" 2>/dev/null; do
			see_notices
			sleep 0.02
		done
		wait "$pid" || true
		s=$(cat "$status_file")
		[[ -n $s ]] || s='{}'
		t=$(($(now_ms) - start))
		polls=$((polls + 1))
		see_notices
		state=$(jq -r --argjson e "$epoch" --argjson n "${#gates[@]}" \
			'[(.locked == true and .lockdown_epoch == $e),
			  ([.gate_links[]? | select(.locked and .lockdown_epoch == $e)] | length == $n)] | @tsv' <<<"$s")
		[[ -z $LOCKDOWN_NODE_MS && $state == true* ]] && LOCKDOWN_NODE_MS=$t
		[[ -z $LOCKDOWN_GATES_MS && $state == *true ]] && LOCKDOWN_GATES_MS=$t
		[[ -n $LOCKDOWN_GATES_MS && ${#notice_ms[@]} == "${#gates[@]}" ]] && break
		((SECONDS < deadline)) || {
			echo "$s" >&2
			fail "n$k's gates did not all apply lockdown epoch $epoch within ${LAB_WAIT_S}s"
		}
		sleep 0.05
	done
	for g in "${gates[@]}"; do
		lab_gate_find "$g" "${MARKS[$g]}" '"notice":"lockdown"' |
			jq -e --argjson e "$epoch" '.locked and .epoch == $e' >/dev/null ||
			fail "$g announced another lockdown than epoch $epoch: $(lab_gate_find "$g" "${MARKS[$g]}" '"notice":"lockdown"')"
		((notice_ms[$g] > ${LOCKDOWN_NOTICE_MS:-0})) && LOCKDOWN_NOTICE_MS=${notice_ms[$g]}
	done
	LOCKDOWN_POLL_MS=$((t / polls))
	return 0
}

gates_connected() { node_status "$1" | jq -e '[.gate_links[] | select(.connected)] | length == 2' >/dev/null; }

# ---- mDNS discovery ---------------------------------------------------------------------
# Each gate's gate.toml has `[discovery] enabled = true, interfaces = ["lan0"]` (lab.sh enrols
# them with `--discover lan0`; nodes advertise on lan0). The b gates' static fallback is
# pointed at an address nobody holds on their LAN, so only mDNS can take them to their node.
# Then the gate daemons start; each must announce its node's LAN address `(via mdns)`, and
# `gate discover`, run in every gate namespace at once, must choose that address by mDNS
# with its certificate verified. Sets GATES_FOUND_BY_MDNS, MDNS_ONLINE_MS, DISCOVER_MS.
step_mdns_discovery() {
	local k g t0 node want pid out
	local -A pids=()
	for k in 1 2 3; do
		g=g${k}b
		sed -i "s/^node = .*/node = \"10.77.$k.99:$LAB_NODE_PORT\"/" "$(data "$g")/gate.toml"
		grep -q "^node = \"10.77.$k.99:" "$(data "$g")/gate.toml" || fail "could not change $g's static address"
		grep -q '^enabled = true' "$(data "$g")/gate.toml" || fail "$g was not enrolled with discovery"
	done
	t0=$(now_ms)
	lab_start_gates || fail "the gate daemons did not all reach their nodes"
	MDNS_ONLINE_MS=$(($(now_ms) - t0))
	GATES_FOUND_BY_MDNS=0
	for k in 1 2 3; do
		want="$(node_lan_ip "$k"):$LAB_NODE_PORT"
		for g in $(gates_of "$k"); do
			node=$(lab_gate_find "$g" 0 '"notice":"online"' | jq -r .node)
			[[ $node == "$want (via mdns)" ]] || fail "$g reached its node as '$node', not by mDNS at $want"
			GATES_FOUND_BY_MDNS=$((GATES_FOUND_BY_MDNS + 1))
		done
		lab_wait "n$k to see both gates subscribed" gates_connected "$k" || fail "n$k does not see both gates connected"
	done
	t0=$(now_ms)
	for g in $(gates_of 1) $(gates_of 2) $(gates_of 3); do
		RUST_LOG=warn timeout 20 ip netns exec "$(ns "$g")" "$MENJIN" --json gate discover \
			--dir "$(data "$g")" >"$LAB_DIR/gates/$g.discover" 2>&1 &
		pids[$g]=$!
	done
	for g in "${!pids[@]}"; do
		wait "${pids[$g]}" || fail "gate discover at $g failed: $(cat "$LAB_DIR/gates/$g.discover")"
	done
	DISCOVER_MS=$(($(now_ms) - t0))
	for g in "${!pids[@]}"; do
		want="$(node_lan_ip "${g:1:1}"):$LAB_NODE_PORT"
		out=$(cat "$LAB_DIR/gates/$g.discover")
		jq -e --arg a "$want" '.chosen.via == "mdns" and .chosen.addr == $a and .advertised == 1
			and ([.candidates[] | select(.verified and .via == "mdns" and .addr == $a)] | length == 1)' \
			<<<"$out" >/dev/null || fail "gate discover at $g did not choose $want by mDNS: $out"
	done
	echo "  ${GATES_FOUND_BY_MDNS} of 6 gate daemons found their node by mDNS (b gates' static address unreachable); all online ${MDNS_ONLINE_MS} ms after start"
	echo "  gate discover in the 6 gate namespaces at once: each chose its node's LAN address, certificate verified (${DISCOVER_MS} ms)"
}

# ---- The scenario -----------------------------------------------------------------------

T_START=$(now_ms)
LAB_OWNER_PID=$$
lab_up
WANEM=$(lab_wanem_mode)

echo "step 1: gate daemons find their node by mDNS"
step_mdns_discovery

echo "step 2: residents declare, every gate lets them in"
for k in 1 2 3; do
	for ((r = 0; r < RESIDENTS; r++)); do
		serial=$((k * 100 + r))
		receipt=$(declare_person "$k" "$serial")
		[[ $(jq -r .outcome <<<"$receipt") == cleared ]] || fail "declaration at n$k: $receipt"
		CODE[$k.$r]=$(jq -r .code <<<"$receipt")
		HOLDER[$k.$r]=$(jq -r .holder <<<"$receipt")
	done
	for g in $(gates_of "$k"); do
		for ((r = 0; r < RESIDENTS; r++)); do expect_allowed "$g" "${CODE[$k.$r]}"; done
	done
done
visitor=$(lab_menjin n1 visitor invite --node-dir "$(data n1)" --host "${HOLDER[1.1]}" \
	--name 钱先生 --phone 13900139000 --until +4h | jq -r .code)
expect_allowed g1a "$visitor"
t=$(now_ms)
initial_ms=$(wait_converged "$t" "$CONVERGE_BOUND_S")
echo "  initial convergence: ${initial_ms} ms (events made: ${MADE[1]}+${MADE[2]}+${MADE[3]})"

echo "step 3: cut n1's WAN link for ${CUT_S} s"
lab_cut n1
cut_start=$SECONDS
# A re-declaration with symptoms revokes the earlier code, at the node, during the cut.
redeclared=$(declare_person 1 100 --symptoms)
[[ $(jq -r .revoked <<<"$redeclared") != null ]] || fail "re-declaration did not revoke: $redeclared"
expect_refused g1a "${CODE[1.0]}" revoked
expect_refused g1b "${CODE[1.0]}" revoked
lockdown_issued=$(lab_menjin hub hub lockdown --dir "$(data hub)" --community "$(community_of 1)" \
	--reason "confirmed case (lab)" --by lab)
jq -e '.done' <<<"$lockdown_issued" >/dev/null || fail "hub lockdown: $lockdown_issued"
epoch=$(hub_status | jq --argjson c "$(community_of 1)" '.communities[] | select(.community == $c) | .lockdown_epoch')
((epoch > 0)) || fail "the hub shows no lockdown epoch for community $(community_of 1)"
# n1 cannot know yet: its gates still admit the visitor.
expect_allowed g1b "$visitor"
checks_during_cut=0
while ((SECONDS - cut_start < CUT_S)); do
	for g in g1a g1b; do
		expect_allowed "$g" "${CODE[1.$((1 + checks_during_cut % (RESIDENTS - 1)))]}"
		checks_during_cut=$((checks_during_cut + 1))
	done
	expect_allowed g2a "${CODE[2.0]}" # the rest of the district carries on
	sleep 1
done
n1_cut=$(node_status 1)
[[ $(jq -r .locked <<<"$n1_cut") == false ]] || fail "n1 locked while cut off from the hub?"
# A cut shorter than the QUIC idle timeout (tls::IDLE_TIMEOUT_MS, 6 s) keeps the connection.
if ((CUT_S >= 8)); then
	[[ $(jq -r .hub_connected <<<"$n1_cut") == false ]] || fail "n1 still claims a hub link after a ${CUT_S} s cut: $n1_cut"
fi
echo "  during the cut: ${checks_during_cut} residents let in at n1's gates, revoked code refused"

echo "step 4: restore n1's WAN link"
declare -A MARKS=()
for g in $(gates_of 1); do MARKS[$g]=$(lab_gate_mark "$g"); done
lab_restore n1
restored_ms=$(now_ms)
measure_lockdown_reach 1 "$restored_ms" "$epoch"
lockdown_node_ms=$LOCKDOWN_NODE_MS lockdown_gates_ms=$LOCKDOWN_GATES_MS lockdown_notice_ms=$LOCKDOWN_NOTICE_MS
echo "  lockdown (epoch $epoch) reached n1 ${lockdown_node_ms} ms after the link came back; applied and acknowledged by both gates by ${lockdown_gates_ms} ms; both gate daemons printed it by ${lockdown_notice_ms} ms (polled every ~${LOCKDOWN_POLL_MS} ms)"
((lockdown_gates_ms <= LOCKDOWN_BOUND_MS)) ||
	fail "lockdown took ${lockdown_gates_ms} ms to reach n1's gates (bound ${LOCKDOWN_BOUND_MS} ms)"
for g in $(gates_of 1); do expect_refused "$g" "$visitor" lockdown; done
restore_converge_ms=$(wait_converged "$restored_ms" "$CONVERGE_BOUND_S")
assert_exactly_once
hub_gates_locked() {
	hub_status | jq -e --argjson c "$(community_of 1)" --argjson e "$epoch" \
		'.communities[] | select(.community == $c) | [.gates[] | select(.locked and .lockdown_epoch == $e)] | length == 2' >/dev/null
}
lab_wait "the hub to see n1's gates locked" hub_gates_locked || fail "the hub never saw n1's gates locked"
echo "  converged ${restore_converge_ms} ms after the link came back; every event exactly once; the hub sees both gates locked"

echo "step 5: kill -9 n2 while its gates run; they decide alone; restart n2"
# Revoke resident 2.1's code (a re-declaration with symptoms) and let both gates apply it.
before=$(node_status 2 | jq -c '[.gate_links[] | {(.gate): .applied_version}] | add')
redeclared=$(declare_person 2 201 --symptoms)
[[ $(jq -r .revoked <<<"$redeclared") != null ]] || fail "re-declaration at n2 did not revoke: $redeclared"
revocation_applied() {
	node_status 2 | jq -e --argjson b "$before" '[.gate_links[] | select(.applied_version > $b[.gate])] | length == 2' >/dev/null
}
lab_wait "n2's gates to apply the revocation" revocation_applied || fail "n2's gates never acknowledged the revocation"
lab_kill n2
offline_before=$OFFLINE_DECISIONS
for g in $(gates_of 2); do gate_send "$g" "36.5 ${CODE[2.0]}"; done
for g in $(gates_of 2); do
	gate_answer "$g"
	[[ $A_ALLOWED == true && $A_OFFLINE == true ]] || fail "$g should let the resident in, alone: $OUT"
done
for g in $(gates_of 2); do expect_refused "$g" "${CODE[2.1]}" revoked offline; done
offline_decisions=$((OFFLINE_DECISIONS - offline_before))
echo "  n2 down: ${offline_decisions} decisions taken by its gates alone (resident let in, revoked code refused at each)"
declare -A MARKS=()
for g in $(gates_of 2); do MARKS[$g]=$(lab_gate_mark "$g"); done
lab_start n2
t=$(now_ms)
uploaded() { lab_gate_seen "$1" "${MARKS[$1]}" '"notice":"uploaded"'; }
for g in $(gates_of 2); do lab_wait "$g to upload its buffer" uploaded "$g" || fail "$g never uploaded its offline events"; done
upload_ms=$(($(now_ms) - t))
uploaded_after_restart=0
for g in $(gates_of 2); do
	n=$(lab_gate_find "$g" "${MARKS[$g]}" '"notice":"uploaded"' | jq .stored)
	uploaded_after_restart=$((uploaded_after_restart + n))
done
((uploaded_after_restart == offline_decisions)) ||
	fail "the gates uploaded ${uploaded_after_restart} events, they decided ${offline_decisions} alone"
# Rediscovered: g2b's static address leads nowhere, so it must come back by mDNS; g2a's static
# address is n2's own, so either way (whichever answers first) is right for it.
for g in $(gates_of 2); do
	node=$(lab_gate_find "$g" "${MARKS[$g]}" '"notice":"online"' | jq -r .node)
	want="$(node_lan_ip 2):$LAB_NODE_PORT"
	if [[ $g == g2b ]]; then
		[[ $node == "$want (via mdns)" ]] || fail "$g came back to n2 as '$node', not by mDNS"
	else
		[[ $node == "$want (via mdns)" || $node == "$want (via static)" ]] || fail "$g came back to n2 as '$node'"
	fi
done
# n2's log: each offline decision exactly once, as (gate, gate_seq).
got=$(lab_menjin n2 log --node-dir "$(data n2)" --limit 1000 |
	jq -r '[.[] | select(.offline != null) | "\(.gate):\(.offline.gate_seq)"] | sort | join(" ")')
want=$(printf '%s\n' "${OFFLINE_SEQS[@]}" | sort | paste -sd ' ')
[[ $got == "$want" ]] || fail "n2's log holds offline events [$got], the gates decided [$want]"
# The gates' buffers were empty before: each gate's cursor is its number of offline events.
upto=$(printf '%s\n' "${OFFLINE_SEQS[@]}" | jq -R -s -c 'split("\n") | map(select(. != "") | split(":")[0]) | group_by(.) | map({(.[0]): length}) | add')
drained() {
	node_status 2 | jq -e --argjson u "$upto" \
		'[.gate_links[] | select(.connected and .pending_events == 0 and .uploaded_upto == $u[.gate])] | length == 2' >/dev/null
}
lab_wait "n2's gate links to show the upload" drained || fail "n2's gate links do not show the upload: $(node_status 2)"
expect_allowed g2b "${CODE[2.2]}"
t=$(now_ms)
restart_converge_ms=$(wait_converged "$t" "$CONVERGE_BOUND_S")
assert_exactly_once
echo "  n2 back: its gates found it again by mDNS and uploaded ${uploaded_after_restart} offline events ${upload_ms} ms after its restart, once each in its log, buffers drained; converged ${restart_converge_ms} ms later, every event exactly once"

echo "step 6: 100 ms latency, 5% loss on every WAN link"
if [[ $WANEM != none ]]; then
	[[ $WANEM == kernel ]] || echo "  (no sch_netem in this kernel: delay and loss from wanem.py, a user-space relay at the hub's end of the WAN)"
	for n in "${LAB_NODES[@]}"; do lab_netem "$n" 100ms 5%; done
	made_before=$((MADE[1] + MADE[2] + MADE[3]))
	for k in 2 3; do
		for ((r = 0; r < 3; r++)); do
			receipt=$(declare_person "$k" $((k * 100 + 50 + r)))
			CODE[$k.x$r]=$(jq -r .code <<<"$receipt")
		done
		for g in $(gates_of "$k"); do
			for ((r = 0; r < 3; r++)); do expect_allowed "$g" "${CODE[$k.x$r]}"; done
		done
	done
	for g in g1a g1b; do expect_allowed "$g" "${CODE[1.2]}"; done
	# From the last event made: how long the WAN takes to carry what is left.
	t=$(now_ms)
	netem_converge_ms=$(wait_converged "$t" "$CONVERGE_BOUND_S")
	assert_exactly_once
	NETEM=$WANEM
	echo "  $((MADE[1] + MADE[2] + MADE[3] - made_before)) events and 6 declarations under 100 ms / 5% loss; converged ${netem_converge_ms} ms after the last one"
	for n in "${LAB_NODES[@]}"; do lab_netem_clear "$n"; done
else
	NETEM=unavailable
	netem_converge_ms=null
	echo "  netem: unavailable (no sch_netem in this kernel, no python3 for wanem.py): latency/loss step SKIPPED"
fi

assert_exactly_once
hub_events=$(hub_status | jq '[.communities[].events] | add')
made=$((MADE[1] + MADE[2] + MADE[3]))
total_s=$(((($(now_ms) - T_START) + 500) / 1000))
echo "figures:"
echo "  cut_s=${CUT_S} gates_found_by_mdns=${GATES_FOUND_BY_MDNS} mdns_online_ms=${MDNS_ONLINE_MS} discover_ms=${DISCOVER_MS}"
echo "  lockdown_reach_node_ms=${lockdown_node_ms} lockdown_reach_gates_ms=${lockdown_gates_ms} lockdown_notice_gates_ms=${lockdown_notice_ms} lockdown_poll_ms=${LOCKDOWN_POLL_MS}"
echo "  offline_decisions=${offline_decisions} uploaded_after_restart=${uploaded_after_restart} upload_after_restart_ms=${upload_ms}"
echo "  converge_after_restore_ms=${restore_converge_ms} converge_under_netem_ms=${netem_converge_ms} events_made=${made} hub_events=${hub_events}"
echo "scenario PASSED in ${total_s} s"
jq -c -n \
	--argjson cut_s "$CUT_S" \
	--argjson gates_found_by_mdns "$GATES_FOUND_BY_MDNS" \
	--argjson mdns_online_ms "$MDNS_ONLINE_MS" \
	--argjson discover_ms "$DISCOVER_MS" \
	--argjson initial_converge_ms "$initial_ms" \
	--argjson lockdown_reach_node_ms "$lockdown_node_ms" \
	--argjson lockdown_reach_gates_ms "$lockdown_gates_ms" \
	--argjson lockdown_notice_gates_ms "$lockdown_notice_ms" \
	--argjson lockdown_poll_ms "$LOCKDOWN_POLL_MS" \
	--argjson lockdown_bound_ms "$LOCKDOWN_BOUND_MS" \
	--argjson converge_after_restore_ms "$restore_converge_ms" \
	--argjson offline_decisions "$offline_decisions" \
	--argjson uploaded_after_restart "$uploaded_after_restart" \
	--argjson upload_after_restart_ms "$upload_ms" \
	--argjson converge_after_restart_ms "$restart_converge_ms" \
	--argjson converge_under_netem_ms "$netem_converge_ms" \
	--arg netem "$NETEM" \
	--argjson checks_during_cut "$checks_during_cut" \
	--argjson events_made "$made" --argjson hub_events "$hub_events" \
	--argjson made_1 "${MADE[1]}" --argjson made_2 "${MADE[2]}" --argjson made_3 "${MADE[3]}" \
	--argjson total_s "$total_s" \
	'{passed: true, cut_s: $cut_s, mdns: "ok", gates_found_by_mdns: $gates_found_by_mdns,
	  mdns_online_ms: $mdns_online_ms, discover_ms: $discover_ms, initial_converge_ms: $initial_converge_ms,
	  lockdown_reach_node_ms: $lockdown_reach_node_ms, lockdown_reach_gates_ms: $lockdown_reach_gates_ms,
	  lockdown_notice_gates_ms: $lockdown_notice_gates_ms, lockdown_poll_ms: $lockdown_poll_ms,
	  lockdown_bound_ms: $lockdown_bound_ms,
	  converge_after_restore_ms: $converge_after_restore_ms, offline_decisions: $offline_decisions,
	  uploaded_after_restart: $uploaded_after_restart, upload_after_restart_ms: $upload_after_restart_ms,
	  converge_after_restart_ms: $converge_after_restart_ms, netem: $netem,
	  converge_under_netem_ms: $converge_under_netem_ms,
	  checks_during_cut: $checks_during_cut, events_made: $events_made, hub_events: $hub_events,
	  events_made_per_community: [$made_1, $made_2, $made_3], total_s: $total_s}'
