#!/usr/bin/env bash
# The whole SAE pipeline, side by side: glassbox (`cache` then `sae train`, two processes)
# against SAELens's own `LanguageModelSAETrainingRunner` (activations generated as it trains),
# on the same random-weight GPT-2 small (bench/forward/make_checkpoints.py), the same token rows,
# hook, TopK SAE, batch and token budget. Wall time of each whole pipeline, tokens/s, peak RSS.
# usage: bench/sae/pipeline.sh [TOKENS=81920] [HOOK=blocks.6.hook_resid_post]
set -euo pipefail
cd "$(dirname "$0")/../.."
TOKENS=${1:-81920}; HOOK=${2:-blocks.6.hook_resid_post}; CTX=128; BATCH=4096; D_SAE=6144; K=32
MODEL=bench/out/models/gpt2-small
mkdir -p bench/out
[ -f "$MODEL/model.safetensors" ] || bench/.venv/bin/python bench/forward/make_checkpoints.py bench/out/models
ROWS=$(( TOKENS / CTX ))
TOK=bench/out/sae-pipeline-tokens.safetensors
bench/.venv-sae/bin/python -c "
import torch; from safetensors.torch import save_file
g = torch.Generator().manual_seed(0)
save_file({'tokens': torch.randint(0, 50257, ($ROWS, $CTX), generator=g)}, '$TOK')"
cargo build -q --release -p glassbox-cli
rm -rf bench/out/sae-pipeline-store bench/out/sae-pipeline-sae
start=$(date +%s.%N)
/usr/bin/time -v target/release/glassbox cache "$MODEL" --hooks "$HOOK" --tokens "$TOK" --batch-size 8 \
  --shard-rows 64 --out bench/out/sae-pipeline-store 2> bench/out/sae-pipeline-cache.time
/usr/bin/time -v target/release/glassbox sae train "$MODEL" --hook "$HOOK" --cache bench/out/sae-pipeline-store \
  --arch topk --k $K --d-sae $D_SAE --train-batch-size-tokens $BATCH --training-tokens $TOKENS \
  --n-batches-in-buffer 64 --out bench/out/sae-pipeline-sae 2> bench/out/sae-pipeline-train.time
end=$(date +%s.%N)
G=$(python3 -c "print($end - $start)")
/usr/bin/time -v bench/.venv-sae/bin/python bench/sae/pipeline_saelens.py "$MODEL" "$TOK" "$HOOK" $BATCH $D_SAE $K $TOKENS \
  > bench/out/sae-pipeline-saelens.json 2> bench/out/sae-pipeline-saelens.time
python3 - "$G" "$TOKENS" <<'PY'
import json, re, sys
g, tokens = float(sys.argv[1]), int(sys.argv[2])
rss = lambda f: int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f).read()).group(1)) // 1024
s = json.load(open("bench/out/sae-pipeline-saelens.json"))
gr = max(rss("bench/out/sae-pipeline-cache.time"), rss("bench/out/sae-pipeline-train.time"))
print(f"pipeline, {tokens} tokens: glassbox cache + train {g:.1f} s ({tokens / g:.0f} tokens/s, peak RSS {gr} MiB)")
print(f"  SAELens runner {s['seconds']:.1f} s ({tokens / s['seconds']:.0f} tokens/s, peak RSS {rss('bench/out/sae-pipeline-saelens.time')} MiB)")
print(f"  ratio {s['seconds'] / g:.2f}x")
open("bench/out/sae.jsonl", "a").write(json.dumps({"pipeline": True, "tokens": tokens, "glassbox_s": g, "saelens_s": s["seconds"],
    "rss_mib": {"glassbox": gr, "saelens": rss("bench/out/sae-pipeline-saelens.time")}}) + "\n")
PY
