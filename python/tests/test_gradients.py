"""Gradients at hook points against TransformerLens' own (``grad.*`` in
``tests/fixtures/analyses/tl-weights-{gpt2,llama}.safetensors``, made by
``make_tl_weights_fixtures.py``): ``run_with_cache(incl_bwd=True)`` with the loss, backward hooks
with a metric — through ``run_with_hooks(metric=…)`` and through TransformerLens' own recipe,
``metric(glassbox.torch.forward(model, tokens)).backward()``."""

from __future__ import annotations

import os

import numpy as np
import pytest

import glassbox
from conftest import close
from test_weights import transformer_lens


def _torch():
    # The test command installs torch and requires these tests (GLASSBOX_REQUIRE_TORCH=1);
    # elsewhere a missing torch skips them, said in pytest's summary.
    if os.environ.get("GLASSBOX_REQUIRE_TORCH") == "1":
        import torch

        return torch
    return pytest.importorskip("torch", reason="torch is not installed here (glassbox does not need it)")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def case(request, gpt2, llama):
    model = {"gpt2": gpt2, "llama": llama}[request.param]
    tl, meta = transformer_lens(request.param)
    hooks = tuple(meta["grad"]["hooks"])
    ids = np.array([meta["input_ids"]], dtype=np.uint32)
    corrupt = np.array([meta["patch"]["corrupt_ids"]], dtype=np.uint32)
    answer, wrong = meta["answer_id"], meta["wrong_id"]

    def metric(logits):
        return logits[0, -1, answer] - logits[0, -1, wrong]

    return model, tl, (lambda n: n.endswith(hooks)), ids, corrupt, metric


def _expected(tl, kind):
    prefix = f"grad.{kind}."
    return {k[len(prefix) :]: v for k, v in tl.items() if k.startswith(prefix)}


def test_incl_bwd_caches_the_loss_gradient_at_every_hook(case):
    model, tl, wanted, ids, _, _ = case
    loss, cache = model.run_with_cache(ids, names_filter=wanted, return_type="loss", incl_bwd=True)
    close(loss, tl["grad.loss_value"][0], 1e-5)
    expected = _expected(tl, "loss")
    grads = {k[: -len("_grad")] for k in cache.keys() if k.endswith("_grad")}
    assert grads == set(expected), grads ^ set(expected)
    for name, grad in expected.items():
        got = cache[f"{name}_grad"]
        close(got, grad, 1e-4)
        assert np.abs(got).max() > 0 or np.abs(grad).max() == 0, name
    # the activations are cached beside them, unchanged by the gradients' leaves
    _, plain = model.run_with_cache(ids, names_filter=wanted)
    for name in plain.keys():
        assert np.array_equal(cache[name], plain[name]), name


def test_backward_hooks_see_the_metrics_gradient(case):
    torch = _torch()
    model, tl, wanted, _, corrupt, metric = case
    expected = _expected(tl, "metric")
    seen = {}

    def keep(grad, hook):
        seen[hook.name] = grad.copy()

    # TransformerLens' attribution-patching recipe: a backward hook, then .backward()
    import glassbox.torch as gt

    model.reset_hooks(including_permanent=True)
    model.add_hook(wanted, keep, "bwd")
    try:
        logits = gt.forward(model, corrupt)
        assert logits.requires_grad
        assert torch.equal(logits.detach(), torch.from_numpy(model(corrupt)))
        value = metric(logits)
        assert not seen  # the backward pass runs on .backward(), not before
        value.backward()
    finally:
        model.reset_hooks(direction="bwd")
    assert set(seen) == set(expected), set(seen) ^ set(expected)
    for name, grad in expected.items():
        close(seen[name], grad, 1e-4)
    # backward hooks run last hook point first, as a backward pass reaches them
    order = list(seen)
    assert order == [n for n in reversed(model.hook_names()) if wanted(n)]

    # the same gradients in one call, without torch's graph
    again = {}
    model.run_with_hooks(corrupt, bwd_hooks=[(wanted, lambda g, hook: again.__setitem__(hook.name, g.copy()))], metric=metric)
    assert list(again) == order
    for name in seen:
        assert np.array_equal(again[name], seen[name]), name
    # and with the bwd hooks gone, torch logits are plain again
    assert not gt.forward(model, corrupt).requires_grad


def test_a_forward_hooks_replacement_is_a_constant_to_the_gradient(gpt2):
    ids = gpt2.to_tokens("When Mary and John went to the store")
    seen = {}

    def keep(grad, hook):
        seen[hook.name] = grad.copy()

    every = ["blocks.0.attn.hook_v", "blocks.0.attn.hook_z", "blocks.0.hook_resid_pre"]
    gpt2.run_with_hooks(ids, bwd_hooks=[(every, keep)], return_type="loss")
    assert all(np.abs(seen[n]).max() > 0 for n in every)
    zeroed = {}
    with pytest.warns(UserWarning, match="blocks.0.attn.hook_z: to the gradients each change is a constant"):
        gpt2.run_with_hooks(
            ids,
            fwd_hooks=[("blocks.0.attn.hook_z", lambda z, hook: np.zeros_like(z))],
            bwd_hooks=[(every, lambda g, hook: zeroed.__setitem__(hook.name, g.copy()))],
            return_type="loss",
        )
    # the values and z's own gradient (after its hook) are there; nothing flows back through z
    assert np.abs(zeroed["blocks.0.attn.hook_z"]).max() > 0
    assert np.abs(zeroed["blocks.0.attn.hook_v"]).max() == 0
    # the residual stream still reaches the loss around the attention
    assert np.abs(zeroed["blocks.0.hook_resid_pre"]).max() > 0
    assert not np.array_equal(zeroed["blocks.0.hook_resid_pre"], seen["blocks.0.hook_resid_pre"])


def test_the_loss_gradient_is_the_losss_derivative(gpt2):
    # A finite difference along the gradient at one hook: the loss moves by ε·|g|².
    ids = gpt2.to_tokens("When Mary and John went to the store")
    name = "blocks.1.hook_resid_pre"
    loss, cache = gpt2.run_with_cache(ids, names_filter=name, return_type="loss", incl_bwd=True)
    g = cache[f"{name}_grad"]
    eps = 1e-2 / float(np.linalg.norm(g))
    moved = gpt2.run_with_hooks(ids, fwd_hooks=[(name, lambda x, hook: x + eps * g)], return_type="loss")
    slope = (moved - loss) / eps
    assert abs(slope - float((g * g).sum())) < 0.05 * float((g * g).sum())


def test_gradients_need_a_scalar_and_observe_only(gpt2):
    ids = gpt2.to_tokens("When Mary and John")
    with pytest.raises(ValueError, match="needs a scalar"):
        gpt2.run_with_cache(ids, names_filter="blocks.0.hook_resid_pre", incl_bwd=True)
    with pytest.raises(ValueError, match="incl_bwd=True"):
        gpt2.run_with_cache(ids, metric=lambda logits: logits.sum())
    with pytest.raises(ValueError, match="stopped early"):
        gpt2.run_with_cache(ids, return_type="loss", incl_bwd=True, stop_at_layer=1)
    with pytest.raises(NotImplementedError, match="observe gradients"):
        gpt2.run_with_hooks(ids, bwd_hooks=[("blocks.0.hook_resid_pre", lambda g, hook: g * 2)], return_type="loss")
    with pytest.raises(ValueError, match="no hook point matches"):
        gpt2.run_with_hooks(ids, bwd_hooks=[("blocks.0.hook_resid_typo", lambda g, hook: None)], return_type="loss")
    with pytest.raises(ValueError, match="dir="):
        gpt2.add_hook("blocks.0.hook_resid_pre", lambda g, hook: None, dir="sideways")
    # the native graph: one backward pass, a seed of the logits' shape
    held, _, graph = gpt2._m.forward_with_graph(np.ascontiguousarray(ids, dtype=np.uint32), ["blocks.0.hook_resid_pre"])
    logits = np.asarray(held)
    with pytest.raises(ValueError, match="shape"):
        graph.backward(np.ones((1, 2), dtype=np.float32))
    ((name, grad),) = graph.backward(np.ones_like(logits))
    assert name == "blocks.0.hook_resid_pre" and np.asarray(grad).shape == (1, ids.shape[1], gpt2.cfg.d_model)
    with pytest.raises(RuntimeError, match="already ran"):
        graph.backward(np.ones_like(logits))


def test_backward_hooks_in_contexts_and_resets(gpt2):
    ids = gpt2.to_tokens("When Mary and John")
    calls = []
    hook = ("blocks.0.hook_resid_post", lambda g, hook: calls.append(hook.name))
    with gpt2.hooks(bwd_hooks=[hook]):
        gpt2.run_with_cache(ids, names_filter="blocks.1.hook_resid_pre", return_type="loss", incl_bwd=True)
        assert calls == ["blocks.0.hook_resid_post"]
        gpt2(ids)  # a forward pass alone runs no backward hook
        assert len(calls) == 1
    gpt2.run_with_hooks(ids, bwd_hooks=[("blocks.1.hook_resid_pre", lambda g, hook: None)], return_type="loss")
    assert len(calls) == 1  # the context's hook is gone
    gpt2.add_hook(*hook, dir="bwd")
    gpt2.add_hook("blocks.0.hook_resid_pre", lambda x, hook: None)
    gpt2.reset_hooks(direction="bwd")
    assert gpt2._persistent and not gpt2._bwd_persistent
    gpt2.reset_hooks()
    assert not gpt2._persistent
    assert isinstance(glassbox.gradients.NEEDS_A_SCALAR, str)


def test_attribution_patching_from_python_equals_the_rust_librarys(gpt2):
    # TransformerLens-style attribution patching written with the Python gradients gives
    # `glassbox.patch(method="attribution")`'s cells (the Rust library's analysis).
    clean = "When Mary and John went to the store, John gave a drink to"
    corrupt = clean.replace("John gave", "Mary gave")
    doc = glassbox.patch(gpt2, clean, corrupt, " Mary", " John", what="resid_pre", method="attribution")
    (result,) = doc["results"]
    answer, wrong = doc["answer"], doc["wrong"]

    def metric(logits):
        return logits[0, -1, answer] - logits[0, -1, wrong]

    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(gpt2.cfg.n_layers)]
    _, clean_cache = gpt2.run_with_cache(np.array([doc["clean_ids"]]), names_filter=names)
    corrupt_metric, grads = None, {}
    logits = gpt2.run_with_hooks(
        np.array([doc["corrupt_ids"]]),
        bwd_hooks=[(names, lambda g, hook: grads.__setitem__(hook.name, g.copy()))],
        metric=metric,
    )
    corrupt_metric = float(logits[0, -1, answer] - logits[0, -1, wrong])
    close(corrupt_metric, result["corrupt_metric"], 1e-6)
    _, corrupt_cache = gpt2.run_with_cache(np.array([doc["corrupt_ids"]]), names_filter=names)
    for layer, name in enumerate(names):
        delta = clean_cache[name] - corrupt_cache[name]
        cells = corrupt_metric + (delta * grads[name]).sum(-1)[0]
        close(cells, result["raw"][layer], 1e-5)


def test_start_at_layer_runs_the_rest_of_the_model(case):
    model, tl, _, ids, _, _ = case
    _, cache = model.run_with_cache(ids, names_filter="blocks.1.hook_resid_pre")
    half = cache["blocks.1.hook_resid_pre"] * 0.5
    close(model(half, start_at_layer=1), tl["result.start_at_layer_1"], 1e-4)
    loss = model(half, start_at_layer=1, tokens=ids, return_type="loss")
    close(loss, tl["result.start_at_layer_1_loss"][0], 1e-5)
    # from the pass's own stream: the full pass, bit for bit, and only the later hooks run
    full, every = model.run_with_cache(ids)
    n = model.cfg.n_layers
    logits, later = model.run_with_cache(every["blocks.1.hook_resid_pre"], start_at_layer=1)
    assert np.array_equal(logits, full)
    assert "blocks.0.hook_resid_post" not in later and "hook_embed" not in later
    for name in later.keys():
        assert np.array_equal(later[name], every[name]), name
    assert np.array_equal(model(every[f"blocks.{n - 1}.hook_resid_post"], start_at_layer=n), full)
    assert np.array_equal(model(every["blocks.0.hook_resid_pre"][0], start_at_layer=-n), full)
    # with stop_at_layer: the blocks between (none: the stream as it went in, as TransformerLens)
    mid = model(every["blocks.0.hook_resid_pre"], start_at_layer=0, stop_at_layer=1)
    assert np.array_equal(mid, every["blocks.0.hook_resid_post"])
    assert np.array_equal(model(half, start_at_layer=1, stop_at_layer=1), half)
    # hooks and gradients from there on
    seen = {}
    model.run_with_hooks(
        half, start_at_layer=1, tokens=ids, return_type="loss",
        bwd_hooks=[("blocks.1.hook_resid_pre", lambda g, hook: seen.__setitem__(hook.name, g.copy()))],
    )
    assert np.abs(seen["blocks.1.hook_resid_pre"]).max() > 0
    for bad, message in (
        (dict(input=half[..., :-1], start_at_layer=1), "d_model"),
        (dict(input=half, start_at_layer=n + 1), "start_at_layer must be"),
        (dict(input=half, start_at_layer=1, return_type="loss"), "needs tokens="),
        (dict(input=half, start_at_layer=1, attention_mask=np.zeros(half.shape[:2])), "unpadded"),
    ):
        with pytest.raises(ValueError, match=message):
            model(**bad)


def test_torch_losses_from_a_layer_carry_the_graph(gpt2):
    _torch()
    import glassbox.torch as gt

    ids = gpt2.to_tokens("When Mary and John went to the store")
    name = "blocks.1.hook_resid_post"
    expected, cache = gpt2.run_with_cache(ids, names_filter=[name, "blocks.1.hook_resid_pre"], return_type="loss", incl_bwd=True)
    seen = {}
    gpt2.add_hook(name, lambda g, hook: seen.__setitem__(hook.name, g.copy()), "bwd")
    try:
        loss = gt.forward(gpt2, cache["blocks.1.hook_resid_pre"], start_at_layer=1, tokens=ids, return_type="loss")
        close(loss.item(), expected, 1e-6)
        loss.backward()
    finally:
        gpt2.reset_hooks(direction="bwd")
    close(seen[name], cache[f"{name}_grad"], 1e-6)


def test_forward_hooks_in_a_gradient_pass_see_copies(gpt2):
    # An edit in place is a replacement like a returned array (the softmax's backward reads its
    # own output, the pattern: editing the engine's memory would corrupt every gradient before
    # it); a hook that only looks changes nothing, not even the gradients.
    ids = gpt2.to_tokens("When Mary and John went to the store")
    points = ["blocks.1.attn.hook_q", "blocks.0.hook_resid_pre"]

    def grads(fwd_hooks):
        seen = {}
        gpt2.run_with_hooks(ids, fwd_hooks=fwd_hooks, bwd_hooks=[(points, lambda g, hook: seen.__setitem__(hook.name, g.copy()))], return_type="loss")
        return seen

    plain = grads([])
    kept = {}
    looked = grads([("blocks.1.attn.hook_pattern", lambda p, hook: kept.__setitem__("p", p))])
    for name in points:
        assert np.array_equal(looked[name], plain[name]), name
    _, cache = gpt2.run_with_cache(ids, names_filter="blocks.1.attn.hook_pattern")
    assert np.array_equal(kept["p"], cache["blocks.1.attn.hook_pattern"])

    def in_place(p, hook):
        p[:, 0] = 0.0

    def returned(p, hook):
        q = p.copy()
        q[:, 0] = 0.0
        return q

    with pytest.warns(UserWarning, match="hook_pattern"):
        edited = grads([("blocks.1.attn.hook_pattern", in_place)])
    with pytest.warns(UserWarning, match="hook_pattern"):
        replaced = grads([("blocks.1.attn.hook_pattern", returned)])
    for name in points:
        assert np.array_equal(edited[name], replaced[name]), name
    assert not np.array_equal(edited["blocks.0.hook_resid_pre"], plain["blocks.0.hook_resid_pre"])


def test_gradients_of_a_padded_batch_are_each_rows_own(gpt2):
    short, long = "When Mary and John", "When Mary and John went to the store"
    batch = gpt2.to_tokens([long, short])
    mask = (batch != gpt2.tokenizer.pad_token_id).astype(np.int64) if gpt2.tokenizer else None
    alone = gpt2.to_tokens(short)
    n = alone.shape[1]
    assert mask is not None and mask[1].sum() == n

    def metric_at(row, pos):
        return lambda logits: logits[row, pos, 5] - logits[row, pos, 7]

    name = "blocks.0.hook_resid_pre"
    got, ref = {}, {}
    gpt2.run_with_hooks(batch, attention_mask=mask, bwd_hooks=[(name, lambda g, hook: got.__setitem__("g", g.copy()))], metric=metric_at(1, n - 1))
    gpt2.run_with_hooks(alone, bwd_hooks=[(name, lambda g, hook: ref.__setitem__("g", g.copy()))], metric=metric_at(0, n - 1))
    close(got["g"][1, :n], ref["g"][0], 1e-5)
    assert not np.any(got["g"][1, n:]) and not np.any(got["g"][0])


def test_a_residual_streams_torch_gradient(gpt2):
    torch = _torch()
    import glassbox.torch as gt

    ids = gpt2.to_tokens("When Mary and John went to the store")
    _, cache = gpt2.run_with_cache(ids, names_filter="blocks.1.hook_resid_pre", return_type="loss", incl_bwd=True)
    resid = torch.tensor(cache["blocks.1.hook_resid_pre"]).requires_grad_()
    loss = gt.forward(gpt2, resid, start_at_layer=1, tokens=ids, return_type="loss")
    loss.backward()
    close(resid.grad.numpy(), cache["blocks.1.hook_resid_pre_grad"], 1e-6)
    with pytest.raises(ValueError, match="final norm"):
        gt.forward(gpt2, resid, start_at_layer=gpt2.cfg.n_layers)


def test_transformer_lens_idioms_that_cannot_work_here_say_why(gpt2):
    ids = gpt2.to_tokens("When Mary and John")
    with pytest.raises(ValueError, match="glassbox.torch.forward"):
        gpt2.run_with_hooks(ids, return_type="loss", bwd_hooks=[("blocks.0.hook_resid_pre", lambda g, hook: None)], reset_hooks_end=False)
    assert not gpt2._bwd_persistent
    with pytest.raises(ValueError, match="per-token loss"):
        gpt2.run_with_cache(ids, return_type="loss", loss_per_token=True, incl_bwd=True)


def test_transformer_lens_attribution_patching_recipe(case):
    # TransformerLens' `get_cache_fwd_and_bwd`, as its attribution-patching demo writes it, with
    # `model(tokens)` as glassbox.torch.forward and the torch hooks wrapped by glassbox.torch.hook.
    torch = _torch()
    import glassbox.torch as gt

    model, tl, wanted, _, corrupt, metric = case

    def get_cache_fwd_and_bwd(model, tokens, metric):
        model.reset_hooks()
        cache = {}

        def forward_cache_hook(act, hook):
            cache[hook.name] = act.detach()

        model.add_hook(wanted, gt.hook(forward_cache_hook), "fwd")
        grad_cache = {}

        def backward_cache_hook(act, hook):
            grad_cache[hook.name] = act.detach()

        model.add_hook(wanted, gt.hook(backward_cache_hook), "bwd")
        value = metric(gt.forward(model, tokens))
        value.backward()
        model.reset_hooks()
        return value.item(), cache, grad_cache

    value, cache, grad_cache = get_cache_fwd_and_bwd(model, corrupt, metric)
    close(value, metric(model(corrupt)), 1e-6)
    expected = _expected(tl, "metric")
    assert set(grad_cache) == set(expected)
    for name, grad in expected.items():
        assert isinstance(grad_cache[name], torch.Tensor)
        close(grad_cache[name].numpy(), grad, 1e-4)
    _, plain = model.run_with_cache(corrupt, names_filter=wanted)
    for name in plain.keys():
        assert np.array_equal(cache[name].numpy(), plain[name]), name


_INTERRUPTED_BACKWARD = """
import os, signal, sys, threading, time
import numpy as np
import glassbox

model = glassbox.load(sys.argv[1])
tokens = np.random.default_rng(0).integers(0, 384, (8, 512))
marks = {}


def metric(logits, signal_after=None):
    # Called between the forward pass and the engine's backward pass.
    marks["backward"] = time.perf_counter()
    if signal_after is not None:
        def fire():
            marks["signal"] = time.perf_counter()
            os.kill(os.getpid(), signal.SIGINT)
        threading.Timer(signal_after, fire).start()
    return logits[:, -1, 0].sum()


def run(**kw):
    model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_pre", incl_bwd=True,
                         metric=lambda logits: metric(logits, **kw))


run()
backward = time.perf_counter() - marks["backward"]
try:
    run(signal_after=backward / 4)
    print("finished", backward, flush=True)
except KeyboardInterrupt:
    print("interrupted", backward, time.perf_counter() - marks["signal"], flush=True)
"""


def test_ctrl_c_interrupts_a_backward_pass(tmp_path, bigger_gpt2):
    # The backward pass (no hook points of its own) is timed uninterrupted first; the second
    # one gets SIGINT a quarter of the way in and must stop at its next product's gradient,
    # well before it would have finished.
    _torch()
    import subprocess
    import sys

    script = tmp_path / "backward.py"
    script.write_text(_INTERRUPTED_BACKWARD)
    out = subprocess.run([sys.executable, str(script), str(bigger_gpt2)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[0] == "interrupted", out.stdout
    backward, after_signal = float(words[1]), float(words[2])
    assert backward > 0.3, f"a backward pass of {backward:.2f} s is too short to interrupt measurably"
    assert after_signal < backward / 2, (backward, after_signal)
