#!/usr/bin/env bash
# Quantized files, side by side with llama.cpp (llama-cpp-python built from source, CPU only):
#   (a) greedy decode tokens/s on the same Q8_0 / Q4_0 / Q4_K_M files (made from the F32 GGUF by
#       llama.cpp's own quantizer), glassbox under its default llama.cpp numerics, 2 threads each
#   (b) what opening and running a 7B-shaped Q4_K_M file costs in memory (make_sparse_gguf.py:
#       Llama-2-7B's shapes and tensor types, every weight a hole in a sparse file): peak RSS of
#       `glassbox run` against the file's size
# Each measurement is its own process; medians of REPS after a warm-up; ratios at the end.
# usage: bench/quant/run.sh [N_TOKENS=128] [REPS=5] [NEW_TOKENS=16]
#   env: MODELS="gpt2-small qwen2.5-0.5b"  TYPES="q8_0 q4_0 q4_k_m"  SPARSE=1 (0 skips (b))
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-128}; REPS=${2:-5}; NEW=${3:-16}
MODELS=${MODELS:-gpt2-small qwen2.5-0.5b}; TYPES=${TYPES:-q8_0 q4_0 q4_k_m}; SPARSE=${SPARSE:-1}
OUT=bench/out; PY="$PWD/bench/.venv/bin/python"
"$PY" -c "import llama_cpp" || { echo "bench/.venv lacks llama_cpp: run bench/forward/run.sh once" >&2; exit 1; }
(cd bench/forward && "$PY" make_checkpoints.py "../../$OUT/models")
cargo build -q --release -p glassbox-models --example forward_bench
cargo build -q --release -p glassbox-cli
BIN=target/release/examples/forward_bench
RESULTS="$OUT/quant.jsonl"; : > "$RESULTS"
for model in $MODELS; do
  dir="$OUT/models/$model"
  for t in $TYPES; do
    gguf=$(cd bench/forward && "$PY" bench_llamacpp.py convert "../../$dir" "$t" 2>/dev/null)
    # glassbox at 2 threads, as llama.cpp below.
    RAYON_NUM_THREADS=2 "$BIN" "$gguf" decode "$N" "$REPS" "$NEW" 1 \
      | sed "s/^{/{\"model\":\"$model\",\"type\":\"$t\",/" >> "$RESULTS"
    (cd bench/forward && "$PY" bench_llamacpp.py "../../$dir" "$model" "$t" "$N" "$REPS" "$NEW" 2 2>/dev/null) \
      | sed "s/^{/{\"model\":\"$model\",\"type\":\"$t\",/" >> "$RESULTS"
  done
done
python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'model':14} {'type':7} {'glassbox tok/s':>15} {'llama.cpp tok/s':>16} {'ratio':>6} {'RSS MiB (gb/ll)':>16}")
for g in (r for r in rows if r["impl"] == "glassbox"):
    l = next(r for r in rows if r["impl"] == "llamacpp" and r["model"] == g["model"] and r["type"] == g["type"])
    print(f"{g['model']:14} {g['type']:7} {g['value']:15.1f} {l['value']:16.1f} {g['value'] / l['value']:6.2f} "
          f"{g['peak_rss_mb']:7.0f}/{l['peak_rss_mb']:.0f}")
PY
if [ "$SPARSE" != 0 ]; then
  sparse=$(mktemp -d)/sparse-7b-q4_k_m.gguf
  "$PY" bench/quant/make_sparse_gguf.py "$sparse"
  for numerics in llamacpp f32; do
    /usr/bin/time -f "%M" -o "$sparse.rss" target/release/glassbox run "$sparse" --numerics "$numerics" \
      --prompt "The capital of France is" > /dev/null
    python3 -c "import os,sys; f=os.path.getsize(sys.argv[1]); r=int(open(sys.argv[2]).read().split()[-1])*1024; \
print(f'7B-shaped Q4_K_M ({sys.argv[3]}): file {f/2**30:.2f} GiB, peak RSS {r/2**30:.2f} GiB ({r/f:.2f} × the file)')" \
      "$sparse" "$sparse.rss" "$numerics"
  done
  rm -rf "$(dirname "$sparse")"
fi
