"""TransformerLens' activation names: ``get_act_name("resid_post", 1)`` is
``"blocks.1.hook_resid_post"``. ``ActivationCache`` accepts the same short forms as keys.

The table also holds ``result`` (per-head results), which no forward pass computes
(``cache.compute_head_results()`` adds it); ``model.hook_names()`` lists the hooks a model has."""

from __future__ import annotations

import operator
import re

# Short name -> hook name with {layer} (and {layer_type} for the norms)
_IN_BLOCK = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "attn_in": "blocks.{layer}.hook_attn_in",
    "mlp_in": "blocks.{layer}.hook_mlp_in",
    "q": "blocks.{layer}.attn.hook_q",
    "k": "blocks.{layer}.attn.hook_k",
    "v": "blocks.{layer}.attn.hook_v",
    "z": "blocks.{layer}.attn.hook_z",
    "result": "blocks.{layer}.attn.hook_result",
    "pattern": "blocks.{layer}.attn.hook_pattern",
    "attn_scores": "blocks.{layer}.attn.hook_attn_scores",
    "scores": "blocks.{layer}.attn.hook_attn_scores",
    "rot_q": "blocks.{layer}.attn.hook_rot_q",
    "rot_k": "blocks.{layer}.attn.hook_rot_k",
    "pre": "blocks.{layer}.mlp.hook_pre",
    "pre_linear": "blocks.{layer}.mlp.hook_pre_linear",
    "post": "blocks.{layer}.mlp.hook_post",
    "scale": "blocks.{layer}.{layer_type}.hook_scale",
    "normalized": "blocks.{layer}.{layer_type}.hook_normalized",
}

# TransformerLens' aliases (utils.get_act_name's act_name_alias).
_ALIAS = {
    "attn": "pattern",
    "attn_logits": "attn_scores",
    "key": "k",
    "query": "q",
    "value": "v",
    "mlp_pre": "pre",
    "mlp_post": "post",
}

_GLOBAL = {
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "ln_final.hook_scale": "ln_final.hook_scale",
    "ln_final.hook_normalized": "ln_final.hook_normalized",
}

# A norm's short name without a layer is the final norm's (as in TransformerLens).
_FINAL_NORM = {
    "scale": "ln_final.hook_scale",
    "normalized": "ln_final.hook_normalized",
}


def resolve_layer(layer, n_layers: int | None) -> int:
    """A block index: an integer in 0 … n_layers−1, or a negative one counted from ``n_layers``
    (−1 is the last block), as TransformerLens' cache keys take it."""
    try:
        layer = operator.index(layer)
    except TypeError:
        raise TypeError(f"a layer is an integer, not {type(layer).__name__}") from None
    if layer < 0:
        if n_layers is None:
            raise ValueError(
                f"layer {layer} counts from the end: give n_layers (cache[...] and the cache's "
                "methods know it)"
            )
        if layer < -n_layers:
            raise ValueError(f"layer {layer}: the model has {n_layers} layers")
        return layer + n_layers
    if n_layers is not None and layer >= n_layers:
        raise ValueError(f"layer {layer}: the model has {n_layers} layers (0 … {n_layers - 1})")
    return layer


def get_act_name(
    name: str,
    layer: int | None = None,
    layer_type: str | None = None,
    *,
    n_layers: int | None = None,
) -> str:
    """The full hook name of an activation given by its short name, as TransformerLens'
    ``utils.get_act_name``: ``("resid_post", 1)`` -> ``"blocks.1.hook_resid_post"``,
    ``("normalized", 0, "ln1")`` -> ``"blocks.0.ln1.hook_normalized"``, ``("pattern", 0)`` ->
    ``"blocks.0.attn.hook_pattern"``, ``("embed",)`` -> ``"hook_embed"``, ``("normalized",)``
    (no layer: the final norm) -> ``"ln_final.hook_normalized"``. A name that is already a full
    hook name is returned unchanged.

    A negative ``layer`` counts from the end (``-1`` is the last block) when ``n_layers`` is
    given; without it it is a ``ValueError`` (TransformerLens would make the name
    ``"blocks.-1.…"``, which names no hook). ``ActivationCache`` passes its model's
    ``n_layers``, so ``cache["resid_post", -1]`` works as in TransformerLens. Its compact forms
    too: ``"k6"``, ``"pattern0"``, ``"scale4ln1"``."""
    if not isinstance(name, str):
        raise TypeError(f"an activation name is a string, not {type(name).__name__}")
    if "." in name or name.startswith("hook_"):
        return name
    # TransformerLens' compact forms: "k6" is ("k", 6), "scale4ln1" ("scale", 4, "ln1")
    compact = re.fullmatch(r"([a-z]+)(\d+)([a-z]?.*)", name) if layer is None else None
    if compact is not None:
        name, layer, layer_type = compact.group(1), int(compact.group(2)), compact.group(3) or layer_type
    name = _ALIAS.get(name, name)
    if name in _GLOBAL and layer is None:
        return _GLOBAL[name]
    if name in _FINAL_NORM and layer is None:
        return _FINAL_NORM[name]
    if name not in _IN_BLOCK:
        raise ValueError(f"unknown activation name {name!r}")
    if layer is None:
        raise ValueError(f"{name!r} is inside a block: give its layer")
    template = _IN_BLOCK[name]
    if "{layer_type}" in template:
        if layer_type is None:
            raise ValueError(f"{name!r} needs a layer type (ln1 or ln2)")
        layer_type = {"a": "ln1", "m": "ln2"}.get(layer_type, layer_type)
    return template.format(layer=resolve_layer(layer, n_layers), layer_type=layer_type)
