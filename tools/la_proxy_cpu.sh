#!/bin/bash
# Labeled-only against Mean Teacher on LA at half resolution, on a CPU: the proxy of the
# full-resolution grid used to try settings before spending GPU time on them. LABELNUM of
# dev_train.list labeled, 1500 iterations (lr x0.1 every 625, consistency ramp-up over the
# whole run: the 6000-iteration schedule scaled down); the last checkpoint evaluated on
# dev_val.list (students, and the teacher). The two runs side by side, one thread each.
# Env: LABELNUM (13), SEED (1337), NORMALIZE (case, or none), MT_ARGS (more Mean Teacher
# flags, e.g. "--consistency 1.0"), TRAIN_ARGS (more flags for both, e.g. "--crop_margin 0 0 8"),
# METHODS ("SUP MT"), EXP (the experiment name).
# The normalization table (experiments/2026-11-25-cpu-la-normalize): NORMALIZE=none and
# NORMALIZE=case, each with its own EXP.
# Usage: bash tools/la_proxy_cpu.sh <LA folder> [half-resolution folder]
set -e
LA=${1:?the LA folder}; HALF=${2:-/tmp/LAhalf}
LABELNUM=${LABELNUM:-13}; SEED=${SEED:-1337}; NORMALIZE=${NORMALIZE:-case}; METHODS=${METHODS:-SUP MT}
EXP=${EXP:-proxy_${NORMALIZE}_s$SEED}
[ -d "$HALF" ] || python tools/la_half_resolution.py "$LA" "$HALF"
DATA=(--dataset_name LA --root_path "$HALF/2018LA_Seg_Training Set" --labelnum "$LABELNUM")
TRAIN=(--train_list "$HALF/dev_train.list" --patch_size 64 64 32 --max_iterations 1500 --lr_decay_every 625
       --seed "$SEED" --log_every 50 --snapshot_every 500 --normalize "$NORMALIZE" --exp "$EXP" ${TRAIN_ARGS:-})
export OMP_NUM_THREADS=1
for method in $METHODS; do
  if [ "$method" = MT ]; then
    python train_mean_teacher.py "${DATA[@]}" "${TRAIN[@]}" --consistency_rampup 10 ${MT_ARGS:-} &
  else
    python train_sup.py "${DATA[@]}" "${TRAIN[@]}" &
  fi
done
wait
EVAL=(--test_list "$HALF/dev_val.list" --exp "$EXP" --patch_size 64 64 32 --stride_xy 9 --stride_z 2)
for method in $METHODS; do
  python inference.py "${DATA[@]}" "${EVAL[@]}" --model "$method" &
  if [ "$method" = MT ]; then python inference.py "${DATA[@]}" "${EVAL[@]}" --model MT --teacher & fi
done
wait
