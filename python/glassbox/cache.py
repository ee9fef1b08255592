"""Activations of one forward pass, by TransformerLens hook name."""

from __future__ import annotations

import operator
import warnings
from typing import TYPE_CHECKING, Any, ItemsView, Iterator, KeysView, Mapping, ValuesView

import numpy as np

from .names import get_act_name

if TYPE_CHECKING:  # pragma: no cover
    from .model import HookedModel

# Hooks TransformerLens has and no glassbox forward pass computes: named in a missing key's
# message, with what gives them.
_TL_ONLY = {"hook_result": "cache.compute_head_results() adds it (z · W_O per head)"}


def _apply_slice(array: np.ndarray, s, axis: int, what: str) -> np.ndarray:
    """TransformerLens' ``Slice`` on ``axis``: None keeps everything, an int picks one (the axis
    goes), a tuple is ``slice(*tuple)``, a slice is itself, a list or array picks those."""
    if s is None:
        return array
    if hasattr(s, "slice") and hasattr(s, "apply"):
        s = s.slice  # a transformer_lens.utils.Slice
    if isinstance(s, tuple):
        s = slice(*s)
    elif hasattr(s, "detach") and hasattr(s, "cpu"):
        s = s.detach().cpu().numpy()
    if not isinstance(s, slice):
        try:
            s = operator.index(s)
        except TypeError:
            s = np.asarray(s)
            if not np.issubdtype(s.dtype, np.integer):
                raise TypeError(f"{what}: indices are integers, got {s.dtype}") from None
    index = [slice(None)] * array.ndim
    index[axis] = s
    return array[tuple(index)]


def _apply_pos_slice(array: np.ndarray, pos_slice) -> np.ndarray:
    """TransformerLens' ``Slice`` on the position axis (the second to last of a residual stream
    vector): None keeps every position, an int picks one (the axis goes), a tuple is
    ``slice(*tuple)``, a slice is itself, a list or array of positions picks those."""
    return _apply_slice(array, pos_slice, array.ndim - 2, "pos_slice")


class ActivationCache(Mapping[str, np.ndarray]):
    """The activations ``run_with_cache`` kept, keyed by hook name in the order the forward pass
    computed them, each a NumPy array (batch first) sharing the engine's memory.

    Keys are full hook names (``"blocks.0.attn.hook_pattern"``) or, as in TransformerLens,
    short forms: ``cache["pattern", 0]``, ``cache["resid_post", -1]`` (a negative layer counts
    from the end), ``cache["normalized", 0, "ln1"]``, ``cache["embed"]``.
    ``model.hook_names()`` lists what a model computes: TransformerLens' ``hook_result`` is not
    among them; :meth:`compute_head_results` adds it to the cache, as TransformerLens' does.

    ``ActivationCache(cache_dict, model)`` as TransformerLens makes one; ``model`` may also be
    the number of layers alone (then ``decompose_resid`` reads the components off the cache)."""

    def __init__(
        self,
        cache_dict: dict[str, np.ndarray],
        model: "HookedModel | int",
        has_batch_dim: bool = True,
    ):
        self._acts = cache_dict
        if hasattr(model, "cfg"):
            #: The model the activations are from (None when the cache was made with a layer count).
            self.model = model
            self._n_layers = int(model.cfg.n_layers)
        else:
            self.model = None
            self._n_layers = operator.index(model)
        #: Whether the arrays still have their batch axis (``remove_batch_dim`` takes it away).
        self.has_batch_dim = has_batch_dim

    @property
    def cache_dict(self) -> dict[str, np.ndarray]:
        """The activations by full hook name (TransformerLens' ``cache.cache_dict``)."""
        return self._acts

    @property
    def n_layers(self) -> int:
        """The model's number of blocks (what a negative layer counts from)."""
        return self._n_layers

    # --- a mapping -----------------------------------------------------------------------------

    def _key(self, key) -> str:
        if isinstance(key, str):
            return key if key in self._acts else get_act_name(key)
        if isinstance(key, tuple):
            if not key:
                raise KeyError("an empty key")
            if len(key) > 1 and key[1] is not None:
                try:
                    layer = operator.index(key[1])
                except TypeError:
                    raise TypeError(f"a layer is an integer, not {type(key[1]).__name__}") from None
                if layer < 0:
                    # As TransformerLens: a negative layer counts from n_layers.
                    if layer < -self._n_layers:
                        raise KeyError(f"layer {layer}: the model has {self._n_layers} layers")
                    layer += self._n_layers
                key = (key[0], layer, *key[2:])
            return get_act_name(*key)
        raise TypeError(f"a cache key is a hook name or a (name, layer[, type]) tuple, not {type(key).__name__}")

    def __getitem__(self, key) -> np.ndarray:
        name = self._key(key)
        try:
            return self._acts[name]
        except KeyError:
            why = f"names_filter kept {len(self._acts)} hooks"
            last = name.rsplit(".", 1)[-1]
            if last in _TL_ONLY:
                why = f"no glassbox forward pass computes {last}: {_TL_ONLY[last]}"
            raise KeyError(f"{name!r} is not in the cache ({why})") from None

    def __contains__(self, key) -> bool:
        try:
            return self._key(key) in self._acts
        except (KeyError, ValueError, TypeError):
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._acts)

    def __len__(self) -> int:
        return len(self._acts)

    def keys(self) -> KeysView[str]:
        """The full hook names, in the order the forward pass computed them."""
        return self._acts.keys()

    def values(self) -> ValuesView[np.ndarray]:
        """The arrays, in the order of :meth:`keys`."""
        return self._acts.values()

    def items(self) -> ItemsView[str, np.ndarray]:
        """(full hook name, array) pairs, in the order of :meth:`keys`."""
        return self._acts.items()

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hooks: {', '.join(list(self)[:4])}{', …' if len(self) > 4 else ''})"

    def to_dict(self) -> dict[str, np.ndarray]:
        """The activations as a plain dict."""
        return dict(self._acts)

    # --- TransformerLens' housekeeping ---------------------------------------------------------

    def to(self, device: Any, move_model: bool = False) -> "ActivationCache":
        """TransformerLens' ``cache.to(device)``: glassbox runs on the CPU only, so ``"cpu"``
        returns the cache itself (nothing moves) and any other device is a ``ValueError``."""
        if str(device) != "cpu":
            raise ValueError(f"device {device!r}: glassbox runs on the CPU only")
        return self

    def remove_batch_dim(self) -> "ActivationCache":
        """Drops the batch axis of every array of a batch of one, in place, and returns the
        cache (as TransformerLens; the arrays stay views of the same memory). A batch of more
        than one is a ``ValueError``; a second call warns and changes nothing."""
        if not self.has_batch_dim:
            warnings.warn("Tried removing batch dimension after already having removed it.", stacklevel=2)
            return self
        for name, a in self._acts.items():
            if a.ndim == 0 or a.shape[0] != 1:
                raise ValueError(
                    f"cannot remove the batch dimension: {name!r} has shape {tuple(a.shape)} (batch size ≠ 1)"
                )
        for name in list(self._acts):
            self._acts[name] = self._acts[name][0]
        self.has_batch_dim = False
        return self

    # --- stacks over layers --------------------------------------------------------------------

    def _up_to(self, layer, what: str) -> int:
        """TransformerLens' ``layer`` argument of the stacking methods: None, -1 or n_layers
        mean every layer; 0 … n_layers count the layers taken."""
        n = self._n_layers
        if layer is None:
            return n
        try:
            layer = operator.index(layer)
        except TypeError:
            raise TypeError(f"{what}: layer is an integer, not {type(layer).__name__}") from None
        if layer == -1:
            return n
        if layer < 0:
            raise ValueError(
                f"{what}: layer {layer}: -1 (or None) means all {n} layers, as in TransformerLens; "
                f"give 0 … {n} for fewer"
            )
        if layer > n:
            raise ValueError(f"{what}: layer {layer}: the model has {n} layers (0 … {n})")
        return layer

    def stack_activation(
        self, activation_name: str, layer: int | None = -1, sublayer_type: str | None = None
    ) -> np.ndarray:
        """The activation ``activation_name`` of layers 0 … ``layer``−1 stacked along a new first
        axis [layers, batch, ...], as TransformerLens' ``stack_activation``: ``layer`` -1 or None
        (the default) stacks every layer; ``sublayer_type`` is the norm of ``"normalized"``
        (``"ln1"``, ``"ln2"``). A layer whose activation is not in the cache is a ``KeyError``."""
        if isinstance(layer, str):
            raise TypeError(
                f"stack_activation(name, layer, sublayer_type): the second argument is the layer "
                f"to stop before, as in TransformerLens; give {layer!r} as sublayer_type="
            )
        up_to = self._up_to(layer, "stack_activation")
        if up_to == 0:
            raise ValueError("stack_activation: layer 0 stacks no layer")
        return np.stack([self[(activation_name, l, sublayer_type)] for l in range(up_to)])

    def apply_ln_to_stack(
        self,
        residual_stack,
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice=None,
        batch_slice=None,
        has_batch_dim: bool = True,
        recompute_ln: bool = False,
    ) -> np.ndarray:
        """Components of the residual stream [components, (batch,) (pos,) d_model] as the norm
        into block ``layer`` sees them, as TransformerLens' ``apply_ln_to_stack``: centred (for a
        LayerNorm) and divided by the scale the cache holds for that norm at each position
        (``blocks.L.ln1.hook_scale``, ``ln2`` with ``mlp_input``; ``ln_final.hook_scale`` for
        ``layer`` = n_layers, None or -1, the default), so that they sum to its
        ``hook_normalized``. ``recompute_ln`` with the final layer instead runs each component
        through the final norm itself, weight and bias included (the logit lens).
        ``pos_slice`` / ``batch_slice`` say which positions / batch rows the stack holds
        (already taken from it; they are taken from the scale here)."""
        kind = self._normalization("apply_ln_to_stack")
        n = self._n_layers
        if layer is None or layer == -1:
            layer = n
        layer = self._up_to(layer, "apply_ln_to_stack")
        stack = np.asarray(residual_stack, dtype=np.float32)
        if has_batch_dim:
            stack = _apply_slice(stack, batch_slice, 1, "batch_slice")
        if mlp_input and layer == n:
            raise ValueError("apply_ln_to_stack: the final norm has no MLP input (mlp_input with layer n_layers)")
        if recompute_ln and layer == n:
            return np.asarray(self.model._m.final_norm(np.ascontiguousarray(stack)))
        if kind == "LN":
            stack = stack - stack.mean(axis=-1, keepdims=True)
        return stack / self._ln_scale(layer, mlp_input, pos_slice, batch_slice)

    def _normalization(self, what: str) -> str:
        """The model's ``normalization_type``; a cache without a model, or a post-LN encoder
        (whose norms read no sum of components), cannot normalise a stack."""
        if self.model is None:
            raise ValueError(f"{what} needs the model (this cache was made with a layer count)")
        kind = self.model.cfg.normalization_type
        if kind is None:
            raise NotImplementedError(
                f"{self.model.cfg.architecture} normalises after each block (post-LN): no stack "
                "of residual components sums to what a norm reads"
            )
        return kind

    def _ln_scale(self, layer: int, mlp_input: bool, pos_slice, batch_slice=None) -> np.ndarray:
        """The cached scale [(batch,) (pos,) 1] of the norm reading the residual stream into
        block ``layer`` (``ln2`` with ``mlp_input``; ``ln_final`` for ``layer`` = n_layers)."""
        n = self._n_layers
        if mlp_input and layer == n:
            raise ValueError("the final norm has no MLP input (mlp_input with layer n_layers)")
        key = "ln_final.hook_scale" if layer == n else f"blocks.{layer}.ln{2 if mlp_input else 1}.hook_scale"
        scale = _apply_pos_slice(self[key], pos_slice)
        if self.has_batch_dim:
            scale = _apply_slice(scale, batch_slice, 0, "batch_slice")
        return scale

    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice=None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, list[str]]:
        """The residual stream as it accumulates, as TransformerLens' ``accumulated_resid``:
        ``resid_pre`` of layers 0 … ``layer`` stacked along a new first axis
        [components, batch, pos, d_model], ``layer`` = n_layers (or None, -1: the default) ending
        with the last block's ``resid_post`` (the stream the final norm reads). ``incl_mid`` adds
        ``resid_mid`` of every layer before ``layer``, ``mlp_input`` that of ``layer`` itself;
        ``pos_slice`` selects positions (an int, a (start, stop[, step]) tuple, a slice or a list);
        ``return_labels`` also returns TransformerLens' labels (``"0_pre"``, ``"0_mid"``,
        ``"final_post"``). ``apply_ln`` normalises each as TransformerLens' (3.x) does: through the
        final norm itself for the last layer (the logit lens), else by the cached scale of
        ``layer``'s norm (:meth:`apply_ln_to_stack`)."""
        up_to = self._up_to(layer, "accumulated_resid")
        n = self._n_layers
        components, labels = [], []
        for l in range(up_to + 1):
            if l == n:
                components.append(self[("resid_post", n - 1)])
                labels.append("final_post")
                continue
            components.append(self[("resid_pre", l)])
            labels.append(f"{l}_pre")
            if (incl_mid and l < up_to) or (mlp_input and l == up_to):
                components.append(self[("resid_mid", l)])
                labels.append(f"{l}_mid")
        stack = np.stack([_apply_pos_slice(c, pos_slice) for c in components])
        if apply_ln:
            stack = self.apply_ln_to_stack(
                stack,
                up_to,
                mlp_input=mlp_input,
                pos_slice=pos_slice,
                has_batch_dim=self.has_batch_dim,
                recompute_ln=up_to == n,
            )
        return (stack, labels) if return_labels else stack

    def _hook_exists(self, name: str) -> bool:
        """Whether the model computes the hook ``name`` (the cache's keys when no model is known)."""
        if self.model is not None:
            return name in self._model_hooks()
        return name in self._acts

    def _model_hooks(self) -> set[str]:
        hooks = getattr(self, "_hook_set", None)
        if hooks is None:
            hooks = self._hook_set = set(self.model.hook_names())
        return hooks

    def _mlp_reads_attention(self, layer: int) -> bool:
        """Whether block ``layer``'s MLP reads its attention's output: a sequential block (one
        with a ``resid_mid``); a parallel block's MLP (GPT-NeoX), or a hybrid's MLP-only
        block's, reads ``resid_pre``."""
        return self._hook_exists(f"blocks.{layer}.hook_resid_mid")

    def _joins_residual(self, layer: int, which: str) -> str | None:
        """The hook holding what block ``layer``'s attention (``which="attn"``) or MLP adds to the
        residual stream, ``hook_attn_out`` / ``hook_mlp_out`` (after the post-norm where the
        family has one, as in TransformerLens); None when the block has no such sublayer
        (hybrids whose blocks hold one)."""
        out = f"blocks.{layer}.hook_{which}_out"
        return out if self._hook_exists(out) else None

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice=None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, list[str]]:
        """The residual stream entering block ``layer`` as the stack of what wrote it, as
        TransformerLens' ``decompose_resid``: the embeddings (``"embed"``, ``"pos_embed"`` where
        the model has learned positions; ``incl_embeds=False`` leaves them out) and each earlier
        block's attention and MLP outputs (``"0_attn_out"``, ``"0_mlp_out"``, …), stacked along a
        new first axis [components, batch, pos, d_model]. Their sum is ``resid_pre`` of
        ``layer`` (with ``layer`` = n_layers, None or -1, the default: the last ``resid_post``).
        ``mlp_input`` adds ``layer``'s own attention output (the MLP's input); ``mode`` ``"attn"`` or
        ``"mlp"`` keeps only those outputs; ``pos_slice`` and ``return_labels`` as in
        :meth:`accumulated_resid`. A block's output is what joins the residual stream (after its
        post-norm, where it has one, as TransformerLens' ``hook_attn_out``); a hybrid's block
        without attention or without an MLP contributes only what it has. ``apply_ln`` divides
        each by the cached scale of ``layer``'s norm (:meth:`apply_ln_to_stack`), as
        TransformerLens does.

        A component the model computes but the cache lacks (``names_filter`` left it out) is a
        ``KeyError``, not a smaller sum."""
        if mode not in ("all", "attn", "mlp"):
            raise ValueError(f"mode {mode!r}: expected 'all', 'attn' or 'mlp'")
        up_to = self._up_to(layer, "decompose_resid")
        if mlp_input and up_to == self._n_layers:
            raise ValueError("decompose_resid: mlp_input needs a layer below n_layers (whose MLP input it is)")
        if self.model is not None and not self.model.cfg.causal:
            raise NotImplementedError(
                "decompose_resid: this encoder's residual stream is normalised after each block "
                "(post-LN), so it is no sum of its blocks' outputs"
            )
        incl_attn, incl_mlp = mode != "mlp", mode != "attn"
        components: list[np.ndarray] = []
        labels: list[str] = []
        if incl_embeds:
            for name, label in (("hook_embed", "embed"), ("hook_pos_embed", "pos_embed")):
                if self._hook_exists(name):
                    components.append(self[name])
                    labels.append(label)
        reads_attention = mlp_input and self._mlp_reads_attention(up_to)
        for l in range(up_to + (1 if reads_attention else 0)):
            parts = [("attn", incl_attn)] + ([("mlp", incl_mlp)] if l < up_to else [])
            for which, wanted in parts:
                hook = self._joins_residual(l, which) if wanted else None
                if hook is not None:
                    components.append(self[hook])
                    labels.append(f"{l}_{which}_out")
        if not components:
            raise ValueError("decompose_resid: no component to stack (layer 0 without the embeddings)")
        stack = np.stack([_apply_pos_slice(c, pos_slice) for c in components])
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, up_to, mlp_input=mlp_input, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    # --- per head and per neuron (direct logit attribution) -----------------------------------

    def _linear_components(self, what: str, post_norm: str) -> None:
        """Heads' and neurons' outputs are residual components only where nothing nonlinear
        comes between them and the residual stream: refused after a post-norm (Gemma 2, OLMo 2)
        and in post-LN encoders."""
        model = self._needs_model(what)
        if not model.cfg.causal:
            raise NotImplementedError(f"{what}: this encoder normalises after each block (post-LN)")
        norm = f"blocks.0.{post_norm}.w"
        if norm in model._weight_set():
            raise NotImplementedError(
                f"{what}: in {model.cfg.architecture} a norm ({post_norm}) follows each sublayer, so "
                "its heads' or neurons' outputs do not add up to what joins the residual stream "
                "(decompose_resid gives the blocks' outputs)"
            )

    def _needs_model(self, what: str) -> "HookedModel":
        if self.model is None:
            raise ValueError(f"{what} needs the model's weights (this cache was made with a layer count)")
        return self.model

    def _attention_layers(self) -> list[int]:
        have = self._needs_model("head results")._weight_set()
        return [l for l in range(self._n_layers) if f"blocks.{l}.attn.W_O" in have]

    def _stream_into(self, layer: int, pos_slice) -> np.ndarray:
        """The residual stream entering block ``layer`` (the final norm's input for n_layers):
        what a remainder is taken of. Block 0's is its ``resid_pre``, the embeddings."""
        name = ("resid_pre", 0) if layer == 0 else ("resid_post", layer - 1)
        return _apply_pos_slice(self[name], pos_slice)

    def _mlp_layers(self, up_to: int) -> tuple[list[int], list[int]]:
        """Blocks before ``up_to`` whose MLP writes to the residual stream: those with
        per-neuron weights (``W_out``), and those without (mixtures of experts)."""
        have = self._needs_model("neuron results")._weight_set()
        dense, whole = [], []
        for l in range(up_to):
            if f"blocks.{l}.mlp.W_out" in have:
                dense.append(l)
            elif self._joins_residual(l, "mlp"):
                whole.append(l)
        return dense, whole

    def _onto(self, projection, folded: bool, what: str):
        """The directions to project neurons' outputs on: with the norm folded in, a
        LayerNorm's centring moves onto them (centring x then projecting is projecting x on
        the centred directions); dividing by the scale is left to the caller."""
        if folded and self._normalization(what) == "LN":
            return projection - projection.mean(axis=0, keepdims=True)
        return projection

    def _neuron_stack(self, layers, pos_slice, neuron_slice, onto, width):
        """Each neuron's output in ``layers``' MLPs, stacked [neurons, ..., d_model or k], and
        the labels ``"L{l}N{n}"``."""
        labels, per_layer = [], []
        for l in layers:
            # each layer's own width (Llama 4's dense layers are wider than its experts'
            # cfg.d_mlp); the neurons as a list: one neuron keeps its axis
            width_l = self.model.get_weight(f"blocks.{l}.mlp.W_out").shape[0]
            neurons = np.atleast_1d(_apply_slice(np.arange(width_l), neuron_slice, 0, "neuron_slice"))
            labels.extend(f"L{l}N{n}" for n in neurons)
            r = self.get_neuron_results(l, neuron_slice=neurons, pos_slice=pos_slice, project_output_onto=onto)
            per_layer.append(np.moveaxis(r, -2, 0))
        if per_layer:
            return np.concatenate(per_layer), labels
        shape = _apply_pos_slice(self["hook_embed"], pos_slice).shape
        return np.zeros((0, *shape[:-1], width or shape[-1]), dtype=np.float32), labels

    def compute_head_results(self) -> None:
        """Adds each attention layer's ``blocks.L.attn.hook_result`` [batch, pos, head, d_model]:
        what each head writes, ``z`` times its slice of ``W_O`` (no bias), as TransformerLens'
        ``compute_head_results``. Needs ``hook_z`` of every attention layer in the cache; a
        second call changes nothing."""
        model = self._needs_model("compute_head_results")
        for l in self._attention_layers():
            key = f"blocks.{l}.attn.hook_result"
            if key in self._acts:
                continue
            z = self[("z", l, "attn")]
            w_o = model.get_weight(f"blocks.{l}.attn.W_O")  # [head, d_head, d_model]
            self._acts[key] = np.matmul(z[..., None, :], w_o)[..., 0, :]

    def stack_head_results(
        self,
        layer: int | None = -1,
        return_labels: bool = False,
        incl_remainder: bool = False,
        pos_slice=None,
        apply_ln: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, list[str]]:
        """Every head's output in layers 0 … ``layer``−1 along a new first axis
        [heads, (batch,) (pos,) d_model] with labels ``"L{l}H{h}"``, as TransformerLens'
        ``stack_head_results`` (``layer`` -1 or None: every layer). ``incl_remainder`` adds
        ``resid_post`` of layer ``layer``−1 minus their sum (``"remainder"``); ``apply_ln``
        divides by the scale of the norm reading layer ``layer``'s input (the final norm for
        every layer), so that :meth:`logit_attrs` and ``@ W_U`` give direct logit
        attributions."""
        self._linear_components("stack_head_results", "ln1_post")
        up_to = self._up_to(layer, "stack_head_results")
        self.compute_head_results()
        components, labels = [], []
        for l in self._attention_layers():
            if l >= up_to:
                break
            result = _apply_slice(self[("result", l, "attn")], pos_slice, -3, "pos_slice")
            components.append(np.moveaxis(result, -2, 0))
            labels.extend(f"L{l}H{h}" for h in range(result.shape[-2]))
        shape = _apply_pos_slice(self["hook_embed"], pos_slice).shape
        stack = np.concatenate(components) if components else np.zeros((0, *shape), dtype=np.float32)
        if incl_remainder:
            resid = self._stream_into(up_to, pos_slice)
            stack = np.concatenate([stack, (resid - stack.sum(axis=0))[None]])
            labels.append("remainder")
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, up_to, pos_slice=pos_slice, has_batch_dim=self.has_batch_dim)
        return (stack, labels) if return_labels else stack

    def get_neuron_results(
        self, layer: int, neuron_slice=None, pos_slice=None, project_output_onto=None
    ) -> np.ndarray:
        """What each neuron of block ``layer``'s MLP writes, its ``hook_post`` activation times
        its row of ``W_out`` [(batch,) (pos,) neurons, d_model], as TransformerLens'
        ``get_neuron_results``; ``project_output_onto`` [d_model] or [d_model, k] gives the
        projections instead ([.., neurons] or [.., neurons, k])."""
        model = self._needs_model("get_neuron_results")
        layer = operator.index(layer)
        if not -self._n_layers <= layer < self._n_layers:
            raise ValueError(f"get_neuron_results: layer {layer} of a model with {self._n_layers} layers")
        if layer < 0:
            layer += self._n_layers  # as TransformerLens: -1 is the last block
        acts = _apply_pos_slice(self[("post", layer, "mlp")], pos_slice)
        w_out = model.get_weight(f"blocks.{layer}.mlp.W_out")
        acts = _apply_slice(acts, neuron_slice, acts.ndim - 1, "neuron_slice")
        w_out = _apply_slice(w_out, neuron_slice, 0, "neuron_slice")
        if project_output_onto is None:
            return acts[..., None] * w_out
        projected = w_out @ _as_array(project_output_onto)
        return acts * projected if projected.ndim == 1 else acts[..., None] * projected

    def stack_neuron_results(
        self,
        layer: int | None,
        pos_slice=None,
        neuron_slice=None,
        return_labels: bool = False,
        incl_remainder: bool = False,
        apply_ln: bool = False,
        project_output_onto=None,
    ) -> np.ndarray | tuple[np.ndarray, list[str]]:
        """Every neuron's output in the MLPs of layers 0 … ``layer``−1 along a new first axis,
        labels ``"L{l}N{n}"``, as TransformerLens' ``stack_neuron_results``;
        ``incl_remainder`` and ``apply_ln`` as in :meth:`stack_head_results`,
        ``neuron_slice`` picks neurons of each layer, ``project_output_onto`` projects each
        output on a direction [d_model] or directions [d_model, k] (normalised first, with
        ``apply_ln``, without making the d_model-wide stack)."""
        self._linear_components("stack_neuron_results", "ln2_post")
        up_to = self._up_to(layer, "stack_neuron_results")
        projection = None if project_output_onto is None else _as_array(project_output_onto)
        flat = projection is not None and projection.ndim == 1
        if projection is not None and flat:
            projection = projection[:, None]
        folded = apply_ln and projection is not None
        onto = self._onto(projection, folded, "stack_neuron_results")
        dense, whole = self._mlp_layers(up_to)
        if whole:
            raise NotImplementedError(
                f"stack_neuron_results: block {whole[0]}'s MLP is a mixture of experts, which has no "
                "neuron-by-neuron output (get_full_resid_decomposition gives its whole output)"
            )
        stack, labels = self._neuron_stack(dense, pos_slice, neuron_slice, onto, width=None if projection is None else projection.shape[1])
        if folded:
            stack = stack / self._ln_scale(up_to, False, pos_slice)
        if incl_remainder:
            resid = self._stream_into(up_to, pos_slice)
            if folded:
                resid = self.apply_ln_to_stack(resid[None], up_to, mlp_input=False, pos_slice=pos_slice)[0]
            if projection is not None:
                resid = resid @ projection
            stack = np.concatenate([stack, (resid - stack.sum(axis=0))[None]])
            labels.append("remainder")
        if apply_ln and not folded:
            stack = self.apply_ln_to_stack(stack, up_to, mlp_input=False, pos_slice=pos_slice)
        if flat:
            stack = stack[..., 0]
        return (stack, labels) if return_labels else stack

    def logit_attrs(
        self,
        residual_stack,
        tokens,
        incorrect_tokens=None,
        pos_slice=None,
        batch_slice=None,
        has_batch_dim: bool = True,
    ) -> np.ndarray:
        """Each component's direct contribution to the logit of ``tokens`` (a string of one
        token, an id, or ids matching the stack's batch and position axes), minus that of
        ``incorrect_tokens`` when given, as TransformerLens' ``logit_attrs`` on a model whose
        final norm is folded into the unembedding (``fold_ln``, part of its default
        ``from_pretrained``, which also centres the unembedding: logit differences agree with
        that, single-token attributions differ by the centring): the stack normalised by the
        final norm's cached scale (:meth:`apply_ln_to_stack`), times the norm's weight, dotted
        with ``W_U``'s columns. [components, (batch,) (pos,)]

        So the attributions of a full decomposition add up to the logit (difference) less the
        final norm's and the unembedding's biases. (TransformerLens' unprocessed
        ``from_pretrained_no_processing`` leaves the norm's weight out, so its attributions do
        not add up to the logits.)"""
        model = self._needs_model("logit_attrs")
        directions = model.tokens_to_residual_directions(tokens)
        if incorrect_tokens is not None:
            shape = lambda t: () if isinstance(t, (str, int)) else np.shape(_as_array(t))  # noqa: E731
            if shape(tokens) != shape(incorrect_tokens):
                raise ValueError(
                    f"tokens and incorrect_tokens must have the same shape ({shape(tokens)} and {shape(incorrect_tokens)})"
                )
            directions = directions - model.tokens_to_residual_directions(incorrect_tokens)
        scaled = self.apply_ln_to_stack(
            residual_stack, -1, pos_slice=pos_slice, batch_slice=batch_slice, has_batch_dim=has_batch_dim
        )
        return (scaled * (directions * model.ln_final.w)).sum(axis=-1)

    def get_full_resid_decomposition(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        expand_neurons: bool = True,
        apply_ln: bool = False,
        pos_slice=None,
        return_labels: bool = False,
        project_output_onto=None,
    ) -> np.ndarray | tuple[np.ndarray, list[str]]:
        """The residual stream entering block ``layer`` (every layer: the final norm's input)
        as the sum of every head's output, every neuron's (``expand_neurons``, else each
        MLP's), the embeddings and the biases (``"bias"``: :meth:`HookedModel.accumulated_bias`),
        as TransformerLens' ``get_full_resid_decomposition``; ``mlp_input`` adds block
        ``layer``'s heads (the MLP's input). ``apply_ln`` and ``project_output_onto`` as in
        :meth:`stack_neuron_results`."""
        model = self._needs_model("get_full_resid_decomposition")
        up_to = self._up_to(layer, "get_full_resid_decomposition")
        projection = None if project_output_onto is None else _as_array(project_output_onto)
        flat = projection is not None and projection.ndim == 1
        if flat:
            projection = projection[:, None]
        folded = apply_ln and projection is not None

        def finish(stack: np.ndarray) -> np.ndarray:
            if folded:
                stack = self.apply_ln_to_stack(stack, up_to, mlp_input=mlp_input, pos_slice=pos_slice)
            return stack if projection is None else stack @ projection

        reads_attention = mlp_input and self._mlp_reads_attention(up_to)
        mixers = up_to + (1 if reads_attention else 0)
        heads, labels = self.stack_head_results(mixers, pos_slice=pos_slice, return_labels=True)
        components = [finish(heads)]
        have = model._weight_set()
        # a token mixer without heads (a Mamba block) contributes its whole output
        for l in range(mixers):
            out = self._joins_residual(l, "attn")
            if out is not None and f"blocks.{l}.attn.W_O" not in have:
                components.append(finish(_apply_pos_slice(self[out], pos_slice)[None]))
                labels.append(f"{l}_attn_out")
        dense, whole = self._mlp_layers(up_to)
        if not expand_neurons:
            whole, dense = sorted(dense + whole), []
        if dense:
            onto = self._onto(projection, folded, "get_full_resid_decomposition")
            width = None if projection is None else projection.shape[1]
            neurons, neuron_labels = self._neuron_stack(dense, pos_slice, None, onto, width)
            if folded:
                neurons = neurons / self._ln_scale(up_to, mlp_input, pos_slice)
            components.append(neurons)
            labels.extend(neuron_labels)
        # an MLP without per-neuron weights (a mixture of experts), or every MLP without
        # expand_neurons, contributes its whole output
        for l in whole:
            components.append(finish(_apply_pos_slice(self[self._joins_residual(l, "mlp")], pos_slice)[None]))
            labels.append(f"{l}_mlp_out")
        for name, label in (("hook_embed", "embed"), ("hook_pos_embed", "pos_embed")):
            if name in self._acts:
                components.append(finish(_apply_pos_slice(self[name], pos_slice)[None]))
                labels.append(label)
        bias = model.accumulated_bias(up_to, mlp_input, include_mlp_biases=expand_neurons)
        bias = np.broadcast_to(bias, (1, *heads.shape[1:])).astype(np.float32)
        components.append(finish(bias))
        labels.append("bias")
        stack = np.concatenate(components)
        if apply_ln and not folded:
            stack = self.apply_ln_to_stack(stack, up_to, mlp_input=mlp_input, pos_slice=pos_slice)
        if flat:
            stack = stack[..., 0]
        return (stack, labels) if return_labels else stack


def _as_array(x) -> np.ndarray:
    """A NumPy float32 array of ``x`` (a torch tensor too)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)
