#!/usr/bin/env bash
# Training throughput, side by side: `glassbox train` vs PyTorch (transformers' LlamaForCausalLM,
# same architecture, batch, sequence length, AdamW and thread count) on recipes/reference.toml.
# usage: bench/train/run.sh [STEPS=200] [RECIPE=recipes/reference.toml]
#   env: GLASSBOX_BIN=PATH  time this binary and build nothing (default: one release build of
#                           glassbox-cli, then target/release/glassbox)
# Prints tokens/s of each and the ratio; appends a JSON line to bench/out/train.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${1:-200}; RECIPE=${2:-recipes/reference.toml}
mkdir -p bench/out
if [ -z "${GLASSBOX_BIN:-}" ]; then
  cargo build -q --release -p glassbox-cli; GLASSBOX_BIN=target/release/glassbox
fi
bench/.venv/bin/python bench/train/bench_train.py --recipe "$RECIPE" --steps "$STEPS" --bin "$GLASSBOX_BIN" \
  --json bench/out/train.jsonl
