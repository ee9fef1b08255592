#!/usr/bin/env python3
"""One measurement per process (so peak RSS is that measurement's own), from Python.
usage: bench_python.py MODEL_DIR (glassbox_cache|glassbox_logits) N_TOKENS REPS [BATCH]
Token ids as bench/forward/models.py and forward_bench.rs make them. Prints one JSON line:
median milliseconds over REPS runs after a warm-up, peak RSS, cached activation MiB."""
import json
import resource
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/forward")
from models import token_ids  # noqa: E402

import glassbox  # noqa: E402

model_dir, mode, n, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 1
model = glassbox.load(model_dir)
ids = np.array([token_ids(n, model.cfg.d_vocab, b) for b in range(batch)], dtype=np.int64)
times, act_mb = [], 0.0
for rep in range(reps + 1):
    t = time.perf_counter()
    if mode == "glassbox_cache":
        _, cache = model.run_with_cache(ids)
        act_mb = sum(a.nbytes for a in cache.values()) / 1048576
        del cache
    elif mode == "glassbox_logits":
        model(ids)
    else:
        raise SystemExit(f"unknown mode {mode}")
    if rep > 0:
        times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"impl": "glassbox-python", "mode": mode, "tokens": n, "batch": batch,
                  "value": statistics.median(times), "unit": "ms",
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "activations_mb": act_mb}))
