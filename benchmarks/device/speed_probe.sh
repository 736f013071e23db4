#!/bin/bash
# Where the fast path's GPU time could still go (issue 5): the fast path against single
# changes of it, on the real LA data, each mode a separate process on the same GPU.
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LA=${LA:-/tmp/LA}
python3 benchmarks/bench_train.py --root_path "$LA/2018LA_Seg_Training Set" --train_list "$LA/dev_train.list" \
  --labelnum 13 --iterations ${BENCH_ITERS:-300} --modes ${BENCH_MODES:-fast,ncdhw,compile} \
  --variant ncdhw "fast --channels_last 0" 2>&1 | tee "$OUT/speed_probe.txt"
