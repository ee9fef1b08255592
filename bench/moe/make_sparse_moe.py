#!/usr/bin/env python3
"""A Mixtral-architecture checkpoint larger than RAM, written as a sparse file.

Only the safetensors header and the non-expert tensors (embeddings, attention, norms, routers,
unembedding) hold data; every expert's bytes are a hole in the file (they read as zeros and
take no disk). A forward pass that loads experts lazily touches only the experts its tokens
are routed to, so it runs in far less memory than the checkpoint's size.

usage: make_sparse_moe.py OUTDIR [--experts 128] [--layers 2] [--d-model 2048] [--d-ff 6656]
Never commit the output.
"""
import argparse, json, os, shutil, struct

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--experts", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=2048)
    ap.add_argument("--d-ff", type=int, default=6656)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=8)
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    tok = os.path.join(here, "../../tests/fixtures/families/mixtral/tokenizer.json")
    vocab = json.load(open(os.path.join(os.path.dirname(tok), "config.json")))["vocab_size"]
    d, ff, L, E = a.d_model, a.d_ff, a.layers, a.experts
    hd = d // a.heads
    config = {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": vocab,
        "hidden_size": d, "intermediate_size": ff, "num_hidden_layers": L,
        "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": hd,
        "num_local_experts": E, "num_experts_per_tok": 2, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "rope_theta": 1e6, "hidden_act": "silu", "tie_word_embeddings": False,
        "sliding_window": None, "dtype": "float32",
    }
    # name -> (shape, has data)
    tensors = [("model.embed_tokens.weight", (vocab, d), True)]
    for i in range(L):
        p = f"model.layers.{i}"
        tensors += [
            (f"{p}.input_layernorm.weight", (d,), True),
            (f"{p}.post_attention_layernorm.weight", (d,), True),
            (f"{p}.self_attn.q_proj.weight", (a.heads * hd, d), True),
            (f"{p}.self_attn.k_proj.weight", (a.kv_heads * hd, d), True),
            (f"{p}.self_attn.v_proj.weight", (a.kv_heads * hd, d), True),
            (f"{p}.self_attn.o_proj.weight", (d, a.heads * hd), True),
            (f"{p}.block_sparse_moe.gate.weight", (E, d), True),
        ]
        for e in range(E):
            q = f"{p}.block_sparse_moe.experts.{e}"
            tensors += [(f"{q}.w1.weight", (ff, d), False), (f"{q}.w3.weight", (ff, d), False),
                        (f"{q}.w2.weight", (d, ff), False)]
    tensors += [("model.norm.weight", (d,), True), ("lm_head.weight", (vocab, d), True)]
    header, offset = {}, 0
    for name, shape, _ in tensors:
        n = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    hbytes = json.dumps(header).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    os.makedirs(a.outdir, exist_ok=True)
    rng = np.random.default_rng(0)
    path = os.path.join(a.outdir, "model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        base = 8 + len(hbytes)
        for name, shape, has_data in tensors:
            if not has_data:
                continue
            if name.endswith("norm.weight"):
                x = np.ones(shape, np.float32)
            else:
                x = (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[-1])).astype(np.float32)
            f.seek(base + header[name]["data_offsets"][0])
            f.write(x.tobytes())
        f.truncate(base + offset)
    json.dump(config, open(os.path.join(a.outdir, "config.json"), "w"), indent=1)
    shutil.copy(tok, os.path.join(a.outdir, "tokenizer.json"))
    st = os.stat(path)
    print(f"{path}: {st.st_size / 2**30:.1f} GiB apparent, {st.st_blocks * 512 / 2**30:.2f} GiB on disk; "
          f"one expert {3 * d * ff * 4 / 2**20:.0f} MiB, {E * L} experts")


if __name__ == "__main__":
    main()
