#!/usr/bin/env bash
# Fuzzes every decoder with libFuzzer (README "Fuzzing"), on the stable toolchain: rustc's
# `-C passes=sancov-module` instruments the code (coverage counters, comparisons) and the
# libfuzzer-sys crate builds libFuzzer from its C++ sources with the system's C++ compiler.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 5 s, every target)
#
# Prints one line per target (executions, executions per second, corpus size, crashes) and
# a summary; exits 1 if any target crashed (the input is kept under target/fuzz/artifacts/).
# Corpora grow under target/fuzz/corpus/<target>/ and are reused by the next run; each starts
# from the seeds that `menjin_fuzz::seeds` makes.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
seconds=${1:-5}
shift || true

triple=$(rustc -vV | sed -n 's/^host: //p')
out="${CARGO_TARGET_DIR:-$root/target}/fuzz"
# The flags cargo-fuzz passes for a build without a sanitizer; all are stable. --target keeps
# them off build scripts and proc macros. `fuzzing` is the cfg cargo-fuzz sets.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
echo "== building the fuzz targets (tests/fuzz, profile fuzz, $triple)"
# The workspace's versions of everything (tests/fuzz/Cargo.toml says why).
cp Cargo.lock tests/fuzz/Cargo.lock
CARGO_TARGET_DIR=$out cargo build --manifest-path tests/fuzz/Cargo.toml \
	--profile fuzz --target "$triple" --bin menjin-fuzz
bin=$out/$triple/fuzz/menjin-fuzz
unset RUSTFLAGS

if (($# == 0)); then
	# The names, in order, from the table in src/lib.rs.
	mapfile -t targets < <(sed -n 's/^ *name: "\([a-z_]*\)",$/\1/p' tests/fuzz/src/lib.rs)
else
	targets=("$@")
fi

mkdir -p "$out/tmp"
total_execs=0
crashed=()
printf '%-16s %12s %10s %8s %8s\n' target executions exec/s corpus crashes
for t in "${targets[@]}"; do
	corpus=$out/corpus/$t
	artifacts=$out/artifacts/$t
	log=$out/logs/$t.log
	mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
	status=0
	# -timeout: one input running over 10 s is a hang and counts as a crash;
	# -rss_limit_mb: an input that makes a decoder allocate without bound is one too.
	TMPDIR=$out/tmp MENJIN_FUZZ_TARGET=$t MENJIN_FUZZ_SEEDS=$corpus \
		timeout $((seconds + 120)) "$bin" "$corpus" -max_total_time="$seconds" \
		-timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
		-artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
	size=$(find "$corpus" -type f | wc -l)
	found=$(find "$artifacts" -type f | wc -l)
	printf '%-16s %12s %10s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$size" "$found"
	total_execs=$((total_execs + ${execs:-0}))
	if ((status != 0)) || ((found > 0)); then
		crashed+=("$t")
		echo "-- $t exited with status $status; the end of $log:"
		tail -n 40 "$log"
	fi
done
echo "fuzz: ${#targets[@]} targets, $seconds s each, $total_execs executions, ${#crashed[@]} crashed ${crashed[*]}"
((${#crashed[@]} == 0))
