"""Type stubs of glassbox's extension module (the Rust engine). Use the package's API
(``glassbox.load``, ``HookedModel``, the analyses); this is what it calls."""

from os import PathLike
from typing import Any, Callable, Sequence

import numpy as np

__version__: str

class Held:
    """A tensor of the engine shared with NumPy (``numpy.asarray(held)``, no copy)."""

    copied: bool
    @property
    def __array_interface__(self) -> dict[str, Any]: ...

_NativeHook = Callable[[Held, str], np.ndarray | None]

class Graph:
    """A forward pass kept for one backward pass (``Model.forward_with_graph``)."""

    def backward(self, seed: np.ndarray) -> list[tuple[str, Held]]: ...

class Model:
    path: str
    def info(self) -> dict[str, Any]: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...
    def str_tokens(self, ids: Sequence[int]) -> list[str]: ...
    def final_norm(self, resid: Any) -> Any: ...
    def parameter_names(self) -> list[str]: ...
    def parameter(self, name: str) -> Held: ...
    def forward(
        self,
        ids: np.ndarray,
        mask: np.ndarray | None = None,
        cache: Sequence[str] | None = None,
        hooks: Sequence[tuple[Sequence[str], _NativeHook]] = (),
        stop_after: str | None = None,
        start_at_layer: int | None = None,
    ) -> tuple[Held | None, list[tuple[str, Held]]]: ...
    def forward_with_graph(
        self,
        ids: np.ndarray,
        grads: Sequence[str],
        mask: np.ndarray | None = None,
        cache: Sequence[str] | None = None,
        hooks: Sequence[tuple[Sequence[str], _NativeHook]] = (),
        start_at_layer: int | None = None,
    ) -> tuple[Held, list[tuple[str, Held]], Graph]: ...
    def generate(
        self,
        ids: Sequence[int],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        stop_at_eos: bool = True,
        hooks: Sequence[tuple[Sequence[str], _NativeHook]] = (),
    ) -> list[int]: ...

def load(
    path: str | PathLike[str],
    dtype: str = "float32",
    numerics: str | None = None,
    adapter: str | PathLike[str] | None = None,
    saes: Sequence[str | PathLike[str]] = (),
    sae_error_term: bool = False,
    kv_cache: str | None = None,
) -> Model: ...
def predictions(model: Model, ids: Sequence[int], top_k: int = 5, all_positions: bool = False) -> str: ...
def lens(model: Model, prompt: str | Sequence[int], top_k: int = 5, target: str | None = None) -> str: ...
def attribute(model: Model, prompt: str | Sequence[int], target: str, versus: str | None = None, position: int | None = None) -> str: ...
def heads(model: Model, seq_len: int = 20, batch: int = 8, seed: int = 0, top: int = 0) -> str: ...
def patch(model: Model, clean: str, corrupt: str, answer: str, wrong: str, what: str = "resid_pre", method: str = "activation") -> str: ...
def ablate(model: Model, text: str, targets: Sequence[str], method: str = "zero", reference: Sequence[str] = (), seed: int = 0, each: bool = False) -> str: ...
def steer(model: Model, positive: Sequence[str], negative: Sequence[str], layers: str, normalize: bool = True, out: str | None = None) -> tuple[str, list[tuple[int, list[float]]]]: ...
def experts(model: Model, prompt: str | Sequence[int]) -> str: ...
def audit(target: str) -> str: ...
def audit_registry() -> str: ...
