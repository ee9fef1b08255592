"""The analyses and the audit. Each returns a dict with exactly the fields of the CLI's
``--json`` document for the same request (one library function builds both), ``model`` being
the path the model was loaded from."""

from __future__ import annotations

import json
import operator
import os
import warnings
from typing import Sequence

import numpy as np

from . import _native
from .model import HookedModel, _count


def _check(model) -> "_native.Model":
    if not isinstance(model, HookedModel):
        raise TypeError(f"expected a HookedModel (glassbox.load), got {type(model).__name__}")
    return model._m


def _text(value, what: str) -> str:
    """A text argument (patching and ablation compare texts as the CLI tokenizes them)."""
    if isinstance(value, str):
        return value
    raise TypeError(
        f"{what} is a text (str), not {type(value).__name__}; for token ids give "
        f"model.to_string(ids) (this analysis tokenizes as the CLI does)"
    )


def _prompt(value, what: str) -> str | list[int]:
    """A prompt argument: a text (tokenized as the CLI does), or token ids used as they are
    ([pos] or [1, pos]: a list, NumPy array or torch tensor, as TransformerLens takes tokens)."""
    if isinstance(value, str):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        ids = np.asarray(value)
    except Exception:
        ids = None
    if ids is None or ids.dtype.kind not in "iu" or ids.ndim not in (1, 2) or (ids.ndim == 2 and ids.shape[0] != 1):
        raise TypeError(f"{what} is a text or token ids ([pos] or [1, pos] integers), not {type(value).__name__}")
    ids = ids.reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= 2**32):
        raise ValueError(f"{what}: token ids are between 0 and the vocabulary's size")
    return [int(i) for i in ids]


def _token(value, what: str) -> str | None:
    """A token argument: a token's text, ``"#id"``, or an id (an int, as TransformerLens takes)."""
    if value is None or isinstance(value, str):
        return value
    try:
        return f"#{operator.index(value)}"
    except TypeError:
        raise TypeError(f"{what} is a token's text, '#id' or an int id, not {type(value).__name__}") from None


def _target(value) -> str:
    """An ablation target: ``"L1H0"``, ``"L2MLP"``, … or TransformerLens' ``(layer, head)``."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return f"L{operator.index(value[0])}H{operator.index(value[1])}"
    raise TypeError(f"an ablation target is a string such as 'L1H0' or 'L2MLP', or a (layer, head) pair; got {value!r}")


def predictions(model: HookedModel, input, top_k: int = 5, all_positions: bool = False) -> dict:
    """The top next tokens (``glassbox run --json``) of a text or token ids."""
    m = _check(model)
    if isinstance(input, str):
        ids = m.encode(input)
    else:
        ids = [int(t) for t in np.atleast_1d(model._ids(input)).reshape(-1)]
    return json.loads(_native.predictions(m, ids, _count(top_k, "top_k"), all_positions))


def lens(model: HookedModel, prompt, top_k: int = 5, target: str | None = None) -> dict:
    """The logit lens (``glassbox lens --json``) of ``prompt`` (a text, or token ids used as they
    are): each layer's top tokens per position and the probability and rank of ``target`` (a
    token text, ``"#id"`` or an int id; default: the model's own prediction)."""
    return json.loads(_native.lens(_check(model), _prompt(prompt, "prompt"), _count(top_k, "top_k"), _token(target, "target")))


def attribute(
    model: HookedModel,
    prompt,
    target: str,
    versus: str | None = None,
    position: int | None = None,
) -> dict:
    """Direct logit attribution (``glassbox attribute --json``) of ``target`` (minus
    ``versus``) at ``position`` (default: the last; negative counts from the end, as Python
    indexes) to embeddings, heads, MLPs and biases; ``prompt`` a text or token ids."""
    m = _check(model)
    prompt, target, versus = _prompt(prompt, "prompt"), _token(target, "target"), _token(versus, "versus")
    if position is not None:
        position = operator.index(position)
        if position < 0:
            n = len(m.encode(prompt)) if isinstance(prompt, str) else len(prompt)
            if position < -n:
                raise ValueError(f"position {position}: the prompt has {n} tokens")
            position += n
    return json.loads(_native.attribute(m, prompt, target, versus, position))


def heads(model: HookedModel, seq_len: int = 20, batch: int = 8, seed: int = 0, top: int = 0) -> dict:
    """Previous-token, duplicate-token, induction and first-token scores of every head on
    repeated random tokens after the tokenizer's BOS (``glassbox heads --json``): each score
    with its standard error across the sequences, each role's chance level, and the ``top``
    heads with whether each clearly beats chance. What makes the scores weak evidence (short
    sequences, one sequence) is also raised as a ``UserWarning``."""
    doc = json.loads(
        _native.heads(
            _check(model),
            _count(seq_len, "seq_len"),
            _count(batch, "batch"),
            _count(seed, "seed"),
            _count(top, "top"),
        )
    )
    for warning in doc.get("warnings", []):
        warnings.warn(warning, stacklevel=2)
    return doc


def patch(
    model: HookedModel,
    clean: str,
    corrupt: str,
    answer: str,
    wrong: str,
    what: str = "resid_pre",
    method: str = "activation",
) -> dict:
    """Activation or attribution patching from ``corrupt`` into ``clean`` (``glassbox patch
    --json``): ``what`` is resid_pre, attn_out, mlp_out or heads; ``method`` activation,
    attribution or both. Ctrl-C stops it between steps."""
    return json.loads(
        _native.patch(
            _check(model), _text(clean, "clean"), _text(corrupt, "corrupt"), _token(answer, "answer"),
            _token(wrong, "wrong"), what, method,
        )
    )


def ablate(
    model: HookedModel,
    text: str,
    targets: Sequence[str],
    method: str = "zero",
    reference: Sequence[str] = (),
    seed: int = 0,
    each: bool = False,
) -> dict:
    """Zero, mean or resample ablation (``glassbox ablate --json``) of ``targets``
    (``L1H0``, ``L2MLP``, ``L0N17``, ``heads``, …, or ``(layer, head)`` pairs), together or
    ``each`` on its own; mean and
    resample ablation take their values from the ``reference`` texts (resample: one run per
    reference at least as long as ``text``, averaged; ``seed`` picks 16 when there are more)."""
    if isinstance(targets, (str, tuple)):
        targets = [targets]
    targets = [_target(t) for t in targets]
    text = _text(text, "text")
    if isinstance(reference, str):
        reference = [reference]
    return json.loads(
        _native.ablate(
            _check(model), text, list(targets), method, list(reference), _count(seed, "seed"), each
        )
    )


def steer(
    model: HookedModel,
    positive: Sequence[str],
    negative: Sequence[str],
    layers: str,
    normalize: bool = True,
    out: str | os.PathLike | None = None,
) -> dict:
    """A steering vector from contrasting prompt pairs (``glassbox steer --json``), as
    llama.cpp's ``cvector-generator --method mean`` makes it: ``positive[i]`` paired with
    ``negative[i]`` (as many of each), the residual stream entering each block of ``layers``
    (``"1-3"``) subtracted position by position, the positions both share from the start left
    out, the mean of the rest. With ``out`` it is written as llama.cpp's control-vector GGUF. The dict also
    holds ``directions``: {layer: float32 array} as written (unit length unless
    ``normalize=False``), to add at ``blocks.{layer}.hook_resid_post``: llama.cpp's convention,
    which applies the direction measured entering block L (``resid_pre`` L) to block L's output
    (``resid_post`` L), one block after where it was measured."""
    if isinstance(positive, str):
        positive = [positive]
    if isinstance(negative, str):
        negative = [negative]
    doc, directions = _native.steer(
        _check(model),
        list(positive),
        list(negative),
        str(layers),
        normalize,
        None if out is None else os.fspath(out),
    )
    result = json.loads(doc)
    result["directions"] = {layer: np.asarray(v, dtype=np.float32) for layer, v in directions}
    return result


def experts(model: HookedModel, prompt) -> dict:
    """Which experts each token of ``prompt`` (a text, or token ids) is routed to, per
    mixture-of-experts layer (``glassbox experts --json``)."""
    return json.loads(_native.experts(_check(model), _prompt(prompt, "prompt")))


def audit(target: str | os.PathLike) -> dict:
    """The openness audit (``glassbox audit --json``) of a release folder, a Model Openness
    Tool file or a registry id (``"meta-llama/Llama-3.1-8B"``)."""
    return json.loads(_native.audit(os.fspath(target)))


def audit_registry() -> list | dict:
    """The built-in registry of releases (``glassbox audit --list --json``)."""
    return json.loads(_native.audit_registry())
