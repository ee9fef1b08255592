#!/usr/bin/env python3
"""Prints the benchmark table from results.jsonl.  usage: summarize.py RESULTS MODELS_DIR"""
import json, os, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
get = lambda m, mode: next((r for r in rows if r["model"] == m and r["mode"] == mode), None)
print(f"| model | measurement | glassbox | reference | ratio (ref/glassbox) | glassbox peak RSS | reference peak RSS |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for m in sorted({r["model"] for r in rows}):
    weights = os.path.getsize(os.path.join(sys.argv[2], m, "model.safetensors")) / 2**20
    for ours, ref, label in [("logits", "hf_logits", "(a) logits, vs transformers"),
                             ("cache", "tl_cache", "(b) cache every hook, vs TransformerLens"),
                             ("decode", "hf_decode", "(c) greedy decode, vs transformers")]:
        a, b = get(m, ours), get(m, ref)
        if not a or not b:
            continue
        unit = a["unit"]
        ratio = b["value"] / a["value"] if unit == "ms" else a["value"] / b["value"]
        extra = f" (+{a['activations_mb']:.0f} MiB cached; TL {b['activations_mb']:.0f})" if ours == "cache" else ""
        print(f"| {m} ({weights:.0f} MiB f32) | {label} | {a['value']:.1f} {unit} | {b['value']:.1f} {unit} | "
              f"{ratio:.2f}x | {a['peak_rss_mb']:.0f} MiB{extra} | {b['peak_rss_mb']:.0f} MiB |")
