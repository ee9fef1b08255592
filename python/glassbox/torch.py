"""Torch tensors from glassbox's NumPy arrays, through DLPack: no copy, and torch is not a
dependency of glassbox (this module imports it when used).

    import glassbox, glassbox.torch
    logits, cache = glassbox.torch.run_with_cache(model, "The Eiffel Tower is in")
    cache["resid_post", 0].norm(dim=-1)          # torch tensors, the cache's methods too

    def zero_head(z, hook):                       # a TransformerLens hook, in torch
        z[:, :, 3] = 0.0
    glassbox.torch.run_with_hooks(model, tokens, fwd_hooks=[("blocks.0.attn.hook_z", zero_head)])
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("glassbox.torch needs PyTorch: pip install torch") from e
    return torch


def tensor(array: np.ndarray):
    """A torch tensor sharing ``array``'s memory (through DLPack); a read-only array (a
    weight, which may be the engine's own memory) is copied first, since torch would let it be
    written."""
    array = np.asarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return _torch().from_dlpack(array)


def cache(activations) -> dict[str, Any]:
    """A dict of torch tensors from an ``ActivationCache`` (or any mapping of arrays)."""
    return {name: tensor(a) for name, a in activations.items()}


def _to_numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") and hasattr(x, "cpu") else x


def _to_torch(x):
    """Arrays in a method's answer as tensors (a tuple's too; labels stay strings)."""
    from .cache import ActivationCache

    if isinstance(x, np.ndarray):
        return tensor(x)
    if isinstance(x, ActivationCache):
        return Cache(x)
    if isinstance(x, tuple) and not hasattr(x, "_fields"):
        return tuple(_to_torch(v) for v in x)
    return x


class Cache(Mapping):
    """An ``ActivationCache`` whose activations come out as torch tensors (sharing its
    memory): ``cache["resid_post", 0]``, and its methods (``stack_head_results``,
    ``logit_attrs``, …) take and give tensors. ``cache.numpy`` is the NumPy cache itself."""

    def __init__(self, numpy_cache):
        #: The ``ActivationCache`` underneath.
        self.numpy = numpy_cache

    def __getitem__(self, key):
        return tensor(self.numpy[key])

    def __iter__(self):
        return iter(self.numpy)

    def __len__(self) -> int:
        return len(self.numpy)

    def __contains__(self, key) -> bool:
        return key in self.numpy

    def __getattr__(self, name: str):
        if name.startswith("_") or name == "numpy":
            raise AttributeError(name)  # (an unset attribute while copying, dunders)
        attr = getattr(self.numpy, name)
        if not inspect.ismethod(attr):
            return attr  # `cache.model`, `cache.has_batch_dim`: as they are

        def method(*args, **kwargs):
            args = [_to_numpy(a) for a in args]
            kwargs = {k: _to_numpy(v) for k, v in kwargs.items()}
            return _to_torch(attr(*args, **kwargs))

        method.__doc__ = attr.__doc__
        return method

    def __repr__(self) -> str:
        return f"torch {self.numpy!r}"


def run_with_cache(model, *args, **kwargs):
    """``model.run_with_cache`` with torch tensors out: (logits tensor, :class:`Cache`)."""
    out, acts = model.run_with_cache(*args, **kwargs)
    acts = Cache(acts) if hasattr(acts, "stack_activation") else cache(acts)
    return _logits(out), acts


def hook(fn):
    """A hook written for torch (TransformerLens'): it gets the activation as a torch tensor
    sharing the engine's memory, so in-place edits (``act[:, :, 3] = 0``) take effect, and may
    return a tensor to use instead. ``model.run_with_hooks(tokens, fwd_hooks=[(name,
    glassbox.torch.hook(fn))])``; :func:`run_with_hooks` wraps them all."""
    from .model import _takes_hook_keyword

    by_keyword = _takes_hook_keyword(fn)

    def call(activation, hook):
        t = tensor(activation)
        out = fn(t, hook=hook) if by_keyword else fn(t, hook)
        if out is None or out is t:
            return None  # unchanged, or edited in place
        return _to_numpy(out)

    return call


def run_with_hooks(model, *args, fwd_hooks=(), **kwargs):
    """``model.run_with_hooks`` with torch hooks (each wrapped by :func:`hook`) and the logits
    as a torch tensor."""
    return _logits(model.run_with_hooks(*args, fwd_hooks=[(name, hook(fn)) for name, fn in fwd_hooks], **kwargs))


def forward(model, *args, **kwargs):
    """``model(...)`` with the logits as a torch tensor (also in ``return_type="both"``'s
    ``Output``; the loss stays a number).

    Where the model has backward hooks (``model.add_hook(name, fn, "bwd")``), or the input is
    a residual stream that requires a gradient (``start_at_layer``), and torch's autograd is
    on, the logits (and the loss) carry a graph back into the engine, as TransformerLens' do:
    ``metric(logits).backward()`` runs the engine's backward pass from the same forward pass,
    the backward hooks get the gradients, and the input stream its ``.grad`` (TransformerLens'
    attribution-patching recipe, with hooks written for torch wrapped by :func:`hook`)."""
    torch = _torch()
    wants_grad = getattr(args[0] if args else kwargs.get("input"), "requires_grad", False)
    if (model._bwd_persistent or wants_grad) and torch.is_grad_enabled():
        return _differentiable_forward(model, *args, **kwargs)
    return _logits(model(*args, **kwargs))


def _differentiable_forward(
    model,
    input,
    return_type="logits",
    attention_mask=None,
    prepend_bos=None,
    loss_per_token=False,
    padding_side=None,
    start_at_layer=None,
    stop_at_layer=None,
    tokens=None,
):
    from . import gradients
    from .model import Output, _right_padding

    torch = _torch()
    if stop_at_layer is not None or return_type is None:
        return _logits(
            model(input, return_type, attention_mask, prepend_bos, loss_per_token, padding_side, start_at_layer, stop_at_layer, tokens)
        )
    if return_type not in ("logits", "loss", "both"):
        raise ValueError(f"return_type {return_type!r}: expected 'logits', 'loss', 'both' or None")
    _right_padding(padding_side)
    x, ids, mask, start = model._pass_inputs(input, prepend_bos, attention_mask, start_at_layer, tokens)
    if return_type != "logits" and ids is None:
        raise ValueError(f"return_type={return_type!r} from start_at_layer needs tokens= (the tokens the residual stream came from)")
    every = list(model._bwd_persistent)
    points = [p for patterns, _ in every for p in patterns]
    # the input stream's gradient is the one at the first block's resid_pre, which it enters as
    stream = input if getattr(input, "requires_grad", False) else None
    entry = None
    if stream is not None:
        if start is None:
            raise ValueError("a gradient for the input: token ids have none (give a residual stream and start_at_layer)")
        if start == model.cfg.n_layers:
            raise ValueError("a gradient for a residual stream entering the final norm: start at a block (start_at_layer < n_layers)")
        entry = f"blocks.{start}.hook_resid_pre"
        points.append(entry)
    held, _, graph = model._m.forward_with_graph(x, points, mask=mask, hooks=list(model._persistent), start_at_layer=start)
    gradients.warn_replaced(graph.replaced)
    entry_grad = {}

    def backward(seed):
        grads = [(name, np.asarray(g)) for name, g in graph.backward(np.ascontiguousarray(seed, dtype=np.float32))]
        gradients.call_backward_hooks(every, grads)
        if entry is not None:
            entry_grad["g"] = next(g for name, g in grads if name == entry)

    # the engine's graph enters torch's as one function of the input stream, or of a leaf that
    # wants a gradient
    anchor = stream if stream is not None else torch.zeros((), requires_grad=True)
    logits = _engine_function().apply(anchor, np.asarray(held), backward, entry_grad)
    if return_type == "logits":
        return logits
    loss = _next_token_loss(logits, ids, mask, loss_per_token)
    return loss if return_type == "loss" else Output(logits, loss)


_ENGINE_FUNCTION = None


def _engine_function():
    """A ``torch.autograd.Function`` whose output is the engine's logits and whose backward
    hands their gradient to the engine's graph (made once, when torch is first needed)."""
    global _ENGINE_FUNCTION
    if _ENGINE_FUNCTION is None:
        torch = _torch()

        class EngineLogits(torch.autograd.Function):
            @staticmethod
            def forward(ctx, anchor, logits, backward, entry_grad):
                ctx.engine_backward, ctx.entry_grad = backward, entry_grad
                ctx.anchor_shape, ctx.anchor_dtype = anchor.shape, anchor.dtype
                return torch.from_numpy(np.array(logits, dtype=np.float32))

            @staticmethod
            def backward(ctx, grad):
                ctx.engine_backward(grad.detach().cpu().numpy())
                g = ctx.entry_grad.get("g")
                if g is None:
                    return None, None, None, None
                g = torch.from_numpy(np.array(g, dtype=np.float32)).reshape(ctx.anchor_shape)
                return g.to(ctx.anchor_dtype), None, None, None

        _ENGINE_FUNCTION = EngineLogits
    return _ENGINE_FUNCTION


def _next_token_loss(logits, ids, mask, per_token):
    """``HookedModel``'s loss on torch logits, so that it carries their graph."""
    torch = _torch()
    if ids.shape[1] < 2:
        raise ValueError("a loss needs at least two tokens (a prediction and the token it predicts)")
    log_p = torch.log_softmax(logits[:, :-1, :], dim=-1)
    target = torch.from_numpy(ids[:, 1:].astype(np.int64))[..., None]
    nll = -log_p.gather(-1, target)[..., 0]
    if mask is None:
        return nll if per_token else nll.mean()
    keep = torch.from_numpy(mask[:, :-1].astype(bool) & mask[:, 1:].astype(bool))
    if per_token:
        return torch.where(keep, nll, torch.zeros_like(nll))
    return nll[keep].mean()


def _logits(out):
    """A pass's answer with its logits as a tensor: an array, ``Output(logits, loss)``, or a
    number (a loss) as it is."""
    if isinstance(out, np.ndarray):
        return tensor(out)
    if isinstance(out, tuple) and hasattr(out, "_replace") and isinstance(getattr(out, "logits", None), np.ndarray):
        return out._replace(logits=tensor(out.logits))
    return out
