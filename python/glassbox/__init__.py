"""glassbox from Python: open models with TransformerLens' API, at Rust speed.

    import glassbox
    model = glassbox.load("models/reference")
    logits, cache = model.run_with_cache("The Eiffel Tower is in")
    cache["blocks.0.attn.hook_pattern"].shape   # (1, n_heads, pos, pos)

Everything the CLI opens loads (Hub folders, safetensors, GGUF incl. quantized, PEFT adapters,
SAELens SAEs); arrays are NumPy (``glassbox.torch`` gives torch tensors); the analyses return
the CLI's ``--json`` documents as dicts.
"""

from ._native import __version__
from .analyses import (
    ablate,
    attribute,
    audit,
    audit_registry,
    experts,
    heads,
    lens,
    patch,
    predictions,
    steer,
)
from .cache import ActivationCache
from .factored import FactoredMatrix
from .model import Config, HookedModel, HookPoint, load
from .names import get_act_name
from . import patching, torch, utils  # noqa: E402  (submodules: `glassbox.patching` after `import glassbox`)

__all__ = [
    "__version__",
    "load",
    "HookedModel",
    "HookPoint",
    "ActivationCache",
    "FactoredMatrix",
    "Config",
    "get_act_name",
    "predictions",
    "lens",
    "attribute",
    "heads",
    "patch",
    "ablate",
    "steer",
    "experts",
    "audit",
    "audit_registry",
]
