#!/usr/bin/env bash
# SAE training throughput, side by side in one run: glassbox's trainer vs SAELens's (same
# activations, architecture, widths, batch, learning rate, thread count), with peak RSS.
# usage: bench/sae/run.sh [ARCH=topk] [D_IN=768] [D_SAE=6144] [K=32] [BATCH=4096] [STEPS=20]
# needs bench/.venv-sae (SAELens 6; see bench/README or the fixture generators). Appends JSON
# lines to bench/out/sae.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${1:-topk}; D_IN=${2:-768}; D_SAE=${3:-6144}; K=${4:-32}; BATCH=${5:-4096}; STEPS=${6:-20}; LR=3e-4
mkdir -p bench/out
ACTS=bench/out/sae-acts-$D_IN.safetensors
if [ ! -f "$ACTS" ]; then
  bench/.venv-sae/bin/python - "$ACTS" "$D_IN" <<'PY'
import sys, torch
from safetensors.torch import save_file
g = torch.Generator().manual_seed(0)
d = int(sys.argv[2]); n = 65536
dirs = torch.randn(4 * d, d, generator=g); dirs /= dirs.norm(dim=-1, keepdim=True)
coef = torch.rand(n, 4 * d, generator=g) * (torch.rand(n, 4 * d, generator=g) < 16 / (4 * d))
save_file({"acts": (coef @ dirs + 0.05 * torch.randn(n, d, generator=g)).contiguous()}, sys.argv[1])
PY
fi
cargo build -q --release -p glassbox-features --example sae_train_speed
rss() { grep "Maximum resident" "$1" | awk '{print $6}'; }
/usr/bin/time -v target/release/examples/sae_train_speed "$ACTS" "$ARCH" "$D_SAE" "$K" "$BATCH" "$STEPS" "$LR" \
  > bench/out/sae-glassbox.json 2> bench/out/sae-glassbox.time
/usr/bin/time -v bench/.venv-sae/bin/python bench/sae/bench_saelens.py "$ACTS" "$ARCH" "$D_SAE" "$K" "$BATCH" "$STEPS" "$LR" \
  > bench/out/sae-saelens.json 2> bench/out/sae-saelens.time
G=$(cat bench/out/sae-glassbox.json); S=$(cat bench/out/sae-saelens.json)
python3 - "$G" "$S" "$(rss bench/out/sae-glassbox.time)" "$(rss bench/out/sae-saelens.time)" "$ARCH" "$D_IN" "$D_SAE" "$K" "$BATCH" "$STEPS" <<'PY'
import json, sys
g, s = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rg, rs = int(sys.argv[3]), int(sys.argv[4])
arch, d_in, d_sae, k, batch, steps = sys.argv[5:11]
ratio = g["tokens_per_s"] / s["tokens_per_s"]
print(f"{arch} d_in {d_in} d_sae {d_sae} k {k} batch {batch}, {steps} steps")
print(f"  glassbox {g['tokens_per_s']:>10.0f} tokens/s  peak RSS {rg/1024:7.0f} MiB  mse {g['mse_loss']:.4f}")
print(f"  SAELens  {s['tokens_per_s']:>10.0f} tokens/s  peak RSS {rs/1024:7.0f} MiB  mse {s['mse_loss']:.4f}  (torch threads {s['torch_threads']})")
print(f"  ratio {ratio:.2f}x")
line = {"arch": arch, "d_in": int(d_in), "d_sae": int(d_sae), "k": int(k), "batch": int(batch), "steps": int(steps),
        "glassbox": g, "saelens": s, "rss_kib": {"glassbox": rg, "saelens": rs}, "ratio": round(ratio, 3)}
open("bench/out/sae.jsonl", "a").write(json.dumps(line) + "\n")
PY
