#!/usr/bin/env python3
"""The tables of bench/python/run.sh: per measurement the median over rounds of each round's
median, the largest peak RSS, and the ratios the issue asks for; then, from the paired file if
given, the call-by-call comparisons (the median ratio of adjacent pairs, its quartiles).
usage: summarize.py RESULTS.jsonl [PAIRED.jsonl]"""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = defaultdict(list)
for r in rows:
    by[(r["impl"], r["mode"])].append(r)


def cell(impl, mode):
    rs = by.get((impl, mode))
    if not rs:
        return None, None
    return statistics.median(r["value"] for r in rs), max(r["peak_rss_mb"] for r in rs)


n = rows[0]["tokens"]
py_cache, py_cache_rss = cell("glassbox-python", "glassbox_cache")
rs_cache, rs_cache_rss = cell("glassbox", "cache")
tl_cache, tl_cache_rss = cell("tl", "tl_cache")
tl3_cache, tl3_cache_rss = cell("tl3", "tl3_cache")
py_logits, py_logits_rss = cell("glassbox-python", "glassbox_logits")
rs_logits, rs_logits_rss = cell("glassbox", "logits")
rounds = len(by[("glassbox-python", "glassbox_cache")])
print(f"GPT-2 small (random weights), 1×{n} tokens, {rounds} rounds; medians in ms; peak RSS in MiB")
print(f"| measurement | glassbox from Python | other | ratio | peak RSS (Python / other) |")
print(f"|---|---|---|---|---|")
print(f"| run_with_cache, every hook, vs TransformerLens 4 | {py_cache:.1f} | {tl_cache:.1f} | {tl_cache / py_cache:.2f}× faster | {py_cache_rss:.0f} / {tl_cache_rss:.0f} |")
print(f"| run_with_cache, every hook, vs TransformerLens 3 (HookedTransformer) | {py_cache:.1f} | {tl3_cache:.1f} | {tl3_cache / py_cache:.2f}× faster | {py_cache_rss:.0f} / {tl3_cache_rss:.0f} |")
print(f"| run_with_cache, every hook, vs the Rust library | {py_cache:.1f} | {rs_cache:.1f} | {py_cache / rs_cache - 1:+.1%} time | {py_cache_rss:.0f} / {rs_cache_rss:.0f} |")
print(f"| forward, logits, vs the Rust library | {py_logits:.1f} | {rs_logits:.1f} | {py_logits / rs_logits - 1:+.1%} time | {py_logits_rss:.0f} / {rs_logits_rss:.0f} |")

if len(sys.argv) > 2:
    paired = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
    names = {"tl3_cache": "TransformerLens 3 (HookedTransformer)", "tl4_cache": "TransformerLens 4"}
    print()
    print("Call by call in one process (glassbox from Python, then the other, in turn, each after a 0.1 s pause):")
    print("| run_with_cache, every hook, vs | pairs | glassbox median | other median | ratio: median of pairs [quartiles] | minima (glassbox / other) |")
    print("|---|---|---|---|---|---|")
    for p in paired:
        print(f"| {names.get(p['mode'], p['mode'])} | {p['pairs']} | {p['glassbox_ms']:.1f} | {p['other_ms']:.1f} | "
              f"{p['ratio']:.2f}× [{p['ratio_q1']:.2f}–{p['ratio_q3']:.2f}] | {p['glassbox_min_ms']:.1f} / {p['other_min_ms']:.1f} |")
