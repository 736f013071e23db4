#!/bin/bash
# The LA proxy methods grid, continued on this machine: what is missing is made (the code at
# the grid's commit in a worktree, the half-resolution data, the results folder seeded with
# the evaluations committed here), then the grid command runs in the background, one thread
# per run, two runs at a time. Finished runs are skipped (their evaluations are here), an
# unfinished one resumes from its latest.pth where this machine still has it.
#
#   bash experiments/2026-12-01-cpu-la-proxy-methods/run.sh                    # the 6-labeled row
#   bash experiments/2026-12-01-cpu-la-proxy-methods/run.sh --labelnum 6 13   # then the 13-labeled row
#   bash experiments/2026-12-01-cpu-la-proxy-methods/run.sh collect           # copy results back here
#
# Extra flags go to reproduce.py after the grid's own (argparse: the last value wins). The
# paths in the grid's results.md are then those of $GRIDS.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(git -C "$HERE" rev-parse --show-toplevel)"
LA="${LA:-$REPO/../shared/data/LA}"
GRIDS="${GRIDS:-/work/grids}"
COMMIT=ba73a8a                                  # the code every run of this grid was trained with
CODE="$GRIDS/code_la" DATA="$GRIDS/LAhalf" OUT="$GRIDS/la/LA_half_methods1500"

if [ "${1:-}" = collect ]; then                 # the evaluations, console logs and scalars, not the checkpoints
  for part in eval logs scalars; do
    [ -d "$OUT/$part" ] && mkdir -p "$HERE/LA_half_methods1500/$part" && cp -r "$OUT/$part/." "$HERE/LA_half_methods1500/$part/"
  done
  # An evaluation running meanwhile has its lock and staging folder there: not results, and
  # seeded back into $OUT by the next run.sh they would outlive it.
  find "$HERE/LA_half_methods1500" \( -name .lock -o -name .incomplete \) -prune -exec rm -rf {} +
  cp "$GRIDS/la/grid_console.txt" "$HERE/grid_console.txt"
  # The grid's pinned code rewrites results.md on a part-of-the-grid call too; such a table
  # (not every (method, labelnum, seed) of the committed one) must not replace it.
  if python -c 'import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); from reproduce import tabulated_runs
new, old = (tabulated_runs(Path(folder)) for folder in sys.argv[2:])
sys.exit(not (new and old is not None and new >= old))' "$REPO" "$OUT" "$HERE"; then
    for file in "$OUT"/results.md "$OUT"/results.json "$OUT"/curves.png "$OUT"/comparison_*.png; do
      if [ -f "$file" ]; then cp "$file" "$HERE/"; fi
    done
    echo "copied $OUT into $HERE"
  else
    echo "copied the runs of $OUT into $HERE, not its results.md: it tabulates part of the grid (run the plain run.sh first)"
  fi
  exit 0
fi

[ -d "$CODE" ] || git -C "$REPO" worktree add --detach "$CODE" "$COMMIT"
[ -d "$DATA/2018LA_Seg_Training Set" ] || python "$REPO/tools/la_half_resolution.py" "$LA" "$DATA"
mkdir -p "$OUT"
cp -rn "$HERE/LA_half_methods1500/." "$OUT/"      # -n: never replace what this machine made since
[ -f "$GRIDS/la/grid_console.txt" ] || cp "$HERE/grid_console.txt" "$GRIDS/la/grid_console.txt"
echo "=== restart $(date -u) on $(lscpu | sed -n 's/^Model name: *//p') ===" >> "$GRIDS/la/grid_console.txt"

cd "$CODE"
OMP_NUM_THREADS=1 setsid nohup python reproduce.py --dataset_name LA --root_path "$DATA/2018LA_Seg_Training Set" \
  --train_list "$DATA/dev_train.list" --eval_list "$DATA/dev_val.list" --labelnum 6 \
  --seeds 1337 1338 1339 --max_iterations 1500 --val_every 500 --methods SUP MT UAMT BCP --jobs 2 \
  --train_args "--patch_size 64 64 32 --lr_decay_every 625 --save_every 125" --mt_args "--consistency_rampup 10" \
  --eval_args "--patch_size 64 64 32 --stride_xy 9 --stride_z 2" --out "$OUT" "$@" \
  >> "$GRIDS/la/grid_console.txt" 2>&1 < /dev/null &
echo "grid running (pid $!): tail -f $GRIDS/la/grid_console.txt; logs of each run in $OUT/logs"
