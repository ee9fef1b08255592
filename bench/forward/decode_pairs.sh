#!/usr/bin/env bash
# Greedy decoding, glassbox against llama.cpp, pair by pair: PAIRS back-to-back pairs of
# processes (the order alternating), each side decoding NEW tokens after the 128-token prompt
# as in run.sh (c)/(d) (medians of REPS after a warm-up, prefill excluded). A decoding step
# streams every weight at memory bandwidth, which on a shared 2-core VM drifts by 20–40 %
# within minutes; the ratio within a pair moves far less than either side alone, so the
# median ratio and its quartiles are what this prints (one JSON line per pair, then a summary).
# Needs what run.sh makes: the checkpoints in bench/out/models, their GGUF files, bench/.venv
# with llama-cpp-python.
# usage: bench/forward/decode_pairs.sh MODEL [TYPE=f32|f16] [NEW=32] [PAIRS=8] [REPS=5]
#   env: FORWARD_BENCH=PATH  the forward_bench binary (default: the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:?usage: decode_pairs.sh MODEL [TYPE] [NEW] [PAIRS] [REPS]}
TYPE=${2:-f32}; NEW=${3:-32}; PAIRS=${4:-8}; REPS=${5:-5}
BIN=${FORWARD_BENCH:-target/release/examples/forward_bench}
[ -n "${FORWARD_BENCH:-}" ] || cargo build -q --release -p glassbox-models --example forward_bench
DIR="bench/out/models/$MODEL"
PY="$PWD/bench/.venv/bin/python"
case "$TYPE" in
  f32) glassbox() { "$BIN" "$DIR" decode 128 "$REPS" "$NEW" 1; } ;;
  f16) glassbox() { "$BIN" "$DIR-f16" decode 128 "$REPS" "$NEW" 1; } ;;
  *) echo "TYPE: f32 or f16" >&2; exit 2 ;;
esac
llamacpp() { (cd bench/forward && "$PY" bench_llamacpp.py "../../$DIR" "$MODEL" "$TYPE" 128 "$REPS" "$NEW"); }
value() { "$PY" -c 'import json, sys; print(json.loads(sys.stdin.read())["value"])'; }
(cd bench/forward && "$PY" bench_llamacpp.py convert "../../$DIR" "$TYPE" > /dev/null)
ratios=()
for i in $(seq 1 "$PAIRS"); do
  if [ $((i % 2)) = 1 ]; then g=$(glassbox | value); l=$(llamacpp | value)
  else l=$(llamacpp | value); g=$(glassbox | value); fi
  r=$("$PY" -c "print(round($g / $l, 3))")
  ratios+=("$r")
  echo "{\"model\":\"$MODEL\",\"type\":\"$TYPE\",\"new\":$NEW,\"pair\":$i,\"glassbox_tok_s\":$g,\"llamacpp_tok_s\":$l,\"ratio\":$r}"
done
"$PY" - "$MODEL" "$TYPE" "$NEW" "${ratios[@]}" <<'EOF'
import statistics, sys
model, kind, new, ratios = sys.argv[1], sys.argv[2], sys.argv[3], sorted(map(float, sys.argv[4:]))
q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
print(f"{model} {kind} decode, {new} new tokens, {len(ratios)} pairs: glassbox / llama.cpp "
      f"median {statistics.median(ratios):.2f}x (quartiles {q[0]:.2f}-{q[2]:.2f}; "
      f"{sum(r >= 1 for r in ratios)} of {len(ratios)} pairs >= 1)")
EOF
