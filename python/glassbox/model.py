"""``HookedModel``: TransformerLens' API over glassbox's engine."""

from __future__ import annotations

import inspect
import operator
import os
import re
import secrets
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple, Sequence, Union

import numpy as np

from . import _native
from . import gradients as _gradients
from . import weights as _weights
from .cache import ActivationCache
from .factored import FactoredMatrix
from .tokenizer import Tokenizer

#: What a model can be run on: a text, several texts, or token ids ([pos] or [batch, pos]).
Input = Union[str, Sequence[str], np.ndarray, Sequence[int], Sequence[Sequence[int]], Any]
#: A hook function: ``fn(activation, hook)`` returns None (keep the activation, edited in place
#: or not) or an array of the same shape to use instead.
HookFn = Callable[[np.ndarray, "HookPoint"], Any]
#: Which hooks: a name, a glob (``"blocks.*.hook_resid_post"``), a list of either, or a
#: function of the name returning True for the hooks wanted.
NameFilter = Union[str, Sequence[str], Callable[[str], bool], None]


@dataclass(frozen=True)
class Config:
    """A model's dimensions (TransformerLens' ``model.cfg``)."""

    architecture: str
    n_layers: int
    d_model: int
    n_heads: int
    n_key_value_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    causal: bool
    learned_positions: bool
    has_unembedding: bool
    has_tokenizer: bool
    numerics: str
    eos_token_ids: list = field(default_factory=list)
    #: How attention holds keys and values: ``"f16"`` (llama.cpp's default cache, the default
    #: under ``numerics="llamacpp"``) or ``"f32"``.
    kv_cache: str = "f32"
    bos_token_id: int | None = None
    pad_token_id: int | None = None
    #: TransformerLens' ``normalization_type``: ``"LN"`` (centred, then scaled) or ``"RMS"``;
    #: None where the residual stream is not a sum the norms read (a post-LN encoder).
    normalization_type: str | None = None
    #: Where the model runs: always ``"cpu"`` (TransformerLens' ``cfg.device``).
    device: str = "cpu"

    @property
    def d_vocab_out(self) -> int:
        """The size of the output vocabulary (TransformerLens' ``d_vocab_out``): ``d_vocab``."""
        return self.d_vocab


class Output(NamedTuple):
    """``model(..., return_type="both")``: the logits and the loss, as TransformerLens' ``Output``."""

    logits: np.ndarray
    loss: Any


class HookPoint:
    """The hook point a hook function is called at: ``hook.name`` is its TransformerLens name."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def layer(self) -> int:
        """The block index in the name (``blocks.3.…`` -> 3)."""
        m = re.match(r"blocks\.(\d+)\.", self.name)
        if m is None:
            raise ValueError(f"{self.name!r} is not inside a block")
        return int(m.group(1))

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r})"


def _count(value, name: str) -> int:
    """A count, size, seed or index the engine takes unsigned: an integer ≥ 0, else a
    ValueError naming the argument (the conversion itself raised OverflowError)."""
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if n < 0:
        raise ValueError(f"{name} must be ≥ 0, got {n}")
    return n


def _as_numpy(x) -> np.ndarray:
    """An array from NumPy arrays, lists, or torch tensors (detached, on the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _takes_hook_keyword(fn) -> bool:
    """Whether ``fn`` can be called as TransformerLens calls hooks, ``fn(activation, hook=…)``:
    it has a parameter named ``hook`` or takes ``**kwargs``. Others (``lambda a, h: …``) get the
    hook point as their second positional argument."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind is p.VAR_KEYWORD
        or (p.name == "hook" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in params
    )


def _native_hook(fn: HookFn):
    """Wraps a user's hook function for the engine: the activation as a NumPy view of the
    engine's tensor, and the answer as a float32 array (None when unchanged or edited in place).
    The hook point goes in as TransformerLens passes it, ``hook=``, where the function takes that
    keyword (a keyword-only ``hook``, a ``partial`` that binds arguments after it)."""
    by_keyword = _takes_hook_keyword(fn)

    def call(held, name):
        act = np.asarray(held)
        out = fn(act, hook=HookPoint(name)) if by_keyword else fn(act, HookPoint(name))
        if out is None or (out is act and not held.copied):
            if held.copied:
                # A widened copy (bf16): edits in place must be sent back.
                return np.ascontiguousarray(act, dtype=np.float32)
            return None
        arr = _as_numpy(out)
        if arr.shape != act.shape:
            raise ValueError(
                f"the hook at {name!r} returned shape {tuple(arr.shape)}; the activation is {tuple(act.shape)}"
            )
        return np.ascontiguousarray(arr, dtype=np.float32)

    return call


class HookedModel:
    """A loaded model with TransformerLens' API: ``model(tokens)``, ``run_with_cache``,
    ``run_with_hooks``, ``generate``, ``to_tokens`` … Arrays are NumPy, batch first; the
    engine runs without the GIL, and Ctrl-C interrupts long calls. Make one with
    :func:`glassbox.load`."""

    def __init__(self, native: "_native.Model"):
        self._m = native
        info = native.info()
        #: What the loader tolerated in the files (also issued as warnings by ``load``).
        self.warnings: list[str] = info.pop("warnings")
        self.cfg = Config(**info)
        self.path: str = native.path
        self._hook_names: list[str] | None = None
        self._weight_names: list[str] | None = None
        # Hooks added with add_hook or inside `with model.hooks(...)`: applied to every pass.
        self._persistent: list = []
        # the entries added with is_permanent=True (reset_hooks keeps them by default)
        self._permanent: list = []
        # Backward hooks added with add_hook(dir="bwd") or `model.hooks(bwd_hooks=...)`:
        # (patterns, fn), called by every pass that runs a backward pass.
        self._bwd_persistent: list = []
        self._bwd_permanent: list = []

    def __repr__(self) -> str:
        c = self.cfg
        return f"HookedModel({self.path!r}: {c.architecture}, {c.n_layers} layers, d_model {c.d_model})"

    # --- tokens -----------------------------------------------------------------------------

    def _bos(self) -> int:
        bos = self.cfg.bos_token_id
        if bos is None:
            raise ValueError(f"{self.path}: the config names no bos_token_id to prepend")
        if not 0 <= bos < self.cfg.d_vocab:
            raise ValueError(f"{self.path}: bos_token_id {bos} is outside the {self.cfg.d_vocab} tokens; it cannot be prepended")
        return bos

    def _encode(self, text: str, prepend_bos: bool | None) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"expected text, got {type(text).__name__}")
        ids = list(self._m.encode(text))
        if prepend_bos is True and (not ids or ids[0] != self._bos()):
            ids.insert(0, self._bos())
        elif prepend_bos is False and ids and self.cfg.bos_token_id is not None and ids[0] == self.cfg.bos_token_id:
            ids = ids[1:]
        return ids

    def _pad_id(self) -> int:
        """The pad token: the config's, else the tokenizer's own (``<pad>``, ``[PAD]``,
        ``<|pad|>``), else the first end-of-sequence token, else 0 (padding is masked, so any id
        in the vocabulary serves; a pad token keeps padded ids recognisable)."""
        pad = getattr(self, "_pad", None)
        if pad is None:
            pad = self._pad = self._find_pad_id()
        return pad

    def _find_pad_id(self) -> int:
        candidates = [self.cfg.pad_token_id]
        if self.cfg.has_tokenizer:
            for text in ("<pad>", "[PAD]", "<|pad|>"):
                ids = self._encode(text, prepend_bos=False)
                if len(ids) == 1 and self._m.decode(ids, skip_special_tokens=True) == "":
                    candidates.append(ids[0])  # a special token the tokenizer knows
        for t in [*candidates, *self.cfg.eos_token_ids]:
            if t is not None and 0 <= t < self.cfg.d_vocab:
                return t
        return 0

    def _batch(self, input: Input, prepend_bos: bool | None = None):
        """Token ids uint32 [batch, pos] and, for texts of unequal length, the attention mask."""
        if isinstance(input, str):
            input = [input]
        if isinstance(input, (list, tuple)) and input and all(isinstance(t, str) for t in input):
            rows = [self._encode(t, prepend_bos) for t in input]
            if any(len(r) == 0 for r in rows):
                raise ValueError("a text has no tokens")
            width = max(len(r) for r in rows)
            ids = np.full((len(rows), width), self._pad_id(), dtype=np.uint32)
            mask = np.zeros((len(rows), width), dtype=np.uint32)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = r
                mask[i, : len(r)] = 1
            return ids, (mask if mask.min() == 0 else None)
        arr = _as_numpy(input)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise ValueError(f"token ids must be [pos] or [batch, pos] with pos ≥ 1, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"token ids must be integers, got {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.cfg.d_vocab):
            raise ValueError(f"token ids must be in 0 … {self.cfg.d_vocab - 1}")
        return np.ascontiguousarray(arr, dtype=np.uint32), None

    def _ids(self, tokens) -> np.ndarray:
        """Token ids given to decode, checked as a forward pass checks them (an id past the
        vocabulary decoded to nothing, a float was cut to an integer)."""
        arr = _as_numpy(tokens)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"token ids must be integers, got {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.cfg.d_vocab):
            raise ValueError(f"token ids must be in 0 … {self.cfg.d_vocab - 1}")
        return arr

    def _forward_inputs(self, input: Input, prepend_bos: bool | None, attention_mask):
        """Token ids and attention mask for a forward pass. Learned positions end at the
        context (refused by the engine); rotary ones extrapolate, as transformers lets them,
        with the CLI's warning."""
        ids, own = self._batch(input, prepend_bos)
        mask = self._mask(attention_mask, ids, own)
        cfg = self.cfg
        if ids.shape[1] > cfg.n_ctx and not cfg.learned_positions:
            warnings.warn(
                f"{ids.shape[1]} tokens is more than the {cfg.n_ctx} positions "
                f"{cfg.architecture} was trained on; what it computes past them is extrapolation",
                stacklevel=3,
            )
        return ids, mask

    def _pass_inputs(self, input: Input, prepend_bos, attention_mask, start_at_layer, tokens):
        """What the engine's pass takes: (input, token ids for a loss, mask, first layer).
        From the embeddings, the input is the token ids; with ``start_at_layer``, the residual
        stream entering that block (negative layers count from the end) and the ids are
        ``tokens`` if given."""
        if start_at_layer is None:
            ids, mask = self._forward_inputs(input, prepend_bos, attention_mask)
            return ids, ids, mask, None
        n, d = self.cfg.n_layers, self.cfg.d_model
        layer = operator.index(start_at_layer)
        if not -n <= layer <= n:
            raise ValueError(f"start_at_layer must be -{n} … {n}, got {layer}")
        layer = layer % n if layer < 0 else layer
        resid = np.asarray(_as_numpy(input), dtype=np.float32)
        if resid.ndim == 2:
            resid = resid[None]
        if resid.ndim != 3 or resid.shape[-1] != d or 0 in resid.shape:
            raise ValueError(
                f"with start_at_layer the input is the residual stream [batch, pos, d_model={d}]; got shape {resid.shape}"
            )
        if attention_mask is not None and not np.all(_as_numpy(attention_mask) == 1):
            raise ValueError("start_at_layer: the rows must be unpadded (an attention mask of ones, or none)")
        ids = None
        if tokens is not None:
            ids = self._ids(tokens)
            if ids.ndim == 1:
                ids = ids[None]
            if ids.shape != resid.shape[:2]:
                raise ValueError(f"tokens has shape {ids.shape}; the residual stream {resid.shape[:2]} positions")
        return np.ascontiguousarray(resid), ids, None, layer

    @staticmethod
    def _mask(attention_mask, ids: np.ndarray, own):
        if attention_mask is None:
            return own
        given = _as_numpy(attention_mask)
        if given.size and not np.isin(given, (0, 1)).all():
            raise ValueError("attention_mask holds 1 (a token) or 0 (padding), nothing else")
        m = np.ascontiguousarray(given, dtype=np.uint32)
        if m.ndim == 1:
            m = m[None, :]
        if m.shape != ids.shape:
            raise ValueError(f"attention_mask has shape {m.shape}; the tokens {ids.shape}")
        if m.shape[1] > 1 and (np.diff(m.astype(np.int8), axis=1) > 0).any():
            raise ValueError(
                "attention_mask must be right-padded (each row 1s, then 0s): glassbox numbers "
                "positions from the first column, so a left-padded row would be read at the "
                "wrong positions"
            )
        return m

    def to_tokens(
        self,
        input: str | Sequence[str],
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        move_to_device: bool = True,
        truncate: bool = True,
    ) -> np.ndarray:
        """Token ids int64 [batch, pos] of a text or a list of texts (right-padded with the pad
        token). ``prepend_bos``: None (the default) keeps what the model's own tokenizer does,
        True makes sure the first token is BOS, False removes a BOS the tokenizer added.

        This default differs from TransformerLens', which prepends BOS to every text
        (``default_prepend_bos=True``): for a tokenizer that adds no BOS itself (GPT-2's,
        Pythia's) glassbox gives one token fewer, and every position one earlier, than
        TransformerLens. glassbox follows the tokenizer as the CLI does, so that a text gives
        the same tokens, logits and activations from Python as from ``glassbox run`` / ``trace``.
        Pass ``prepend_bos=True`` for TransformerLens' tokens; the same argument, with the same
        default, is taken by ``model(...)``, ``run_with_cache``, ``run_with_hooks``,
        ``generate`` and ``to_str_tokens``.

        As in TransformerLens, ``truncate`` cuts texts to the model's ``n_ctx`` tokens (a
        text given to ``model(...)`` itself is not cut: past ``n_ctx`` it is refused or
        warned about, as the CLI does);
        ``padding_side`` may only be ``"right"`` (glassbox reads padding on the right);
        ``move_to_device`` is accepted (everything is on the CPU)."""
        _right_padding(padding_side)
        ids, _ = self._batch(input, prepend_bos)
        if truncate and ids.shape[1] > self.cfg.n_ctx:
            ids = ids[:, : self.cfg.n_ctx]
        return ids.astype(np.int64)

    def to_str_tokens(self, input: Input, prepend_bos: bool | None = None) -> list[str] | list[list[str]]:
        """Each token as a string: of a text, or of token ids ([pos] and [1, pos] give a list,
        as in TransformerLens; [batch, pos] with more rows a list per row)."""
        if isinstance(input, str):
            return list(self._m.str_tokens(self._encode(input, prepend_bos)))
        if isinstance(input, (list, tuple)) and input and all(isinstance(t, str) for t in input):
            return [self.to_str_tokens(t, prepend_bos) for t in input]
        arr = self._ids(input)
        if arr.ndim == 0:
            arr = arr[None]
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]  # `to_str_tokens(to_tokens(text))` is the text's list
        if arr.ndim == 2:
            return [list(self._m.str_tokens([int(t) for t in row])) for row in arr]
        return list(self._m.str_tokens([int(t) for t in arr]))

    def to_string(self, tokens) -> str | list[str]:
        """The text of token ids ([pos] -> a string, [batch, pos] -> a list of strings), special
        tokens (BOS, EOS, padding) written out as TransformerLens' ``to_string`` does."""
        arr = self._ids(tokens)
        if arr.ndim == 2:
            return [self._m.decode([int(t) for t in row], False) for row in arr]
        return self._m.decode([int(t) for t in np.atleast_1d(arr)], False)

    def to_single_token(self, text: str) -> int:
        """The id of a text that is one token (no BOS counted)."""
        ids = self._encode(text, prepend_bos=False)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens, not one")
        return ids[0]

    @property
    def tokenizer(self) -> Tokenizer | None:
        """The model's tokenizer with the transformers calls notebooks use (``encode``,
        ``decode``, ``batch_decode``, ``tokenizer(texts, padding=True, return_tensors="pt")``,
        ``pad_token_id``…); None for a model without one."""
        return Tokenizer(self) if self.cfg.has_tokenizer else None

    def get_token_position(
        self,
        single_token: str | int,
        input,
        mode: str = "first",
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
    ) -> int:
        """Where ``single_token`` (a one-token string or an id) is in ``input`` (a text, or the
        ids of one sequence): its first position (``mode="first"``) or last (``"last"``), as
        TransformerLens' ``get_token_position``; a ``ValueError`` if it is not there."""
        _right_padding(padding_side)
        if mode not in ("first", "last"):
            raise ValueError(f"mode {mode!r}: expected 'first' or 'last'")
        ids, _ = self._batch(input, prepend_bos)
        if ids.shape[0] != 1:
            raise ValueError(f"get_token_position takes one sequence, got a batch of {ids.shape[0]}")
        token = self.to_single_token(single_token) if isinstance(single_token, str) else operator.index(single_token)
        where = np.flatnonzero(ids[0] == token)
        if where.size == 0:
            raise ValueError(f"token {single_token!r} ({token}) is not in the input")
        return int(where[0] if mode == "first" else where[-1])

    def to(self, device, print_details: bool = True) -> "HookedModel":
        """TransformerLens' ``model.to(device)``: ``"cpu"`` is where glassbox runs (the model
        itself comes back); any other device is a ``ValueError``."""
        if str(device) != "cpu":
            raise ValueError(f"device {device!r}: glassbox runs on the CPU only")
        return self

    def cpu(self) -> "HookedModel":
        """The model itself (it runs on the CPU)."""
        return self

    def cuda(self, device=None) -> "HookedModel":
        """Refused: glassbox runs on the CPU only."""
        raise ValueError("glassbox runs on the CPU only")

    def eval(self) -> "HookedModel":
        """The model itself: glassbox's passes are inference passes (no dropout)."""
        return self

    # --- weights (TransformerLens' names and layouts; see glassbox.weights) ------------------

    def weight_names(self) -> list[str]:
        """The names of the weights :meth:`get_weight` gives, in the model's order
        (``embed.W_E``, ``blocks.0.ln1.w``, ``blocks.0.attn.W_Q``, …, ``unembed.b_U``)."""
        if self._weight_names is None:
            self._weight_names = list(self._m.parameter_names())
        return list(self._weight_names)

    def _weight_set(self) -> set[str]:
        names = getattr(self, "_weight_name_set", None)
        if names is None:
            names = self._weight_name_set = set(self.weight_names())
        return names

    def get_weight(self, name: str) -> np.ndarray:
        """The weight TransformerLens names ``name`` (``"blocks.0.attn.W_O"``), float32 in its
        layout, read-only. An unknown name is a ``KeyError``."""
        # not kept: a bf16 model's widened copies would stay for the model's lifetime
        w = np.asarray(self._m.parameter(name))
        w.flags.writeable = False  # it may be the engine's own memory
        return w

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every weight by name (:meth:`weight_names`), as TransformerLens' ``state_dict()``
        keys them for a model loaded without processing."""
        return {n: self.get_weight(n) for n in self.weight_names()}

    @property
    def blocks(self) -> list[_weights.Block]:
        """Each block's weights: ``model.blocks[0].attn.W_O``, ``model.blocks[3].mlp.W_in``."""
        return [_weights.Block(self, l) for l in range(self.cfg.n_layers)]

    @property
    def embed(self) -> _weights.Embed:
        """``embed.W_E`` [d_vocab, d_model]; ``model.embed(tokens)`` looks the tokens up."""
        return _weights.Embed(self, "embed")

    @property
    def pos_embed(self) -> _weights.WeightGroup:
        """``pos_embed.W_pos`` [n_ctx, d_model] (learned positions only)."""
        return _weights.WeightGroup(self, "pos_embed")

    @property
    def unembed(self) -> _weights.Unembed:
        """``unembed.W_U`` [d_model, d_vocab] and ``unembed.b_U`` [d_vocab];
        ``model.unembed(x)`` is ``x @ W_U + b_U`` (no final soft-cap, as TransformerLens')."""
        return _weights.Unembed(self, "unembed")

    @property
    def ln_final(self) -> _weights.FinalNorm:
        """The final norm's ``w`` (and ``b`` for a LayerNorm) [d_model]; ``model.ln_final(x)``
        applies it, as ``model.unembed(model.ln_final(resid))`` in a logit lens."""
        return _weights.FinalNorm(self, "ln_final")

    @property
    def W_E(self) -> np.ndarray:
        """The token embedding [d_vocab, d_model]."""
        return self.embed.W_E

    @property
    def W_pos(self) -> np.ndarray:
        """The learned position embedding [n_ctx, d_model]."""
        return self.pos_embed.W_pos

    @property
    def W_E_pos(self) -> np.ndarray:
        """Token and position embeddings concatenated [d_vocab + n_ctx, d_model]."""
        return np.concatenate([self.W_E, self.W_pos])

    @property
    def W_U(self) -> np.ndarray:
        """The unembedding [d_model, d_vocab]."""
        return self.unembed.W_U

    @property
    def b_U(self) -> np.ndarray:
        """The unembedding bias [d_vocab] (zeros where the checkpoint has none)."""
        return self.unembed.b_U

    @property
    def W_Q(self) -> np.ndarray:
        """Queries of every layer [n_layers, n_heads, d_model, d_head]."""
        return _weights.stacked(self, "attn", "W_Q")

    @property
    def W_K(self) -> np.ndarray:
        """Keys [n_layers, n_heads, d_model, d_head] (grouped heads repeated to every query head)."""
        return _weights.stacked(self, "attn", "W_K")

    @property
    def W_V(self) -> np.ndarray:
        """Values [n_layers, n_heads, d_model, d_head] (grouped heads repeated to every query head)."""
        return _weights.stacked(self, "attn", "W_V")

    @property
    def W_O(self) -> np.ndarray:
        """Attention outputs [n_layers, n_heads, d_head, d_model]."""
        return _weights.stacked(self, "attn", "W_O")

    @property
    def b_Q(self) -> np.ndarray:
        """Query biases [n_layers, n_heads, d_head]."""
        return _weights.stacked(self, "attn", "b_Q")

    @property
    def b_K(self) -> np.ndarray:
        """Key biases [n_layers, n_heads, d_head]."""
        return _weights.stacked(self, "attn", "b_K")

    @property
    def b_V(self) -> np.ndarray:
        """Value biases [n_layers, n_heads, d_head]."""
        return _weights.stacked(self, "attn", "b_V")

    @property
    def b_O(self) -> np.ndarray:
        """Attention output biases [n_layers, d_model]."""
        return _weights.stacked(self, "attn", "b_O")

    @property
    def W_in(self) -> np.ndarray:
        """MLP inputs [n_layers, d_model, d_mlp] (a gated MLP's linear branch)."""
        return _weights.stacked(self, "mlp", "W_in")

    @property
    def W_gate(self) -> np.ndarray | None:
        """A gated MLP's gates [n_layers, d_model, d_mlp]; None where the MLPs are not gated
        (as TransformerLens)."""
        if not any(n.endswith(".mlp.W_gate") for n in self.weight_names()):
            return None
        return _weights.stacked(self, "mlp", "W_gate")

    @property
    def b_in(self) -> np.ndarray:
        """MLP input biases [n_layers, d_mlp]."""
        return _weights.stacked(self, "mlp", "b_in")

    @property
    def W_out(self) -> np.ndarray:
        """MLP outputs [n_layers, d_mlp, d_model]."""
        return _weights.stacked(self, "mlp", "W_out")

    @property
    def b_out(self) -> np.ndarray:
        """MLP output biases [n_layers, d_model]."""
        return _weights.stacked(self, "mlp", "b_out")

    @property
    def OV(self) -> FactoredMatrix:
        """Every head's OV circuit ``W_V @ W_O`` [n_layers, n_heads, d_model, d_model], kept
        factored (TransformerLens' ``model.OV``)."""
        return FactoredMatrix(self.W_V, self.W_O)

    @property
    def QK(self) -> FactoredMatrix:
        """Every head's QK circuit ``W_Q @ W_Kᵀ`` [n_layers, n_heads, d_model, d_model], kept
        factored (TransformerLens' ``model.QK``)."""
        return FactoredMatrix(self.W_Q, np.swapaxes(self.W_K, -1, -2))

    def tokens_to_residual_directions(self, tokens) -> np.ndarray:
        """The unembedding direction of each token (``W_U[:, token]``), as TransformerLens': a
        string (one token), an int or a one-element array gives [d_model]; an array of ids
        gives [*tokens.shape, d_model]."""
        if isinstance(tokens, str):
            return self.W_U[:, self.to_single_token(tokens)]
        ids = np.asarray(tokens.detach().cpu().numpy() if hasattr(tokens, "detach") else tokens)
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"token ids are integers, not {ids.dtype}")
        v = self.cfg.d_vocab
        if ids.size and (ids.min() < -v or ids.max() >= v):
            raise ValueError(f"token ids are 0 … {v - 1} (or -{v} … -1, counted from the end)")
        if ids.size == 1:
            return self.W_U[:, int(ids.reshape(()))]
        return np.moveaxis(self.W_U[:, ids], 0, -1)

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> np.ndarray:
        """The sum of the output biases of blocks 0 … ``layer``−1 [d_model] (attention's
        ``b_O``, and the MLPs' ``b_out`` with ``include_mlp_biases``), plus block ``layer``'s
        ``b_O`` with ``mlp_input`` where the MLP reads it: TransformerLens' ``accumulated_bias``
        (which also adds it for a parallel block, whose MLP reads ``resid_pre``). A block
        without attention or an MLP of its own (a hybrid's) adds nothing for it."""
        n = self.cfg.n_layers
        layer = operator.index(layer)
        if not 0 <= layer <= n or (mlp_input and layer == n):
            raise ValueError(f"accumulated_bias: layer {layer} of 0 … {n - 1 if mlp_input else n}")
        have = self._weight_set()
        total = np.zeros(self.cfg.d_model, dtype=np.float32)
        # a parallel block's MLP (GPT-NeoX) reads resid_pre, not its attention's output
        reads_attention = mlp_input and f"blocks.{layer}.hook_resid_mid" in self.hook_names()
        parts = [(l, "attn", "b_O") for l in range(layer + (1 if reads_attention else 0))]
        if include_mlp_biases:
            parts += [(l, "mlp", "b_out") for l in range(layer)]
        for l, part, field in parts:
            name = f"blocks.{l}.{part}.{field}"
            if name in have:
                total += self.get_weight(name)
        return total

    # --- forward passes --------------------------------------------------------------------

    def hook_names(self) -> list[str]:
        """Every hook point of the model, in the order a forward pass reaches them."""
        if self._hook_names is None:
            _, cached = self._m.forward(np.zeros((1, 1), dtype=np.uint32), cache=["*"])
            self._hook_names = _with_every_expert(cached)
        return list(self._hook_names)

    def _patterns(self, names: NameFilter) -> list[str]:
        if names is None:
            return ["*"]
        if isinstance(names, str):
            return [names]
        if callable(names):
            return [n for n in self.hook_names() if names(n)]
        names = list(names)
        if not all(isinstance(n, str) for n in names):
            raise TypeError("hook names are strings")
        return names

    def _hook_pairs(self, pairs: Iterable, what: str) -> list:
        """``[(name or filter, fn)]`` as (patterns, fn), each pattern checked to name a hook
        point; ``what`` names the argument in errors."""
        hooks = []
        for item in pairs or ():
            try:
                names, fn = item
            except (TypeError, ValueError):
                raise TypeError(f"{what} is a list of (name or filter, function) pairs") from None
            if not callable(fn):
                raise TypeError(f"the hook for {names!r} in {what} is not a function")
            patterns = self._patterns(names)
            self._check_matched(patterns)
            if patterns:
                hooks.append((patterns, fn))
        return hooks

    def _hooks(self, fwd_hooks: Iterable) -> list:
        """Forward hooks as the engine takes them: (patterns, wrapped function)."""
        return [(patterns, _native_hook(fn)) for patterns, fn in self._hook_pairs(fwd_hooks, "fwd_hooks")]

    def _bwd_hooks(self, bwd_hooks: Iterable) -> list:
        """Backward hooks as (patterns, fn): the function itself, called after the backward
        pass with each gradient."""
        return self._hook_pairs(bwd_hooks, "bwd_hooks")

    def _backward_pass(self, x, ids, mask, fwd_hooks: list, cache: list[str] | None, grads: list[str], bwd_hooks: list, return_type, metric, start=None):
        """One forward pass (of ``x`` from layer ``start``, see :meth:`_pass_inputs`) kept for a
        backward pass: the scalar (``metric(logits)``, or the loss of ``ids``) is
        differentiated back to the hook points ``grads`` selects, and ``bwd_hooks`` see the
        gradients. Returns (logits, cached activations, gradients by name)."""
        _gradients.check_scalar(return_type, metric, ids)
        held, cached, graph = self._m.forward_with_graph(x, grads, mask=mask, cache=cache, hooks=fwd_hooks, start_at_layer=start)
        _gradients.warn_replaced(graph.replaced)
        logits = np.asarray(held)
        _, seed = _gradients.seed_for(logits, ids, mask, return_type, metric)
        gradients = [(name, np.asarray(g)) for name, g in graph.backward(seed)]
        _gradients.call_backward_hooks(bwd_hooks, gradients)
        return logits, cached, gradients

    def _check_matched(self, patterns: list[str]) -> None:
        """A hook name or pattern that names no hook point is a typo, not "no hook": raised
        (TransformerLens raises for an unknown hook name too)."""
        names = self.hook_names()
        for p in patterns:
            if not any(_matches([p], n) for n in names):
                raise ValueError(f"no hook point matches {p!r} (model.hook_names() lists them)")

    def add_hook(
        self,
        name: NameFilter,
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> None:
        """Adds ``hook`` at the points ``name`` selects to every later pass (forward, caches,
        generation) until :meth:`reset_hooks` (which keeps it if ``is_permanent``), before the
        others with ``prepend``. With ``dir="bwd"`` it is a backward hook: ``hook(gradient,
        hook)`` in every pass that runs a backward pass (``run_with_cache(incl_bwd=True)``,
        ``run_with_hooks(metric=…)``, ``glassbox.torch.forward(...).backward()``); it observes
        the gradient (returning a replacement is refused)."""
        if dir not in ("fwd", "bwd"):
            raise ValueError(f"dir={dir!r}: expected 'fwd' or 'bwd'")
        if dir == "bwd":
            added = self._bwd_hooks([(name, hook)])
            persistent, permanent = self._bwd_persistent, self._bwd_permanent
        else:
            added = self._hooks([(name, hook)])
            persistent, permanent = self._persistent, self._permanent
        if is_permanent:
            permanent.extend(added)
        if prepend:
            persistent[:0] = added
        else:
            persistent.extend(added)

    def reset_hooks(self, clear_contexts: bool = True, direction: str = "both", including_permanent: bool = False, level=None) -> None:
        """Removes the hooks :meth:`add_hook` added — forward, backward or both
        (``direction``) — except permanent ones unless ``including_permanent``.
        (``clear_contexts`` and ``level`` are TransformerLens' and change nothing: glassbox's
        hooks have no contexts or levels.)"""
        if direction not in ("both", "fwd", "bwd"):
            raise ValueError(f"direction {direction!r}: expected 'both', 'fwd' or 'bwd'")
        lists = []
        if direction in ("both", "fwd"):
            lists.append((self._persistent, self._permanent))
        if direction in ("both", "bwd"):
            lists.append((self._bwd_persistent, self._bwd_permanent))
        for persistent, permanent in lists:
            if including_permanent:
                permanent.clear()
            persistent[:] = [h for h in persistent if _holds(permanent, h)]

    @contextmanager
    def hooks(self, fwd_hooks: Iterable = (), bwd_hooks: Iterable = (), reset_hooks_end: bool = True, clear_contexts: bool = False):
        """Applies ``fwd_hooks`` (and ``bwd_hooks``, see :meth:`add_hook`) to every pass
        inside the ``with`` block, then removes them unless ``reset_hooks_end`` is False."""
        added = self._hooks(fwd_hooks)
        added_bwd = self._bwd_hooks(bwd_hooks)
        self._persistent.extend(added)
        self._bwd_persistent.extend(added_bwd)
        try:
            yield self
        finally:
            if reset_hooks_end:
                # exactly the context's own hooks go: what was added inside it stays, as in
                # TransformerLens
                self._persistent[:] = [h for h in self._persistent if not _holds(added, h)]
                self._bwd_persistent[:] = [h for h in self._bwd_persistent if not _holds(added_bwd, h)]

    def _finish(self, logits, ids, mask, return_type: str | None, loss_per_token: bool = False):
        if return_type is None:
            return None
        logits = np.asarray(logits)
        if return_type == "logits":
            return logits
        if ids is None:
            raise ValueError(
                f"return_type={return_type!r} from start_at_layer needs tokens= (the tokens the residual stream came from)"
            )
        loss = _next_token_loss(logits, ids, mask, loss_per_token)
        if return_type == "loss":
            return loss
        if return_type == "both":
            return Output(logits, loss)
        raise ValueError(f"return_type {return_type!r}: expected 'logits', 'loss', 'both' or None")

    def __call__(
        self,
        input: Input,
        return_type: str | None = "logits",
        attention_mask=None,
        prepend_bos: bool | None = None,
        loss_per_token: bool = False,
        padding_side: str | None = None,
        start_at_layer: int | None = None,
        stop_at_layer: int | None = None,
        tokens=None,
    ):
        """Runs the model: logits float32 [batch, pos, d_vocab] (``return_type="logits"``), the
        mean next-token loss (``"loss"``, a NumPy float32; per token with ``loss_per_token``),
        both (``Output(logits, loss)``), or None. ``stop_at_layer`` returns the residual stream
        after that many blocks, as :meth:`run_with_cache`'s. With ``start_at_layer=L`` the
        input is the residual stream entering block L, [batch, pos, d_model], and only blocks
        L … run (TransformerLens' ``start_at_layer``; a loss needs ``tokens=``)."""
        _right_padding(padding_side)
        if stop_at_layer is not None:
            resid, _ = self.run_with_cache(
                input, names_filter=[], attention_mask=attention_mask, prepend_bos=prepend_bos,
                stop_at_layer=stop_at_layer, start_at_layer=start_at_layer, tokens=tokens,
            )
            return resid
        x, ids, mask, layer = self._pass_inputs(input, prepend_bos, attention_mask, start_at_layer, tokens)
        logits, _ = self._m.forward(x, mask=mask, hooks=list(self._persistent), start_at_layer=layer)
        return self._finish(logits, ids, mask, return_type, loss_per_token)

    forward = __call__

    def run_with_cache(
        self,
        input: Input,
        names_filter: NameFilter = None,
        return_type: str | None = "logits",
        attention_mask=None,
        prepend_bos: bool | None = None,
        stop_at_layer: int | None = None,
        remove_batch_dim: bool = False,
        return_cache_object: bool = True,
        loss_per_token: bool = False,
        padding_side: str | None = None,
        incl_bwd: bool = False,
        metric: Callable | None = None,
        start_at_layer: int | None = None,
        tokens=None,
    ):
        """Runs the model and keeps the activations ``names_filter`` selects (all by default):
        returns ``(logits, cache)`` with ``cache[hook_name]`` a NumPy array, batch first.
        With ``stop_at_layer=N`` only blocks 0 … N−1 run and the first value is the residual
        stream after them (N = 0: the embeddings; negative N counts from the end), as in
        TransformerLens. Its other keywords too: ``remove_batch_dim`` (a batch of one),
        ``return_cache_object=False`` (a plain dict), ``loss_per_token``, ``start_at_layer``
        (the input is then the residual stream entering that block; see :meth:`__call__`).

        ``incl_bwd=True`` also caches the gradient of a scalar at each of those hooks, as
        ``cache[f"{hook_name}_grad"]`` (TransformerLens' keys): the scalar is ``metric(logits)``
        when given (a function of torch logits, differentiated with torch), else the mean
        next-token loss (``return_type="loss"``, as TransformerLens needs). Backward hooks
        added with ``add_hook(dir="bwd")`` run too. At ``ln1.hook_normalized`` the gradient is
        the whole one (through q, k and v); TransformerLens' ``incl_bwd`` cache keeps only the
        last of its three paths there."""
        _right_padding(padding_side)
        if metric is not None and not incl_bwd:
            raise ValueError("metric= is the scalar of a backward pass: give incl_bwd=True too")
        x, ids, mask, start = self._pass_inputs(input, prepend_bos, attention_mask, start_at_layer, tokens)
        if incl_bwd:
            _gradients.check_scalar(return_type, metric, ids, loss_per_token)
        wanted = self._patterns(names_filter)
        if not callable(names_filter):
            # A name (or list of names) that matches nothing is a typo; a function that keeps
            # nothing asked for nothing.
            self._check_matched(wanted)
        patterns = wanted
        stop = None
        if stop_at_layer is not None:
            n = self.cfg.n_layers
            layer = operator.index(stop_at_layer)
            if not -n <= layer <= n:
                raise ValueError(f"stop_at_layer must be -{n} … {n}, got {layer}")
            layer = layer % n if layer < 0 else layer
            if start is not None and layer <= start:
                # no block between them: the stream comes back as it went in (TransformerLens)
                if incl_bwd:
                    raise ValueError("incl_bwd: a pass stopped early has no logits to differentiate")
                cache = ActivationCache({}, self)
                return x.copy(), (cache if return_cache_object else cache.cache_dict)
            # a post-LN encoder's block output is after its last norm (HookedEncoder's name)
            out = "hook_resid_post" if self.cfg.causal else "hook_normalized_resid_post"
            stop = "blocks.0.hook_resid_pre" if layer == 0 else f"blocks.{layer - 1}.{out}"
            patterns = patterns + [stop]
        if incl_bwd:
            if stop is not None:
                raise ValueError("incl_bwd: a pass stopped early has no logits to differentiate")
            bwd = self._bwd_persistent
            grads = wanted + [p for hooks, _ in bwd for p in hooks]
            logits, cached, gradients = self._backward_pass(
                x, ids, mask, list(self._persistent), patterns, grads, bwd, return_type, metric, start
            )
            keep = [(f"{name}_grad", g) for name, g in gradients if _matches(wanted, name)]
            acts = {name: np.asarray(held) for name, held in cached}
            acts.update(keep)
        else:
            logits, cached = self._m.forward(
                x, mask=mask, cache=patterns, hooks=list(self._persistent), stop_after=stop, start_at_layer=start
            )
            acts = {name: np.asarray(held) for name, held in cached}
        first = None
        if stop is not None:
            first = acts[stop]
            if not _matches(wanted, stop):
                del acts[stop]
        else:
            first = self._finish(logits, ids, mask, return_type, loss_per_token)
        cache = ActivationCache(acts, self)
        if remove_batch_dim:
            cache.remove_batch_dim()
        return first, (cache if return_cache_object else cache.cache_dict)

    def run_with_hooks(
        self,
        input: Input,
        fwd_hooks: Iterable = (),
        return_type: str | None = "logits",
        attention_mask=None,
        prepend_bos: bool | None = None,
        loss_per_token: bool = False,
        bwd_hooks: Iterable = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        padding_side: str | None = None,
        metric: Callable | None = None,
        start_at_layer: int | None = None,
        tokens=None,
    ):
        """Runs the model with ``fwd_hooks``: ``[(name or filter, fn)]``, where
        ``fn(activation, hook)`` may edit the activation in place or return a replacement of
        the same shape; the rest of the pass sees the change. Exceptions in a hook propagate.
        ``reset_hooks_end=False`` keeps the hooks for later passes, as in TransformerLens.

        ``bwd_hooks`` (same form; ``fn(gradient, hook)``), or ``metric=`` with backward hooks
        added before, run a backward pass in this call: of ``metric(logits)`` when given (torch
        logits, differentiated with torch), else of the loss (``return_type="loss"``). They
        observe the gradients, last hook point first; forward hooks then get copies, and a change
        they make is a constant to the gradients (a warning names it).
        ``start_at_layer``: as :meth:`__call__`'s."""
        _right_padding(padding_side)
        x, ids, mask, start = self._pass_inputs(input, prepend_bos, attention_mask, start_at_layer, tokens)
        hooks = self._hooks(fwd_hooks)
        bwd = self._bwd_hooks(bwd_hooks)
        if bwd and not reset_hooks_end:
            raise ValueError(
                "bwd_hooks with reset_hooks_end=False: glassbox runs the backward pass in this call "
                "(of metric= or the loss), so there is no later .backward() for the hooks to wait for; "
                "for TransformerLens' `loss.backward()` idiom use model.add_hook(name, fn, 'bwd') and "
                "glassbox.torch.forward(model, tokens)"
            )
        every = self._bwd_persistent + bwd
        if bwd or (metric is not None and every):
            grads = [p for patterns, _ in every for p in patterns]
            logits, _, _ = self._backward_pass(x, ids, mask, self._persistent + hooks, None, grads, every, return_type, metric, start)
        else:
            logits, _ = self._m.forward(x, mask=mask, hooks=self._persistent + hooks, start_at_layer=start)
        if not reset_hooks_end:
            self._persistent.extend(hooks)
            self._bwd_persistent.extend(bwd)
        return self._finish(logits, ids, mask, return_type, loss_per_token)

    def generate(
        self,
        input: Input = "",
        max_new_tokens: int = 10,
        stop_at_eos: bool = True,
        eos_token_id: int | Sequence[int] | None = None,
        do_sample: bool = True,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        freq_penalty: float = 0.0,
        use_past_kv_cache: bool = True,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        return_type: str = "input",
        verbose: bool = False,
        *,
        seed: int | None = None,
        fwd_hooks: Iterable = (),
    ):
        """Continues the input with a KV cache: sampling (``do_sample``, with ``temperature``,
        ``top_k``, ``top_p`` and ``seed``) or greedy; ``fwd_hooks`` apply at every step. Returns
        what the input was (``return_type="input"``: a string for a string, token ids for ids),
        or ``"str"`` / ``"tokens"``. Each row of a batch is continued on its own.

        TransformerLens' parameters, in its order: ``verbose`` is accepted (glassbox shows no
        progress bar); ``use_past_kv_cache`` is accepted either way (glassbox always reuses its
        KV cache, which gives what recomputing every step gives, up to float rounding);
        ``padding_side`` only matters for texts of unequal length, which ``generate`` refuses;
        ``eos_token_id`` may name the model's own end-of-sequence token(s) (stopping at another
        token is a ``ValueError``; without ``stop_at_eos`` it is unused, as in TransformerLens),
        and ``freq_penalty`` must be 0 (glassbox has none). Like ``to_tokens``, texts get a BOS
        only where the model's tokenizer adds one (``prepend_bos=True`` for TransformerLens'
        default). ``seed`` and ``fwd_hooks`` are
        glassbox's own, keyword only: ``seed=None`` (the default) draws fresh randomness each
        call, as TransformerLens does; a seed makes sampling repeatable (row r of a batch
        samples with ``seed + r``, so rows are distinct draws, and row 0 is the CLI's
        ``--seed``). Any other keyword is a ``TypeError``."""
        if eos_token_id is not None and stop_at_eos:
            wanted = {int(t) for t in np.atleast_1d(np.asarray(eos_token_id))}
            if wanted != set(self.cfg.eos_token_ids):
                raise ValueError(
                    f"eos_token_id {eos_token_id!r}: glassbox stops at the model's own end-of-sequence "
                    f"tokens {self.cfg.eos_token_ids} and at no other"
                )
        if float(freq_penalty) != 0.0:
            raise ValueError(f"freq_penalty {freq_penalty!r}: glassbox's generation has no frequency penalty (give 0)")
        if padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side {padding_side!r}: expected 'left', 'right' or None")
        max_new_tokens = _count(max_new_tokens, "max_new_tokens")
        top_k = 0 if top_k is None else _count(top_k, "top_k")
        seed = secrets.randbits(63) if seed is None else _count(seed, "seed")
        ids, own = self._batch(input, prepend_bos)
        if own is not None:
            raise ValueError("generate continues texts one at a time: give texts of one token length, or one text")
        hooks = self._persistent + self._hooks(fwd_hooks)
        rows = []
        for r, row in enumerate(ids):
            new = self._m.generate(
                [int(t) for t in row],
                max_new_tokens,
                temperature=float(temperature) if do_sample else 0.0,
                top_k=top_k,
                top_p=float(top_p if top_p is not None else 1.0),
                seed=(seed + r) % 2**64,
                stop_at_eos=stop_at_eos,
                hooks=hooks,
            )
            if len(new) < max_new_tokens and not (stop_at_eos and new and new[-1] in self.cfg.eos_token_ids):
                warnings.warn(
                    f"generation stopped after {len(new)} of {max_new_tokens} new tokens: the model's "
                    f"context holds {self.cfg.n_ctx} positions",
                    stacklevel=2,
                )
            rows.append(np.concatenate([row.astype(np.int64), np.asarray(new, dtype=np.int64)]))
        if return_type == "input":
            return_type = "str" if isinstance(input, str) or (
                isinstance(input, (list, tuple)) and input and isinstance(input[0], str)
            ) else "tokens"
        if return_type == "str":
            texts = [self._m.decode([int(t) for t in r]) for r in rows]
            return texts[0] if len(texts) == 1 else texts
        if return_type == "tokens":
            width = max(len(r) for r in rows)
            out = np.full((len(rows), width), self._pad_id(), dtype=np.int64)
            for i, r in enumerate(rows):
                out[i, : len(r)] = r
            return out
        raise ValueError(f"return_type {return_type!r}: expected 'input', 'str' or 'tokens'")


def _holds(entries: list, entry) -> bool:
    """Whether ``entry`` itself (not an equal one) is in ``entries``."""
    return any(e is entry for e in entries)


def _right_padding(padding_side) -> None:
    """TransformerLens' ``padding_side``: glassbox pads on the right and reads masks so."""
    if padding_side not in (None, "right"):
        raise ValueError(f"padding_side {padding_side!r}: glassbox pads on the right (give 'right' or None)")


def _matches(patterns: list[str], name: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _next_token_loss(logits: np.ndarray, ids: np.ndarray, mask, per_token: bool):
    """Mean cross-entropy of each next token (float32, as TransformerLens computes it); with a
    mask, only over predictions of real tokens from real tokens (per token, the others are 0, as
    in TransformerLens)."""
    if ids.shape[1] < 2:
        raise ValueError("a loss needs at least two tokens (a prediction and the token it predicts)")
    x = logits[:, :-1, :]
    peak = x.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(x - peak).sum(axis=-1, keepdims=True)) + peak
    target = ids[:, 1:].astype(np.int64)[..., None]
    nll = (log_z - np.take_along_axis(x, target, axis=-1))[..., 0]
    keep = None if mask is None else (mask[:, :-1].astype(bool) & mask[:, 1:].astype(bool))
    if per_token:
        return nll if keep is None else np.where(keep, nll, np.float32(0))
    # np.float64 is a Python float (json, isinstance) with TransformerLens' `.item()`
    if keep is not None:
        return np.float64(nll[keep].mean())
    return np.float64(nll.mean())


def load(
    path: str | os.PathLike,
    dtype=None,
    device: str = "cpu",
    *,
    numerics: str | None = None,
    adapter: str | os.PathLike | None = None,
    sae: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    sae_error_term: bool = False,
    kv_cache: str | None = None,
) -> HookedModel:
    """Loads what the CLI opens: a Hub snapshot folder (config.json + safetensors), a GGUF file
    (quantized too; ``numerics="llamacpp"`` or ``"f32"`` as the CLI's ``--numerics``,
    ``kv_cache="f16"`` or ``"f32"`` as its ``--kv-cache``), with a
    PEFT LoRA ``adapter`` folder applied unmerged and SAELens ``sae`` folders spliced in
    (``sae_error_term`` as SAELens's ``use_error_term``). ``dtype``: float32 (default),
    float16 or bfloat16 (names, NumPy or torch dtypes). Only ``device="cpu"`` exists.

    Unlike TransformerLens (``default_prepend_bos=True``), texts are tokenized as the model's
    own tokenizer does, BOS or not, as the CLI tokenizes them, so that Python and the CLI give
    the same numbers: a GPT-2 text has no ``<|endoftext|>`` in front unless
    ``prepend_bos=True`` is passed (see :meth:`HookedModel.to_tokens`).

    Raises ``FileNotFoundError`` / ``OSError`` for files that cannot be used, ``ValueError``
    for bad arguments."""
    if str(device) != "cpu":
        raise ValueError(f"device {device!r}: glassbox runs on the CPU only")
    saes = [] if sae is None else [sae] if isinstance(sae, (str, os.PathLike)) else list(sae)
    native = _native.load(
        os.fspath(path),
        dtype=_dtype_name(dtype),
        numerics=numerics,
        adapter=None if adapter is None else os.fspath(adapter),
        saes=[os.fspath(s) for s in saes],
        sae_error_term=sae_error_term,
        kv_cache=kv_cache,
    )
    model = HookedModel(native)
    for w in model.warnings:
        warnings.warn(w, stacklevel=2)
    return model


def _dtype_name(dtype) -> str:
    if dtype is None:
        return "float32"
    name = str(dtype).removeprefix("torch.")
    try:
        name = np.dtype(dtype).name
    except TypeError:
        pass
    return {"half": "float16", "float": "float32"}.get(name, name)


def _with_every_expert(cached) -> list[str]:
    """The names of a one-token pass, with each mixture-of-experts layer's
    ``mlp.experts.{e}.*`` hooks (``hook_gate``, ``hook_pre``, ``hook_post``, ``hook_out``)
    for every expert (the pass runs, and hooks, only the experts its token was routed to; the
    layer's router logits say how many there are)."""
    names = [name for name, _ in cached]
    experts = {
        name[: -len("hook_router_logits")]: int(np.asarray(value).shape[-1])
        for name, value in cached
        if name.endswith(".mlp.hook_router_logits")
    }

    def expert_hook(name):
        """(layer prefix, hook) of ``{layer}experts.{e}.{hook}``, else None."""
        prefix, sep, rest = name.partition("experts.")
        index, _, hook = rest.partition(".")
        if sep and prefix in experts and index.isdigit() and hook.startswith("hook_") and "." not in hook:
            return prefix, hook
        return None

    kinds: dict[str, list[str]] = {}
    for name in names:
        found = expert_hook(name)
        if found and found[1] not in kinds.setdefault(found[0], []):
            kinds[found[0]].append(found[1])
    out, done = [], set()
    for name in names:
        found = expert_hook(name)
        if found is None:
            out.append(name)
        elif found[0] not in done:
            layer = found[0]
            done.add(layer)
            out.extend(f"{layer}experts.{e}.{hook}" for e in range(experts[layer]) for hook in kinds[layer])
    return out
