#!/bin/bash
# The uncertainty experiment (README.md beside this file), in steps; each step skips what is
# done, and every training run resumes from its latest.pth after a stop.
#
#   bash run.sh base       # Mean Teacher, 6 labeled, LA proxy, 3 seeds (reproduce.py)
#   bash run.sh failure    # score against Dice on dev_val: LA proxy (those 3) and Hippocampus
#   bash run.sh lists      # per seed: 7 cases from suggest.py, 7 at random
#   bash run.sh train      # labeled-only and Mean Teacher on each 13 (two streams; ARMS, SEEDS, METHODS narrow it)
#   bash run.sh collect    # evaluations, logs and tables back into this folder
#
# Env: CODE (a copy of the repository at the commit the runs use, so that later edits cannot
# reach running jobs: its model/ holds the run folders; default /work/grids/code36), GRIDS
# (/work/grids: LAhalf/ and the results), LA (the LA data), HIPPO_MODELS (Mean Teacher
# Hippocampus checkpoints of the planning experiment's recipe, <seed> substituted), THICK and
# THICK_MODELS (the planning experiment's thick-slice LA and its Mean Teacher checkpoints).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(git -C "$HERE" rev-parse --show-toplevel)"
GRIDS="${GRIDS:-/work/grids}"; CODE="${CODE:-$GRIDS/code36}"; OUT="$GRIDS/u36"
LA="${LA:-$REPO/../shared/data/LA}"; HIPPO="${HIPPO:-$REPO/../shared/data/Hippocampus}"
HIPPO_MODELS="${HIPPO_MODELS:-/work/grid_code/model/Hippocampus_hippo_plan_<seed>_17_labeled/MT/iter_1000.pth}"
THICK="${THICK:-/work/data/LA_thick}"  # tools/anisotropic_la.py's thick-slice LA, and its models (planning experiment)
THICK_MODELS="${THICK_MODELS:-/work/grid_code/model/LA_thick_thick_plan_<seed>_13_labeled/MT/iter_1500.pth}"
DATA="$GRIDS/LAhalf"; ROOT="$DATA/2018LA_Seg_Training Set"
read -ra SEEDS <<< "${SEEDS:-1337 1338 1339}"   # SEEDS="1337": one seed only
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT/logs"
[ -d "$ROOT" ] || python "$REPO/tools/la_half_resolution.py" "$LA" "$DATA"

# The LA proxy recipe (experiments/2026-12-01-cpu-la-proxy-methods)
GRID=(--dataset_name LA --root_path "$ROOT" --eval_list "$DATA/dev_val.list" --max_iterations 1500 --val_every 500
      --train_args "--patch_size 64 64 32 --lr_decay_every 625 --save_every 125" --mt_args "--consistency_rampup 10"
      --eval_args "--patch_size 64 64 32 --stride_xy 9 --stride_z 2")
base_checkpoint() { echo "$CODE/model/LA_repro1500_s$1_6_labeled/MT/iter_1500.pth"; }

case "${1:?base, failure, lists, train or collect}" in
base)
  cd "$CODE"
  python reproduce.py "${GRID[@]}" --train_list "$DATA/dev_train.list" --labelnum 6 --seeds "${SEEDS[@]}" --methods MT \
    --jobs 2 --out "$OUT/LA_half_mt6" >> "$OUT/console_mt6.txt" 2>&1 ;;
failure)
  cd "$REPO"  # the scoring code of this commit
  for seed in "${SEEDS[@]}"; do
    [ -f "$(base_checkpoint "$seed")" ] || { echo "seed $seed: no base checkpoint yet"; continue; }
    [ -f "$OUT/failure/la_$seed/summary.json" ] || python inference.py --dataset_name LA --root_path "$ROOT" \
      --checkpoint "$(base_checkpoint "$seed")" --test_list "$DATA/dev_val.list" --uncertainty --gpu -1 \
      --out "$OUT/failure/la_$seed" > "$OUT/logs/failure_la_$seed.log" 2>&1  # the run's window (18/4), not the grid's 9/2
  done
  for seed in 1337 1338; do  # the grid's window (8/8), not the plan's (16/16) these runs chose
    [ -f "$OUT/failure/hippocampus_$seed/summary.json" ] || python inference.py --root_path "$HIPPO" \
      --checkpoint "${HIPPO_MODELS//<seed>/$seed}" --test_list dev_val.list --stride_xy 8 --stride_z 8 --uncertainty \
      --gpu -1 --out "$OUT/failure/hippocampus_$seed" > "$OUT/logs/failure_hippocampus_$seed.log" 2>&1
  done
  # beyond the two lists asked for: the thick-slice LA models of the planning experiment, where present
  for seed in "${SEEDS[@]}"; do
    model="${THICK_MODELS//<seed>/$seed}"
    [ -f "$model" ] && [ ! -f "$OUT/failure/thick_la_$seed/summary.json" ] || continue
    python inference.py --root_path "$THICK" --checkpoint "$model" --test_list dev_val.list --uncertainty --gpu -1 \
      --out "$OUT/failure/thick_la_$seed" > "$OUT/logs/failure_thick_la_$seed.log" 2>&1
  done ;;
lists)
  cd "$REPO"
  mkdir -p "$OUT/lists"
  for seed in "${SEEDS[@]}"; do
    [ -f "$(base_checkpoint "$seed")" ] || { echo "seed $seed: no base checkpoint yet"; continue; }
    # windows at half the patch (32/16) instead of LA's 18/4: fewer forwards per case
    [ -f "$OUT/lists/suggested_$seed.list" ] || python suggest.py --checkpoint "$(base_checkpoint "$seed")" -n 7 \
      --stride_xy 32 --stride_z 16 --gpu -1 --out "$OUT/lists/suggested_$seed.list" > "$OUT/logs/suggest_$seed.log" 2>&1
    # one random draw per seed among the same 58 unlabeled cases, the labeled 6 first as above
    [ -f "$OUT/lists/random_${seed}_train.list" ] || python - "$DATA/dev_train.list" "$seed" \
      "$OUT/lists/random_$seed.list" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from selection.ranking import next_training_list
cases = Path(sys.argv[1]).read_text().split()
labeled, unlabeled = cases[:6], cases[6:]
drawn = [str(c) for c in np.random.default_rng(int(sys.argv[2])).choice(unlabeled, 7, replace=False)]
out = Path(sys.argv[3])
out.write_text("".join(f"{c}\n" for c in drawn))
out.with_name(f"{out.stem}_train.list").write_text("".join(f"{c}\n" for c in next_training_list(labeled, drawn, unlabeled)))
EOF
  done ;;
train)
  cd "$CODE"
  stream() {  # stream <suggested|random>: labeled-only and Mean Teacher on each seed's 13, one run at a time
    for seed in "${SEEDS[@]}"; do
      python reproduce.py "${GRID[@]}" --train_list "$OUT/lists/${1}_${seed}_train.list" --labelnum 13 --seeds "$seed" \
        --methods ${METHODS:-SUP MT} --exp "$1" --jobs 1 --out "$OUT/LA_half_${1}13_s$seed" >> "$OUT/console_$1.txt" 2>&1
    done
  }
  for arm in ${ARMS:-suggested random}; do stream "$arm" & done; wait ;;  # ARMS=suggested: that stream alone
collect)
  for part in failure lists; do [ -d "$OUT/$part" ] && mkdir -p "$HERE/$part" && cp -r "$OUT/$part/." "$HERE/$part/"; done
  for grid in "$OUT"/LA_half_*; do
    [ -d "$grid" ] || continue
    mkdir -p "$HERE/$(basename "$grid")"
    for part in eval logs scalars; do [ -d "$grid/$part" ] && cp -r "$grid/$part" "$HERE/$(basename "$grid")/"; done
    for file in "$grid"/results*.md "$grid"/results*.json; do [ -f "$file" ] && cp "$file" "$HERE/$(basename "$grid")/"; done
  done
  find "$HERE" \( -name .lock -o -name .incomplete \) -prune -exec rm -rf {} +
  cp "$OUT"/console_*.txt "$HERE/" 2>/dev/null || true
  python "$HERE/compare.py" "$HERE" > "$HERE/results.md" && cat "$HERE/results.md" ;;
esac
