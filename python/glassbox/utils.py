"""TransformerLens' ``utils`` that notebooks reach for: ``test_prompt`` and ``get_act_name``."""

from __future__ import annotations

import numpy as np

from .names import get_act_name

__all__ = ["get_act_name", "test_prompt"]


def test_prompt(
    prompt: str,
    answer: str | list[str],
    model,
    prepend_space_to_answer: bool = True,
    print_details: bool = True,
    prepend_bos: bool | None = None,
    top_k: int = 10,
) -> None:
    """Prints how the model continues ``prompt`` with ``answer``, as TransformerLens'
    ``utils.test_prompt``: the tokens, then for each token of the answer (appended to the
    prompt) its rank, logit and probability and the ``top_k`` tokens the model prefers there,
    and at the end the answer tokens' ranks. ``prepend_space_to_answer`` starts the answer with
    one space. A list of answers is tested one after another."""
    answers = [answer] if isinstance(answer, str) else list(answer)
    for ans in answers:
        if prepend_space_to_answer and not ans.startswith(" "):
            ans = " " + ans
        prompt_ids = model.to_tokens(prompt, prepend_bos=prepend_bos)[0]
        answer_ids = model.to_tokens(ans, prepend_bos=False)[0]
        ids = np.concatenate([prompt_ids, answer_ids])[None]
        logits = model(ids)[0].astype(np.float64)
        print("Tokenized prompt:", model.to_str_tokens(prompt_ids))
        print("Tokenized answer:", model.to_str_tokens(answer_ids))
        ranks = []
        for i, token in enumerate(answer_ids):
            row = logits[len(prompt_ids) + i - 1]
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            order = np.argsort(-row, kind="stable")
            rank = int(np.flatnonzero(order == token)[0])
            text = model.to_str_tokens([int(token)])[0]
            ranks.append((text, rank))
            if print_details:
                print("Performance on answer token:")
                print(f"Rank: {rank:<8} Logit: {row[token]:5.2f} Prob: {probs[token]:6.2%} Token: |{text}|")
                for k, t in enumerate(order[:top_k]):
                    print(f"Top {k}th token. Logit: {row[t]:5.2f} Prob: {probs[t]:6.2%} Token: |{model.to_str_tokens([int(t)])[0]}|")
        print("Ranks of the answer tokens:", ranks)
