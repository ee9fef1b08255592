#!/usr/bin/env bash
# Forward-pass benchmark: glassbox vs Hugging Face transformers vs TransformerLens vs llama.cpp on
# random-weight checkpoints with the published configs of GPT-2 small and Qwen2.5-0.5B (made here,
# never committed).
#   (a) forward, logits only        glassbox `run`            vs transformers          (batch 1 and 8)
#   (b) forward caching every hook   glassbox `run_with_cache` vs TransformerLens `run_with_cache`
#       (TransformerLens 4's TransformerBridge over the same Hugging Face model and weights)  (batch 1 and 8)
#   (c) greedy decoding with a KV cache, tokens/s            vs transformers `generate`
#   (d) the same greedy decoding vs llama.cpp (llama-cpp-python built from source, CPU only) on
#       the checkpoints converted to F32 and F16 GGUF (bench_llamacpp.py); against F16, glassbox
#       decodes the same weights stored in float16 as llama.cpp does: the weights stay f16 in the
#       memory map, activations are f32 (the default dtype on a float16 checkpoint)
# Each measurement runs in its own process (peak RSS is its own). Medians of REPS runs after a warm-up.
# usage: bench/forward/run.sh [N_TOKENS=128] [REPS=5] [NEW_TOKENS=16]
#   env: PROFILE=release    release build of forward_bench (default: dev profile)
#        FORWARD_BENCH=PATH use this forward_bench binary, build nothing
#        BATCHES="1 8"      batch sizes for (a) and (b); decoding always runs one sequence
#        LLAMACPP=0         skip (d); otherwise llama-cpp-python is built into bench/.venv if missing
#        LLAMACPP_TYPES="f32 f16"
#        AVX2=0|1           also run (a) and (b) on glassbox's AVX2 path (`GLASSBOX_ISA=avx2`), as
#                           on a machine without AVX-512 (default: 1 where the CPU has AVX-512).
#                           The anchors keep whatever their libraries pick on this CPU, so these
#                           rows bound what an AVX2-only machine of the same speed would show.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-128}; REPS=${2:-5}; NEW=${3:-16}; PROFILE=${PROFILE:-dev}
BATCHES=${BATCHES:-1 8}; LLAMACPP=${LLAMACPP:-1}; LLAMACPP_TYPES=${LLAMACPP_TYPES:-f32 f16}
if [ -z "${AVX2:-}" ]; then AVX2=0; grep -qw avx512f /proc/cpuinfo 2>/dev/null && AVX2=1; fi
VENV=bench/.venv; OUT=bench/out; mkdir -p "$OUT"
PY="$PWD/$VENV/bin/python"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q torch transformers transformer_lens
fi
if [ "$LLAMACPP" != 0 ] && ! "$PY" -c "import llama_cpp" 2>/dev/null; then
  # From the source distribution (no prebuilt wheel), CPU only, tuned for this CPU (-march=native).
  echo "building llama-cpp-python from source (CPU only; ~20 min on 2 cores)" >&2
  "$VENV/bin/pip" install -q cmake scikit-build-core ninja
  CMAKE_ARGS="-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENCL=OFF -DGGML_HIP=OFF -DGGML_SYCL=OFF -DGGML_BLAS=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) FORCE_CMAKE=1 \
    "$VENV/bin/pip" install -q --no-build-isolation --no-binary llama-cpp-python llama-cpp-python \
    || { echo "llama-cpp-python build failed: skipping llama.cpp (see pip's output above)" >&2; LLAMACPP=0; }
fi
(cd bench/forward && "$PY" make_checkpoints.py "../../$OUT/models")
if [ -n "${FORWARD_BENCH:-}" ]; then
  BIN=$FORWARD_BENCH
elif [ "$PROFILE" = release ]; then
  cargo build -q --release -p glassbox-models --example forward_bench; BIN=target/release/examples/forward_bench
else
  cargo build -q -p glassbox-models --example forward_bench; BIN=target/debug/examples/forward_bench
fi
RESULTS="$OUT/results.jsonl"; : > "$RESULTS"
tag() { sed "s/^{/{\"model\":\"$1\",/"; }
ref() { (cd bench/forward && "$PY" "$@" 2>>"../../$OUT/reference.log"); }
# Each glassbox measurement is followed at once by its reference, so both see the same machine load.
for model in gpt2-small qwen2.5-0.5b; do
  dir="$OUT/models/$model"
  for batch in $BATCHES; do
    for pair in "logits hf_logits" "cache tl_cache"; do
      set -- $pair
      "$BIN" "$dir" "$1" "$N" "$REPS" "$NEW" "$batch" | tag "$model" >> "$RESULTS"
      if [ "$AVX2" = 1 ]; then
        GLASSBOX_ISA=avx2 "$BIN" "$dir" "$1" "$N" "$REPS" "$NEW" "$batch" \
          | sed "s/\"mode\":\"$1\"/\"mode\":\"$1_avx2\"/" | tag "$model" >> "$RESULTS"
      fi
      ref bench_ref.py "../../$dir" "$model" "$2" "$N" "$REPS" "$NEW" "$batch" | tag "$model" >> "$RESULTS"
    done
  done
  "$BIN" "$dir" decode "$N" "$REPS" "$NEW" 1 | tag "$model" >> "$RESULTS"
  ref bench_ref.py "../../$dir" "$model" hf_decode "$N" "$REPS" "$NEW" 1 | tag "$model" >> "$RESULTS"
  if [ "$LLAMACPP" != 0 ]; then
    for t in $LLAMACPP_TYPES; do
      ref bench_llamacpp.py convert "../../$dir" "$t" > /dev/null
      ref bench_llamacpp.py "../../$dir" "$model" "$t" "$N" "$REPS" "$NEW" | tag "$model" >> "$RESULTS"
      if [ "$t" = f16 ]; then
        "$BIN" "$dir-f16" decode "$N" "$REPS" "$NEW" 1 \
          | sed 's/"mode":"decode"/"mode":"decode_f16"/' | tag "$model" >> "$RESULTS"
      fi
    done
  fi
done
python3 bench/forward/summarize.py "$RESULTS" "$OUT/models"
