#!/bin/bash
# The depth experiment of the README at full resolution: benchmarks/la_depth_shift.py on the
# last checkpoint of every LA grid run still on this machine (model/LA_repro*), student and,
# for Mean Teacher, teacher; UZUZZT2W, SN4LF8SG and three other validation cases (CASES
# overrides them). 25 predictions a network, presumably about 10 s on a GPU. Run it after
# reproduce_la.sh, in the same call or while the machine is warm.
# Usage: depth_shift_la.sh   (data in $LA, default /tmp/LA; output in $OUT/depth_shift.txt)
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LA=${LA:-/tmp/LA}
CASES=${CASES:-"UZUZZT2W9IUSHL6ASOX3 MJHV7F65TB2A76CQLOC3 QZC1W0FNR19KJFLOCFLH TDDI6L3Y0L9VVFP9MNFS SN4LF8SGBSRQUPTDSX78"}
for checkpoint in model/LA_repro*/*/iter_6000.pth; do
  [ -e "$checkpoint" ] || { echo "no model/LA_repro*/*/iter_6000.pth here: run reproduce_la.sh first"; exit 1; }
  for teacher in "" --teacher; do
    case "$checkpoint" in */MT/*) ;; *) [ -n "$teacher" ] && continue ;; esac
    echo "== $checkpoint $teacher"
    python3 benchmarks/la_depth_shift.py --root_path "$LA/2018LA_Seg_Training Set" --checkpoint "$checkpoint" \
      $teacher --cases $CASES --shifts -4 0 4 8 12
  done
done 2>&1 | tee "$OUT/depth_shift.txt"
