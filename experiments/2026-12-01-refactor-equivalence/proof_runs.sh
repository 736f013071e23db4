#!/bin/bash
# usage: HIPPO_ROOT=<Hippocampus folder> bash proof_runs.sh REPO OUTDIR
# Deterministic CPU runs (Mean Teacher, labeled-only, Mean Teacher on the DataLoader path) whose
# scalars.csv files are compared byte for byte before and after a refactor.
set -e
cd "$1"; out="$2"; mkdir -p "$out"
H=${HIPPO_ROOT:?set HIPPO_ROOT to the MSD Task04 folder}
common="--dataset_name Hippocampus --root_path $H --train_list dev_train.list --val_list dev_val.list --labelnum 6 --max_samples 20 --max_iterations 40 --val_every 20 --save_every 10 --snapshot_every 20 --log_every 5 --deterministic 1 --seed 1337 --overwrite"
export OMP_NUM_THREADS=2
python train_mean_teacher.py $common --exp proof > "$out/mt.txt" 2>&1
python train_sup.py $common --exp proof > "$out/sup.txt" 2>&1
python train_mean_teacher.py $common --exp proofw --data_on_device 0 --num_workers 1 --max_iterations 20 > "$out/mt_loader.txt" 2>&1
python inference.py --dataset_name Hippocampus --root_path $H --test_list dev_val.list --exp proof --labelnum 6 --model MT --out "$out/eval_mt" > "$out/eval.txt" 2>&1 || true
for r in MT SUP; do cp model/Hippocampus_proof_6_labeled/$r/scalars.csv "$out/scalars_$r.csv"; done
cp model/Hippocampus_proofw_6_labeled/MT/scalars.csv "$out/scalars_MT_loader.csv"
