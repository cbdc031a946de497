#!/usr/bin/env bash
# The fuzz campaign of issue #16: every cargo-fuzz target in fuzz/, one after another (or
# FUZZ_JOBS at a time), then a table of executions, wall time, exec/s, crashes, timeouts and
# peak RSS per target. See fuzz/README.md.
#
#   scripts/fuzz.sh                 # 1 000 000 executions per target (the campaign)
#   scripts/fuzz.sh 20000           # 20 000 executions per target
#   scripts/fuzz.sh 60s             # 60 seconds per target
#   FUZZ_TARGETS="suite_ron dataset" scripts/fuzz.sh 100000
#   FUZZ_REPORT_ONLY=1 scripts/fuzz.sh  # the table of the last runs (fuzz/logs), nothing run
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain RUSTC_BOOTSTRAP=1 lets
# cargo fuzz pass its nightly flags. Builds without a sanitizer (`-s none`, see the README)
# and with debug assertions and overflow checks (`-a`). Corpora grow in fuzz/corpus/<target>
# (seeded from fuzz/seeds/<target>), crashes land in fuzz/artifacts/<target>, logs in
# fuzz/logs/<target>.log. Not part of ./test.sh: tests/fuzz_inputs.rs is its in-process twin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUDGET=${1:-1000000}
JOBS=${FUZZ_JOBS:-1}
ALL="scenario_ron suite_ron planner_ron sidecar_json safetensors_weights dataset results_jsonl"
TARGETS=${FUZZ_TARGETS:-$ALL}

if [[ -z "${LIBTORCH:-}" && -f .cargo/config.toml ]]; then
  LIBTORCH=$(sed -n 's/^LIBTORCH = { value = "\(.*\)", force.*/\1/p' .cargo/config.toml)
fi
: "${LIBTORCH:?set LIBTORCH or run scripts/setup.sh first}"
export LIBTORCH LIBTORCH_BYPASS_VERSION_CHECK=0
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUSTC_BOOTSTRAP=1

case "$BUDGET" in
  *s) LIMIT=(-max_total_time="${BUDGET%s}") ;;
  *) LIMIT=(-runs="$BUDGET") ;;
esac

cd fuzz
if [[ -z "${FUZZ_REPORT_ONLY:-}" ]]; then
echo "==> building the fuzz targets (cargo fuzz build -s none -a)" >&2
for t in $TARGETS; do cargo fuzz build -s none -a "$t" >&2; done
BIN=$ROOT/fuzz/target/x86_64-unknown-linux-gnu/release
mkdir -p logs

run_one() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  local seeds=()
  [[ -d "seeds/$t" ]] && seeds=("seeds/$t")
  local start end
  start=$(date +%s.%N)
  # -close_fd_mask=1: zplan's progress output would drown libFuzzer's own.
  set +e
  "$BIN/$t" "${LIMIT[@]}" -timeout=5 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -print_final_stats=1 -close_fd_mask=1 -artifact_prefix="artifacts/$t/" \
    "corpus/$t" "${seeds[@]}" >"logs/$t.log" 2>&1
  local rc=$?
  set -e
  end=$(date +%s.%N)
  echo "$rc $start $end" >"logs/$t.time"
}

running=0
for t in $TARGETS; do
  echo "==> fuzzing $t ($BUDGET)" >&2
  run_one "$t" &
  running=$((running + 1))
  if ((running >= JOBS)); then wait -n || true; running=$((running - 1)); fi
done
wait || true
fi

stat() { sed -n "s/^stat::$1: *//p" "logs/$2.log" | tail -1; }
printf '| target | executions | wall s | exec/s | crashes | timeouts | peak RSS MB | corpus |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
fail=0
for t in $TARGETS; do
  read -r rc start end <"logs/$t.time"
  execs=$(stat number_of_executed_units "$t")
  rss=$(stat peak_rss_mb "$t")
  wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
  rate=$(awk -v n="${execs:-0}" -v w="$wall" 'BEGIN { printf "%.0f", (w > 0 ? n / w : 0) }')
  crashes=$(find "artifacts/$t" -name 'crash-*' -o -name 'oom-*' -o -name 'leak-*' | wc -l)
  timeouts=$(find "artifacts/$t" -name 'timeout-*' -o -name 'slow-unit-*' | wc -l)
  corpus=$(find "corpus/$t" -type f | wc -l)
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$t" "${execs:-?}" "$wall" "$rate" "$crashes" "$timeouts" "${rss:-?}" "$corpus"
  if [[ "$rc" != 0 ]]; then
    echo "   $t: libFuzzer exited $rc, see fuzz/logs/$t.log" >&2
    fail=1
  fi
done
# Scratch directories of the targets (fuzz/src/lib.rs), named by process id: only those of
# processes that are gone (another campaign may be running).
for d in /dev/shm/zplan-fuzz-* "${TMPDIR:-/tmp}"/zplan-fuzz-*; do
  if [[ -d "$d" && ! -d "/proc/${d##*-}" ]]; then rm -rf "$d"; fi
done
echo "machine: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores), $(date -u '+%Y-%m-%d %H:%M UTC')"
exit $fail
