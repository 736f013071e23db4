#!/bin/bash
# Where the fast path's GPU time could still go (issue 5). First the VNet block by block and
# rewrites of its layers (benchmarks/bench_layers.py, synthetic input: bf16 channels-last,
# then NCDHW, then fp16), then the training fast path against single changes of it on the
# real LA data, each mode a separate process on the same GPU. BENCH_MODES="" skips the latter.
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LA=${LA:-/tmp/LA}
python3 benchmarks/bench_layers.py --compile_blocks enc1,dec1 2>&1 | tee "$OUT/bench_layers.txt"
python3 benchmarks/bench_layers.py --compile_blocks "" --channels_last 0 2>&1 | tee "$OUT/bench_layers_ncdhw.txt"
python3 benchmarks/bench_layers.py --compile_blocks "" --precision fp16 2>&1 | tee "$OUT/bench_layers_fp16.txt"
[ -n "${BENCH_MODES-fast,ncdhw,compile}" ] || exit 0
python3 benchmarks/bench_train.py --root_path "$LA/2018LA_Seg_Training Set" --train_list "$LA/dev_train.list" \
  --labelnum 13 --iterations ${BENCH_ITERS:-300} --modes ${BENCH_MODES:-fast,ncdhw,compile} \
  --variant ncdhw "fast --channels_last 0" 2>&1 | tee "$OUT/speed_probe.txt"
