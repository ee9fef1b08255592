#!/usr/bin/env bash
# Forward-pass benchmark: glassbox vs Hugging Face transformers vs TransformerLens on random-weight
# checkpoints with the published configs of GPT-2 small and Qwen2.5-0.5B (made here, never committed).
#   (a) forward, logits only        glassbox `run`            vs transformers
#   (b) forward caching every hook   glassbox `run_with_cache` vs TransformerLens `run_with_cache`
#       (TransformerLens 4's TransformerBridge over the same Hugging Face model and weights)
#   (c) greedy decoding with a KV cache, tokens/s            vs transformers `generate`
# Each measurement runs in its own process (peak RSS is its own). Medians of REPS runs after a warm-up.
# usage: bench/forward/run.sh [N_TOKENS=128] [REPS=5] [NEW_TOKENS=16]   (PROFILE=release for a release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-128}; REPS=${2:-5}; NEW=${3:-16}; PROFILE=${PROFILE:-dev}
VENV=bench/.venv; OUT=bench/out; mkdir -p "$OUT"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q torch transformers transformer_lens
fi
(cd bench/forward && "../../$VENV/bin/python" make_checkpoints.py "../../$OUT/models")
if [ "$PROFILE" = release ]; then
  cargo build -q --release -p glassbox-models --example forward_bench; BIN=target/release/examples/forward_bench
else
  cargo build -q -p glassbox-models --example forward_bench; BIN=target/debug/examples/forward_bench
fi
RESULTS="$OUT/results.jsonl"; : > "$RESULTS"
# Each glassbox measurement is followed at once by its reference, so both see the same machine load.
for model in gpt2-small qwen2.5-0.5b; do
  dir="$OUT/models/$model"
  for pair in "logits hf_logits" "cache tl_cache" "decode hf_decode"; do
    set -- $pair
    "$BIN" "$dir" "$1" "$N" "$REPS" "$NEW" | sed "s/^{/{\"model\":\"$model\",/" >> "$RESULTS"
    (cd bench/forward && "../../$VENV/bin/python" bench_ref.py "../../$dir" "$model" "$2" "$N" "$REPS" "$NEW" 2>>"../../$OUT/reference.log") \
      | sed "s/^{/{\"model\":\"$model\",/" >> "$RESULTS"
  done
done
python3 bench/forward/summarize.py "$RESULTS" "$OUT/models"
