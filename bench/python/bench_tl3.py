#!/usr/bin/env python3
"""TransformerLens 3's HookedTransformer.run_with_cache on a GPT-2 checkpoint folder, one
measurement per process (bench/.venv-tl3: TransformerLens 3.9 over bench/.venv's torch and
transformers). The model is built from the checkpoint's config and weights without TransformerLens'
weight processing (`from_pretrained_no_processing`'s model), so nothing is fetched.
usage: bench_tl3.py MODEL_DIR N_TOKENS REPS"""
import json
import resource
import statistics
import sys
import time

import torch
import transformers as tf
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/forward")
from models import token_ids  # noqa: E402


def build(model_dir: str) -> HookedTransformer:
    """TransformerLens 3's model of the GPT-2 checkpoint at `model_dir`, unprocessed."""
    hf = tf.GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head,
        d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, n_ctx=c.n_positions, act_fn="gelu_new",
        normalization_type="LN", positional_embedding_type="standard", eps=c.layer_norm_epsilon,
        original_architecture="GPT2LMHeadModel", default_prepend_bos=False, dtype=torch.float32,
    )
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
        center_unembed=False, fold_value_biases=False, refactor_factored_attn_matrices=False,
    )
    return model.eval()


def main():
    model_dir, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_grad_enabled(False)
    model = build(model_dir)
    ids = torch.tensor([token_ids(n, model.cfg.d_vocab)])
    times, act_mb = [], 0.0
    for rep in range(reps + 1):
        t = time.perf_counter()
        _, cache = model.run_with_cache(ids)
        act_mb = sum(v.numel() * v.element_size() for v in cache.values()) / 1048576
        del cache
        if rep > 0:
            times.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"impl": "tl3", "mode": "tl3_cache", "tokens": n, "batch": 1, "value": statistics.median(times),
                      "unit": "ms", "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "activations_mb": act_mb}))


if __name__ == "__main__":
    main()
