#!/bin/bash
# Training speed on the real LA data: plain loop vs fast path (issue 5), then a full
# Mean Teacher run on the development split and its evaluation on dev_val.
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LA=${LA:-/tmp/LA}; ROOT="$LA/2018LA_Seg_Training Set"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" | tee -a "$OUT/gpu.txt"
python3 benchmarks/bench_train.py --root_path "$ROOT" --train_list "$LA/dev_train.list" --labelnum ${LABELNUM:-13} \
  --iterations ${BENCH_ITERS:-300} --modes ${BENCH_MODES:-plain,fast,fast_det} ${BENCH_FLAGS:-} 2>&1 | tee "$OUT/bench_train.txt"
