#!/usr/bin/env bash
# Batched activation patching against patching one site per run: the same sweep
# (`patch --what resid_pre --method both`, a ~120-token prompt pair on the GPT-2 parity fixture,
# whose context is 128 positions)
# with two glassbox binaries, timed (median of 3) and with their JSON results compared.
#
# usage: [WHAT=resid_pre|attn_out|mlp_out|heads] bench/patch/run.sh OLD_GLASSBOX NEW_GLASSBOX
#   OLD_GLASSBOX: a binary from before batching (e.g. built from commit 7396c4d), NEW: this tree's.
set -euo pipefail
old="$1"; new="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
model="$root/tests/fixtures/parity/gpt2"
sentence="When Mary and John went to the store, John gave a drink to Mary."
clean=""; for _ in $(seq 1 4); do clean="$clean $sentence"; done
clean="${clean# } When Mary and John went to the store, John gave a drink to"
corrupt="${clean% John gave a drink to} Mary gave a drink to"
args=(patch "$model" --clean "$clean" --corrupt "$corrupt" --answer " Mary" --wrong " John" --what "${WHAT:-resid_pre}" --method both --json)
tokens=$("$new" run "$model" --prompt "$clean" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["input_ids"]))')
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
# time_of OUT.json BINARY ARGS...: median seconds of 3 runs; the last run's stdout to OUT.json
time_of() { python3 - "$@" <<'PY'
import subprocess, sys, time, statistics
ts = []
for _ in range(3):
    t = time.perf_counter(); out = subprocess.run(sys.argv[2:], capture_output=True, check=True); ts.append(time.perf_counter() - t)
open(sys.argv[1], "wb").write(out.stdout)
print(statistics.median(ts))
PY
}
t_old=$(time_of "$out/old.json" "$old" "${args[@]}")
t_new=$(time_of "$out/new.json" "$new" "${args[@]}")
python3 - "$out" "$t_old" "$t_new" "$tokens" "${WHAT:-resid_pre}" <<'PY'
import json, sys
out, t_old, t_new, tokens, what = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
a, b = json.load(open(out + "/old.json")), json.load(open(out + "/new.json"))
same = [r["raw"] for r in a["results"]] == [r["raw"] for r in b["results"]]
print(f"{tokens}-token prompt, {what}, activation + attribution: one site per run {t_old:.2f} s, "
      f"batched {t_new:.2f} s ({t_old / t_new:.1f}x); results identical: {same}")
PY
