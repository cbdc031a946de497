#!/usr/bin/env bash
# Run a zplan suite as a Slurm job array: one shard per array task, then merge.
#   sbatch --array=0-7 deploy/slurm_array.sh scenarios/default.ron
#   # when all tasks are done:
#   target/release/zplan merge runs/array-$SLURM_ARRAY_JOB_ID/shard* --out runs/array-<jobid>/merged
#SBATCH --job-name=zplan
#SBATCH --cpus-per-task=4
#SBATCH --time=01:00:00
#SBATCH --output=zplan-%A_%a.log
set -euo pipefail
SUITE="${1:-scenarios/default.ron}"
OUT="runs/array-${SLURM_ARRAY_JOB_ID}/shard${SLURM_ARRAY_TASK_ID}"
# The shard (i/N) comes from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT automatically.
# A rerun of a pre-empted task resumes its own directory instead of starting over.
if [[ -f "$OUT/run.json" ]]; then
  exec target/release/zplan run --resume "$OUT" --no-progress
else
  exec target/release/zplan run "$SUITE" --out "$OUT" --no-progress
fi
