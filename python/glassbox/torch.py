"""Torch tensors from glassbox's NumPy arrays, through DLPack: no copy, and torch is not a
dependency of glassbox (this module imports it when used).

    import glassbox, glassbox.torch
    logits, cache = glassbox.torch.run_with_cache(model, "The Eiffel Tower is in")
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("glassbox.torch needs PyTorch: pip install torch") from e
    return torch


def tensor(array: np.ndarray):
    """A torch tensor sharing ``array``'s memory (through DLPack)."""
    return _torch().from_dlpack(np.asarray(array))


def cache(activations) -> dict[str, Any]:
    """A dict of torch tensors from an ``ActivationCache`` (or any mapping of arrays)."""
    return {name: tensor(a) for name, a in activations.items()}


def run_with_cache(model, *args, **kwargs):
    """``model.run_with_cache`` with torch tensors out: (logits tensor, {name: tensor})."""
    out, acts = model.run_with_cache(*args, **kwargs)
    return (tensor(out) if out is not None else None), cache(acts)


def forward(model, *args, **kwargs):
    """``model(...)`` with the logits as a torch tensor (also in ``return_type="both"``'s
    ``Output``; the loss stays a number)."""
    out = model(*args, **kwargs)
    if isinstance(out, np.ndarray):
        return tensor(out)
    if isinstance(out, tuple) and hasattr(out, "_replace") and isinstance(getattr(out, "logits", None), np.ndarray):
        return out._replace(logits=tensor(out.logits))
    return out
