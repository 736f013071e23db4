#!/bin/bash
# AD-MT and the all-labeled ceiling (README.md beside this file), in steps; each step skips what
# is done, and every training run resumes from its latest.pth after a stop. On a fresh machine
# (no $GRIDS) the runs whose evaluations were collected into this folder are brought back first,
# so only the unfinished runs start again.
#
#   bash run.sh la          # LA proxy, 6 labeled, 3 seeds: SUP MT ADMT FULL (without FIX, SUP and MT are 2026-12-01's)
#   bash run.sh schedule    # Hippocampus, seed 1337: SUP 17 and FULL at 2000, 4000, 6000 iterations
#                           # until FULL is 5 Dice above SUP on dev_val (writes hippocampus_schedule.txt)
#   bash run.sh hippocampus # Hippocampus at that schedule: SUP, MT, ADMT, FULL, 3 seeds
#   LA_ITERATIONS=3750 bash run.sh la, HIPPO_ITERATIONS=15000 bash run.sh hippocampus: the same grids
#                           # at AD-MT's length (the length control: is AD-MT's gain its longer run?)
#   FIX=1 UNTIL=01:30 bash run.sh queue  # the fix's runs still missing, one at a time with 2
#                           # threads, in order of priority, each only if it can end before UNTIL (UTC)
#   bash run.sh collect     # evaluations, logs and tables back into this folder
#
# REACH=1 (implies FIX=1): AD-MT with per-class thresholds relative to each class's reach
# (098cdb1, "The threshold no class could reach" in README.md): code at 098cdb1 in $GRIDS/codereach,
# runs in $GRIDS/admt_reach, collected into after_reach_threshold/; only the AD-MT rows train
# again (every seed, both datasets), the other rows' evaluations are copied from the FIX grid:
#   REACH=1 UNTIL=22:16 bash run.sh queue
#   REACH=1 CODE=$PWD bash run.sh la; REACH=1 CODE=$PWD bash run.sh hippocampus  # the final tables
#
# FIX=1 before any of these: the same steps with the orientation fix (98c12a3, "The orientation no
# run had seen" in README.md): code at 98c12a3 in $GRIDS/codefix, runs in $GRIDS/admt_fix, collected
# into after_orientation_fix/, and every row trained again (no 2026-12-01 rows reused). Without
# it, the old augmentation's grids (code a97c54d in $GRIDS/code35, runs in $GRIDS/admt), kept as
# that version's record; their queue is closed.
#
# Env: CODE (a copy of the repository at the commit the runs use, so that later edits cannot reach
# running jobs), COMMIT (the one it is made at where missing), OUT (the runs), RESULTS (where
# collect copies them and restore reads them back from), GRIDS (/work/grids), LA and HIPPO (the data), SEEDS,
# JOBS (runs at a time, default 2), THREADS (per run, default 1), METHODS (of the la and
# hippocampus steps, default all four: SUP MT ADMT FULL). On a lent GPU, from the
# checkout with the Hippocampus data carried in .devdata/Hippocampus:
#   GRIDS=/tmp/grids CODE=$PWD HIPPO=$PWD/.devdata/Hippocampus JOBS=4 bash <this> schedule
# The final tables, once every run of a grid is evaluated: `FIX=1 CODE=$PWD bash <this> la` (and
# hippocampus), from the checkout: nothing trains (every run's evaluations are there), and the
# checkout's reproduce.py writes results.md, with the cases each difference holds on.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"   # experiments/<this>
GRIDS="${GRIDS:-/work/grids}"; FIX="${FIX:-0}"; REACH="${REACH:-0}"
FIXED="$HERE/after_orientation_fix"   # the FIX grids' collected runs
if [ "$REACH" = 1 ]; then
  FIX=1; CODE="${CODE:-$GRIDS/codereach}"; COMMIT="${COMMIT:-098cdb1}"; OUT="${OUT:-$GRIDS/admt_reach}"
  RESULTS="${RESULTS:-$HERE/after_reach_threshold}"
elif [ "$FIX" = 1 ]; then
  CODE="${CODE:-$GRIDS/codefix}"; COMMIT="${COMMIT:-98c12a3}"; OUT="${OUT:-$GRIDS/admt_fix}"
  RESULTS="${RESULTS:-$HERE/after_orientation_fix}"
else  # a97c54d: the training code of every AD-MT run on the old augmentation (both fixes below)
  CODE="${CODE:-$GRIDS/code35}"; COMMIT="${COMMIT:-a97c54d}"; OUT="${OUT:-$GRIDS/admt}"; RESULTS="${RESULTS:-$HERE}"
fi
LA="${LA:-$REPO/../shared/data/LA}"; HIPPO="${HIPPO:-$(cd "$REPO/../shared/data/Hippocampus" && pwd)}"
DATA="$GRIDS/LAhalf"; ROOT="$DATA/2018LA_Seg_Training Set"
read -ra SEEDS <<< "${SEEDS:-1337 1338 1339}"
read -ra METHODS <<< "${METHODS:-SUP MT ADMT FULL}"
JOBS="${JOBS:-2}"
export OMP_NUM_THREADS="${THREADS:-1}" MKL_NUM_THREADS="${THREADS:-1}"   # two runs at a time on two cores
mkdir -p "$OUT"
# REACH=1: the FIX grid's schedule (chosen with the same training code)
[ "$REACH" = 0 ] || [ -f "$OUT/hippocampus_schedule.txt" ] || cp "$FIXED/hippocampus_schedule.txt" "$OUT/"

# what `collect` put in this folder, back into $OUT where missing: reproduce.py counts a run whose
# evaluations are in its --out as done, checkpoints or not; and the tables, so that a call for a
# part of a grid writes its own results_<part>.md instead of replacing the grid's results.md
restore() {
  local grid file
  for grid in "$RESULTS"/LA_half_* "$RESULTS"/Hippocampus_*; do
    [ -d "$grid" ] || continue
    mkdir -p "$OUT/$(basename "$grid")"
    for part in eval logs scalars; do [ -d "$grid/$part" ] && cp -rn "$grid/$part" "$OUT/$(basename "$grid")/"; done
    for file in "$grid"/results*.md "$grid"/results*.json "$grid"/*.png; do
      [ -f "$file" ] && cp -n "$file" "$OUT/$(basename "$grid")/"
    done
  done
  for file in "$RESULTS"/console_*.txt "$RESULTS"/schedule.txt "$RESULTS"/hippocampus_schedule.txt; do [ -f "$file" ] && cp -n "$file" "$OUT/"; done
  true
}
# REACH=1: the rows other than AD-MT of grid $1 are the FIX grid's evaluations (collected, or
# still in its runs folder; copied again on each call, so a run finished since comes in whole),
# not retrained: their training code is the same at 098cdb1 as at 98c12a3
other_rows() {
  local old part src
  for old in "$FIXED/$1" "$GRIDS/admt_fix/$1"; do
    for part in eval scalars logs; do
      [ -d "$old/$part" ] || continue
      mkdir -p "$OUT/$1/$part"
      for src in "$old/$part"/*; do
        case "$(basename "$src")" in *ADMT_*) ;; *) [ -e "$src/.incomplete" ] || cp -r "$src" "$OUT/$1/$part/";; esac
      done
    done
  done
}
[ -d "$CODE" ] || { git -C "$REPO" worktree prune; git -C "$REPO" worktree add --detach "$CODE" "$COMMIT"; }

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
  iterations="${LA_ITERATIONS:-1500}"; grid="$OUT/LA_half_methods$iterations"
  [ -d "$ROOT" ] || python "$REPO/tools/la_half_resolution.py" "$LA" "$DATA"
  # the 2026-12-01 grid's SUP and MT evaluations (same recipe, old augmentation): evaluated
  # already, not retrained; with the fix every row trains again
  mkdir -p "$grid"
  old="$REPO/experiments/2026-12-01-cpu-la-proxy-methods/LA_half_methods1500"
  [ "$FIX" = 1 ] || [ "$iterations" != 1500 ] || for part in eval scalars logs; do
    mkdir -p "$grid/$part"
    for src in "$old/$part"/*_6_s*; do
      case "$(basename "$src")" in SUP_*|MT_*|train_SUP_*|train_MT_*|eval_SUP_*|eval_MT_*) cp -rn "$src" "$grid/$part/";; esac
    done
  done
  [ "$REACH" = 0 ] || other_rows "LA_half_methods$iterations"
  # the 1500-iteration recipe's learning-rate steps (every 625) and Mean Teacher's ramp-up (10)
  # scale with the length, as AD-MT's do in reproduce.py
  cd "$CODE"
  python reproduce.py --dataset_name LA --root_path "$ROOT" --train_list "$DATA/dev_train.list" \
    --eval_list "$DATA/dev_val.list" --labelnum 6 --seeds "${SEEDS[@]}" --max_iterations "$iterations" --val_every $((iterations / 3)) \
    --methods "${METHODS[@]}" --jobs "$JOBS" --train_args "--patch_size 64 64 32 --lr_decay_every $((iterations * 625 / 1500)) --save_every 125" \
    --mt_args "--consistency_rampup $(python -c "print(f'{10 * $iterations / 1500:.4g}')")" --eval_args "--patch_size 64 64 32 --stride_xy 9 --stride_z 2" \
    --out "$grid" >> "$OUT/console_la.txt" 2>&1 ;;
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
  [ "$REACH" = 0 ] || other_rows "Hippocampus_hippo${HIPPO_ITERATIONS:-$(cat "$OUT/hippocampus_schedule.txt")}"
  iterations="${HIPPO_ITERATIONS:-$(cat "$OUT/hippocampus_schedule.txt")}"
  cd "$CODE"
  hippocampus_grid "$iterations" --seeds "${SEEDS[@]}" --methods "${METHODS[@]}" >> "$OUT/console_hippocampus.txt" 2>&1 ;;
queue)
  # A machine's grids folder may not outlive the session, so each run has to end within one: one
  # run at a time with both threads (an AD-MT run 1.7 hours on the LA proxy, 2.7 on Hippocampus at
  # 6000, about twice that beside another run), or two short ones side by side with a thread each (a line naming two methods).
  # Seconds: estimated from this experiment's runs on the 2-core AMD EPYC; S is the Hippocampus
  # schedule's iterations. The longest runs come first in each seed's block, so that a session's
  # queue starts them while they fit and fills the rest of its time with the shorter ones.
  [ "$FIX" = 1 ] || { echo "queue: the old augmentation's grids are closed (kept as a record); FIX=1 runs the grids with the fix" >&2; exit 2; }
  restore
  deadline=$(date -u -d "${UNTIL:?UNTIL=HH:MM, UTC: the time by which the runs must end}" +%s)
  [ "$deadline" -gt "$(date +%s)" ] || deadline=$((deadline + 86400))   # past: tomorrow's
  schedule=$(cat "$OUT/hippocampus_schedule.txt")
  # the estimates are the AMD's; this experiment's runs on the 2-core Intel Xeon took 75-83 % of them
  cpu_share=100; lscpu | grep -q "Intel" && cpu_share=85
  runs="\
la SUP,FULL 1337 1200
la MT 1337 1900
hippocampus ADMT 1337 S*160/100+300
la ADMT 1337 6300
hippocampus MT 1337 S*45/100+200
la:3750 SUP,FULL 1337 3000
la:3750 MT 1337 4750
hippocampus SUP,FULL 1338 S*40/100+150
la SUP,FULL 1338 1200
hippocampus ADMT 1338 S*160/100+300
hippocampus MT 1338 S*45/100+200
la MT 1338 1900
hippocampus SUP,FULL 1339 S*40/100+150
la SUP,FULL 1339 1200
hippocampus MT 1339 S*45/100+200
la MT 1339 1900
hippocampus:15000 SUP,FULL 1337 5300"
  # AD-MT with the per-class thresholds, every seed again on both: Hippocampus seed 1338 first
  # (the fixed threshold's collapse)
  [ "$REACH" = 1 ] && runs="\
la ADMT 1338 6300
hippocampus ADMT 1338 S*160/100+300
hippocampus ADMT 1337 S*160/100+300
la ADMT 1337 6300
hippocampus ADMT 1339 S*160/100+300
la ADMT 1339 6300"
  while read -r step methods seed seconds; do
    # "la:3750": the step at that length instead of its grid's (the length control)
    dataset=${step%%:*}; length=${step#"$dataset"}; length=${length#:}
    if [ "$dataset" = la ]; then grid=LA_half_methods${length:-1500}; labeled=6; all=64
    else grid=Hippocampus_hippo${length:-$schedule}; labeled=17; all=168; fi
    seconds=$(( ${seconds//S/$schedule} ))
    seconds=$(( seconds * cpu_share / 100 ))
    missing=()
    for method in ${methods//,/ }; do
      name="${method}_$([ "$method" = FULL ] && echo $all || echo $labeled)_s$seed"
      for model in "$name" $(case $method in MT|ADMT) echo "${name}_teacher";; esac); do
        [ -f "$OUT/$grid/eval/$model/summary.json" ] || { missing+=("$method"); break; }
      done
    done
    [ ${#missing[@]} = 0 ] && continue
    left=$((deadline - $(date +%s)))
    if [ "$seconds" -gt "$left" ]; then echo "queue: $step ${missing[*]} seed $seed needs about $seconds s, $left s left: not started"; continue; fi
    echo "queue: $step ${missing[*]} seed $seed from $(date -u +%H:%M) (about $seconds s)"
    if [ ${#missing[@]} = 2 ]; then threads=1; else threads=2; fi
    LA_ITERATIONS=${length:-1500} HIPPO_ITERATIONS=${length:-$schedule} \
      SEEDS=$seed METHODS="${missing[*]}" THREADS=$threads JOBS=${#missing[@]} bash "$0" "$dataset"
  done <<< "$runs"
  ;;
collect)
  for grid in "$OUT"/LA_half_* "$OUT"/Hippocampus_*; do
    [ -d "$grid" ] || continue
    mkdir -p "$RESULTS/$(basename "$grid")"
    for part in eval logs scalars; do
      [ -d "$grid/$part" ] || continue
      if [ "$REACH" = 1 ]; then  # its own AD-MT runs only: the other rows are in $FIXED already
        mkdir -p "$RESULTS/$(basename "$grid")/$part"
        for src in "$grid/$part"/*ADMT_*; do [ -e "$src" ] && cp -r "$src" "$RESULTS/$(basename "$grid")/$part/"; done
      else
        cp -r "$grid/$part" "$RESULTS/$(basename "$grid")/"
      fi
    done
    for file in "$grid"/results*.md "$grid"/results*.json "$grid"/*.png; do [ -f "$file" ] && cp "$file" "$RESULTS/$(basename "$grid")/"; done
  done
  find "$RESULTS" \( -name .lock -o -name .incomplete \) -prune -exec rm -rf {} +
  # an AD-MT run logs ten scalars every iteration (1.2 MiB for 15000): the copy here keeps every
  # 10th iteration and every validation; the run's own folder keeps them all
  find "$RESULTS" -path "*/scalars/*.csv.gz" -size +1M -exec python -c "
import csv, gzip, sys
for path in sys.argv[1:]:
    with gzip.open(path, 'rt', newline='') as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [r for r in rows[1:] if int(r[0]) % 10 == 0 or r[1].startswith('val/')]
    with gzip.open(path, 'wt', newline='') as handle:
        csv.writer(handle).writerows(kept)
" {} +
  for file in "$OUT"/console_*.txt "$OUT"/schedule.txt "$OUT"/hippocampus_schedule.txt; do
    [ -f "$file" ] && { [ "$REACH" = 0 ] || [[ "$file" == */console_* ]]; } && cp "$file" "$RESULTS/"
  done
  true ;;
esac
