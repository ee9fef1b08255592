"""TransformerLens notebook idioms (the ARENA tutorials, the IOI and exploratory-analysis demos)
that an outside walkthrough found failing, each as such a notebook writes it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import glassbox
from conftest import REFERENCE, ROOT, close

FIXTURES_BERT = ROOT / ".artifacts" / "all-minilm-l6-v2"

PROMPT = "the old bird sees the small cat . the dog likes the cat"


@pytest.fixture(scope="module")
def ref():
    return glassbox.load(REFERENCE)


def test_submodules_come_with_the_package():
    # a fresh interpreter: `import glassbox` alone makes its submodules attributes
    code = "import glassbox; glassbox.patching.get_act_patch_resid_pre; glassbox.torch.tensor; glassbox.utils.test_prompt"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cache_and_forward_keywords(ref):
    ids = ref.to_tokens(PROMPT)
    logits, cache = ref.run_with_cache(ids, remove_batch_dim=True)
    assert cache["resid_post", 0].shape == (ids.shape[1], ref.cfg.d_model)
    _, plain = ref.run_with_cache(ids, return_cache_object=False, names_filter="blocks.0.hook_resid_post")
    assert isinstance(plain, dict) and list(plain) == ["blocks.0.hook_resid_post"]
    per_token, _ = ref.run_with_cache(ids, return_type="loss", loss_per_token=True)
    assert per_token.shape == (1, ids.shape[1] - 1)
    out = ref(ids, return_type="both")
    assert isinstance(out, glassbox.model.Output)
    close(out.logits, logits, 0)
    assert out.loss.item() == pytest.approx(float(ref(ids, return_type="loss")))
    close(ref(ids, stop_at_layer=1), cache["resid_post", 0][None], 0)
    # start_at_layer takes the residual stream (test_gradients.py has the rest), not tokens
    with pytest.raises(ValueError, match="the input is the residual stream"):
        ref(ids, start_at_layer=1)
    close(ref(cache["resid_post", 0][None], start_at_layer=1), logits, 0)
    with pytest.raises(ValueError, match="padding_side"):
        ref.to_tokens(PROMPT, padding_side="left")
    assert ref.cfg.device == "cpu" and ref.cfg.d_vocab_out == ref.cfg.d_vocab
    assert ref.to("cpu") is ref and ref.eval() is ref


def test_logit_lens_with_the_components(ref):
    ids = ref.to_tokens(PROMPT)
    logits, cache = ref.run_with_cache(ids)
    # the usual cell: unembed(ln_final(resid)) of the last block is the logits
    close(ref.unembed(ref.ln_final(cache["resid_post", -1])), logits, 1e-5)
    close(ref.embed(ids), cache["hook_embed"], 0)
    with pytest.raises(AttributeError, match="hook points are not attributes"):
        ref.blocks[0].attn.hook_z
    with pytest.raises(AttributeError, match="hook points are not attributes"):
        ref.blocks[0].hook_resid_pre


def test_hooks_the_way_transformer_lens_keeps_them(ref):
    ids = ref.to_tokens(PROMPT)
    clean = ref(ids)

    def zero(act, hook):
        act[:] = 0.0

    ref.add_hook("blocks.0.hook_mlp_out", zero, is_permanent=True)
    ref.add_hook("blocks.1.hook_mlp_out", zero)
    both = ref(ids)
    ref.reset_hooks()  # keeps the permanent one
    only_first = ref(ids)
    assert not np.allclose(only_first, clean) and not np.allclose(only_first, both)
    ref.reset_hooks(including_permanent=True)
    close(ref(ids), clean, 0)
    # reset_hooks_end=False keeps run_with_hooks' hooks
    kept = ref.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_mlp_out", zero)], reset_hooks_end=False)
    close(ref(ids), kept, 0)
    ref.reset_hooks()
    close(ref(ids), clean, 0)
    # backward hooks need a scalar to differentiate (test_gradients.py has the rest)
    with pytest.raises(ValueError, match="needs a scalar"):
        ref.run_with_hooks(ids, bwd_hooks=[("blocks.0.hook_mlp_out", zero)])


def test_tokens_padding_and_positions(ref):
    ids = ref.to_tokens(["the old bird", PROMPT])
    pad = ref._pad_id()
    assert ref.to_str_tokens([pad]) == ["<pad>"]  # the tokenizer's own pad token
    short = len(ref.to_tokens("the old bird")[0])
    assert (ids[0, short:] == pad).all()
    bird = ref.to_single_token(" bird")
    assert ref.get_token_position(" bird", PROMPT) == list(ref.to_tokens(PROMPT)[0]).index(bird)
    assert ref.get_token_position(bird, PROMPT) == ref.get_token_position(" bird", PROMPT)
    assert ref.get_token_position(" the", PROMPT, mode="last") > ref.get_token_position(" the", PROMPT)
    with pytest.raises(ValueError, match="not in the input"):
        ref.get_token_position(" fox", "the old bird")
    long = " ".join(["bird"] * (ref.cfg.n_ctx + 10))
    assert ref.to_tokens(long).shape[1] == ref.cfg.n_ctx
    assert ref.to_tokens(long, truncate=False).shape[1] > ref.cfg.n_ctx


def test_act_names_and_test_prompt(ref, capsys):
    assert glassbox.get_act_name("k6") == "blocks.6.attn.hook_k"
    assert glassbox.get_act_name("scale4ln1") == "blocks.4.ln1.hook_scale"
    assert glassbox.get_act_name("pattern0") == "blocks.0.attn.hook_pattern"
    glassbox.utils.test_prompt("the old bird sees the", "cat", ref, top_k=3)
    out = capsys.readouterr().out
    logits = ref(ref.to_tokens("the old bird sees the"))[0, -1]
    cat = ref.to_single_token(" cat")
    rank = int((logits > logits[cat]).sum())
    word = ref.to_str_tokens([cat])[0]
    assert f"Ranks of the answer tokens: [({word!r}, {rank})]" in out
    assert out.count("Top ") == 3


def test_generation_says_when_the_context_ends(ref):
    with pytest.warns(UserWarning, match="context"):
        out = ref.generate("the old bird", max_new_tokens=ref.cfg.n_ctx + 5, stop_at_eos=False, do_sample=False,
                           return_type="tokens")
    # (the last token needs no position of its own)
    assert ref.cfg.n_ctx <= out.shape[1] <= ref.cfg.n_ctx + 1


def test_torch_hooks_and_cache(ref):
    import torch

    import glassbox.torch as gt

    ids = ref.to_tokens(PROMPT)

    def zero_head(z, hook):
        z[:, :, 1] = 0.0  # in place, on a torch view of the engine's memory

    def mean_ablate(act, hook):
        return torch.zeros_like(act) + act.mean(dim=1, keepdim=True).clone()

    def numpy_zero(z, hook):
        z[:, :, 1] = 0.0

    want = ref.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_z", numpy_zero)])
    got = gt.run_with_hooks(ref, ids, fwd_hooks=[("blocks.0.attn.hook_z", zero_head)])
    assert isinstance(got, torch.Tensor)
    assert torch.equal(got, torch.from_numpy(want))
    mean = gt.run_with_hooks(ref, ids, fwd_hooks=[("blocks.1.hook_mlp_out", mean_ablate)])
    assert not torch.equal(mean, torch.from_numpy(ref(ids)))
    logits, cache = gt.run_with_cache(ref, ids)
    assert isinstance(cache["resid_post", 0], torch.Tensor)
    heads, labels = cache.stack_head_results(-1, pos_slice=-1, return_labels=True)
    assert isinstance(heads, torch.Tensor) and labels[0] == "L0H0"
    attrs = cache.logit_attrs(heads, tokens=torch.tensor(ref.to_single_token(" cat")), pos_slice=-1)
    assert isinstance(attrs, torch.Tensor) and attrs.shape == (len(labels), 1)
    assert isinstance(cache.numpy, glassbox.ActivationCache)


def test_the_tokenizer_attribute(ref, gpt2):
    tok = ref.tokenizer
    ids = tok.encode(PROMPT)
    assert ids == list(ref.to_tokens(PROMPT)[0])
    assert tok.encode(PROMPT, add_special_tokens=False) == ids[1:]  # the reference tokenizer adds <bos>
    assert tok.decode(ids, skip_special_tokens=True) == ref.to_string(ref.to_tokens(PROMPT)[0][1:])
    assert tok.pad_token == "<pad>" and tok.pad_token_id == 2 and tok.bos_token == "<bos>"
    batch = tok(["the old bird", PROMPT], padding=True, return_tensors="np")
    close(batch["input_ids"], ref.to_tokens(["the old bird", PROMPT]), 0)
    assert batch["attention_mask"][0].sum() == len(tok.encode("the old bird"))
    assert tok.batch_decode(batch["input_ids"][:1], skip_special_tokens=True) == ["the old bird"]
    assert tok.convert_ids_to_tokens(ids[:3]) == ref.to_str_tokens(ids[:3])
    with pytest.raises(ValueError, match="padding=True"):
        tok(["the old bird", PROMPT], return_tensors="np")
    assert gpt2.tokenizer.encode(" Mary") == [gpt2.to_single_token(" Mary")]


def test_analyses_take_ids_and_pairs(gpt2):
    from conftest import PROMPT as IOI

    mary, john = gpt2.to_single_token(" Mary"), gpt2.to_single_token(" John")
    assert glassbox.attribute(gpt2, IOI, mary, john) == glassbox.attribute(gpt2, IOI, " Mary", " John")
    assert glassbox.ablate(gpt2, IOI, [(0, 1)]) == glassbox.ablate(gpt2, IOI, ["L0H1"])
    assert glassbox.lens(gpt2, gpt2.to_tokens(IOI)) == glassbox.lens(gpt2, IOI)
    with pytest.raises(TypeError, match="to_string"):
        glassbox.ablate(gpt2, gpt2.to_tokens(IOI), ["L0H1"])


def test_hook_lifetimes_with_contexts(ref):
    ids = ref.to_tokens(PROMPT)

    def zero(act, hook):
        act[:] = 0.0

    def names():
        return [patterns[0] for patterns, _ in ref._persistent]

    ref.add_hook("blocks.0.hook_mlp_out", zero)
    with ref.hooks([("blocks.1.hook_mlp_out", zero)]):
        ref.add_hook("blocks.2.hook_mlp_out", zero, prepend=True)
        ref.add_hook("blocks.0.hook_attn_out", zero, is_permanent=True)
        assert names() == ["blocks.2.hook_mlp_out", "blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out", "blocks.0.hook_attn_out"]
    # the context's own hook goes; what was added inside it stays
    assert names() == ["blocks.2.hook_mlp_out", "blocks.0.hook_mlp_out", "blocks.0.hook_attn_out"]
    ref.reset_hooks(direction="bwd")  # no backward hooks: nothing goes
    assert len(names()) == 3
    ref.reset_hooks()
    assert names() == ["blocks.0.hook_attn_out"]
    ref.add_hook("blocks.1.hook_attn_out", zero)
    ref.reset_hooks()
    assert names() == ["blocks.0.hook_attn_out"]  # an ordinary hook never inherits permanence
    ref.reset_hooks(including_permanent=True)
    assert names() == []
    close(ref(ids), ref.run_with_hooks(ids), 0)


def test_review_edges(ref, llama):
    import copy

    import glassbox.torch as gt

    # Llama 4's dense MLPs are wider than cfg.d_mlp (its experts'): every neuron is counted
    from test_weights import MORE

    llama4 = glassbox.load(MORE / "llama4")
    _, cache = llama4.run_with_cache("the cat sat on the mat")
    close(cache.get_full_resid_decomposition().sum(axis=0), cache["resid_post", -1], 1e-5)
    # torch cache: plain attributes as they are, copies work
    _, tcache = gt.run_with_cache(ref, PROMPT)
    assert tcache.model is ref and tcache.has_batch_dim
    assert copy.copy(tcache).numpy is tcache.numpy
    out, _ = gt.run_with_cache(ref, PROMPT, return_type="both")
    import torch

    assert isinstance(out.logits, torch.Tensor)
    # a weight through torch is a copy: the model's arrays stay as they are
    t = gt.tensor(ref.W_E)
    t[0] = 123.0
    assert ref.W_E[0, 0] != 123.0
    # the loss is a float (json, isinstance) with .item()
    loss = ref(PROMPT, return_type="loss")
    assert isinstance(loss, float) and loss.item() == loss
    with pytest.raises(ValueError, match="no MLP input"):
        _, c = ref.run_with_cache(PROMPT)
        c.apply_ln_to_stack(c.accumulated_resid(), None, mlp_input=True, recompute_ln=True)
    with pytest.raises(ValueError, match="layer 5 of a model with"):
        c.get_neuron_results(5)
    # an encoder without TransformerLens' embedding name: hasattr says so (an AttributeError)
    bert = glassbox.load(FIXTURES_BERT)
    assert not hasattr(bert, "W_E")
