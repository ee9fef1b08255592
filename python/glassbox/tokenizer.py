"""``model.tokenizer``: the model's own tokenizer with the parts of a transformers tokenizer that
TransformerLens notebooks call (``encode``, ``decode``, ``batch_decode``, ``__call__`` with
padding, the special tokens' ids). It is glassbox's tokenizer (the one ``to_tokens`` uses), not a
transformers object."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .model import HookedModel


class Tokenizer:
    """The model's tokenizer, transformers-style. ``encode`` adds what the tokenizer itself adds
    (a BOS for Llama's, nothing for GPT-2's), as ``model.to_tokens`` does; padding is on the
    right with ``pad_token_id``."""

    padding_side = "right"

    def __init__(self, model: "HookedModel"):
        self._model = model

    # --- special tokens ------------------------------------------------------------------------

    @property
    def pad_token_id(self) -> int:
        """The id batches are padded with (the tokenizer's pad token, else end-of-sequence)."""
        return self._model._pad_id()

    @property
    def bos_token_id(self) -> int | None:
        return self._model.cfg.bos_token_id

    @property
    def eos_token_id(self) -> int | None:
        eos = self._model.cfg.eos_token_ids
        return eos[0] if eos else None

    def _text(self, token: int | None) -> str | None:
        return None if token is None else self.convert_ids_to_tokens([token])[0]

    @property
    def pad_token(self) -> str | None:
        return self._text(self.pad_token_id)

    @property
    def bos_token(self) -> str | None:
        return self._text(self.bos_token_id)

    @property
    def eos_token(self) -> str | None:
        return self._text(self.eos_token_id)

    @property
    def vocab_size(self) -> int:
        """The model's vocabulary size (``cfg.d_vocab``)."""
        return self._model.cfg.d_vocab

    def __len__(self) -> int:
        return self.vocab_size

    # --- text <-> ids --------------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """The ids of ``text``; ``add_special_tokens=False`` leaves out a BOS the tokenizer adds."""
        return list(self._model._encode(text, prepend_bos=None if add_special_tokens else False))

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """The text of ``ids`` (a list, an array or a tensor of one sequence)."""
        flat = np.asarray(_numpy(ids)).reshape(-1)
        return self._model._m.decode([int(t) for t in flat], skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch, skip_special_tokens: bool = False) -> list[str]:
        """The text of each row of ``batch``."""
        return [self.decode(row, skip_special_tokens) for row in _numpy(batch)]

    def convert_ids_to_tokens(self, ids) -> list[str] | str:
        """Each id as its text (glassbox's ``to_str_tokens``: decoded, so GPT-2's ``Ġthe`` is
        ``" the"``); one id gives one string."""
        arr = np.asarray(_numpy(ids))
        if arr.ndim == 0:
            return self._model.to_str_tokens([int(arr)])[0]
        return list(self._model._m.str_tokens([int(t) for t in arr.reshape(-1)]))

    def __call__(
        self,
        text: str | Sequence[str],
        padding: bool | str = False,
        return_tensors: str | None = None,
        add_special_tokens: bool = True,
        truncation: bool = False,
        max_length: int | None = None,
    ) -> dict:
        """``{"input_ids": …, "attention_mask": …}`` of a text or texts, as a transformers
        tokenizer gives them: lists, or ``return_tensors="np"`` / ``"pt"`` arrays (texts of
        unequal length need ``padding=True``, on the right)."""
        texts = [text] if isinstance(text, str) else list(text)
        rows = [self.encode(t, add_special_tokens) for t in texts]
        if truncation and max_length is not None:
            rows = [r[:max_length] for r in rows]
        masks = [[1] * len(r) for r in rows]
        if padding:
            width = max(len(r) for r in rows)
            rows = [r + [self.pad_token_id] * (width - len(r)) for r in rows]
            masks = [m + [0] * (width - len(m)) for m in masks]
        if return_tensors is None:
            out = {"input_ids": rows, "attention_mask": masks}
            return {k: v[0] for k, v in out.items()} if isinstance(text, str) else out
        if len({len(r) for r in rows}) > 1:
            raise ValueError("texts of unequal length: pass padding=True")
        arrays = {"input_ids": np.array(rows, dtype=np.int64), "attention_mask": np.array(masks, dtype=np.int64)}
        if return_tensors == "np":
            return arrays
        if return_tensors == "pt":
            import torch

            return {k: torch.from_numpy(v) for k, v in arrays.items()}
        raise ValueError(f"return_tensors {return_tensors!r}: expected None, 'np' or 'pt'")

    def __repr__(self) -> str:
        return f"glassbox Tokenizer({self._model.path!r}, {self.vocab_size} tokens)"


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") and hasattr(x, "cpu") else x
