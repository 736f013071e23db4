#!/bin/bash
# AD-MT and the all-labeled ceiling (README.md beside this file), in steps; each step skips what
# is done, and every training run resumes from its latest.pth after a stop. On a fresh machine
# (no $GRIDS) the runs whose evaluations were collected into this folder are brought back first,
# so only the unfinished runs start again.
#
#   bash run.sh la          # LA proxy, 6 labeled, 3 seeds: ADMT and FULL beside SUP and MT of 2026-12-01
#   bash run.sh schedule    # Hippocampus, seed 1337: SUP 17 and FULL at 2000, 4000, 6000 iterations
#                           # until FULL is 5 Dice above SUP on dev_val (writes hippocampus_schedule.txt)
#   bash run.sh hippocampus # Hippocampus at that schedule: SUP, MT, ADMT, FULL, 3 seeds
#   UNTIL=01:30 bash run.sh queue  # the runs still missing, one at a time with 2 threads, in order
#                           # of priority, each only if it can end before UNTIL (UTC)
#   bash run.sh collect     # evaluations, logs and tables back into this folder
#
# Env: CODE (a copy of the repository at the commit the runs use, so that later edits cannot reach
# running jobs; default /work/grids/code35), GRIDS (/work/grids), LA and HIPPO (the data), SEEDS,
# JOBS (runs at a time, default 2), THREADS (per run, default 1), METHODS (of the la and
# hippocampus steps, default all four: SUP MT ADMT FULL). On a lent GPU, from the
# checkout with the Hippocampus data carried in .devdata/Hippocampus:
#   GRIDS=/tmp/grids CODE=$PWD HIPPO=$PWD/.devdata/Hippocampus JOBS=4 bash <this> schedule
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"   # experiments/<this>
GRIDS="${GRIDS:-/work/grids}"; CODE="${CODE:-$GRIDS/code35}"; OUT="$GRIDS/admt"
LA="${LA:-$REPO/../shared/data/LA}"; HIPPO="${HIPPO:-$(cd "$REPO/../shared/data/Hippocampus" && pwd)}"
DATA="$GRIDS/LAhalf"; ROOT="$DATA/2018LA_Seg_Training Set"
read -ra SEEDS <<< "${SEEDS:-1337 1338 1339}"
read -ra METHODS <<< "${METHODS:-SUP MT ADMT FULL}"
JOBS="${JOBS:-2}"
export OMP_NUM_THREADS="${THREADS:-1}" MKL_NUM_THREADS="${THREADS:-1}"   # two runs at a time on two cores
mkdir -p "$OUT"

# what `collect` put in this folder, back into $OUT where missing: reproduce.py counts a run whose
# evaluations are in its --out as done, checkpoints or not; and the tables, so that a call for a
# part of a grid writes its own results_<part>.md instead of replacing the grid's results.md
restore() {
  local grid file
  for grid in "$HERE"/LA_half_* "$HERE"/Hippocampus_*; do
    [ -d "$grid" ] || continue
    mkdir -p "$OUT/$(basename "$grid")"
    for part in eval logs scalars; do [ -d "$grid/$part" ] && cp -rn "$grid/$part" "$OUT/$(basename "$grid")/"; done
    for file in "$grid"/results*.md "$grid"/results*.json "$grid"/*.png; do
      [ -f "$file" ] && cp -n "$file" "$OUT/$(basename "$grid")/"
    done
  done
  for file in "$HERE"/console_*.txt "$HERE"/schedule.txt "$HERE"/hippocampus_schedule.txt; do [ -f "$file" ] && cp -n "$file" "$OUT/"; done
  true
}
# a97c54d: the training code of every AD-MT run kept (both fixes), and of the runs after them
[ -d "$CODE" ] || { git -C "$REPO" worktree prune; git -C "$REPO" worktree add --detach "$CODE" "${COMMIT:-a97c54d}"; }

# Hippocampus candidates: the README's recipe lengthened, its learning-rate step kept at 70 % of the run
hippocampus_grid() {  # hippocampus_grid <iterations> <methods...>
  local iterations=$1; shift
  python reproduce.py --dataset_name Hippocampus --root_path "$HIPPO" --labelnum 17 --max_iterations "$iterations" \
    --val_every $((iterations / 8)) --train_args "--lr_decay_every $((iterations * 7 / 10))" \
    --mt_args "--consistency_rampup $(python -c "print(f'{40 * $iterations / 6000:.4g}')")" \
    --jobs "$JOBS" --out "$OUT/Hippocampus_hippo$iterations" --exp hippo "$@"
}

case "${1:?la, schedule, hippocampus, queue or collect}" in
la)
  restore
  [ -d "$ROOT" ] || python "$REPO/tools/la_half_resolution.py" "$LA" "$DATA"
  # the 2026-12-01 grid's SUP and MT evaluations (same recipe): evaluated already, not retrained
  mkdir -p "$OUT/LA_half_methods1500"
  old="$REPO/experiments/2026-12-01-cpu-la-proxy-methods/LA_half_methods1500"
  for part in eval scalars logs; do
    mkdir -p "$OUT/LA_half_methods1500/$part"
    for src in "$old/$part"/*_6_s*; do
      case "$(basename "$src")" in SUP_*|MT_*|train_SUP_*|train_MT_*|eval_SUP_*|eval_MT_*) cp -rn "$src" "$OUT/LA_half_methods1500/$part/";; esac
    done
  done
  cd "$CODE"
  python reproduce.py --dataset_name LA --root_path "$ROOT" --train_list "$DATA/dev_train.list" \
    --eval_list "$DATA/dev_val.list" --labelnum 6 --seeds "${SEEDS[@]}" --max_iterations 1500 --val_every 500 \
    --methods "${METHODS[@]}" --jobs "$JOBS" --train_args "--patch_size 64 64 32 --lr_decay_every 625 --save_every 125" \
    --mt_args "--consistency_rampup 10" --eval_args "--patch_size 64 64 32 --stride_xy 9 --stride_z 2" \
    --out "$OUT/LA_half_methods1500" >> "$OUT/console_la.txt" 2>&1 ;;
schedule)
  restore
  cd "$CODE"
  chosen=""; widest=-100; widest_at=""
  for iterations in 2000 4000 6000; do
    hippocampus_grid "$iterations" --seeds 1337 --methods SUP FULL >> "$OUT/console_schedule.txt" 2>&1
    gap=$(python -c "import json, sys; rows = {r['method']: r['mean']['dice'] for r in json.load(open(sys.argv[1]))['rows']}
print(f\"{100 * (rows['FULL'] - rows['SUP']):.2f}\")" "$OUT/Hippocampus_hippo$iterations/results.json")
    echo "$iterations iterations: FULL - SUP = $gap Dice points (seed 1337, dev_val)" | tee -a "$OUT/schedule.txt"
    if python -c "import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))" "$gap" "$widest"; then widest=$gap; widest_at=$iterations; fi
    if python -c "import sys; sys.exit(not float(sys.argv[1]) >= 5)" "$gap"; then chosen=$iterations; break; fi
  done
  echo "${chosen:-$widest_at}" > "$OUT/hippocampus_schedule.txt"
  echo "chosen: ${chosen:-$widest_at} iterations (${chosen:+the shortest with a gap of at least 5}${chosen:-none reached 5: the widest gap})" | tee -a "$OUT/schedule.txt" ;;
hippocampus)
  restore
  iterations=$(cat "$OUT/hippocampus_schedule.txt")
  cd "$CODE"
  hippocampus_grid "$iterations" --seeds "${SEEDS[@]}" --methods "${METHODS[@]}" >> "$OUT/console_hippocampus.txt" 2>&1 ;;
queue)
  # The Hippocampus grid stops here: its code mirrored every training patch (fixed in 98c12a3),
  # so it is to be measured again with the fix; the LA proxy's rows finish on the old code, which
  # all of them share.
  # A machine's grids folder may not outlive the session, so each run has to end within one:
  # one run at a time with both threads (an AD-MT run about 1.7 hours, against 3-4 beside
  # another run). Seconds: estimated from this experiment's runs on the 2-core AMD EPYC.
  restore
  deadline=$(date -u -d "${UNTIL:?UNTIL=HH:MM, UTC: the time by which the runs must end}" +%s)
  [ "$deadline" -gt "$(date +%s)" ] || deadline=$((deadline + 86400))   # past: tomorrow's
  schedule=$(cat "$OUT/hippocampus_schedule.txt")
  while read -r dataset method seed seconds; do
    if [ "$dataset" = la ]; then grid=LA_half_methods1500; labeled=6; all=64
    else grid=Hippocampus_hippo$schedule; labeled=17; all=168; fi
    name="${method}_$([ "$method" = FULL ] && echo $all || echo $labeled)_s$seed"
    done_already=1
    for model in "$name" $(case $method in MT|ADMT) echo "${name}_teacher";; esac); do
      [ -f "$OUT/$grid/eval/$model/summary.json" ] || done_already=0
    done
    [ $done_already = 1 ] && continue
    left=$((deadline - $(date +%s)))
    if [ "$seconds" -gt "$left" ]; then echo "queue: $dataset $name needs about $seconds s, $left s left: not started"; continue; fi
    echo "queue: $dataset $name from $(date -u +%H:%M) (about $seconds s)"
    SEEDS=$seed METHODS=$method THREADS=2 JOBS=1 bash "$0" "$dataset"
  done <<'RUNS'
la ADMT 1337 6300
la FULL 1337 900
hippocampus SUP 1338 1000
hippocampus FULL 1338 1000
hippocampus ADMT 1337 6500
la ADMT 1338 6300
la FULL 1338 900
la FULL 1339 900
la ADMT 1339 6300
RUNS
  ;;
collect)
  for grid in "$OUT"/LA_half_* "$OUT"/Hippocampus_*; do
    [ -d "$grid" ] || continue
    mkdir -p "$HERE/$(basename "$grid")"
    for part in eval logs scalars; do [ -d "$grid/$part" ] && cp -r "$grid/$part" "$HERE/$(basename "$grid")/"; done
    for file in "$grid"/results*.md "$grid"/results*.json "$grid"/*.png; do [ -f "$file" ] && cp "$file" "$HERE/$(basename "$grid")/"; done
  done
  find "$HERE" \( -name .lock -o -name .incomplete \) -prune -exec rm -rf {} +
  for file in "$OUT"/console_*.txt "$OUT"/schedule.txt "$OUT"/hippocampus_schedule.txt; do [ -f "$file" ] && cp "$file" "$HERE/"; done
  true ;;
esac
