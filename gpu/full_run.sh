#!/bin/bash
# A full run on the LA development split (dev_train.list, the first LABELNUM cases labeled) with
# the fast path, each method its own schedule (6000 iterations; AD-MT 15000), then inference.py
# on dev_val.list (the student, and the teacher of MT and ADMT).
# Usage: full_run.sh MT|SUP|ADMT   (env: LABELNUM, SEED, EXTRA training flags, EVAL_FLAGS, LA)
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LA=${LA:-/tmp/LA}; ROOT="$LA/2018LA_Seg_Training Set"
METHOD=${1:-MT}; LABELNUM=${LABELNUM:-13}; SEED=${SEED:-1337}
case "$METHOD" in MT) SCRIPT=train_mean_teacher.py;; ADMT) SCRIPT=train_admt.py;; *) SCRIPT=train_sup.py;; esac
python3 $SCRIPT --root_path "$ROOT" --train_list "$LA/dev_train.list" --labelnum $LABELNUM --seed $SEED \
  --exp dev_s$SEED --deterministic 0 --log_every 100 ${EXTRA:-} 2>&1 | tail -n 5
RUN="model/LA_dev_s${SEED}_${LABELNUM}_labeled/$METHOD"
cp "$RUN/log.txt" "$OUT/log_${METHOD}_s$SEED.txt"
for WHO in student teacher; do
  [ "$WHO" = teacher ] && [ "$METHOD" = SUP ] && continue
  python3 inference.py --root_path "$ROOT" --test_list "$LA/dev_val.list" --exp dev_s$SEED --labelnum $LABELNUM \
    --model $METHOD $([ "$WHO" = teacher ] && echo --teacher) --out "$RUN/test_$WHO" ${EVAL_FLAGS:-} 2>&1 \
    | tee "$OUT/eval_${METHOD}_${WHO}_s$SEED.txt" | tail -n 4
done
