#!/usr/bin/env bash
# Bounded memory: peak RSS of `glassbox inspect --stats` on a multi-GB safetensors file.
# The file is written streaming and sparse under /tmp (never in the repo) and removed after.
# usage: bench/inspect/rss.sh [SIZE_GB]   (GLASSBOX=path/to/binary, default target/release)
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_GB=${1:-8}
BIN=${GLASSBOX:-target/release/glassbox}
FILE=/tmp/glassbox-rss-bench.safetensors
command -v /usr/bin/time >/dev/null || { echo "install GNU time: apt-get install -y time" >&2; exit 1; }
trap 'rm -f "$FILE"' EXIT
python3 bench/inspect/make_big_safetensors.py "$FILE" "$SIZE_GB" --dense-every 16
/usr/bin/time -v "$BIN" inspect "$FILE" --stats > /tmp/glassbox-rss-bench.out 2> /tmp/glassbox-rss-bench.time
grep -E "^statistics" /tmp/glassbox-rss-bench.out
RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' /tmp/glassbox-rss-bench.time)
FILE_MB=$(( $(stat -c %s "$FILE") / 1000000 ))
echo "file ${FILE_MB} MB, peak RSS $((RSS_KB / 1024)) MiB"
# Bounded means independent of the file: far below its size.
if [ "$RSS_KB" -gt 262144 ]; then echo "FAIL: peak RSS above 256 MiB" >&2; exit 1; fi
