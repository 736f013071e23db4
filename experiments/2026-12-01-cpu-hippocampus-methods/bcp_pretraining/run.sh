#!/bin/bash
# BCP's first stage alone (seed 1338 of the grid, same flags, --max_iterations 333 so that the
# run ends with the pre-training), then its last checkpoint on dev_val.list. Run from an empty
# folder with the repository at $REPO (the grid's commit, 72066b8) and the data at $HIPPO.
set -e
REPO=${REPO:?the repository}; HIPPO=${HIPPO:?the Hippocampus folder}
export OMP_NUM_THREADS=1
python "$REPO/train_bcp.py" --dataset_name Hippocampus --root_path "$HIPPO" --train_list "$HIPPO/dev_train.list" \
  --val_list "$HIPPO/dev_val.list" --labelnum 17 --seed 1338 --max_iterations 333 --exp diag_s1338 --val_every 111 \
  --gpu 0 --lr_decay_every 417 --pretrain_iterations 333 > train_BCP_pretraining_s1338.txt 2>&1
python "$REPO/inference.py" --dataset_name Hippocampus --root_path "$HIPPO" --test_list "$HIPPO/dev_val.list" \
  --exp diag_s1338 --labelnum 17 --model BCP --iteration 333 --gpu 0 --out eval_iter333
# The same first stage three times as long (1000 iterations, validated every 125), to see
# when the pre-training starts to find the hippocampus.
python "$REPO/train_bcp.py" --dataset_name Hippocampus --root_path "$HIPPO" --train_list "$HIPPO/dev_train.list" \
  --val_list "$HIPPO/dev_val.list" --labelnum 17 --seed 1338 --max_iterations 1000 --exp diag1000_s1338 --val_every 125 \
  --gpu 0 --lr_decay_every 417 --pretrain_iterations 1000 > train_BCP_pretraining1000_s1338.txt 2>&1
# Later (code after 72066b8, with the pseudo-label watch): the 333-iteration checkpoint above
# resumed into self-training up to iteration 400, to see the warning on empty pseudo-labels.
python "$REPO/train_bcp.py" --dataset_name Hippocampus --root_path "$HIPPO" --train_list "$HIPPO/dev_train.list" \
  --labelnum 17 --seed 1338 --max_iterations 400 --exp warn_s1338 --gpu 0 --lr_decay_every 417 \
  --pretrain_iterations 333 --resume model/Hippocampus_diag_s1338_17_labeled/BCP/iter_333.pth > train_BCP_warning_s1338.txt 2>&1
