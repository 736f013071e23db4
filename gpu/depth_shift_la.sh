#!/bin/bash
# The depth experiment (experiments/2026-11-26-cpu-la-depth) at full resolution: its la_depth_shift.py on the
# last checkpoint of every LA grid run still on this machine (model/LA_repro*), the students
# in one process, then the Mean Teacher teachers; UZUZZT2W, SN4LF8SG and MJHV7F65 (CASES
# overrides them), shifts -4..+12. 15 predictions a network. Run it after reproduce_la.sh,
# in the same call or while the machine is warm.
# Usage: depth_shift_la.sh   (data in $LA, default /tmp/LA; output in $OUT/depth_shift.txt)
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LA=${LA:-/tmp/LA}
CASES=${CASES:-"UZUZZT2W9IUSHL6ASOX3 SN4LF8SGBSRQUPTDSX78 MJHV7F65TB2A76CQLOC3"}
STUDENTS=$(ls model/LA_repro*/*/iter_6000.pth 2>/dev/null)
TEACHERS=$(ls model/LA_repro*/MT/iter_6000.pth 2>/dev/null)
[ -n "$STUDENTS" ] || { echo "no model/LA_repro*/*/iter_6000.pth here: run reproduce_la.sh first"; exit 1; }
SHIFT=(python3 experiments/2026-11-26-cpu-la-depth/la_depth_shift.py --root_path "$LA/2018LA_Seg_Training Set" --cases $CASES
       --shifts -4 0 4 8 12)
{ "${SHIFT[@]}" --checkpoint $STUDENTS
  [ -z "$TEACHERS" ] || "${SHIFT[@]}" --checkpoint $TEACHERS --teacher; } 2>&1 | tee "$OUT/depth_shift.txt"
