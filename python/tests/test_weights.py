"""Weights by TransformerLens' names (``model.W_Q``, ``model.blocks[0].attn.W_O``, …) and the
cache's per-head and per-neuron decompositions (``stack_head_results``, ``logit_attrs``,
``get_full_resid_decomposition``, …) against TransformerLens' own, computed by
``tests/fixtures/make_tl_weights_fixtures.py`` on the GPT-2 (LayerNorm, biases) and Llama
(RMSNorm, grouped-query heads, gated MLP) parity fixtures."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import glassbox
from conftest import FIXTURES, close, read_safetensors

MORE = FIXTURES.parent.parent / "crates" / "glassbox-models" / "tests" / "fixtures" / "more"


def transformer_lens(name: str):
    path = FIXTURES / "analyses" / f"tl-weights-{name}.safetensors"
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(json.loads(raw[8 : 8 + n])["__metadata__"]["meta"])
    return read_safetensors(path), meta


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def case(request, gpt2, llama):
    model = {"gpt2": gpt2, "llama": llama}[request.param]
    tl, meta = transformer_lens(request.param)
    ids = np.array([meta["input_ids"]], dtype=np.uint32)
    _, cache = model.run_with_cache(ids)
    return model, cache, tl, meta


def tl_weights(tl) -> dict[str, np.ndarray]:
    return {k.removeprefix("weight."): v for k, v in tl.items() if k.startswith("weight.")}


def test_every_weight_is_transformer_lens_own(case):
    model, _, tl, _ = case
    theirs = tl_weights(tl)
    assert set(model.weight_names()) == set(theirs)
    for name, want in theirs.items():
        close(model.get_weight(name), want, 1e-6)
    assert set(model.state_dict()) == set(theirs)


def test_stacked_and_grouped_access(case):
    model, _, tl, _ = case
    theirs = tl_weights(tl)
    n = model.cfg.n_layers
    for field, part in [("W_Q", "attn"), ("W_K", "attn"), ("W_V", "attn"), ("W_O", "attn"), ("b_Q", "attn"),
                        ("b_K", "attn"), ("b_V", "attn"), ("b_O", "attn"), ("W_in", "mlp"), ("W_out", "mlp"),
                        ("b_in", "mlp"), ("b_out", "mlp")]:
        want = np.stack([theirs[f"blocks.{l}.{part}.{field}"] for l in range(n)])
        close(getattr(model, field), want, 1e-6)
    c = model.cfg
    assert model.W_K.shape == (n, c.n_heads, c.d_model, c.d_head)
    assert model.W_O.shape == (n, c.n_heads, c.d_head, c.d_model)
    close(model.blocks[1].attn.W_O, theirs["blocks.1.attn.W_O"], 1e-6)
    close(model.blocks[0].ln2.w, theirs["blocks.0.ln2.w"], 1e-6)
    close(model.unembed.W_U, theirs["unembed.W_U"], 1e-6)
    close(model.W_U, theirs["unembed.W_U"], 1e-6)
    close(model.b_U, theirs["unembed.b_U"], 1e-6)
    close(model.W_E, theirs["embed.W_E"], 1e-6)
    close(model.ln_final.w, theirs["ln_final.w"], 1e-6)
    if "pos_embed.W_pos" in theirs:
        close(model.W_pos, theirs["pos_embed.W_pos"], 1e-6)
        assert not hasattr(model.blocks[0].mlp, "W_gate")
    else:
        close(model.W_gate, np.stack([theirs[f"blocks.{l}.mlp.W_gate"] for l in range(n)]), 1e-6)
        with pytest.raises(AttributeError, match="no such weight"):
            model.W_pos
    assert "W_Q" in dir(model.blocks[0].attn)
    # read-only: a model changes through hooks and adapters
    with pytest.raises(ValueError):
        model.W_U[0, 0] = 1.0
    with pytest.raises(KeyError, match="no such weight"):
        model.get_weight("blocks.0.attn.W_nothing")


def test_biases_and_residual_directions(case):
    model, _, tl, meta = case
    close(model.accumulated_bias(1, mlp_input=True), tl["result.accumulated_bias_1_mlp_input"], 1e-6)
    ids = np.array([meta["input_ids"]])
    close(model.tokens_to_residual_directions(ids), tl["result.tokens_to_residual_directions"], 1e-6)
    answer = meta["answer_id"]
    close(model.tokens_to_residual_directions(answer), model.W_U[:, answer], 0)
    close(model.tokens_to_residual_directions(" Mary"), model.W_U[:, answer], 0)
    with pytest.raises(ValueError, match="layer"):
        model.accumulated_bias(model.cfg.n_layers, mlp_input=True)


def test_head_results_and_direct_logit_attribution(case):
    model, cache, tl, meta = case
    heads, labels = cache.stack_head_results(-1, return_labels=True, incl_remainder=True, pos_slice=-1, apply_ln=True)
    assert labels == meta["stack_head_results"]["labels"]
    close(heads, tl["result.stack_head_results"], 1e-4)
    close(cache["result", 0], tl["result.head_results_0"], 1e-4)
    attrs = cache.logit_attrs(heads, tokens=meta["answer_id"], incorrect_tokens=meta["wrong_id"], pos_slice=-1)
    # through the final norm's weight, as TransformerLens' with the norms folded in (its
    # unprocessed model leaves the weight out: the same without it)
    close(attrs, tl["result.logit_attrs_folded"], 1e-4)
    unweighted = (cache.apply_ln_to_stack(heads, pos_slice=-1) * (model.W_U[:, meta["answer_id"]] - model.W_U[:, meta["wrong_id"]])).sum(-1)
    close(unweighted, tl["result.logit_attrs"], 1e-4)
    # a full decomposition's attributions add up to the logit difference, less the biases
    logits = model(np.array([meta["input_ids"]]))
    a, w = meta["answer_id"], meta["wrong_id"]
    full_attrs = cache.logit_attrs(cache.get_full_resid_decomposition(apply_ln=True), tokens=a, incorrect_tokens=w)
    close(full_attrs, tl["result.full_resid_logit_attrs_folded"], 1e-4)
    bias = model.b_U[a] - model.b_U[w]
    if "ln_final.b" in model.weight_names():
        bias += model.ln_final.b @ (model.W_U[:, a] - model.W_U[:, w])
    # (logit_attrs normalises the stack itself: it takes the components as they are)
    raw_attrs = cache.logit_attrs(cache.get_full_resid_decomposition(), tokens=a, incorrect_tokens=w)
    close(raw_attrs.sum(axis=0)[0], logits[0, :, a] - logits[0, :, w] - bias, 1e-4)
    # a string names the same token
    close(cache.logit_attrs(heads, tokens=" Mary", incorrect_tokens=" John", pos_slice=-1), attrs, 0)
    with pytest.raises(ValueError, match="same shape"):
        cache.logit_attrs(heads, tokens=meta["answer_id"], incorrect_tokens=[1, 2], pos_slice=-1)
    # the heads and the remainder add up to the stream the final norm reads
    raw = cache.stack_head_results(incl_remainder=True)
    close(raw.sum(axis=0), cache["resid_post", -1], 1e-5)


def test_neuron_results(case):
    _, cache, tl, meta = case
    neurons, labels = cache.stack_neuron_results(
        2, neuron_slice=(0, 10), return_labels=True, incl_remainder=True, apply_ln=True,
        project_output_onto=cache.model.W_U[:, meta["answer_id"]] - cache.model.W_U[:, meta["wrong_id"]],
    )
    assert labels == meta["stack_neuron_results"]["labels"]
    close(neurons, tl["result.stack_neuron_results"], 1e-4)
    close(cache.get_neuron_results(1, neuron_slice=[3, 5], pos_slice=(2, 5)), tl["result.neuron_results_1"], 1e-4)


def test_full_residual_decomposition(case):
    _, cache, tl, meta = case
    full, labels = cache.get_full_resid_decomposition(apply_ln=True, pos_slice=-1, return_labels=True)
    assert labels == meta["full_resid"]["labels"]
    close(full, tl["result.full_resid"], 1e-4)
    mid, labels = cache.get_full_resid_decomposition(layer=1, mlp_input=True, expand_neurons=False, return_labels=True)
    assert labels == meta["full_resid_mid"]["labels"]
    close(mid, tl["result.full_resid_mid"], 1e-4)
    # without the norm, the components add up to the residual stream itself
    close(cache.get_full_resid_decomposition().sum(axis=0), cache["resid_post", -1], 1e-5)
    close(mid.sum(axis=0), cache["resid_mid", 1], 1e-5)
    # projected with the norm folded in = normalised, then projected
    direction = cache.model.W_U[:, meta["answer_id"]]
    close(cache.get_full_resid_decomposition(apply_ln=True, project_output_onto=direction),
          cache.get_full_resid_decomposition(apply_ln=True) @ direction, 1e-5)


def test_decompositions_are_refused_where_they_do_not_add_up(gpt2):
    # Gemma 2 normalises each sublayer's output before it joins the residual stream.
    gemma2 = glassbox.load(MORE / "gemma2")
    _, cache = gemma2.run_with_cache("the cat sat")
    cache.compute_head_results()  # each head's output itself is defined
    c = gemma2.cfg
    assert cache["result", 0].shape == (*cache["z", 0].shape[:2], c.n_heads, c.d_model)
    with pytest.raises(NotImplementedError, match="ln1_post"):
        cache.stack_head_results()
    with pytest.raises(NotImplementedError, match="ln2_post"):
        cache.stack_neuron_results(1)
    # a cache made without the model has no weights to use
    _, own = gpt2.run_with_cache("the cat sat")
    bare = glassbox.ActivationCache(dict(own.items()), gpt2.cfg.n_layers)
    with pytest.raises(ValueError, match="needs the model"):
        bare.stack_head_results()


def test_hybrid_layers_without_attention_are_named(tmp_path):
    # Nemotron-H holds Mamba, attention and MLP blocks: stacking over layers names the one
    # lacking the weight; the blocks that have it give it.
    model = glassbox.load(MORE / "nemotron-h")
    names = model.weight_names()
    with_attention = [n for n in names if n.endswith("attn.W_Q")]
    assert with_attention and len(with_attention) < model.cfg.n_layers
    with pytest.raises(AttributeError, match="has no blocks"):
        model.W_Q
    layer = int(with_attention[0].split(".")[1])
    assert model.blocks[layer].attn.W_Q.shape == (model.cfg.n_heads, model.cfg.d_model, model.cfg.d_head)


def nearest_distance(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest distance from one of `theirs` to the nearest of `ours` (eigenvalues come in
    no fixed order)."""
    ours, theirs = ours.reshape(-1, ours.shape[-1]), theirs.reshape(-1, theirs.shape[-1])
    return max(float(np.abs(o[None, :] - t[:, None]).min(axis=1).max()) for o, t in zip(ours, theirs))


def test_factored_circuits_are_transformer_lens_own(case):
    model, _, tl, meta = case
    OV, QK = model.OV, model.QK
    c = model.cfg
    assert isinstance(OV, glassbox.FactoredMatrix)
    assert OV.shape == (c.n_layers, c.n_heads, c.d_model, c.d_model) and OV.mdim == c.d_head
    close(OV[1, 2].AB, tl["result.ov_ab_1_2"], 1e-5)
    close(OV.S, tl["result.ov_s"], 1e-5)
    close(QK.norm(), tl["result.qk_norm"], 1e-5)
    eig = OV.eigenvalues
    theirs = tl["result.ov_eig_real"] + 1j * tl["result.ov_eig_imag"]
    assert eig.shape == theirs.shape
    assert nearest_distance(eig, theirs) < 1e-4 * max(1.0, float(np.abs(theirs).max()))
    close(QK.get_corner(3), tl["result.qk_corner"], 1e-5)
    close((OV @ model.W_U)[1, 0].S, tl["result.ov_wu_s_1_0"], 1e-5)
    close((model.W_E[:5] @ OV[0, 1]).AB, tl["result.we_ov_ab"], 1e-5)
    close(OV[1, 2, :5].AB, tl["result.ov_rows"], 1e-5)
    close(OV[0, 1, 2, 3].AB, tl["result.ov_entry"], 1e-5)
    close(OV[0, 0].make_even().AB, tl["result.ov_even_ab"], 1e-5)
    close(QK[0, 0].T.AB, tl["result.qk_t_ab"], 1e-5)
    close((OV[0, 1] @ OV[1, 2]).AB, tl["result.ov_ov_ab"], 1e-5)
    close(OV[1, 0] @ model.W_U[:, meta["answer_id"]], tl["result.ov_times_vector"], 1e-5)
    # the SVD reconstructs the product; collapsing keeps it
    U, S, V = OV[1].svd()
    close((U * S[..., None, :]) @ np.swapaxes(V, -1, -2), OV[1].AB, 1e-5)
    close(OV[1].U @ OV[1].collapse_l(), OV[1].AB, 1e-5)
    close(OV[1].collapse_r() @ np.swapaxes(OV[1].V, -1, -2), OV[1].AB, 1e-5)
    close((2.0 * OV[0, 0]).AB, 2.0 * OV[0, 0].AB, 1e-6)
    with pytest.raises(ValueError, match="inner"):
        OV[0, 0] @ np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="scalar"):
        OV * np.ones(2)


def test_every_family_decomposes_into_its_own_stream():
    """Beyond TransformerLens' fixtures: each decomposition adds up to the stream it decomposes,
    in families where a block is not "heads + neurons" — a parallel block (Pythia), Mamba
    mixers (Nemotron-H), mixtures of experts (OLMoE) — and Gemma's embeddings are scaled."""
    for path in (FIXTURES / "parity" / "pythia", MORE / "nemotron-h", MORE / "olmoe", MORE / "gemma", MORE / "qwen3"):
        model = glassbox.load(path)
        ids = model.to_tokens("When Mary and John went to the store")
        _, cache = model.run_with_cache(ids)
        n = model.cfg.n_layers
        full, labels = cache.get_full_resid_decomposition(return_labels=True)
        close(full.sum(axis=0), cache["resid_post", -1], 1e-5)
        assert len(labels) == full.shape[0]
        close(cache.get_full_resid_decomposition(expand_neurons=False).sum(axis=0), cache["resid_post", -1], 1e-5)
        for layer in range(n):
            if f"blocks.{layer}.hook_mlp_out" not in model.hook_names():
                continue
            # what the MLP of `layer` reads (resid_mid, or resid_pre in a parallel or MLP-only block)
            mid = f"blocks.{layer}.hook_resid_mid"
            reads = cache[mid] if mid in cache else cache["resid_pre", layer]
            close(cache.get_full_resid_decomposition(layer, mlp_input=True).sum(axis=0), reads, 1e-5, )
            close(cache.decompose_resid(layer, mlp_input=True).sum(axis=0), reads, 1e-5)
        # the remainder of no layer is the embeddings themselves
        heads, labels = cache.stack_head_results(0, incl_remainder=True, return_labels=True)
        assert labels == ["remainder"]
        close(heads[0], cache["resid_pre", 0], 0)
        close(cache["hook_embed"], model.W_E[ids], 1e-6)
    # Nemotron-H's Mamba blocks and OLMoE's experts contribute their whole outputs
    assert any(l.endswith("_attn_out") for l in glassbox_labels(MORE / "nemotron-h"))
    assert any(l.endswith("_mlp_out") for l in glassbox_labels(MORE / "olmoe"))
    olmoe = glassbox.load(MORE / "olmoe")
    _, cache = olmoe.run_with_cache("the cat sat")
    with pytest.raises(NotImplementedError, match="mixture of experts"):
        cache.stack_neuron_results(1)


def glassbox_labels(path) -> list[str]:
    model = glassbox.load(path)
    _, cache = model.run_with_cache("the cat sat")
    return cache.get_full_resid_decomposition(return_labels=True)[1]


def test_smaller_transformer_lens_conveniences(gpt2, llama):
    _, cache = gpt2.run_with_cache("the cat sat on the mat")
    n = gpt2.cfg.n_layers
    close(cache.get_neuron_results(-1), cache.get_neuron_results(n - 1), 0)
    assert gpt2.W_gate is None and llama.W_gate is not None
    assert gpt2.W_E_pos.shape == (gpt2.cfg.d_vocab + gpt2.cfg.n_ctx, gpt2.cfg.d_model)
    close(gpt2.tokens_to_residual_directions([-1, 3]), gpt2.W_U[:, [-1, 3]].T, 0)
    with pytest.raises(ValueError, match="token ids"):
        gpt2.tokens_to_residual_directions(gpt2.cfg.d_vocab)
    # with the norm folded in, projecting the MLP input's components = projecting them after
    p = gpt2.W_U[:, 5]
    close(cache.get_full_resid_decomposition(1, mlp_input=True, apply_ln=True, project_output_onto=p),
          cache.get_full_resid_decomposition(1, mlp_input=True, apply_ln=True) @ p, 1e-5)
    qwen3 = glassbox.load(MORE / "qwen3")
    assert qwen3.blocks[0].attn.q_norm.w.shape == (qwen3.cfg.d_head,)
    assert "q_norm" in dir(qwen3.blocks[0].attn)
