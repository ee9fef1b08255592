#!/usr/bin/env bash
# f32 GEMM GFLOP/s: glassbox-kernels (each ISA path) vs gemm (candle's), faer and rten-gemm,
# against the measured FMA peak; every result checked against a naive f64 product.
# A standalone Cargo project (its own workspace, lock file and target/), release build.
# usage: bench/kernels/run.sh [kernels_bench options: --reps N --budget S --threads 1,2 --shapes MxKxN,... --only NAME,...]
# Writes bench/out/kernels.jsonl (one JSON object per measurement) and bench/out/kernels.md (the table).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=bench/out; mkdir -p "$OUT"
cargo build -q --release --manifest-path bench/kernels/Cargo.toml
bench/kernels/target/release/glassbox-kernels-bench --json "$OUT/kernels.jsonl" "$@" | tee "$OUT/kernels.md"
