#!/bin/bash
# GPU time split of the fast path and torch.compile's speed, on LA-sized synthetic volumes
# (speed does not depend on the image content, so no real data needs to travel).
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m dataloaders.synthetic --out /tmp/synla --num_train 6 --num_test 0 --size 200 150 88
COMMON="--dataset_name Synthetic --root_path /tmp/synla/volumes --labelnum 3 --patch_size 112 112 80"
python3 benchmarks/profile_train.py $COMMON --max_iterations ${PROFILE_ITERS:-60} --deterministic 0 --exp profile \
  --overwrite --log_every 1000 2>&1 | tail -n 40 | tee "$OUT/profile.txt"
timeout ${COMPILE_TIMEOUT:-200} python3 benchmarks/bench_train.py $COMMON --iterations ${BENCH_ITERS:-200} \
  --modes fast,compile 2>&1 | tee "$OUT/bench_compile.txt"
