"""A model's weights by TransformerLens' names and in its layouts: ``model.W_Q``
[n_layers, n_heads, d_model, d_head], ``model.blocks[0].attn.W_O``, ``model.unembed.W_U``, …

They are the checkpoint's own numbers in float32, as TransformerLens'
``from_pretrained_no_processing`` holds them (no folded norms, no centring), matching the
activations glassbox computes. A bias the checkpoint lacks is zeros; with grouped-query
attention ``W_K`` / ``W_V`` are repeated to every query head (TransformerLens' ``attn.W_K``);
a gated MLP's gate is ``W_gate`` and its linear branch ``W_in``; a norm's ``w`` is the factor
it multiplies by. A weight by itself (``get_weight``, ``model.blocks[0].attn.W_O``) is
read-only, as it may be the engine's own memory: glassbox changes a model through hooks and
adapters, not by writing its weights (``.copy()`` gives an array of your own); stacks over
layers (``model.W_Q``) are copies."""

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
        if field.startswith("_"):
            raise AttributeError(field)  # (unset slots while copying, dunders)
        name = f"{self._prefix}.{field}"
        have = self._model._weight_set()
        if name not in have and any(n.startswith(name + ".") for n in have):
            return WeightGroup(self._model, name)  # attn.q_norm
        if field.startswith("hook_"):
            raise AttributeError(_not_an_attribute(name))
        if name not in have:
            have = ", ".join(self._fields()) or "none"
            raise AttributeError(f"{name}: {self._model.cfg.architecture} has no such weight (here: {have})")
        return self._model.get_weight(name)

    def __dir__(self) -> list[str]:
        return self._fields()

    def __repr__(self) -> str:
        return f"<{self._prefix}: {', '.join(self._fields())}>"


def _not_an_attribute(name: str) -> str:
    return (
        f"{name}: hook points are not attributes in glassbox; hook it by name: "
        f"model.run_with_hooks(tokens, fwd_hooks=[({name!r}, fn)]), model.add_hook({name!r}, fn), "
        f"or read it from model.run_with_cache(tokens)[1][{name!r}]"
    )


class Embed(WeightGroup):
    """``W_E``; called with token ids, their rows (TransformerLens' ``model.embed(tokens)``)."""

    __slots__ = ()

    def __call__(self, tokens) -> np.ndarray:
        """``W_E[tokens]`` [..., d_model]: the embeddings (``hook_embed``)."""
        ids = np.asarray(tokens.detach().cpu().numpy() if hasattr(tokens, "detach") else tokens)
        return self._model.W_E[ids]


class Unembed(WeightGroup):
    """``W_U`` and ``b_U``; called, the unembedding (TransformerLens' ``model.unembed(x)``)."""

    __slots__ = ()

    def __call__(self, x) -> np.ndarray:
        """``x @ W_U + b_U`` [..., d_vocab] for a normalised residual stream ``x``."""
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else x
        return np.asarray(x, dtype=np.float32) @ self._model.W_U + self._model.b_U


class FinalNorm(WeightGroup):
    """The final norm's ``w`` (and ``b``); called, the norm itself (``model.ln_final(resid)``)."""

    __slots__ = ()

    def __call__(self, x) -> np.ndarray:
        """The final norm of ``x`` [..., d_model], weight and bias included."""
        x = np.ascontiguousarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
        return np.asarray(self._model._m.final_norm(x))


class Block:
    """Block ``layer``'s weights: ``attn``, ``mlp``, and its norms ``ln1``, ``ln2`` (and
    ``ln1_post`` / ``ln2_post`` where the family has post-norms)."""

    __slots__ = ("layer", "attn", "mlp", "ln1", "ln2", "ln1_post", "ln2_post")

    def __init__(self, model: "HookedModel", layer: int):
        self.layer = layer
        for part in ("attn", "mlp", "ln1", "ln2", "ln1_post", "ln2_post"):
            setattr(self, part, WeightGroup(model, f"blocks.{layer}.{part}"))

    def __getattr__(self, name: str):
        # only reached for what the slots do not hold: hook points, unknown parts
        if name.startswith("_"):
            raise AttributeError(name)
        if name.startswith("hook_"):
            raise AttributeError(_not_an_attribute(f"blocks.{self.layer}.{name}"))
        raise AttributeError(f"block {self.layer} has no {name!r} (its parts: attn, mlp, ln1, ln2, ln1_post, ln2_post)")

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
    return np.stack([model.get_weight(n) for n in names])  # a copy: writable
