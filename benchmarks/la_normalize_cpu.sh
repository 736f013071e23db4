#!/bin/bash
# --normalize none against --normalize case on LA at half resolution, on a CPU: labeled-only
# and Mean Teacher, 13 labeled of dev_train.list, 1500 iterations (lr decay 625, rampup over
# the whole run), evaluated on dev_val.list at the last iteration (students, and the Mean
# Teacher's teachers). Two runs at a time. SEED=1338 for another seed.
# Usage: bash benchmarks/la_normalize_cpu.sh <LA folder> [half-resolution folder]
set -e
LA=${1:?the LA folder}; HALF=${2:-/tmp/LAhalf}; SEED=${SEED:-1337}
[ -d "$HALF" ] || python benchmarks/la_half_resolution.py "$LA" "$HALF"
DATA=(--dataset_name LA --root_path "$HALF/2018LA_Seg_Training Set" --labelnum 13)
TRAIN=(--train_list "$HALF/dev_train.list" --patch_size 64 64 32 --max_iterations 1500 --lr_decay_every 625
       --seed "$SEED" --log_every 50 --snapshot_every 500)
export OMP_NUM_THREADS=1
for script in train_sup.py "train_mean_teacher.py --consistency_rampup 10"; do
  for normalize in none case; do
    python $script "${DATA[@]}" "${TRAIN[@]}" --normalize $normalize --exp "half_${normalize}_s$SEED" &
  done
  wait
done
for model in SUP MT "MT --teacher"; do
  for normalize in none case; do
    python inference.py "${DATA[@]}" --test_list "$HALF/dev_val.list" --exp "half_${normalize}_s$SEED" \
      --model $model --patch_size 64 64 32 --stride_xy 9 --stride_z 2 &
  done
  wait
done
