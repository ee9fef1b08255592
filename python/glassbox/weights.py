"""A model's weights by TransformerLens' names and in its layouts: ``model.W_Q``
[n_layers, n_heads, d_model, d_head], ``model.blocks[0].attn.W_O``, ``model.unembed.W_U``, …

They are the checkpoint's own numbers in float32, as TransformerLens'
``from_pretrained_no_processing`` holds them (no folded norms, no centring), matching the
activations glassbox computes. A bias the checkpoint lacks is zeros; with grouped-query
attention ``W_K`` / ``W_V`` are repeated to every query head (TransformerLens' ``attn.W_K``);
a gated MLP's gate is ``W_gate`` and its linear branch ``W_in``; a norm's ``w`` is the factor
it multiplies by. The arrays are read-only: glassbox changes a model through hooks and
adapters, not by writing its weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .model import HookedModel


class WeightGroup:
    """The weights under one prefix (``blocks.0.attn``, ``unembed``) as attributes:
    ``model.blocks[0].attn.W_O``. ``dir()`` lists the ones the model has."""

    __slots__ = ("_model", "_prefix")

    def __init__(self, model: "HookedModel", prefix: str):
        self._model = model
        self._prefix = prefix

    def _fields(self) -> list[str]:
        """The weights and groups right under the prefix (``W_Q``, ``q_norm``)."""
        start = self._prefix + "."
        fields = [n[len(start):].split(".")[0] for n in self._model.weight_names() if n.startswith(start)]
        return list(dict.fromkeys(fields))

    def __getattr__(self, field: str) -> "np.ndarray | WeightGroup":
        if field.startswith("__"):
            raise AttributeError(field)
        name = f"{self._prefix}.{field}"
        have = self._model._weight_set()
        if name not in have and any(n.startswith(name + ".") for n in have):
            return WeightGroup(self._model, name)  # attn.q_norm
        if name not in have:
            have = ", ".join(self._fields()) or "none"
            raise AttributeError(f"{name}: {self._model.cfg.architecture} has no such weight (here: {have})")
        return self._model.get_weight(name)

    def __dir__(self) -> list[str]:
        return self._fields()

    def __repr__(self) -> str:
        return f"<{self._prefix}: {', '.join(self._fields())}>"


class Block:
    """Block ``layer``'s weights: ``attn``, ``mlp``, and its norms ``ln1``, ``ln2`` (and
    ``ln1_post`` / ``ln2_post`` where the family has post-norms)."""

    __slots__ = ("layer", "attn", "mlp", "ln1", "ln2", "ln1_post", "ln2_post")

    def __init__(self, model: "HookedModel", layer: int):
        self.layer = layer
        for part in ("attn", "mlp", "ln1", "ln2", "ln1_post", "ln2_post"):
            setattr(self, part, WeightGroup(model, f"blocks.{layer}.{part}"))

    def __repr__(self) -> str:
        return f"<block {self.layer}>"


def stacked(model: "HookedModel", part: str, field: str) -> np.ndarray:
    """``blocks.L.{part}.{field}`` of every layer along a new first axis, as TransformerLens'
    ``model.W_Q`` and the like; a layer without it (a hybrid's Mamba block, a mixture of
    experts' MLP) is an ``AttributeError`` naming it."""
    names = [f"blocks.{l}.{part}.{field}" for l in range(model.cfg.n_layers)]
    have = model._weight_set()
    missing = [n for n in names if n not in have]
    if missing:
        raise AttributeError(
            f"{field}: {model.cfg.architecture} has no {missing[0]}"
            + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    out = np.stack([model.get_weight(n) for n in names])
    out.flags.writeable = False
    return out
