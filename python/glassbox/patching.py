"""Activation patching with TransformerLens' API (``transformer_lens.patching``): run the
corrupted input once per index — a layer and position, a layer and head, … — with the clean
run's activation put in at that index, and record ``patching_metric(logits)``.

    import glassbox
    from glassbox import patching
    _, clean_cache = model.run_with_cache(clean_tokens)
    metric = lambda logits: logits[0, -1, mary] - logits[0, -1, john]
    grid = patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, metric)  # [layer, pos]

The metric gets the logits as a NumPy array [batch, pos, d_vocab] and returns a number (a
float, a 0-d array or a torch scalar); results are float32 NumPy arrays. Every function here
computes what TransformerLens' of the same name computes (checked on its own results).
``glassbox.patch`` is the CLI's faster analysis for the usual case (a logit difference)."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np

#: ``patch_setter(corrupted_activation, index, clean_activation)`` writes the clean values at
#: ``index`` (the layer first) into the corrupted activation and returns it.
PatchSetter = Callable[[np.ndarray, Sequence[int], np.ndarray], np.ndarray]
Metric = Callable[[np.ndarray], Any]


def _scalar(value) -> float:
    if hasattr(value, "item"):
        value = value.item()
    return float(value)


def _rows(index_df) -> list[tuple[int, ...]]:
    """The rows of a pandas DataFrame (or any sequence of index tuples) as int tuples."""
    values = index_df.values.tolist() if hasattr(index_df, "values") and hasattr(index_df, "columns") else index_df
    return [tuple(int(v) for v in row) for row in values]


def generic_activation_patch(
    model,
    corrupted_tokens,
    clean_cache,
    patching_metric: Metric,
    patch_setter: PatchSetter,
    activation_name: str,
    index_axis_names: Sequence[str] | None = None,
    index_df=None,
    return_index_df: bool = False,
):
    """Patches ``activation_name`` (a short name: ``"resid_pre"``, ``"z"``, ``"pattern"``, …)
    of layer ``index[0]`` at every index and returns the metric per index.

    With ``index_axis_names`` (among ``"layer"``, ``"pos"``, ``"head_index"`` / ``"head"``,
    ``"src_pos"``, ``"dest_pos"``) every combination runs and the result has one axis per
    name (keys and values of grouped-query attention have ``n_key_value_heads`` heads);
    with ``index_df`` (a pandas DataFrame, or a list of index tuples) only those rows run and
    the result is flat, one value per row. ``return_index_df`` also returns the rows (a
    DataFrame; that needs pandas)."""
    ids, mask = model._forward_inputs(corrupted_tokens, None, None)
    if index_df is None:
        if index_axis_names is None:
            raise ValueError("give index_axis_names or index_df")
        heads = model.cfg.n_key_value_heads if activation_name in ("k", "v") else model.cfg.n_heads
        ranges = {"layer": model.cfg.n_layers, "pos": ids.shape[-1], "head_index": heads}
        ranges.update(head=heads, src_pos=ranges["pos"], dest_pos=ranges["pos"])
        unknown = [a for a in index_axis_names if a not in ranges]
        if unknown:
            raise ValueError(f"unknown index axes {unknown}: expected some of {sorted(ranges)}")
        shape = tuple(ranges[a] for a in index_axis_names)
        rows = list(itertools.product(*(range(n) for n in shape)))
        out = np.zeros(shape, dtype=np.float32)
        flat = False
    else:
        if index_axis_names is not None:
            raise ValueError("give index_axis_names or index_df, not both")
        rows = _rows(index_df)
        out = np.zeros(len(rows), dtype=np.float32)
        flat = True
    from .names import get_act_name

    for n, index in enumerate(rows):
        name = get_act_name(activation_name, index[0])
        clean = clean_cache[name]

        def hook(activation, hook, index=index, clean=clean):
            return patch_setter(activation, index, clean)

        logits = model.run_with_hooks(ids, fwd_hooks=[(name, hook)], attention_mask=mask)
        out[n if flat else index] = _scalar(patching_metric(logits))
    if not return_index_df:
        return out
    if index_df is None:
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("return_index_df needs pandas: pip install pandas") from e
        index_df = pd.DataFrame(rows, columns=list(index_axis_names))
    return out, index_df


# --- patch setters (the layer is index[0]; the batch axis is kept whole) ---------------------


def layer_pos_patch_setter(corrupted_activation, index, clean_activation):
    """Position ``index[1]`` of a [batch, pos, ...] activation."""
    _, pos = index
    corrupted_activation[:, pos, ...] = clean_activation[:, pos, ...]
    return corrupted_activation


def layer_pos_head_vector_patch_setter(corrupted_activation, index, clean_activation):
    """Head ``index[2]`` at position ``index[1]`` of a [batch, pos, head, d_head] activation."""
    _, pos, head = index
    corrupted_activation[:, pos, head] = clean_activation[:, pos, head]
    return corrupted_activation


def layer_head_vector_patch_setter(corrupted_activation, index, clean_activation):
    """Head ``index[1]`` at every position of a [batch, pos, head, d_head] activation."""
    _, head = index
    corrupted_activation[:, :, head] = clean_activation[:, :, head]
    return corrupted_activation


def layer_head_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """Head ``index[1]``'s whole attention pattern [batch, head, dest, src]."""
    _, head = index
    corrupted_activation[:, head] = clean_activation[:, head]
    return corrupted_activation


def layer_head_pos_pattern_patch_setter(corrupted_activation, index, clean_activation):
    """Head ``index[1]``'s pattern row of destination ``index[2]``."""
    _, head, dest = index
    corrupted_activation[:, head, dest, :] = clean_activation[:, head, dest, :]
    return corrupted_activation


def layer_head_dest_src_pos_patch_setter(corrupted_activation, index, clean_activation):
    """One attention weight: head ``index[1]``, destination ``index[2]``, source ``index[3]``."""
    _, head, dest, src = index
    corrupted_activation[:, head, dest, src] = clean_activation[:, head, dest, src]
    return corrupted_activation


#: TransformerLens' name of the same setter.
layer_head_dest_src_pos_pattern_patch_setter = layer_head_dest_src_pos_patch_setter


def _sweep(name: str, setter: PatchSetter, axes: tuple[str, ...], doc: str):
    def sweep(model, corrupted_tokens, clean_cache, patching_metric: Metric) -> np.ndarray:
        return generic_activation_patch(
            model, corrupted_tokens, clean_cache, patching_metric, setter, name, index_axis_names=axes
        )

    sweep.__doc__ = f"{doc} [{', '.join(axes)}]: ``{name}`` patched with ``{setter.__name__}``."
    return sweep


get_act_patch_resid_pre = _sweep("resid_pre", layer_pos_patch_setter, ("layer", "pos"), "The residual stream into each block, per position")
get_act_patch_resid_mid = _sweep("resid_mid", layer_pos_patch_setter, ("layer", "pos"), "The residual stream between attention and MLP, per position")
get_act_patch_attn_out = _sweep("attn_out", layer_pos_patch_setter, ("layer", "pos"), "Each attention layer's output, per position")
get_act_patch_mlp_out = _sweep("mlp_out", layer_pos_patch_setter, ("layer", "pos"), "Each MLP's output, per position")
get_act_patch_attn_head_out_by_pos = _sweep("z", layer_pos_head_vector_patch_setter, ("layer", "pos", "head"), "Each head's output (z), per position")
get_act_patch_attn_head_q_by_pos = _sweep("q", layer_pos_head_vector_patch_setter, ("layer", "pos", "head"), "Each head's queries, per position")
get_act_patch_attn_head_k_by_pos = _sweep("k", layer_pos_head_vector_patch_setter, ("layer", "pos", "head"), "Each key head's keys, per position")
get_act_patch_attn_head_v_by_pos = _sweep("v", layer_pos_head_vector_patch_setter, ("layer", "pos", "head"), "Each value head's values, per position")
get_act_patch_attn_head_pattern_by_pos = _sweep("pattern", layer_head_pos_pattern_patch_setter, ("layer", "head_index", "dest_pos"), "Each head's attention from each destination")
get_act_patch_attn_head_pattern_dest_src_pos = _sweep("pattern", layer_head_dest_src_pos_patch_setter, ("layer", "head_index", "dest_pos", "src_pos"), "Each single attention weight")
get_act_patch_attn_head_out_all_pos = _sweep("z", layer_head_vector_patch_setter, ("layer", "head"), "Each head's output (z) at every position")
get_act_patch_attn_head_q_all_pos = _sweep("q", layer_head_vector_patch_setter, ("layer", "head"), "Each head's queries at every position")
get_act_patch_attn_head_k_all_pos = _sweep("k", layer_head_vector_patch_setter, ("layer", "head"), "Each key head's keys at every position")
get_act_patch_attn_head_v_all_pos = _sweep("v", layer_head_vector_patch_setter, ("layer", "head"), "Each value head's values at every position")
get_act_patch_attn_head_pattern_all_pos = _sweep("pattern", layer_head_pattern_patch_setter, ("layer", "head_index"), "Each head's whole attention pattern")


def _pad_heads(results: np.ndarray, heads: int) -> np.ndarray:
    """Key or value results over n_key_value_heads, zero-padded to n_heads on the last axis."""
    pad = [(0, 0)] * (results.ndim - 1) + [(0, heads - results.shape[-1])]
    return np.pad(results, pad)


def get_act_patch_block_every(model, corrupted_tokens, clean_cache, metric: Metric) -> np.ndarray:
    """``resid_pre``, ``attn_out`` and ``mlp_out`` stacked [3, layer, pos]."""
    return np.stack([
        f(model, corrupted_tokens, clean_cache, metric)
        for f in (get_act_patch_resid_pre, get_act_patch_attn_out, get_act_patch_mlp_out)
    ])


def _head_sweeps_every(args, out, q, k, v, pattern) -> np.ndarray:
    """The five head sweeps stacked, keys and values zero-padded to n_heads."""
    heads = args[0].cfg.n_heads
    return np.stack([out(*args), q(*args), _pad_heads(k(*args), heads), _pad_heads(v(*args), heads), pattern(*args)])


def get_act_patch_attn_head_all_pos_every(model, corrupted_tokens, clean_cache, metric: Metric) -> np.ndarray:
    """Each head's output, queries, keys, values and pattern at every position stacked
    [5, layer, head] (keys and values zero-padded to n_heads under grouped-query attention)."""
    return _head_sweeps_every(
        (model, corrupted_tokens, clean_cache, metric),
        get_act_patch_attn_head_out_all_pos,
        get_act_patch_attn_head_q_all_pos,
        get_act_patch_attn_head_k_all_pos,
        get_act_patch_attn_head_v_all_pos,
        get_act_patch_attn_head_pattern_all_pos,
    )


def get_act_patch_attn_head_by_pos_every(model, corrupted_tokens, clean_cache, metric: Metric) -> np.ndarray:
    """As :func:`get_act_patch_attn_head_all_pos_every`, per position [5, layer, pos, head]
    (the pattern per destination position)."""
    return _head_sweeps_every(
        (model, corrupted_tokens, clean_cache, metric),
        get_act_patch_attn_head_out_by_pos,
        get_act_patch_attn_head_q_by_pos,
        get_act_patch_attn_head_k_by_pos,
        get_act_patch_attn_head_v_by_pos,
        lambda *args: np.swapaxes(get_act_patch_attn_head_pattern_by_pos(*args), 1, 2),
    )
