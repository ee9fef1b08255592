#!/usr/bin/env bash
# Throughput of `glassbox inspect --stats` against NumPy + safetensors computing the same
# statistics on the same dense F32 file (page cache warm for both). Outside CI: it creates a
# venv in bench/.venv with numpy and safetensors.
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
trap 'rm -f "$FILE"' EXIT
python3 bench/inspect/make_big_safetensors.py "$FILE" "$SIZE_GB" --dense-every 1
cat "$FILE" > /dev/null   # warm the page cache for both tools
for run in 1 2 3; do
  "$BIN" inspect "$FILE" --stats --json > /tmp/glassbox-throughput.json
  GB=$(python3 -c 'import json; print(json.load(open("/tmp/glassbox-throughput.json"))["stats"]["gb_per_s"])')
  echo "glassbox run $run: $GB GB/s"
done
for run in 1 2 3; do
  NP=$(bench/.venv/bin/python bench/inspect/stats_numpy.py "$FILE")
  echo "numpy run $run: $NP GB/s"
done
python3 -c "print(f'ratio (last runs) glassbox / numpy: {float($GB) / float($NP):.1f}x')"
