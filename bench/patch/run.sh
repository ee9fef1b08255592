#!/usr/bin/env bash
# Activation patching's speed: the sweep `patch --what resid_pre --method both` over a 217-token
# prompt pair on a GPT-2 with hidden size 128 (3 layers, 256 positions; bench/patch/make_model.py),
# run by two glassbox binaries, timed (median of 3, each run its own process) and with their
# JSON results compared number for number.
#
# usage: [WHAT=resid_pre|attn_out|mlp_out|heads] [PAIR=minimal|early] bench/patch/run.sh OLD NEW
#   OLD_GLASSBOX: e.g. a binary built from commit 7396c4d (one site per full pass), NEW: this tree's.
set -euo pipefail
old="$1"; new="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
model="$out/gpt2-128"
python3 "$root/bench/patch/make_model.py" "$model" > /dev/null
count() { "$new" run "$model" --prompt "$1" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["input_ids"]))'; }
sentence="When Mary and John went to the store, John gave a drink to Mary."
body=""; for _ in $(seq 1 8); do body="$body $sentence"; done
# pad with one-token words to exactly 217 tokens
while [ "$(count "${body# } When Mary and John went to the store, John gave a drink to")" -lt 217 ]; do body="$body and"; done
clean="${body# } When Mary and John went to the store, John gave a drink to"
# PAIR=minimal (default): the prompts differ in the one name near the end, as in the issue;
# PAIR=early: they also differ in the first sentence, so that almost every site must be rerun
# (sites where the two runs agree bit for bit need no pass).
case "${PAIR:-minimal}" in
  minimal) corrupt="${body# } When Mary and John went to the store, Mary gave a drink to" ;;
  early) corrupt="When John and Mary went to the store, John gave a drink to Mary.${body#*Mary.} When Mary and John went to the store, Mary gave a drink to" ;;
esac
tokens=$(count "$clean")
[ "$(count "$corrupt")" = "$tokens" ] || { echo "the prompts' token counts differ" >&2; exit 1; }
args=(patch "$model" --clean "$clean" --corrupt "$corrupt" --answer " Mary" --wrong " John" --what "${WHAT:-resid_pre}" --method both --json)
# time_of OUT.json BINARY ARGS...: median seconds of 3 runs and the peak RSS (MiB) of the
# last; the last run's stdout to OUT.json
time_of() { python3 - "$@" <<'PY'
import resource, statistics, subprocess, sys, time
ts = []
for _ in range(3):
    t = time.perf_counter(); out = subprocess.run(sys.argv[2:], capture_output=True, check=True); ts.append(time.perf_counter() - t)
open(sys.argv[1], "wb").write(out.stdout)
print(statistics.median(ts), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
PY
}
read -r t_old m_old < <(time_of "$out/old.json" "$old" "${args[@]}")
read -r t_new m_new < <(time_of "$out/new.json" "$new" "${args[@]}")
python3 - "$out" "$t_old" "$t_new" "$tokens" "${WHAT:-resid_pre} (${PAIR:-minimal} pair)" "$m_old" "$m_new" <<'PY'
import json, sys
out, t_old, t_new, tokens, what, m_old, m_new = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], float(sys.argv[6]), float(sys.argv[7])
a, b = json.load(open(out + "/old.json")), json.load(open(out + "/new.json"))
def cells(doc, method):
    return [r["raw"] for r in doc["results"] if r["method"] == method]
same = {m: cells(a, m) == cells(b, m) for m in ("activation", "attribution")}
print(f"{tokens}-token prompt, {what}, activation + attribution patching: old {t_old:.2f} s, new {t_new:.2f} s "
      f"({t_old / t_new:.1f}x); peak RSS {m_old:.0f} / {m_new:.0f} MiB; identical results: {same}")
PY
