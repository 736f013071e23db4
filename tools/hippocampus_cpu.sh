#!/bin/bash
# Mean Teacher against labeled-only on Hippocampus (MSD Task04) on a CPU: train on
# dev_train.list with its first 17 cases labeled (about 10 %), evaluate on dev_val.list.
# Usage: HIPPO_ROOT=../shared/data/Hippocampus bash tools/hippocampus_cpu.sh [SEED]
set -ex
H=${HIPPO_ROOT:?set HIPPO_ROOT to the MSD Task04 folder}
SEED=${1:-1337}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
COMMON="--dataset_name Hippocampus --root_path $H --train_list $H/dev_train.list --labelnum 17 --seed $SEED
        --max_iterations 1500 --lr_decay_every 1000 --exp cpu1500_s$SEED --log_every 100 --snapshot_every 500"
python train_mean_teacher.py $COMMON --consistency_rampup 10
python train_sup.py $COMMON
for M in MT SUP; do
  python inference.py --dataset_name Hippocampus --root_path $H --test_list $H/dev_val.list --exp cpu1500_s$SEED \
    --labelnum 17 --model $M
done
