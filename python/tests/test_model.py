"""HookedModel: tokens, forward passes, caches and hooks, against the CLI on the same fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import glassbox
from conftest import (
    FIXTURES,
    GPT2,
    GPT2_GGUF_Q8,
    GPT2_PEFT,
    LLAMA,
    PROMPT,
    REFERENCE,
    ROOT,
    SAE,
    cli,
    cli_json,
    close,
    read_safetensors,
)


def trace(model_path, prompt, hooks, tmp_path, *extra):
    out = tmp_path / "trace.safetensors"
    cli("trace", model_path, "--prompt", prompt, "--hooks", hooks, "--out", out, *extra)
    return read_safetensors(out)


# --- loading ---------------------------------------------------------------------------------


def test_load_refuses_what_it_cannot_use(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        glassbox.load(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(OSError, match="notes.txt"):
        glassbox.load(tmp_path / "notes.txt")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 60)
    with pytest.raises(OSError, match="bad.gguf"):
        glassbox.load(bad)
    with pytest.raises(ValueError, match="dtype"):
        glassbox.load(GPT2, dtype="int3")
    with pytest.raises(ValueError, match="CPU"):
        glassbox.load(GPT2, device="cuda")
    with pytest.raises(ValueError, match="numerics"):
        glassbox.load(GPT2, numerics="fast")
    with pytest.raises(FileNotFoundError):
        glassbox.load(GPT2, adapter=tmp_path / "no-adapter")


def test_config_is_the_models(gpt2):
    cfg = gpt2.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_vocab) == (2, 64, 4, 16, 384)
    assert cfg.architecture == "GPT2LMHeadModel" and cfg.causal and cfg.learned_positions
    assert repr(gpt2).startswith("HookedModel(")


# --- tokens ----------------------------------------------------------------------------------


def test_tokens_are_the_clis(gpt2):
    doc = cli_json("run", GPT2, "--prompt", PROMPT, "--json")
    ids = gpt2.to_tokens(PROMPT)
    assert ids.dtype == np.int64 and ids.shape == (1, len(doc["input_ids"]))
    assert ids[0].tolist() == doc["input_ids"]
    assert gpt2.to_string(ids[0]) == PROMPT
    assert gpt2.to_string(ids) == [PROMPT]
    strs = gpt2.to_str_tokens(PROMPT)
    assert "".join(strs) == PROMPT and strs == gpt2.to_str_tokens(ids[0])
    # TransformerLens' idiom: [1, pos] gives the row's list; more rows give a list per row
    assert gpt2.to_str_tokens(ids) == strs
    assert gpt2.to_str_tokens(np.concatenate([ids, ids])) == [strs, strs]
    assert gpt2.to_str_tokens([PROMPT, "Hello"]) == [strs, gpt2.to_str_tokens("Hello")]

    john = gpt2.to_tokens(" John")[0]
    assert len(john) == 1 and gpt2.to_single_token(" John") == john[0]
    with pytest.raises(ValueError, match="tokens, not one"):
        gpt2.to_single_token(" John went")


def test_prepend_bos(gpt2, llama):
    plain = gpt2.to_tokens("Hello")[0].tolist()
    assert gpt2.to_tokens("Hello", prepend_bos=False)[0].tolist() == plain
    # Llama's BOS (this tokenizer does not add it): True prepends it once, False removes it.
    bos = llama.cfg.bos_token_id
    own = llama.to_tokens("Hello")[0].tolist()
    assert own[0] != bos
    with_bos = llama.to_tokens("Hello", prepend_bos=True)[0].tolist()
    assert with_bos == [bos] + own
    assert llama.to_str_tokens("Hello", prepend_bos=True)[1:] == llama.to_str_tokens("Hello")
    # to_string writes special tokens out, as TransformerLens' does (generate's text skips them)
    special = llama.to_str_tokens([bos])[0]
    assert special and llama.to_string(with_bos).startswith(special)
    assert not llama.to_string(own).startswith(special)


def test_texts_of_unequal_length_are_padded(gpt2):
    ids = gpt2.to_tokens(["Hello there", PROMPT])
    assert ids.shape[0] == 2 and ids.shape[1] == len(gpt2.to_tokens(PROMPT)[0])
    # Padded rows run with an attention mask: the short row's logits are its own.
    logits = gpt2(["Hello there", PROMPT])
    short = gpt2("Hello there")
    n = short.shape[1]
    close(logits[0, :n], short[0], 1e-5)
    close(logits[1], gpt2(PROMPT)[0], 1e-5)


def test_bad_token_ids_are_value_errors(gpt2):
    with pytest.raises(ValueError, match="0 … 383"):
        gpt2(np.array([[1, 2, 60000]]))
    with pytest.raises(ValueError, match="0 … 383"):
        gpt2([-1, 2])
    with pytest.raises(ValueError, match="integers"):
        gpt2(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        gpt2(np.zeros((1, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="positions"):
        gpt2(np.zeros((1, 129), dtype=np.int64))


# --- forward passes --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_logits_and_cache_equal_the_rust_library(path, tmp_path):
    model = glassbox.load(path)
    traced = trace(path, PROMPT, "*", tmp_path)
    logits, cache = model.run_with_cache(PROMPT)
    assert logits.dtype == np.float32 and logits.shape == traced["logits"].shape
    close(logits, traced["logits"])
    close(model(PROMPT), traced["logits"])
    hooks = [k for k in traced if k != "input_ids"]
    assert list(cache) == model.hook_names() and sorted(cache) == sorted(hooks)
    for name in hooks:
        close(cache[name], traced[name])


def test_logits_equal_transformers(gpt2):
    # The parity fixture's reference: transformers' own logits on the manifest's prompts.
    expected = read_safetensors(GPT2 / "expected.safetensors")
    key = next(k for k in expected if k.endswith("logits"))
    ids_key = key.replace("logits", "input_ids")
    ids = expected[ids_key] if ids_key in expected else None
    if ids is None:
        pytest.fail(f"expected.safetensors has no input ids beside {key}: {sorted(expected)[:8]}")
    close(gpt2(ids), expected[key], 1e-4)


def test_hook_names_list_every_expert_and_routing_keeps_integer_indices():
    """A mixture of experts hooks only the experts a pass routes to; hook_names() names them
    all (its one-token pass reaches a few), and what any pass caches is among them. The
    chosen experts are integers, as the router chose them."""
    model = glassbox.load(FIXTURES / "families" / "mixtral")
    names = model.hook_names()
    config = json.loads((FIXTURES / "families" / "mixtral" / "config.json").read_text())
    n_experts = config["num_local_experts"]
    for layer in range(model.cfg.n_layers):
        experts = [n for n in names if n.startswith(f"blocks.{layer}.mlp.experts.")]
        inner = ("hook_gate", "hook_pre", "hook_post", "hook_out")
        assert experts == [f"blocks.{layer}.mlp.experts.{e}.{h}" for e in range(n_experts) for h in inner]
    _, cache = model.run_with_cache(PROMPT)
    assert set(cache) <= set(names)
    indices = cache["blocks.0.mlp.hook_expert_indices"]
    assert indices.dtype == np.uint32 and indices.shape[-1] == config["num_experts_per_tok"]
    assert indices.max() < n_experts


def test_names_filter_forms(gpt2):
    names = gpt2.hook_names()
    assert "blocks.0.attn.hook_pattern" in names and "hook_embed" in names
    _, one = gpt2.run_with_cache(PROMPT, names_filter="blocks.0.attn.hook_pattern")
    assert list(one) == ["blocks.0.attn.hook_pattern"]
    _, globbed = gpt2.run_with_cache(PROMPT, names_filter="blocks.*.hook_resid_post")
    assert list(globbed) == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    _, chosen = gpt2.run_with_cache(PROMPT, names_filter=lambda n: n.endswith("hook_z"))
    assert list(chosen) == ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]
    _, listed = gpt2.run_with_cache(PROMPT, names_filter=["hook_embed", "hook_pos_embed"])
    assert sorted(listed) == ["hook_embed", "hook_pos_embed"]
    n = gpt2.to_tokens(PROMPT).shape[1]
    # TransformerLens' short keys, and stacking over layers.
    assert one["pattern", 0].shape == (1, 4, n, n)
    assert ("pattern", 0) in one and ("pattern", 1) not in one
    assert globbed.stack_activation("resid_post").shape == (2, 1, n, 64)
    with pytest.raises(KeyError, match="not in the cache"):
        one["blocks.1.attn.hook_pattern"]


def test_stop_at_layer_returns_the_residual_stream(gpt2):
    _, full = gpt2.run_with_cache(PROMPT, names_filter="*hook_resid_p*")
    resid, cache = gpt2.run_with_cache(PROMPT, names_filter="blocks.0.attn.hook_pattern", stop_at_layer=1)
    close(resid, full["blocks.0.hook_resid_post"], 0)
    assert list(cache) == ["blocks.0.attn.hook_pattern"]
    # As in TransformerLens: 0 is the embeddings, a negative layer counts from the end.
    n = gpt2.cfg.n_layers
    close(gpt2.run_with_cache(PROMPT, stop_at_layer=0)[0], full["blocks.0.hook_resid_pre"], 0)
    close(gpt2.run_with_cache(PROMPT, stop_at_layer=-1)[0], full[f"blocks.{n - 2}.hook_resid_post"], 0)
    close(gpt2.run_with_cache(PROMPT, stop_at_layer=-n)[0], full["blocks.0.hook_resid_pre"], 0)
    for bad in (n + 1, -n - 1):
        with pytest.raises(ValueError, match="stop_at_layer"):
            gpt2.run_with_cache(PROMPT, stop_at_layer=bad)


def test_stop_at_layer_of_a_post_ln_encoder_is_its_block_output():
    """BERT's block output is after its second LayerNorm (HookedEncoder's
    hook_normalized_resid_post; its hook_resid_post is the sum before that norm): what the next
    block reads. The real all-MiniLM-L6-v2 (scripts/fetch-artifacts.sh)."""
    bert = glassbox.load(ROOT / ".artifacts" / "all-minilm-l6-v2")
    _, full = bert.run_with_cache(PROMPT)
    resid, _ = bert.run_with_cache(PROMPT, names_filter="hook_embed", stop_at_layer=2)
    close(resid, full["blocks.1.hook_normalized_resid_post"], 0)
    close(resid, full["blocks.2.hook_resid_pre"], 0)
    assert not np.allclose(full["blocks.1.hook_resid_post"], resid)


def test_cache_arrays_share_memory_and_do_not_alias_the_weights(gpt2):
    clean = gpt2(PROMPT)
    _, cache = gpt2.run_with_cache(PROMPT)
    for name, a in cache.items():
        assert not a.flags.owndata, f"{name} was copied"
        assert a.flags.writeable
        a[...] = np.nan  # writing into every cached activation changes no later pass
    close(gpt2(PROMPT), clean, 0)


def test_loss(gpt2):
    logits, loss = gpt2(PROMPT, return_type="both")
    ids = gpt2.to_tokens(PROMPT)[0]
    lp = logits[0, :-1].astype(np.float64)
    lp = lp - np.log(np.exp(lp - lp.max(-1, keepdims=True)).sum(-1, keepdims=True)) - lp.max(-1, keepdims=True)
    nll = -lp[np.arange(len(ids) - 1), ids[1:]]
    assert abs(loss - nll.mean()) < 1e-5
    close(gpt2(PROMPT, return_type="loss", loss_per_token=True)[0], nll, 1e-5)
    assert gpt2(PROMPT, return_type=None) is None
    with pytest.raises(ValueError, match="return_type"):
        gpt2(PROMPT, return_type="probs")
    # texts of unequal length: the padding's predictions are left out of the mean and are 0
    # per token, as in TransformerLens
    short = "Hello there"
    per_token = gpt2([PROMPT, short], return_type="loss", loss_per_token=True)
    n = len(gpt2.to_tokens(short)[0])
    close(per_token[1, : n - 1], gpt2(short, return_type="loss", loss_per_token=True)[0], 1e-5)
    assert (per_token[1, n - 1 :] == 0).all() and per_token.shape[1] > n - 1
    both = gpt2([PROMPT, short], return_type="loss")
    want = np.concatenate([per_token[0], per_token[1, : n - 1]]).astype(np.float64).mean()
    assert abs(both - want) < 1e-5


# --- hooks -----------------------------------------------------------------------------------


def test_hooks_get_the_hook_point_as_transformer_lens_passes_it(gpt2):
    """TransformerLens calls fn(activation, hook=hook_point): a keyword-only `hook` and a
    partial binding a parameter after it work; so does a plain (activation, h) function."""
    import functools

    seen = []

    def keyword_only(act, *, hook):
        seen.append(hook.name)

    def scale(act, hook, factor):
        seen.append((hook.name, factor))
        return act * factor

    gpt2.run_with_hooks(PROMPT, fwd_hooks=[("hook_embed", keyword_only)])
    doubled = gpt2.run_with_hooks(
        PROMPT, fwd_hooks=[("hook_embed", functools.partial(scale, factor=2.0))]
    )
    same = gpt2.run_with_hooks(PROMPT, fwd_hooks=[("hook_embed", lambda a, h: a * 2.0)])
    assert seen == ["hook_embed", ("hook_embed", 2.0)]
    close(doubled, same, 0)


def test_zeroing_a_head_in_a_hook_is_the_clis_zero_ablation(gpt2):
    doc = cli_json("ablate", GPT2, "--text", PROMPT, "--target", "L0H1", "--method", "zero", "--json")
    result = doc["results"][0]

    def zero_head(z, hook):
        assert hook.name == "blocks.0.attn.hook_z" and hook.layer() == 0
        z[:, :, 1, :] = 0.0  # in place, as in TransformerLens

    per_token = gpt2.run_with_hooks(
        PROMPT, fwd_hooks=[("blocks.0.attn.hook_z", zero_head)], return_type="loss", loss_per_token=True
    )[0]
    close(per_token, result["ablated_per_token"])
    close(gpt2(PROMPT, return_type="loss", loss_per_token=True)[0], result["baseline_per_token"])

    # Returning a replacement instead of editing in place: the same logits.
    def replaced(z, hook):
        z = z.copy()
        z[:, :, 1, :] = 0.0
        return z

    close(
        gpt2.run_with_hooks(PROMPT, fwd_hooks=[("blocks.0.attn.hook_z", replaced)]),
        gpt2.run_with_hooks(PROMPT, fwd_hooks=[(lambda n: n == "blocks.0.attn.hook_z", zero_head)]),
        0,
    )


def test_steering_in_a_hook_is_the_clis_control_vector(gpt2, tmp_path):
    out = tmp_path / "steer.gguf"
    doc = glassbox.steer(gpt2, ["I love this"], ["I hate this"], "1-1", out=out)
    direction = doc["directions"][1]
    scale = 4.0

    def add(resid, hook):
        return resid + scale * direction

    ours = gpt2.generate(
        "The weather today", max_new_tokens=8, do_sample=False, stop_at_eos=False,
        fwd_hooks=[("blocks.1.hook_resid_post", add)], return_type="str",
    )
    theirs = cli("generate", GPT2, "--prompt", "The weather today", "--max-tokens", 8, "--ignore-eos",
                 "--control-vector", f"{out}:{scale}")
    assert ours == theirs.rstrip("\n")
    plain = gpt2.generate("The weather today", max_new_tokens=8, do_sample=False, stop_at_eos=False)
    assert plain != ours


def test_hook_errors_propagate(gpt2):
    class Boom(Exception):
        pass

    def boom(act, hook):
        raise Boom(hook.name)

    with pytest.raises(Boom, match="blocks.1.hook_resid_pre"):
        gpt2.run_with_hooks(PROMPT, fwd_hooks=[("blocks.1.hook_resid_pre", boom)])
    with pytest.raises(ValueError, match="returned shape"):
        gpt2.run_with_hooks(PROMPT, fwd_hooks=[("hook_embed", lambda a, h: a[:, :1])])
    with pytest.raises(TypeError, match="pairs"):
        gpt2.run_with_hooks(PROMPT, fwd_hooks=[boom])
    # The model is unharmed.
    close(gpt2(PROMPT), gpt2(PROMPT), 0)


def test_hooks_see_every_point_in_order(gpt2):
    seen = []
    gpt2.run_with_hooks(PROMPT, fwd_hooks=[(lambda n: True, lambda a, h: seen.append(h.name))])
    assert seen == gpt2.hook_names()


# --- generation ------------------------------------------------------------------------------


def test_generate_is_the_clis(gpt2):
    greedy = gpt2.generate("The Eiffel Tower", max_new_tokens=10, do_sample=False, stop_at_eos=False)
    assert greedy == cli("generate", GPT2, "--prompt", "The Eiffel Tower", "--max-tokens", 10, "--ignore-eos").rstrip("\n")
    sampled = gpt2.generate("The Eiffel Tower", max_new_tokens=10, temperature=0.8, top_k=20, seed=7, stop_at_eos=False)
    assert sampled == cli("generate", GPT2, "--prompt", "The Eiffel Tower", "--max-tokens", 10, "--ignore-eos",
                          "--temperature", 0.8, "--top-k", 20, "--seed", 7).rstrip("\n")
    ids = gpt2.to_tokens("The Eiffel Tower")
    tokens = gpt2.generate(ids, max_new_tokens=10, do_sample=False, stop_at_eos=False)
    assert tokens.shape == (1, ids.shape[1] + 10) and gpt2.to_string(tokens[0]) == greedy


def test_sampling_draws_afresh_unless_seeded(gpt2):
    # TransformerLens samples from torch's generator: two calls differ, and so do the rows of
    # a batch; a seed makes a call repeatable, its row 0 being the CLI's --seed
    sample = dict(max_new_tokens=12, temperature=1.0, stop_at_eos=False)
    ids = gpt2.to_tokens("The Eiffel Tower")
    assert not np.array_equal(gpt2.generate(ids, **sample), gpt2.generate(ids, **sample))
    two = gpt2.generate(np.concatenate([ids, ids]), seed=3, **sample)
    assert not np.array_equal(two[0], two[1])
    assert np.array_equal(two, gpt2.generate(np.concatenate([ids, ids]), seed=3, **sample))
    assert np.array_equal(two[0], gpt2.generate(ids, seed=3, **sample)[0])


def test_left_padding_is_refused(gpt2):
    # glassbox numbers positions from the first column: a left-padded row would be misread
    tokens = gpt2.to_tokens(["Hello there my friend", "Hello there my friend"])[:, :4]
    with pytest.raises(ValueError, match="right-padded"):
        gpt2(tokens, attention_mask=np.array([[1, 1, 1, 1], [0, 0, 1, 1]]))
    right = gpt2(tokens, attention_mask=np.array([[1, 1, 1, 1], [1, 1, 0, 0]]))
    assert np.allclose(right[1, :2], gpt2(tokens[1:, :2])[0], atol=1e-5)


# --- other files the CLI opens ---------------------------------------------------------------


def test_quantized_gguf_equals_the_cli(tmp_path):
    model = glassbox.load(GPT2_GGUF_Q8)
    assert model.cfg.numerics == "llamacpp"
    traced = trace(GPT2_GGUF_Q8, PROMPT, "blocks.*.hook_resid_post", tmp_path)
    logits, cache = model.run_with_cache(PROMPT, names_filter="blocks.*.hook_resid_post")
    close(logits, traced["logits"])
    close(cache["resid_post", 1], traced["blocks.1.hook_resid_post"])
    f32 = glassbox.load(GPT2_GGUF_Q8, numerics="f32")
    assert f32.cfg.numerics == "f32"
    close(f32(PROMPT), trace(GPT2_GGUF_Q8, PROMPT, "hook_embed", tmp_path, "--numerics", "f32")["logits"])


def test_kv_cache_choice_equals_the_cli(tmp_path):
    # llama.cpp's numerics come with its default F16 KV cache; kv_cache="f32" is its
    # --cache-type-k/v f32 run, and moves the logits
    model = glassbox.load(GPT2_GGUF_Q8)
    assert model.cfg.kv_cache == "f16"
    f32_cache = glassbox.load(GPT2_GGUF_Q8, kv_cache="f32")
    assert f32_cache.cfg.kv_cache == "f32"
    traced = trace(GPT2_GGUF_Q8, PROMPT, "hook_embed", tmp_path, "--kv-cache", "f32")
    close(f32_cache(PROMPT), traced["logits"])
    assert float(np.abs(f32_cache(PROMPT) - model(PROMPT)).max()) > 1e-4
    with pytest.raises(ValueError, match="kv_cache"):
        glassbox.load(GPT2_GGUF_Q8, kv_cache="q8_0")


def test_adapter_equals_the_cli(tmp_path):
    model = glassbox.load(GPT2, adapter=GPT2_PEFT)
    traced = trace(GPT2, PROMPT, "hook_embed", tmp_path, "--adapter", GPT2_PEFT)
    close(model(PROMPT), traced["logits"])
    assert float(np.abs(model(PROMPT) - glassbox.load(GPT2)(PROMPT)).max()) > 1e-4


def test_sae_points_equal_the_cli(tmp_path):
    model = glassbox.load(GPT2, sae=SAE)
    point = "blocks.0.hook_mlp_out.hook_sae_acts_post"
    assert point in model.hook_names()
    traced = trace(GPT2, PROMPT, point, tmp_path, "--sae", SAE)
    logits, cache = model.run_with_cache(PROMPT, names_filter=point)
    close(cache[point], traced[point])
    close(logits, traced["logits"])


def test_half_precision(gpt2):
    half = glassbox.load(GPT2, dtype="float16")
    _, cache = half.run_with_cache(PROMPT, names_filter="blocks.1.hook_resid_post")
    _, full = gpt2.run_with_cache(PROMPT, names_filter="blocks.1.hook_resid_post")
    assert np.abs(cache["resid_post", 1] - full["resid_post", 1]).max() < 0.05
    # A hook on a float16 activation gets a float16 view and may replace it.
    seen = []
    half.run_with_hooks(PROMPT, fwd_hooks=[("hook_embed", lambda a, h: seen.append(a.dtype) or a * 2)])
    assert seen == [np.float16]
    bf = glassbox.load(GPT2, dtype="bfloat16")
    doubled = bf.run_with_hooks(PROMPT, fwd_hooks=[("hook_embed", lambda a, h: a.__imul__(0))])
    zeroed = bf.run_with_hooks(PROMPT, fwd_hooks=[("hook_embed", lambda a, h: np.zeros_like(a))])
    close(doubled, zeroed, 0)


# --- the engine runs without the GIL ---------------------------------------------------------


def test_the_gil_is_released_during_a_forward_pass(reference):
    ticks = 0
    done = threading.Event()

    def count():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < 0.5:
            glassbox.heads(reference, seq_len=63, batch=16)
    finally:
        done.set()
        t.join()
    elapsed = time.perf_counter() - start
    # Held by the engine, the other thread would barely run; without it, it ticks all along.
    assert ticks > 0.25 * elapsed / 0.0011, (ticks, elapsed)


def test_persistent_hooks(gpt2):
    clean = gpt2(PROMPT)

    def zero_head(z, hook):
        z[:, :, 1, :] = 0.0

    ablated = gpt2.run_with_hooks(PROMPT, fwd_hooks=[("blocks.0.attn.hook_z", zero_head)])
    with gpt2.hooks([("blocks.0.attn.hook_z", zero_head)]):
        close(gpt2(PROMPT), ablated, 0)
        _, cache = gpt2.run_with_cache(PROMPT, names_filter="blocks.0.attn.hook_z")
        assert not cache["z", 0][:, :, 1].any()
    close(gpt2(PROMPT), clean, 0)
    gpt2.add_hook(lambda n: n == "blocks.0.attn.hook_z", zero_head)
    try:
        close(gpt2(PROMPT), ablated, 0)
        assert gpt2.generate(PROMPT, max_new_tokens=4, do_sample=False) == gpt2.generate(
            PROMPT, max_new_tokens=4, do_sample=False, fwd_hooks=[("blocks.0.attn.hook_z", zero_head)]
        )
    finally:
        gpt2.reset_hooks()
    close(gpt2(PROMPT), clean, 0)


def test_a_hook_may_run_the_model(gpt2):
    # Patching by hand: a hook that runs another prompt and takes its activation.
    other = "When Mary and John went to the store, Mary gave a drink to"
    _, theirs = gpt2.run_with_cache(other, names_filter="blocks.1.hook_resid_pre")

    def from_other(resid, hook):
        _, cache = gpt2.run_with_cache(other, names_filter=hook.name)
        return cache[hook.name]

    patched = gpt2.run_with_hooks(PROMPT, fwd_hooks=[("blocks.1.hook_resid_pre", from_other)])
    replaced = gpt2.run_with_hooks(PROMPT, fwd_hooks=[("blocks.1.hook_resid_pre", lambda r, h: theirs["resid_pre", 1])])
    close(patched, replaced, 0)


def test_a_hook_may_run_the_model_on_one_thread():
    # With a pool of one thread the nested call must run inline: handed to the pool it would
    # wait for the thread that is waiting for it.
    script = (
        "import glassbox\n"
        f"m = glassbox.load({str(GPT2)!r})\n"
        "f = lambda r, h: m.run_with_cache('Hello there', names_filter=h.name)[1][h.name][:, :1].repeat(r.shape[1], 1)\n"
        "print(m.run_with_hooks('Hi you', fwd_hooks=[('blocks.1.hook_resid_pre', f)]).shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        env={**os.environ, "RAYON_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("(1, ")


def test_threads_share_a_model(gpt2):
    expected = {p: gpt2(p) for p in (PROMPT, "Hello there", "The Eiffel Tower is in Paris.")}
    errors = []

    def work(prompt):
        try:
            for _ in range(5):
                close(gpt2(prompt), expected[prompt], 0)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in expected for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_what_would_silently_mean_something_else_is_refused():
    """A hook name that matches no hook point (a typo ran the model with no hook), ids past the
    vocabulary given to decode (they decoded to nothing), a mask of other values than 0 and 1
    (-1 wrapped to 2³²−1), a loss of one token (NaN)."""
    m = glassbox.load(REFERENCE)
    tokens = m.to_tokens("the cat sees a dog")
    with pytest.raises(ValueError, match="no hook point matches 'blocks.0.hook_resid_pr'"):
        m.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_pr", lambda a, hook: a)])
    with pytest.raises(ValueError, match="no hook point matches"):
        m.run_with_cache(tokens, names_filter=["nope"])
    _, cache = m.run_with_cache(tokens, names_filter=lambda name: False)
    assert len(cache) == 0
    for bad in ([10**6], [1.7], [-1]):
        with pytest.raises(ValueError, match="token ids"):
            m.to_string(bad)
        with pytest.raises(ValueError, match="token ids"):
            m.to_str_tokens(np.array(bad))
    with pytest.raises(ValueError, match="attention_mask"):
        m(tokens, attention_mask=np.full_like(tokens, -1))
    with pytest.raises(ValueError, match="at least two tokens"):
        m(tokens[:, :1], return_type="loss")
    with pytest.raises(OSError) as err:
        glassbox.audit(str(REFERENCE / "config.json"))
    assert not isinstance(err.value, FileNotFoundError), err.value


def test_counts_and_seeds_below_zero_are_value_errors(gpt2):
    """The engine takes these unsigned: a negative one was an OverflowError from the
    conversion, not the ValueError bad input is."""
    calls = {
        "max_new_tokens": lambda: gpt2.generate(PROMPT, max_new_tokens=-1),
        "top_k": lambda: gpt2.generate(PROMPT, max_new_tokens=1, top_k=-5),
        "seed": lambda: gpt2.generate(PROMPT, max_new_tokens=1, seed=-1),
    }
    calls["top_k "] = lambda: glassbox.predictions(gpt2, PROMPT, top_k=-1)
    calls["top_k  "] = lambda: glassbox.lens(gpt2, PROMPT, top_k=-1)
    calls["seq_len"] = lambda: glassbox.heads(gpt2, seq_len=-3)
    calls["batch"] = lambda: glassbox.heads(gpt2, batch=-1)
    calls["seed "] = lambda: glassbox.heads(gpt2, seed=-1)
    calls["top"] = lambda: glassbox.heads(gpt2, top=-1)
    calls["seed  "] = lambda: glassbox.ablate(gpt2, PROMPT, ["L0H0"], seed=-2)
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"{name.strip()} must be ≥ 0"):
            call()
    with pytest.raises(TypeError, match="top_k must be an integer"):
        gpt2.generate(PROMPT, max_new_tokens=1, top_k=2.5)
    with pytest.raises(ValueError, match="token ids"):
        glassbox.predictions(gpt2, [1, -2])


def test_a_negative_position_counts_from_the_end(gpt2):
    n = len(gpt2.to_tokens(PROMPT, prepend_bos=False)[0])
    assert glassbox.attribute(gpt2, PROMPT, "#42", position=-2) == glassbox.attribute(
        gpt2, PROMPT, "#42", position=n - 2
    )
    with pytest.raises(ValueError, match=f"the prompt has {n} tokens"):
        glassbox.attribute(gpt2, PROMPT, "#42", position=-n - 1)


def test_rotary_positions_past_the_context_warn(llama):
    """Learned positions end at the context (refused); rotary ones extrapolate, with the CLI's
    warning."""
    n = llama.cfg.n_ctx
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        llama(np.zeros((1, n), dtype=np.int64))
    with pytest.warns(UserWarning, match=f"{n + 1} tokens is more than the {n} positions"):
        llama(np.zeros((1, n + 1), dtype=np.int64))
    with pytest.warns(UserWarning, match="extrapolation"):
        llama.run_with_cache(np.zeros((1, n + 1), dtype=np.int64), names_filter="blocks.0.hook_resid_post")


def test_expert_hooks_equal_transformer_lens_moe():
    """Each routed expert's ``hook_gate`` / ``hook_pre`` / ``hook_post`` against
    TransformerLens' MoE on the Mixtral fixture (``tests/fixtures/analyses/tl-moe-mixtral.safetensors``,
    made by ``make_tl_weights_fixtures.py``): TransformerLens keeps the routed tokens' rows,
    glassbox the batch-first stream with zeros elsewhere; the rows agree."""
    import struct

    model = glassbox.load(FIXTURES / "families" / "mixtral")
    path = FIXTURES / "analyses" / "tl-moe-mixtral.safetensors"
    tl = read_safetensors(path)
    raw = path.read_bytes()
    meta = json.loads(json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])["__metadata__"]["meta"])
    ids = np.array([meta["input_ids"]], dtype=np.uint32)
    _, cache = model.run_with_cache(ids, names_filter="blocks.*.mlp.experts.*.hook_*")
    names = sorted(k[len("moe.") :] for k in tl if not k.endswith(".tokens"))
    assert len(names) >= 12
    for name in names:
        rows, tokens = tl[f"moe.{name}"], tl[f"moe.{name}.tokens"].astype(int)
        ours = cache[name][0]
        close(ours[tokens], rows, 1e-5)
        others = np.setdiff1d(np.arange(ours.shape[0]), tokens)
        assert not np.any(ours[others]), name
    # every expert the pass ran is in TransformerLens' set, and the other way round
    assert {k for k in cache.keys() if ".experts." in k and not k.endswith("hook_out")} == set(names)
