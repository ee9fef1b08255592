"""Gradients at hook points: TransformerLens' backward hooks and ``incl_bwd`` caches.

The engine runs the forward pass once, keeping its graph; the scalar's gradient with respect to
the logits (its *seed*) is computed here — for the mean next-token loss in NumPy, for a user's
``metric(logits)`` by torch's autograd — and the engine carries it back to every hook point asked
for. A gradient at a point is with respect to what the rest of the model reads there (after the
point's forward hooks); a forward hook's replacement is a constant to the gradient, as a value
computed outside the graph (``.detach()``) is in torch.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

#: Why a backward pass needs a scalar, and how to give one.
NEEDS_A_SCALAR = (
    "a backward pass needs a scalar: return_type='loss' (the mean next-token loss) or "
    "metric=fn(logits) returning one (differentiated with torch)"
)


def loss_and_seed(logits: np.ndarray, ids: np.ndarray, mask) -> tuple[np.float64, np.ndarray]:
    """The mean next-token cross-entropy (as ``HookedModel``'s ``return_type="loss"``) and its
    gradient with respect to the logits: ``(softmax − one-hot of the next token) / count`` at
    each prediction counted, zero elsewhere."""
    from .model import _next_token_loss

    loss = _next_token_loss(logits, ids, mask, per_token=False)
    x = logits[:, :-1, :].astype(np.float64)
    p = np.exp(x - x.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    target = ids[:, 1:].astype(np.int64)
    np.put_along_axis(p, target[..., None], np.take_along_axis(p, target[..., None], axis=-1) - 1.0, axis=-1)
    keep = np.ones(target.shape, dtype=bool) if mask is None else (mask[:, :-1].astype(bool) & mask[:, 1:].astype(bool))
    p *= keep[..., None] / max(int(keep.sum()), 1)
    seed = np.zeros(logits.shape, dtype=np.float32)
    seed[:, :-1, :] = p
    return loss, seed


def metric_and_seed(metric: Callable, logits: np.ndarray) -> tuple[float, np.ndarray]:
    """``metric(logits)`` on a torch copy of the logits, and its gradient by torch's autograd.
    The metric is written as for TransformerLens (``logits[0, -1, a] - logits[0, -1, b]``)."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "metric=: differentiating a Python metric needs torch (pip install torch); "
            "return_type='loss' needs nothing"
        ) from e
    x = torch.tensor(np.asarray(logits, dtype=np.float32), requires_grad=True)
    with torch.enable_grad():
        value = metric(x)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ValueError(f"metric must return one number as a torch tensor computed from the logits; got {value!r}")
    if not value.requires_grad:
        raise ValueError("the metric's value does not depend on the logits (it has no gradient)")
    value.reshape(()).backward()
    seed = x.grad if x.grad is not None else torch.zeros_like(x)
    return float(value.detach()), np.ascontiguousarray(seed.numpy(), dtype=np.float32)


def call_backward_hooks(bwd_hooks: list, grads: list[tuple[str, np.ndarray]]) -> None:
    """Calls each ``(patterns, fn)`` with ``fn(gradient, hook)`` at the points it selects, in
    the order a backward pass reaches them (the last hook point first), as TransformerLens'
    backward hooks run. They observe: a hook that returns a replacement gradient is refused. A
    point the scalar does not depend on gets zeros (TransformerLens calls no hook there)."""
    from .model import HookPoint, _matches, _takes_hook_keyword

    for name, grad in reversed(grads):
        for patterns, fn in bwd_hooks:
            if not _matches(patterns, name):
                continue
            hook = HookPoint(name)
            out = fn(grad, hook=hook) if _takes_hook_keyword(fn) else fn(grad, hook)
            if out is not None and out is not grad:
                raise NotImplementedError(
                    f"the backward hook at {name!r} returned a value: glassbox's backward hooks "
                    "observe gradients (cache them, edit nothing); replacing a gradient is not supported"
                )


def check_scalar(return_type, metric, ids, loss_per_token: bool = False) -> None:
    """Raises, before any pass runs, where a backward pass would have no scalar to
    differentiate (see :func:`seed_for`)."""
    if metric is not None:
        if not callable(metric):
            raise TypeError("metric is a function of the logits")
        return
    if return_type not in ("loss", "both"):
        raise ValueError(NEEDS_A_SCALAR)
    if loss_per_token:
        raise ValueError("a backward pass needs one number: the per-token loss is not (give metric= to choose one)")
    if ids is None:
        raise ValueError("the loss of a pass from start_at_layer needs tokens= (the tokens the residual stream came from)")


def seed_for(logits: np.ndarray, ids: np.ndarray, mask, return_type, metric) -> tuple[Any, np.ndarray]:
    """The scalar a backward pass differentiates and its seed: ``metric(logits)`` when given,
    else the loss when ``return_type`` asks for it (:func:`check_scalar` has said which)."""
    check_scalar(return_type, metric, ids)
    if metric is not None:
        return metric_and_seed(metric, logits)
    return loss_and_seed(logits, ids, mask)


def warn_replaced(points: list[str]) -> None:
    """Says which forward hooks replaced their activation in a pass whose gradients were asked
    for: to the gradient a replacement is a constant (computed outside the graph), so nothing
    flows back through it, where TransformerLens differentiates the hook's own torch code."""
    if points:
        import warnings

        shown = ", ".join(points[:3]) + (f" and {len(points) - 3} more" if len(points) > 3 else "")
        warnings.warn(
            f"forward hooks changed {shown}: to the gradients each change is a constant, so no "
            "gradient flows back through it to earlier points",
            stacklevel=4,
        )
