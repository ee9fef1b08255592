#!/usr/bin/env python3
"""A 7B-shaped Q4_K_M GGUF written by llama.cpp's own gguf-py, as a sparse file.

Llama-2-7B's shapes (d_model 4096, d_ff 11008, 32 layers, 32 heads, vocab 32000) with the
tensor types llama.cpp's quantizer chooses for Q4_K_M (Q4_K, with Q6_K for `output`, and for
`attn_v` / `ffn_down` in the layers its `use_more_bits` picks; norms F32). The tokenizer is the
llama fixture's (tests/fixtures/llamacpp/llama), its vocabulary padded to 32000 with
user-defined tokens. Every tensor's bytes are a hole in the file (they read as zeros: all
weights 0, a valid model whose logits are all 0), so the file takes ≈ 3.9 GB of address space
and almost no disk. For measuring what opening and running a quantized file costs in memory.

usage: bench/.venv/bin/python bench/quant/make_sparse_gguf.py OUT.gguf [--layers 32]
Never commit the output.
"""
import argparse, os, sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "forward"))
from bench_llamacpp import converter  # noqa: E402

sys.path.insert(0, os.path.join(converter(), "gguf-py"))
import gguf  # noqa: E402

Q = gguf.GGMLQuantizationType


def use_more_bits(i, n):
    """llama.cpp's choice of layers whose attn_v / ffn_down get more bits in Q4_K_M."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=32)
    a = ap.parse_args()
    d, ff, L, heads, vocab = 4096, 11008, a.layers, 32, 32000
    fixture = gguf.GGUFReader(os.path.join(ROOT, "tests/fixtures/llamacpp/llama/model-Q4_K_M.gguf"))
    field = lambda k: fixture.fields[k]
    tokens = [bytes(field("tokenizer.ggml.tokens").parts[i]).decode() for i in field("tokenizer.ggml.tokens").data]
    types = [int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data]
    merges = [bytes(field("tokenizer.ggml.merges").parts[i]).decode() for i in field("tokenizer.ggml.merges").data]
    tokens += [f"<pad{i}>" for i in range(vocab - len(tokens))]
    types += [gguf.TokenType.USER_DEFINED] * (vocab - len(types))
    scalar = lambda k: int(field(k).parts[field(k).data[0]][0])

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_block_count(L)
    w.add_context_length(4096)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(d // heads)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    w.add_tokenizer_model(bytes(field("tokenizer.ggml.model").parts[-1]).decode())
    w.add_tokenizer_pre(bytes(field("tokenizer.ggml.pre").parts[-1]).decode())
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(scalar("tokenizer.ggml.bos_token_id"))
    w.add_eos_token_id(scalar("tokenizer.ggml.eos_token_id"))

    def tensor(name, rows, cols, qtype):
        if qtype == Q.F32:
            w.add_tensor_info(name, (cols,) if rows == 1 else (rows, cols), np.dtype(np.float32), rows * cols * 4)
            return
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        w.add_tensor_info(name, (rows, cols // block * size), np.dtype(np.uint8), rows * cols // block * size, raw_dtype=qtype)

    tensor("token_embd.weight", vocab, d, Q.Q4_K)
    for i in range(L):
        more = Q.Q6_K if use_more_bits(i, L) else Q.Q4_K
        tensor(f"blk.{i}.attn_norm.weight", 1, d, Q.F32)
        for name in ("attn_q", "attn_k", "attn_output"):
            tensor(f"blk.{i}.{name}.weight", d, d, Q.Q4_K)
        tensor(f"blk.{i}.attn_v.weight", d, d, more)
        tensor(f"blk.{i}.ffn_norm.weight", 1, d, Q.F32)
        tensor(f"blk.{i}.ffn_gate.weight", ff, d, Q.Q4_K)
        tensor(f"blk.{i}.ffn_up.weight", ff, d, Q.Q4_K)
        tensor(f"blk.{i}.ffn_down.weight", d, ff, more)
    tensor("output_norm.weight", 1, d, Q.F32)
    tensor("output.weight", vocab, d, Q.Q6_K)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.fout[0].flush()
    start = w.fout[0].tell()
    total = sum(gguf.GGUFWriter.ggml_pad(ti.nbytes, w.data_alignment) for ti in w.tensors[0].values())
    # The data section: alignment padding, then holes.
    start = gguf.GGUFWriter.ggml_pad(start, w.data_alignment)
    w.fout[0].truncate(start + total)
    w.fout[0].close()
    print(f"{a.out}: {(start + total) / 1e9:.2f} GB apparent, {os.stat(a.out).st_blocks * 512 / 1e6:.1f} MB on disk")


if __name__ == "__main__":
    main()
