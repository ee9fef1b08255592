#!/usr/bin/env bash
# Stable-toolchain smoke fuzzing of the checkpoint parsers (safetensors header, GGUF, PyTorch
# pickle, SentencePiece model): seeded mutations of valid files, every input must be rejected or read without a
# panic. Runs FUZZ_SECONDS per parser (default 15, so the whole run stays near a minute).
# Real coverage-guided fuzzing: `cargo +nightly fuzz run gguf` in fuzz/ (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet -p glassbox-formats --example fuzz_smoke -- --seconds "${FUZZ_SECONDS:-15}" ${FUZZ_SEED:+--seed "$FUZZ_SEED"} "$@"
