#!/usr/bin/env python3
"""The reference for `glassbox inspect --stats`: the same per-tensor statistics with NumPy on
tensors loaded by the `safetensors` package. f64 accumulation, as glassbox does.

usage: stats_numpy.py FILE.safetensors [--f32]  → prints GB/s (stdout, and a line on stderr).
--f32 accumulates in float32 as plain NumPy code would (faster, less accurate)."""
import sys, time
import numpy as np
from safetensors import safe_open

path = sys.argv[1]
accumulate = np.float32 if "--f32" in sys.argv[2:] else np.float64
start = time.perf_counter()
total, checksum = 0, 0.0
with safe_open(path, framework="np") as f:
    for name in f.keys():
        x = f.get_tensor(name)
        total += x.nbytes
        finite = np.isfinite(x)
        nan = int(np.isnan(x).sum())
        inf = int(x.size - finite.sum() - nan)
        v = (x[finite] if nan or inf else x).astype(accumulate).ravel()
        mean = v.mean()
        std = v.std()
        lo, hi = float(v.min()), float(v.max())
        l2 = float(np.sqrt(np.dot(v, v)))
        zeros = int((x == 0).sum())
        checksum += mean + std + lo + hi + l2 + zeros
seconds = time.perf_counter() - start
print(f"numpy: {total / 1e9:.2f} GB in {seconds:.2f} s = {total / 1e9 / seconds:.2f} GB/s", file=sys.stderr)
print(f"{total / 1e9 / seconds:.4f}")
