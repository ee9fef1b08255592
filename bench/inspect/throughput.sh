#!/usr/bin/env bash
# Throughput of `glassbox inspect --stats` against NumPy + safetensors computing the same
# statistics (f64 accumulation) on the same dense F32 file, page cache warm for both. Reports
# GB per wall-clock second and per CPU second (user + sys: robust to a busy machine), best of
# three runs each. Outside CI: it creates bench/.venv with numpy and safetensors.
# usage: bench/inspect/throughput.sh [SIZE_GB]   (GLASSBOX=path/to/binary, default target/release)
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_GB=${1:-2}
BIN=${GLASSBOX:-target/release/glassbox}
FILE=/tmp/glassbox-throughput-bench.safetensors
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet numpy safetensors
fi
trap 'rm -f "$FILE" /tmp/glassbox-throughput.time' EXIT
python3 bench/inspect/make_big_safetensors.py "$FILE" "$SIZE_GB" --dense-every 1
BYTES=$(stat -c %s "$FILE")
cat "$FILE" > /dev/null   # warm the page cache for both tools

# best "wall_GB/s cpu_GB/s" of three runs of the command
measure() {
  local best="0 0"
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %U %S" -o /tmp/glassbox-throughput.time "$@" > /dev/null
    best=$(tail -n 1 /tmp/glassbox-throughput.time | awk -v b="$BYTES" -v best="$best" '{
      w = b / $1 / 1e9; c = b / ($2 + $3) / 1e9;
      split(best, o, " "); if (w > o[1]) print w, c; else print best }')
  done
  echo "$best"
}
G=$(measure "$BIN" inspect "$FILE" --stats)
N=$(measure bench/.venv/bin/python bench/inspect/stats_numpy.py "$FILE")
echo "cores: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "glassbox inspect --stats: $(echo "$G" | awk '{printf "%.2f GB/s wall, %.2f GB/s per CPU-second", $1, $2}')"
echo "numpy + safetensors:      $(echo "$N" | awk '{printf "%.2f GB/s wall, %.2f GB/s per CPU-second", $1, $2}')"
echo "$G $N" | awk '{printf "ratio glassbox / numpy: %.1fx wall, %.1fx per CPU-second\n", $1 / $3, $2 / $4}'
