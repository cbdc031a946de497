#!/usr/bin/env bash
# GPU figures for README (issue 15, item 5): zplan bench-plan on the tiny, small and large
# example TorchScript models at CEM 300 x 16 x 10 and 1000 x 16 x 5, with the host and the
# device-resident population backends (`bench-plan --backend host|device`), then the default
# suite with --device cuda.
#
# Build here, run there: `cargo build --release --bin zplan` on a machine with the same
# libtorch (scripts/setup.sh), copy the repository with target/release/zplan, then on the GPU
# machine:  scripts/gpu_bench.sh [OUT_DIR]   (default runs/gpu-<date>)
#
# Needs: target/release/zplan, a python with torch (ZPLAN_PYTHON or python3) for the model
# exports, a CUDA device visible to libtorch. Writes OUT_DIR/bench.md (one table row per
# model/budget/backend), OUT_DIR/machine.txt and the suite run in OUT_DIR/default.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-runs/gpu-$(date +%Y%m%d-%H%M)}"
ZPLAN="${ZPLAN_BIN:-target/release/zplan}"
PY="${ZPLAN_PYTHON:-python3}"
mkdir -p "$OUT/models"
{
  date -u
  "$ZPLAN" info || true
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  grep -m1 "model name" /proc/cpuinfo || true
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

for size in tiny small large; do
  "$PY" models/python/export_example.py --out "$OUT/models/$size.pt" --obs-shape 11 \
    --action-dim 2 --size "$size" > /dev/null
done

echo "| model | budget | backend | plan ms (median) | plan ms (p99) | rollouts alone ms | overhead |" > "$OUT/bench.md"
echo "|---|---|---|---|---|---|---|" >> "$OUT/bench.md"
for size in tiny small large; do
  for budget in "300 16 10" "1000 16 5"; do
    read -r samples horizon iters <<< "$budget"
    for backend in host device; do
      line=$("$ZPLAN" bench-plan --model "$OUT/models/$size.pt" --obs-shape 11 --action-dim 2 \
        --planner cem --samples "$samples" --elites $((samples / 10)) --horizon "$horizon" \
        --iters "$iters" --device cuda --backend "$backend" --repeats 30 2>&1 | tail -1)
      med=$(sed -n 's/.*plan_ms_median=\([0-9.]*\).*/\1/p' <<< "$line")
      p99=$(sed -n 's/.*plan_ms_p99=\([0-9.]*\).*/\1/p' <<< "$line")
      roll=$(sed -n 's/.*rollout_ms_median=\([0-9.]*\).*/\1/p' <<< "$line")
      ovh=$(sed -n 's/.*overhead=\([0-9.]*\).*/\1/p' <<< "$line")
      row="| $size | $samples x $horizon x $iters | $backend | $med | $p99 | $roll | $ovh |"
      echo "$row" | tee -a "$OUT/bench.md"
    done
  done
done

"$ZPLAN" run scenarios/default.ron --device cuda --out "$OUT/default" --no-progress
cat "$OUT/default/summary.md"
