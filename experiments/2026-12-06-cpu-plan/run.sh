#!/bin/bash
# The planning experiment (README.md beside this file): Mean Teacher on thick-slice LA with the
# plan against a hand-picked 64 x 64 x 16 patch with isotropic strides, at the same voxel budget;
# and Mean Teacher on Hippocampus with --plan auto, evaluated with the plan's window and the
# dataset's. Two streams, one thread each; every run resumes from its latest.pth after a stop.
#
#   bash experiments/2026-12-06-cpu-plan/run.sh <code folder> <LA_thick folder> <Hippocampus folder>
#
# <code folder> is a copy of the repository at the commit the runs use (so later edits to the
# working tree do not reach running jobs); the run folders go under its model/.
set -u
CODE=$1; THICK=$2; HIPPO=$3
cd "$CODE"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
LA=(--root_path "$THICK" --train_list dev_train.list --labelnum 13 --max_iterations 1500 --lr_decay_every 625
    --consistency_rampup 10 --log_every 50 --save_every 100 --snapshot_every 500 --gpu -1)
HI=(--dataset_name Hippocampus --plan auto --root_path "$HIPPO" --train_list dev_train.list --labelnum 17
    --max_iterations 1000 --lr_decay_every 700 --consistency_rampup 6.67 --log_every 50 --save_every 100 --gpu -1)

train() {  # train <exp> <seed> <last iteration> <args...>: resumes where latest.pth is
  local exp=$1 seed=$2 last=$3; shift 3
  local folder=$(ls -d model/*_"$exp"_*_labeled/MT 2>/dev/null | head -1)
  if [ -n "$folder" ] && [ -f "$folder/iter_$last.pth" ]; then return; fi
  local resume=(); if [ -n "$folder" ] && [ -f "$folder/latest.pth" ]; then resume=(--resume); fi
  python train_mean_teacher.py "$@" --seed "$seed" --exp "$exp" "${resume[@]}" > "logs/train_$exp.log" 2>&1
}

evaluate() {  # evaluate <exp> <list> <args...>: student and teacher of the last checkpoint
  local exp=$1 list=$2; shift 2
  python inference.py "$@" --exp "$exp" --model MT --test_list "$list" --gpu -1 --overwrite > "logs/eval_$exp.log" 2>&1
  python inference.py "$@" --exp "$exp" --model MT --test_list "$list" --gpu -1 --overwrite --teacher \
    > "logs/eval_${exp}_teacher.log" 2>&1
}

la() {  # la <plan|hand> <seed>
  local exp=thick_$1_$2
  if [ "$1" = plan ]; then train "$exp" "$2" 1500 "${LA[@]}" --patch_budget 65536
  else train "$exp" "$2" 1500 "${LA[@]}" --patch_size 64 64 16 --strides 2,2,2 2,2,2 2,2,2 2,2,2; fi
  evaluate "$exp" dev_val.list --root_path "$THICK"
}

hippo() {  # hippo <seed>: the plan's window (from the checkpoint), then the dataset's 8/8
  local exp=hippo_plan_$1
  train "$exp" "$1" 1000 "${HI[@]}"
  evaluate "$exp" dev_val.list --root_path "$HIPPO" --dataset_name Hippocampus
  python inference.py --root_path "$HIPPO" --dataset_name Hippocampus --exp "$exp" --model MT --test_list dev_val.list \
    --gpu -1 --overwrite --stride_xy 8 --stride_z 8 --out "model/Hippocampus_${exp}_17_labeled/MT/test_window8" \
    > "logs/eval_${exp}_window8.log" 2>&1
  python inference.py --root_path "$HIPPO" --dataset_name Hippocampus --exp "$exp" --model MT --test_list dev_val.list \
    --gpu -1 --overwrite --teacher --stride_xy 8 --stride_z 8 \
    --out "model/Hippocampus_${exp}_17_labeled/MT/test_teacher_window8" > "logs/eval_${exp}_teacher_window8.log" 2>&1
}

mkdir -p logs
(la plan 1337; la plan 1338; la hand 1339; hippo 1339) &
(la plan 1339; la hand 1337; la hand 1338; hippo 1337; hippo 1338) &
wait
