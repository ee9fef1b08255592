#!/usr/bin/env bash
# The workbench under load on loopback: `glassbox serve` on the bundled reference model and on
# GPT-2 small's Q4_0 file when bench/out has it, CLIENTS clients for SECONDS seconds doing what
# the pages do (the prompt explorer's predictions, attention and lens, then the tensor table);
# every answer must be a 200. Prints p50 / p99 per route and the server's RSS before the load
# and at its peak.
# usage: bench/serve/run.sh [CLIENTS=50] [SECONDS=30]
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIENTS=${1:-50}; SECONDS_=${2:-30}
cargo build -q --release -p glassbox-cli -p glassbox-serve --example load
MODELS=(models/reference)
[ -f bench/out/models/gpt2-small/gguf/model-q4_0.gguf ] && MODELS+=(bench/out/models/gpt2-small/gguf/model-q4_0.gguf)
for model in "${MODELS[@]}"; do
  out=$(mktemp)
  target/release/glassbox serve "$model" --port 0 > "$out" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do grep -q http "$out" && break; sleep 0.1; done
  addr=$(grep -o 'http://[^/]*' "$out" | head -1 | sed 's|http://||')
  # Warm: the model loads on its first request.
  curl -s -X POST -H 'content-type: application/json' -d '{"prompt":"warm"}' "http://$addr/api/models/0/predictions" > /dev/null
  before=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  result=$(target/release/examples/load "$addr" "$CLIENTS" "$SECONDS_")
  peak=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  python3 - "$model" "$before" "$peak" "$result" <<'PY'
import json, sys
model, before, peak, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
print(f"{model}: {r['clients']} clients × {r['seconds']} s: {r['requests']} requests "
      f"({r['requests_per_s']:.0f}/s), {r['error_count']} errors{': ' + '; '.join(r['errors']) if r['errors'] else ''}")
for route, s in r["routes"].items():
    print(f"  {route:12} {s['requests']:6} requests  p50 {s['p50_ms']:8.1f} ms  p99 {s['p99_ms']:8.1f} ms")
print(f"  server RSS {before / 1024:.0f} MiB after warm-up, peak {peak / 1024:.0f} MiB")
PY
  rm -f "$out"
done
