#!/usr/bin/env python3
"""Prints the benchmark table from results.jsonl.  usage: summarize.py RESULTS MODELS_DIR"""
import json, os, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
get = lambda m, mode, b: next((r for r in rows if r["model"] == m and r["mode"] == mode and r.get("batch", 1) == b), None)
print(f"| model | measurement | glassbox | reference | ratio (ref/glassbox) | glassbox peak RSS | reference peak RSS |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for m in sorted({r["model"] for r in rows}):
    weights = os.path.getsize(os.path.join(sys.argv[2], m, "model.safetensors")) / 2**20
    batches = sorted({r.get("batch", 1) for r in rows if r["model"] == m})
    pairs = [(b, "logits", "hf_logits", "(a) logits, vs transformers") for b in batches]
    pairs += [(b, "cache", "tl_cache", "(b) cache every hook, vs TransformerLens") for b in batches]
    pairs += [(b, "logits_avx2", "hf_logits", "(a) logits, glassbox's AVX2 path, vs transformers") for b in batches]
    pairs += [(b, "cache_avx2", "tl_cache", "(b) cache every hook, glassbox's AVX2 path, vs TransformerLens") for b in batches]
    pairs += [(1, "decode", "hf_decode", "(c) greedy decode, vs transformers"),
              (1, "decode", "llamacpp_decode_f32", "(d) greedy decode, vs llama.cpp F32 GGUF"),
              (1, "decode_f16", "llamacpp_decode_f16", "(d) greedy decode, f16 weights, vs llama.cpp F16 GGUF")]
    for b, ours, ref, label in pairs:
        a, r = get(m, ours, b), get(m, ref, b)
        if not a or not r:
            continue
        unit = a["unit"]
        ratio = r["value"] / a["value"] if unit == "ms" else a["value"] / r["value"]
        extra = f" (+{a['activations_mb']:.0f} MiB cached; TL {r['activations_mb']:.0f})" if ours.startswith("cache") else ""
        shape = f"{b}×{a['tokens']}" if ours != "decode" else f"1×{a['tokens']}+new"
        print(f"| {m} ({weights:.0f} MiB f32) | {label}, {shape} | {a['value']:.1f} {unit} | {r['value']:.1f} {unit} | "
              f"{ratio:.2f}x | {a['peak_rss_mb']:.0f} MiB{extra} | {r['peak_rss_mb']:.0f} MiB |")
