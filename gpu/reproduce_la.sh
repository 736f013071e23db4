#!/bin/bash
# The LA grid of reproduce.py (dev split; SUP and MT; 6 and 13 labeled; 3 seeds; 6000
# iterations) on a lent GPU, JOBS runs at a time, with the data in /tmp/LA (stash.sh).
# Finished runs stay in model/ while the machine is warm, so a later call continues the grid.
# What is small comes back in $OUT: the console, and the results folder (tables, pictures, each
# run's evaluation and scalars: results/ and experiments/2026-11-26-h200/LA_repro6000) plus each
# run's log and config in la_grid.tgz. Unpacked into the repository, the evaluated runs count as
# done, so a later session runs only the rest.
# reproduce.py writes to results/LA_repro6000 by default; to continue the grid measured so far,
# pass --out experiments/2026-11-26-h200/LA_repro6000.
# Usage: reproduce_la.sh [JOBS] [more reproduce.py flags, e.g. --labelnum 13 --out experiments/2026-11-26-h200/LA_repro6000]
# LIMIT_S=N stops the grid after N seconds (the finished runs still come back).
# TRAIN_ARGS adds training flags to the fixed ones, e.g. TRAIN_ARGS="--crop_margin 0 0 16"
# with --exp repro_m16 (rows of their own in results/LA_repro_m16_6000).
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LA=${LA:-/tmp/LA}
JOBS=${1:-3}; shift
timeout -s INT ${LIMIT_S:-0} python3 reproduce.py --dataset_name LA --root_path "$LA/2018LA_Seg_Training Set" --train_list "$LA/dev_train.list" \
  --eval_list "$LA/dev_val.list" --jobs "$JOBS" --train_args="--deterministic 0 --log_every 100 ${TRAIN_ARGS:-}" "$@" 2>&1 \
  | tee "$OUT/reproduce.txt" | tail -n 40
STATUS=$?
tar czf "$OUT/la_grid.tgz" results experiments/2026-11-26-h200/LA_repro6000 model/LA_repro*/*/log.txt model/LA_repro*/*/scalars.csv \
  model/LA_repro*/*/config.json 2>/dev/null
exit $STATUS
