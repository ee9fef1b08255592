#!/usr/bin/env python3
"""Writes a large F32/F16 safetensors file *streaming* (never holding it in memory), for the
`glassbox inspect --stats` memory and throughput benchmarks. Standard library only.

usage: make_big_safetensors.py OUT SIZE_GB [--dtype F32|F16] [--dense-every K]

Tensors are [8192, 8192] (256 MiB in F32). With --dense-every K only one 4 MiB block in K
holds data and the rest is a hole (a sparse file: a multi-GB file costs no disk); K=1 writes
every block (realistic for throughput)."""
import argparse, json, os, random, struct

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("size_gb", type=float)
p.add_argument("--dtype", default="F32", choices=["F32", "F16"])
p.add_argument("--dense-every", type=int, default=1)
a = p.parse_args()

item = 4 if a.dtype == "F32" else 2
rows = cols = 8192
tensor_bytes = rows * cols * item
count = max(1, int(a.size_gb * 1e9 // tensor_bytes))
header, offset = {}, 0
for i in range(count):
    header[f"model.layers.{i}.mlp.up_proj.weight"] = {
        "dtype": a.dtype, "shape": [rows, cols], "data_offsets": [offset, offset + tensor_bytes]}
    offset += tensor_bytes
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned, as the reference writer does

BLOCK = 4 << 20
rng = random.Random(0)
fmt = "<%d%s" % (BLOCK // item, "f" if item == 4 else "e")
pool = [struct.pack(fmt, *(rng.gauss(0.0, 0.02) for _ in range(BLOCK // item))) for _ in range(4)]

tmp = a.out + ".tmp"
with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    start = f.tell()
    for b in range(offset // BLOCK):
        if b % a.dense_every == 0:
            f.seek(start + b * BLOCK)
            f.write(pool[b % len(pool)])
    f.truncate(start + offset)
os.replace(tmp, a.out)
print(f"{a.out}: {count} tensors, {(start + offset) / 1e9:.2f} GB")
