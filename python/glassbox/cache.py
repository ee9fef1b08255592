"""Activations of one forward pass, by TransformerLens hook name."""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np

from .names import get_act_name


class ActivationCache(Mapping[str, np.ndarray]):
    """The activations ``run_with_cache`` kept, keyed by hook name in the order the forward pass
    computed them, each a NumPy array (batch first) sharing the engine's memory.

    Keys are full hook names (``"blocks.0.attn.hook_pattern"``) or, as in TransformerLens,
    short forms: ``cache["pattern", 0]``, ``cache["resid_post", 3]``, ``cache["scale", 2, "ln1"]``.
    """

    def __init__(self, activations: dict[str, np.ndarray], n_layers: int):
        self._acts = activations
        self._n_layers = n_layers

    def _key(self, key) -> str:
        if isinstance(key, tuple):
            return get_act_name(*key)
        if isinstance(key, str) and key in self._acts:
            return key
        return get_act_name(key)

    def __getitem__(self, key) -> np.ndarray:
        name = self._key(key)
        try:
            return self._acts[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not in the cache (names_filter kept {len(self._acts)} hooks)"
            ) from None

    def __contains__(self, key) -> bool:
        try:
            return self._key(key) in self._acts
        except (ValueError, TypeError):
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._acts)

    def __len__(self) -> int:
        return len(self._acts)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hooks: {', '.join(list(self)[:4])}{', …' if len(self) > 4 else ''})"

    def stack_activation(self, name: str, layer_type: str | None = None) -> np.ndarray:
        """The activation ``name`` of every layer stacked along a new first axis
        [n_layers, batch, ...] (layers without it are skipped)."""
        layers = [
            self._acts[n]
            for n in (get_act_name(name, layer, layer_type) for layer in range(self._n_layers))
            if n in self._acts
        ]
        if not layers:
            raise KeyError(f"no layer's {name!r} is in the cache")
        return np.stack(layers)

    def to_dict(self) -> dict[str, np.ndarray]:
        """The activations as a plain dict."""
        return dict(self._acts)
