#!/usr/bin/env python3
"""Writes the model the patching benchmark runs: a GPT-2 with hidden size 128, 3 layers and 256
learned positions (room for a 217-token prompt), random weights (seeded, N(0, 0.02); norms 1
and 0), laid out as transformers saves GPT-2 (tensor names from the GPT-2 parity fixture, which
transformers wrote), with that fixture's tokenizer. Standard library only.
usage: make_model.py OUTDIR"""
import json, os, random, shutil, struct, sys
from array import array

out = sys.argv[1]
fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "parity", "gpt2")
N_EMBD, N_LAYER, N_POSITIONS = 128, 3, 256

os.makedirs(out, exist_ok=True)
config = json.load(open(os.path.join(fixture, "config.json")))
old = dict(d=config["n_embd"], pos=config["n_positions"], layers=config["n_layer"])
config.update(n_embd=N_EMBD, n_layer=N_LAYER, n_positions=N_POSITIONS)
json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)
shutil.copy(os.path.join(fixture, "tokenizer.json"), out)

raw = open(os.path.join(fixture, "model.safetensors"), "rb").read()
header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
# Old size -> new size, for every dimension a GPT-2 tensor has (vocabulary unchanged).
resize = {old["d"]: N_EMBD, 3 * old["d"]: 3 * N_EMBD, 4 * old["d"]: 4 * N_EMBD, old["pos"]: N_POSITIONS,
          config["vocab_size"]: config["vocab_size"]}
tensors = {}
for name, info in header.items():
    if name == "__metadata__":
        continue
    shape = [resize[n] for n in info["shape"]]
    if ".h.0." in name or name.startswith("h.0."):
        for layer in range(N_LAYER):
            tensors[name.replace("h.0.", f"h.{layer}.")] = shape
    elif ".h." not in name and not name.startswith("h."):
        tensors[name] = shape

rng = random.Random(0)
body, entries = bytearray(), {}
for name in sorted(tensors):
    shape = tensors[name]
    count = 1
    for n in shape:
        count *= n
    if "ln_" in name:
        values = array("f", [1.0 if name.endswith("weight") else 0.0] * count)
    elif name.endswith("bias"):
        values = array("f", [0.0] * count)
    else:
        values = array("f", (rng.gauss(0.0, 0.02) for _ in range(count)))
    entries[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(body), len(body) + 4 * count]}
    body += values.tobytes()
head = json.dumps(entries).encode()
head += b" " * (-len(head) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(head)) + head + body)
print(sum(1 for _ in tensors), "tensors,", len(body) // 4, "parameters")
