"""ActivationCache as TransformerLens' users know it: negative layers, stack_activation's
signature, accumulated_resid and decompose_resid, the mapping methods. Every value is checked
against one computed another way: the full hook name, or a separate forward pass
(``stop_at_layer`` returns the residual stream a pass stopped at)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import glassbox
from glassbox import ActivationCache, get_act_name
from conftest import GPT2, PROMPT, ROOT, close, read_safetensors

MORE = ROOT / "crates" / "glassbox-models" / "tests" / "fixtures" / "more"
TEXT = "the old bird finds a fish"


@pytest.fixture(scope="module")
def full(reference):
    return reference.run_with_cache(TEXT)[1]


def resid_entering(model, text, layer):
    """The residual stream entering block `layer` (layer = n_layers: the last resid_post), from
    a pass of its own that stops there."""
    return model.run_with_cache(text, names_filter="hook_embed", stop_at_layer=layer)[0]


# --- 1. negative layers ------------------------------------------------------------------------


def test_a_negative_layer_counts_from_the_end(reference, full):
    n = reference.cfg.n_layers
    assert n == 3
    for short, name in [("resid_post", "hook_resid_post"), ("pattern", "attn.hook_pattern")]:
        for layer in range(-n, 0):
            a = full[short, layer]
            assert a is full[f"blocks.{layer + n}.{name}"]
            assert (short, layer) in full
    # Against a separate pass: the last resid_post is what a pass stopping after the last block returns.
    close(full["resid_post", -1], resid_entering(reference, TEXT, n), 0)
    close(full["normalized", -1, "ln2"], full[f"blocks.{n - 1}.ln2.hook_normalized"], 0)
    assert ("resid_post", -n - 1) not in full
    with pytest.raises(KeyError, match="has 3 layers"):
        full["resid_post", -n - 1]
    with pytest.raises(KeyError, match="not in the cache"):
        full["resid_post", n]
    # The helper: a negative layer needs n_layers; without it TransformerLens would make the
    # name "blocks.-1.…", which names no hook.
    assert get_act_name("resid_post", -1, n_layers=n) == f"blocks.{n - 1}.hook_resid_post"
    assert get_act_name("z", -3, n_layers=n) == "blocks.0.attn.hook_z"
    with pytest.raises(ValueError, match="n_layers"):
        get_act_name("resid_post", -1)
    with pytest.raises(ValueError, match="has 3 layers"):
        get_act_name("resid_post", -4, n_layers=n)
    # stack_activation, accumulated_resid and decompose_resid take -1 as TransformerLens does.
    close(full.stack_activation("resid_pre", -1), full.stack_activation("resid_pre", n), 0)
    close(full.accumulated_resid(-1), full.accumulated_resid(n), 0)
    close(full.decompose_resid(-1), full.decompose_resid(n), 0)


# --- 2. stack_activation ------------------------------------------------------------------------


def test_stack_activation_has_transformer_lens_signature(reference, full):
    n = reference.cfg.n_layers
    by_name = lambda short, layers: np.stack([full[f"blocks.{l}.{short}"] for l in layers])  # noqa: E731
    # The second positional argument is `layer`: layers 0 … layer-1.
    two = full.stack_activation("resid_post", 2)
    assert two.shape[0] == 2
    close(two, by_name("hook_resid_post", range(2)), 0)
    close(full.stack_activation("resid_post"), by_name("hook_resid_post", range(n)), 0)
    close(full.stack_activation("resid_post", None), by_name("hook_resid_post", range(n)), 0)
    close(full.stack_activation("pattern", 1), by_name("attn.hook_pattern", range(1)), 0)
    # sublayer_type names the norm, as TransformerLens' third argument.
    close(full.stack_activation("normalized", 2, "ln1"), by_name("ln1.hook_normalized", range(2)), 0)
    close(
        full.stack_activation("normalized", sublayer_type="ln2"), by_name("ln2.hook_normalized", range(n)), 0
    )
    # The old second argument (a norm) is no longer silently ignored.
    with pytest.raises(TypeError, match="sublayer_type"):
        full.stack_activation("normalized", "ln1")
    with pytest.raises(ValueError, match="-1 .* means all"):
        full.stack_activation("resid_post", -2)
    with pytest.raises(ValueError, match="has 3 layers"):
        full.stack_activation("resid_post", n + 1)
    # A layer whose activation is not cached is a KeyError, not a shorter stack.
    _, some = reference.run_with_cache(TEXT, names_filter=["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"])
    with pytest.raises(KeyError, match="blocks.1.hook_resid_post"):
        some.stack_activation("resid_post")


# --- 3. the documented examples work ------------------------------------------------------------


def test_the_documented_cache_keys_exist(gpt2):
    """Every ``cache[...]`` in ActivationCache's docstring is a key of a full cache, and every
    ``(…)`` -> ``"…"`` example of get_act_name gives that name, one the model computes."""
    _, cache = gpt2.run_with_cache(PROMPT)
    keys = re.findall(r"``cache\[(.+?)\]``", ActivationCache.__doc__)
    assert len(keys) >= 3, keys
    for key in keys:
        value = cache[eval(key)]  # noqa: S307 - the docstring's own text
        assert isinstance(value, np.ndarray) and value.size, key
    examples = re.findall(r"``(\(.+?\))``(?:\s*\([^)]*\))?\s*->\s*``\"([\w.]+)\"``", get_act_name.__doc__)
    assert len(examples) >= 5, examples
    names = set(gpt2.hook_names())
    for args, name in examples:
        args = eval(args)  # noqa: S307
        args = args if isinstance(args, tuple) else (args,)
        assert get_act_name(*args) == name
        assert name in names, f"{name} is documented but no hook of the model"
    # hook_scale is computed (shape [batch, pos, 1]); hook_result, which no forward pass
    # computes, names what adds it.
    assert cache["scale", 0, "ln1"].shape == (*cache["resid_pre", 0].shape[:2], 1)
    with pytest.raises(KeyError, match="compute_head_results"):
        cache["result", 0]


# --- 4. accumulated_resid and decompose_resid ---------------------------------------------------


def test_accumulated_resid_is_the_residual_stream_at_each_layer(reference, full):
    n = reference.cfg.n_layers
    stack, labels = full.accumulated_resid(return_labels=True)
    assert labels == [f"{l}_pre" for l in range(n)] + ["final_post"]
    assert stack.shape == (n + 1, *full["resid_pre", 0].shape)
    for i in range(n + 1):
        close(stack[i], resid_entering(reference, TEXT, i), 0)
    assert isinstance(full.accumulated_resid(), np.ndarray)
    # Up to a layer, with resid_mid of the layers before it and of the layer itself.
    part, labels = full.accumulated_resid(2, incl_mid=True, mlp_input=True, return_labels=True)
    assert labels == ["0_pre", "0_mid", "1_pre", "1_mid", "2_pre", "2_mid"]
    want = [full[f"blocks.{l}.hook_{w}"] for l in range(3) for w in ("resid_pre", "resid_mid")]
    close(part, np.stack(want), 0)
    _, labels = full.accumulated_resid(1, incl_mid=True, return_labels=True)
    assert labels == ["0_pre", "0_mid", "1_pre"]
    _, labels = full.accumulated_resid(0, return_labels=True)
    assert labels == ["0_pre"]
    # Positions, as TransformerLens' Slice: an int drops the axis, a tuple is a slice, a list picks.
    close(full.accumulated_resid(pos_slice=-1), stack[:, :, -1, :], 0)
    close(full.accumulated_resid(pos_slice=(1, 4)), stack[:, :, 1:4, :], 0)
    close(full.accumulated_resid(pos_slice=slice(None, None, 2)), stack[:, :, ::2, :], 0)
    close(full.accumulated_resid(pos_slice=[0, 3]), stack[:, :, [0, 3], :], 0)


@pytest.mark.parametrize(
    "path", [GPT2, ROOT / "models" / "reference", MORE / "gemma2", MORE / "nemotron-h"],
    ids=["gpt2", "llama", "gemma2-post-norms", "nemotron-h-hybrid"],
)
def test_decompose_resid_sums_to_the_residual_stream(path):
    """The components sum to the residual stream another pass stops at, within 1e-5: after
    every block, with post-norms (what joins the stream is the post-norm's output) and in a
    hybrid whose blocks hold one sublayer each."""
    model = glassbox.load(path)
    n = model.cfg.n_layers
    _, cache = model.run_with_cache(PROMPT)
    for layer in range(n + 1):
        stack, labels = cache.decompose_resid(layer, return_labels=True)
        assert stack.shape == (len(labels), *cache["resid_pre", 0].shape)
        close(stack.astype(np.float64).sum(0), resid_entering(model, PROMPT, layer), 1e-5)
    for layer in range(n):
        if f"blocks.{layer}.hook_resid_mid" in cache:
            mid = cache.decompose_resid(layer, mlp_input=True)
            close(mid.astype(np.float64).sum(0), cache["resid_mid", layer], 1e-5)


@pytest.mark.parametrize(
    "path", [GPT2, ROOT / "models" / "reference", MORE / "gemma2"],
    ids=["gpt2-layernorm", "llama-rmsnorm", "gemma2-post-norms"],
)
def test_apply_ln_divides_by_the_cached_scale(path):
    """TransformerLens' identity: the components of the stream entering a norm, centred (for a
    LayerNorm) and divided by its cached hook_scale, sum to its hook_normalized; for the final
    layer accumulated_resid runs the final norm itself (weight and bias included)."""
    model = glassbox.load(path)
    n = model.cfg.n_layers
    _, cache = model.run_with_cache(PROMPT)
    assert model.cfg.normalization_type == ("LN" if path == GPT2 else "RMS")
    for layer in range(n + 1):
        norm = ("normalized", layer, "ln1") if layer < n else "ln_final.hook_normalized"
        parts = cache.decompose_resid(layer, apply_ln=True)
        close(parts.astype(np.float64).sum(0), cache[norm], 1e-5)
        # the stream itself is one component: it is the norm's own hook_normalized
        stream = cache.accumulated_resid(layer, apply_ln=layer < n)[-1]
        if layer < n:
            close(stream, cache[norm], 1e-5)
    mid = cache.decompose_resid(1, mlp_input=True, apply_ln=True)
    close(mid.astype(np.float64).sum(0), cache["normalized", 1, "ln2"], 1e-5)
    # positions and batch rows: the stack holds them already, the scale is cut to them
    close(cache.decompose_resid(apply_ln=True, pos_slice=-1), cache.decompose_resid(apply_ln=True)[:, :, -1], 1e-6)
    stack = cache.decompose_resid()
    close(cache.apply_ln_to_stack(stack[:, :1], batch_slice=[0]), cache.apply_ln_to_stack(stack), 1e-6)
    # the logit lens: the last stream through the final norm is what the unembedding reads
    if path == GPT2:
        w = read_safetensors(GPT2 / "model.safetensors")
        normed = cache["ln_final.hook_normalized"] * w["transformer.ln_f.weight"] + w["transformer.ln_f.bias"]
        close(cache.accumulated_resid(apply_ln=True)[-1], normed, 1e-5)
        close(normed @ w["transformer.wte.weight"].T, model(PROMPT), 1e-4)


def test_a_hook_may_edit_the_scale_in_place(gpt2):
    """TransformerLens' `scale[:] = …` (freezing a norm's scale) edits the array in place and
    returns None: the norm then divides by the edited scale."""
    _, plain = gpt2.run_with_cache(PROMPT, names_filter="blocks.0.ln1.hook_normalized")

    def double(scale, hook):
        scale[...] = scale * 2

    gpt2.add_hook("blocks.0.ln1.hook_scale", double)
    try:
        _, edited = gpt2.run_with_cache(PROMPT, names_filter="blocks.0.ln1.hook_normalized")
    finally:
        gpt2.reset_hooks()
    close(edited["blocks.0.ln1.hook_normalized"], plain["blocks.0.ln1.hook_normalized"] / 2, 1e-6)


def test_decompose_resid_labels_and_modes(gpt2):
    _, cache = gpt2.run_with_cache(PROMPT)
    stack, labels = cache.decompose_resid(return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    names = ["hook_embed", "hook_pos_embed"] + [f"blocks.{l}.hook_{w}_out" for l in range(2) for w in ("attn", "mlp")]
    close(stack, np.stack([cache[n] for n in names]), 0)
    _, labels = cache.decompose_resid(mode="attn", return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "1_attn_out"]
    _, labels = cache.decompose_resid(mode="mlp", incl_embeds=False, return_labels=True)
    assert labels == ["0_mlp_out", "1_mlp_out"]
    _, labels = cache.decompose_resid(1, mlp_input=True, return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out"]
    _, labels = cache.decompose_resid(0, return_labels=True)
    assert labels == ["embed", "pos_embed"]
    close(cache.decompose_resid(pos_slice=-1), stack[:, :, -1], 0)
    with pytest.raises(ValueError, match="mode"):
        cache.decompose_resid(mode="heads")
    # A component the model computes but names_filter left out: a KeyError, not a smaller sum.
    _, some = gpt2.run_with_cache(PROMPT, names_filter="blocks.*.hook_*_out")
    with pytest.raises(KeyError, match="hook_embed"):
        some.decompose_resid()
    _, labels = some.decompose_resid(incl_embeds=False, return_labels=True)
    assert labels == ["0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    # A cache made from a dict and a layer count reads the components off the dict.
    bare = ActivationCache(cache.to_dict(), gpt2.cfg.n_layers)
    close(bare.decompose_resid(), stack, 0)


# --- the mapping and TransformerLens' housekeeping ---------------------------------------------


def test_the_cache_is_a_mapping_of_full_names(reference, full):
    names = reference.hook_names()
    assert list(full) == names and list(full.keys()) == names and len(full) == len(names)
    assert [id(v) for v in full.values()] == [id(full[n]) for n in names]
    assert [(k, id(v)) for k, v in full.items()] == [(n, id(full[n])) for n in names]
    assert dict(full.items()).keys() == full.to_dict().keys()
    assert full.cache_dict is full.cache_dict and full.n_layers == 3 and full.model is reference
    assert "blocks.0.hook_resid_pre" in full and ("resid_pre", 0) in full and "resid_pre" not in full
    assert ("nonsense", 0) not in full and 3 not in full
    assert full.to("cpu") is full
    with pytest.raises(ValueError, match="CPU"):
        full.to("cuda")


def test_remove_batch_dim(reference):
    _, cache = reference.run_with_cache(TEXT)
    before = {k: v for k, v in cache.items()}
    assert cache.has_batch_dim and cache.remove_batch_dim() is cache and not cache.has_batch_dim
    for name, a in cache.items():
        assert a.shape == before[name].shape[1:] and np.shares_memory(a, before[name])
    # The stacks work without the batch axis (positions are still second to last).
    close(cache.accumulated_resid(pos_slice=-1), np.stack([before[f"blocks.{l}.hook_resid_pre"][0, -1] for l in range(3)] + [before["blocks.2.hook_resid_post"][0, -1]]), 0)
    close(cache.decompose_resid().sum(0), before["blocks.2.hook_resid_post"][0], 1e-5)
    with pytest.warns(UserWarning, match="already"):
        cache.remove_batch_dim()
    _, two = reference.run_with_cache([TEXT, TEXT])
    with pytest.raises(ValueError, match="batch size"):
        two.remove_batch_dim()
    assert two.has_batch_dim and two["resid_pre", 0].shape[0] == 2


# --- 5. generate takes TransformerLens' keywords -------------------------------------------------


def test_generate_takes_transformer_lens_keywords(gpt2):
    prompt = "The Eiffel Tower"
    greedy = gpt2.generate(prompt, max_new_tokens=6, do_sample=False, stop_at_eos=False)
    same = dict(max_new_tokens=6, do_sample=False, stop_at_eos=False)
    assert gpt2.generate(prompt, verbose=False, **same) == greedy
    assert gpt2.generate(prompt, verbose=True, **same) == greedy
    assert gpt2.generate(prompt, use_past_kv_cache=False, **same) == greedy
    assert gpt2.generate(prompt, padding_side="left", freq_penalty=0.0, **same) == greedy
    assert gpt2.generate(prompt, max_new_tokens=6, do_sample=False, eos_token_id=gpt2.cfg.eos_token_ids[0]) == \
        gpt2.generate(prompt, max_new_tokens=6, do_sample=False)
    # TransformerLens' positional order: input, max_new_tokens, stop_at_eos, eos_token_id, do_sample.
    assert gpt2.generate(prompt, 6, False, None, False) == greedy
    # Greedy from token ids equals each step's argmax of a full forward pass (no KV cache).
    tokens = gpt2.to_tokens(prompt)
    ids = tokens.copy()
    for _ in range(6):
        ids = np.concatenate([ids, gpt2(ids)[:, -1].argmax(-1)[:, None]], axis=1)
    out = gpt2.generate(tokens, max_new_tokens=6, do_sample=False, stop_at_eos=False, verbose=False)
    assert out.tolist() == ids.tolist()
    # What cannot be honoured is refused, not ignored.
    with pytest.raises(ValueError, match="eos_token_id"):
        gpt2.generate(prompt, max_new_tokens=2, eos_token_id=7)
    with pytest.raises(ValueError, match="frequency penalty"):
        gpt2.generate(prompt, max_new_tokens=2, freq_penalty=1.0)
    with pytest.raises(ValueError, match="padding_side"):
        gpt2.generate(prompt, max_new_tokens=2, padding_side="middle")
    with pytest.raises(TypeError):
        gpt2.generate(prompt, max_new_tokens=2, num_beams=4)
    with pytest.raises(TypeError):
        gpt2.generate(prompt, 2, True, None, True, None, None, 1.0, 0.0, True, None, None, "input", False, 7)


# --- 6. prepend_bos: the default is the tokenizer's, and it says so -----------------------------


def test_the_bos_default_is_the_tokenizers_and_is_documented(gpt2, llama):
    # This Llama tokenizer adds no BOS: neither does glassbox by default (TransformerLens would).
    bos = llama.cfg.bos_token_id
    ids = llama.to_tokens("Hello")[0].tolist()
    assert ids[0] != bos
    assert llama.to_tokens("Hello", prepend_bos=True)[0].tolist() == [bos] + ids
    assert llama("Hello").shape[1] == len(ids)
    assert llama("Hello", prepend_bos=True).shape[1] == len(ids) + 1
    _, cache = llama.run_with_cache("Hello", prepend_bos=True)
    assert cache["resid_pre", 0].shape[1] == len(ids) + 1
    # The GPT-2 fixture's BOS (50256) is outside its 384-token vocabulary: refused, not prepended.
    assert gpt2.to_tokens("Hello")[0].tolist() == gpt2.to_tokens("Hello", prepend_bos=False)[0].tolist()
    with pytest.raises(ValueError, match="outside the 384 tokens"):
        gpt2.to_tokens("Hello", prepend_bos=True)
    for doc in (glassbox.HookedModel.to_tokens.__doc__, glassbox.load.__doc__):
        assert "default_prepend_bos=True" in doc and "CLI" in doc and "prepend_bos=True" in doc
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python", 1)[1].split("\n## ", 1)[0]
    assert "default_prepend_bos=True" in section and "prepend_bos=True" in section
