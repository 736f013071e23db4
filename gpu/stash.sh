#!/bin/bash
# Keep a data part under /tmp (which lasts while the machine stays warm); once both parts
# are there, rebuild the LA h5 layout in /tmp/LA.
set -e
mkdir -p /tmp/ship && cp -r ".devdata/LAx/$1" /tmp/ship/
if [ -d /tmp/ship/part1 ] && [ -d /tmp/ship/part2 ] && [ ! -d /tmp/LA ]; then
  python3 tools/ship_la.py unpack /tmp/ship/part1 /tmp/ship/part2 --out /tmp/LA
fi
ls /tmp/ship
