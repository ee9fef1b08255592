"""TransformerLens' activation names: ``get_act_name("resid_post", 3)`` is
``"blocks.3.hook_resid_post"``. ``ActivationCache`` accepts the same short forms as keys."""

from __future__ import annotations

# Short name -> (hook name with {layer}, needs a layer)
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
    "attn": "blocks.{layer}.attn.hook_pattern",
    "attn_scores": "blocks.{layer}.attn.hook_attn_scores",
    "scores": "blocks.{layer}.attn.hook_attn_scores",
    "rot_q": "blocks.{layer}.attn.hook_rot_q",
    "rot_k": "blocks.{layer}.attn.hook_rot_k",
    "pre": "blocks.{layer}.mlp.hook_pre",
    "mlp_pre": "blocks.{layer}.mlp.hook_pre",
    "pre_linear": "blocks.{layer}.mlp.hook_pre_linear",
    "post": "blocks.{layer}.mlp.hook_post",
    "mlp_post": "blocks.{layer}.mlp.hook_post",
    "scale": "blocks.{layer}.{layer_type}.hook_scale",
    "normalized": "blocks.{layer}.{layer_type}.hook_normalized",
}

_GLOBAL = {
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "ln_final.hook_scale": "ln_final.hook_scale",
    "ln_final.hook_normalized": "ln_final.hook_normalized",
}


def get_act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """The full hook name of an activation given by its short name, as TransformerLens'
    ``utils.get_act_name``: ``("resid_post", 3)`` -> ``"blocks.3.hook_resid_post"``,
    ``("scale", 2, "ln1")`` -> ``"blocks.2.ln1.hook_scale"``, ``"embed"`` -> ``"hook_embed"``.
    A name that is already a full hook name is returned unchanged."""
    if not isinstance(name, str):
        raise TypeError(f"an activation name is a string, not {type(name).__name__}")
    if "." in name or name.startswith("hook_"):
        return name
    if name in _GLOBAL:
        return _GLOBAL[name]
    if name not in _IN_BLOCK:
        raise ValueError(f"unknown activation name {name!r}")
    if layer is None:
        raise ValueError(f"{name!r} is inside a block: give its layer")
    template = _IN_BLOCK[name]
    if "{layer_type}" in template:
        if layer_type is None:
            raise ValueError(f"{name!r} needs a layer type (ln1 or ln2)")
        layer_type = {"a": "ln1", "m": "ln2"}.get(layer_type, layer_type)
    return template.format(layer=int(layer), layer_type=layer_type)
