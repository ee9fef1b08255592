#!/usr/bin/env bash
# Whole-process cost of `glassbox run` against the in-process forward pass it contains.
# Interleaved, REPS times each: `run` (last position's logits, the command's default),
# `run --all-positions`, a one-token `run` (start-up), and forward_bench's in-process 1×N logits.
# Prints medians and the ratios. Needs the random-weight checkpoint that bench/forward/run.sh makes.
# usage: bench/forward/whole_process.sh [MODEL_DIR=bench/out/models/gpt2-small] [N_TOKENS=128] [REPS=9]
set -euo pipefail
cd "$(dirname "$0")/../.."
M=${1:-bench/out/models/gpt2-small}; N=${2:-128}; REPS=${3:-9}
[ -f "$M/config.json" ] || { echo "no checkpoint at $M (run bench/forward/run.sh first)" >&2; exit 2; }
cargo build -q --release -p glassbox-cli
cargo build -q --release -p glassbox-models --example forward_bench
VOCAB=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$M/config.json")
T=$(python3 -c "import sys; n,v=int(sys.argv[1]),int(sys.argv[2]); print(','.join(str((i*7919+13)%v) for i in range(n)))" "$N" "$VOCAB")
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for _ in $(seq 1 "$REPS"); do
  /usr/bin/time -f "run %e" target/release/glassbox run "$M" --tokens "$T" --json 2>>"$LOG" >/dev/null
  /usr/bin/time -f "run_all_positions %e" target/release/glassbox run "$M" --tokens "$T" --json --all-positions 2>>"$LOG" >/dev/null
  /usr/bin/time -f "startup %e" target/release/glassbox run "$M" --tokens 1 --json 2>>"$LOG" >/dev/null
  target/release/examples/forward_bench "$M" logits "$N" 3 16 1 \
    | python3 -c "import json,sys; print('forward_in_process', json.load(sys.stdin)['value'] / 1000)" >>"$LOG"
done
python3 - "$LOG" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    key, value = line.split()
    d[key].append(float(value))
med = {k: statistics.median(v) for k, v in d.items()}
for k, v in med.items():
    print(f"{k:20s} {v:.3f} s (median of {len(d[k])})")
f = med["forward_in_process"]
print(f"run / forward {med['run'] / f:.2f}x; run --all-positions / forward {med['run_all_positions'] / f:.2f}x")
PY
