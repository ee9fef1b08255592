#!/usr/bin/env bash
# glassbox from Python against TransformerLens and against the Rust library, in one run:
#   run_with_cache of every hook on GPT-2 small (random weights, the published config), 1×N tokens
#   (a) glassbox's Python package   model.run_with_cache(tokens)        (bench_python.py)
#   (b) the Rust library directly   HookedModel::run_with_cache         (forward_bench, release)
#   (c) TransformerLens 4           TransformerBridge.run_with_cache    (bench/forward/bench_ref.py)
#   (d) TransformerLens 3           HookedTransformer.run_with_cache    (bench_tl3.py, bench/.venv-tl3)
# and the logits-only forward of (a) and (b). Each measurement is its own process (its own peak
# RSS), medians of REPS runs after a warm-up, measurements interleaved so that all see the same
# machine load; then (a) against (c) and against (d) call by call in one process, PAIRS pairs
# (bench_paired.py), whose ratios do not depend on the machine's drift between processes.
# usage: bench/python/run.sh [N_TOKENS=128] [REPS=10] [ROUNDS=3] [PAIRS=30]
#   The package is built into bench/.venv (`pip install ./python`, release); torch, transformers
#   and transformer_lens come from PyPI there (bench/forward/run.sh makes the venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-128}; REPS=${2:-10}; ROUNDS=${3:-3}; PAIRS=${4:-30}
VENV=bench/.venv; OUT=bench/out; mkdir -p "$OUT"
PY="$PWD/$VENV/bin/python"
if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q torch transformers transformer_lens
fi
"$VENV/bin/pip" install -q --force-reinstall --no-deps ./python
# TransformerLens 3 (its HookedTransformer, gone from 4) in a venv of its own over bench/.venv's
# torch and transformers.
TL3=bench/.venv-tl3
if [ ! -x "$TL3/bin/python" ]; then
  python3 -m venv "$TL3"
  echo "$PWD/$VENV/lib/python3.11/site-packages" > "$TL3/lib/python3.11/site-packages/zz_bench_venv.pth"
  "$TL3/bin/pip" install -q --no-deps transformer_lens==3.9.0 better_abc
fi
(cd bench/forward && "$PY" make_checkpoints.py "../../$OUT/models")
cargo build -q --release -p glassbox-models --example forward_bench
BIN=target/release/examples/forward_bench
DIR="$OUT/models/gpt2-small"
RESULTS="$OUT/python.jsonl"; : > "$RESULTS"
for round in $(seq "$ROUNDS"); do
  "$PY" bench/python/bench_python.py "$DIR" glassbox_cache "$N" "$REPS" >> "$RESULTS"
  "$BIN" "$DIR" cache "$N" "$REPS" 1 1 >> "$RESULTS"
  (cd bench/forward && "$PY" bench_ref.py "../../$DIR" gpt2-small tl_cache "$N" "$REPS" 1 1 2>>"../../$OUT/reference.log") >> "$RESULTS"
  "$TL3/bin/python" bench/python/bench_tl3.py "$DIR" "$N" "$REPS" 2>>"$OUT/reference.log" >> "$RESULTS"
  "$PY" bench/python/bench_python.py "$DIR" glassbox_logits "$N" "$REPS" >> "$RESULTS"
  "$BIN" "$DIR" logits "$N" "$REPS" 1 1 >> "$RESULTS"
done
# The same comparisons call by call in one process (bench_paired.py): each pair's ratio is
# measured on the same machine state, which separate processes minutes apart are not.
PAIRED="$OUT/python-paired.jsonl"; : > "$PAIRED"
"$TL3/bin/python" bench/python/bench_paired.py "$DIR" tl3 "$N" "$PAIRS" 2>>"$OUT/reference.log" >> "$PAIRED"
"$PY" bench/python/bench_paired.py "$DIR" tl4 "$N" "$PAIRS" 2>>"$OUT/reference.log" >> "$PAIRED"
python3 bench/python/summarize.py "$RESULTS" "$PAIRED"
