#!/usr/bin/env python3
"""glassbox's `run_with_cache` from Python and TransformerLens' in one process, call by call in
turn, so that both see the same machine. On a shared 2-core machine whose speed drifts with its
neighbours' load, the medians of separate processes taken minutes apart moved by up to 2× between
rounds; the ratio within each adjacent pair of calls does not depend on that drift. (Peak RSS stays
with the per-process measurements: both models live here.) Each call follows a 0.1 s pause, so that
neither library's idle worker threads still spin during the other's call, and the order alternates.
usage: bench_paired.py MODEL_DIR (tl3|tl4|hf) N_TOKENS PAIRS [BATCH]
  tl3 runs under bench/.venv-tl3 (TransformerLens 3.9 over bench/.venv, glassbox included);
  tl4 under bench/.venv (TransformerLens 4's TransformerBridge over the transformers model);
  hf under bench/.venv: the logits-only forward pass, `model(tokens)` against transformers'
  `model(input_ids=…)`, BATCH rows (1 by default).
Prints one JSON line: both medians, the median ratio of the pairs and its quartiles, both minima."""
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "forward"))
from models import token_ids  # noqa: E402

import glassbox  # noqa: E402

model_dir, which, n, pairs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 1
torch.set_grad_enabled(False)
if which == "tl3":
    sys.path.insert(0, here)
    from bench_tl3 import build  # noqa: E402

    other = build(model_dir)
elif which == "hf":
    import transformers as tf

    other = tf.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
elif which == "tl4":
    import transformers as tf
    from transformer_lens.model_bridge import TransformerBridge

    hf = tf.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
    tok = tf.PreTrainedTokenizerFast(tokenizer_file=os.path.join(here, "..", "..", "tests/fixtures/parity/gpt2/tokenizer.json"))
    other = TransformerBridge.boot_transformers(model_dir, hf_model=hf, tokenizer=tok)
else:
    raise SystemExit(f"unknown reference {which} (tl3, tl4 or hf)")
model = glassbox.load(model_dir)
ids = np.array([token_ids(n, model.cfg.d_vocab, b) for b in range(batch)], dtype=np.int64)
torch_ids = torch.tensor(ids)


def ours():
    if which == "hf":
        model(ids)
        return
    _, cache = model.run_with_cache(ids)
    del cache


def theirs():
    if which == "hf":
        other(input_ids=torch_ids, use_cache=False)
        return
    _, cache = other.run_with_cache(torch_ids)
    del cache


def timed(fn) -> float:
    time.sleep(0.1)
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


mine, refs = [], []
for i in range(pairs + 1):  # the first pair warms both up
    if i % 2 == 0:
        a, b = timed(ours), timed(theirs)
    else:
        b, a = timed(theirs), timed(ours)
    if i > 0:
        mine.append(a)
        refs.append(b)
ratios = sorted(r / m for m, r in zip(mine, refs))
q = statistics.quantiles(ratios, n=4)
mode = "hf_logits" if which == "hf" else f"{which}_cache"
print(json.dumps({"impl": "paired", "mode": mode, "tokens": n, "batch": batch, "model": os.path.basename(os.path.normpath(model_dir)), "pairs": pairs,
                  "glassbox_ms": statistics.median(mine), "other_ms": statistics.median(refs),
                  "ratio": statistics.median(ratios), "ratio_q1": q[0], "ratio_q3": q[2],
                  "glassbox_min_ms": min(mine), "other_min_ms": min(refs)}))
