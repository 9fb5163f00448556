"""Attention maths: how much attention each token receives, and per-layer 0-1 scaling.

Inputs are attention weights ``[layer, query, key]`` over one sequence (mean over heads), as
:func:`halluscan.engine.extract.forward_capture` captures them at the ``attn_weights`` site.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from halluscan.engine.extract import forward_capture
from halluscan.errors import HalluscanError
from halluscan.models.sites import ATTN_RECEIVED, ATTN_WEIGHTS, n_layers


@torch.inference_mode()
def attention_received(
    model: Any,
    seqs: list[Sequence[int]],
    pad_id: int,
    layers: list[int] | None = None,
    query: int | None = None,
) -> list[torch.Tensor]:
    """Per sequence, ``[layer, token]``: the attention each token receives, averaged over heads.

    By default a token's score is the mean over the *later* query positions of the weight they
    give it (the last token, with no later query, gets NaN); with ``query`` (e.g. -1) it is the
    weight from that one query position. Layers default to 1..L (block l's attention). Memory
    is linear in the sequence length: no full attention matrix is ever kept.
    """
    layers = list(range(1, n_layers(model) + 1)) if layers is None else layers
    out: list[torch.Tensor] = []
    for s in seqs:  # one at a time: no padding to undo
        n = len(s)
        if query is None:
            got = forward_capture(
                model, [s], torch.arange(n)[None], {ATTN_RECEIVED: layers}, pad_id, False
            )
            out.append(received_from_sums(got[ATTN_RECEIVED][0, :, :n]))
        else:
            q = torch.tensor([[query % n]])
            w = forward_capture(model, [s], q, {ATTN_WEIGHTS: layers}, pad_id, share_prefix=False)[
                ATTN_WEIGHTS
            ]
            out.append(w[0, :, 0].mean(dim=1)[:, :n])  # [layer, keys]
    return out


def received_from_sums(sums: torch.Tensor) -> torch.Tensor:
    """``[layer, k]`` sums over the later query tokens (the ``attn_received`` site) -> their mean.

    Last: NaN.
    """
    k = sums.shape[-1]
    later = torch.arange(k - 1, -1, -1, dtype=sums.dtype)  # query tokens after token j: k - 1 - j
    out = sums / later.clamp(min=1)
    out[..., -1] = float("nan")
    return out


def query_index(query: int, k: int) -> int:
    """The token index of attention query ``query`` (say -1) in ``k`` tokens; one line if not."""
    if not -k <= query < k:
        raise HalluscanError(
            f"attention query token {query} is outside the response's {k} tokens (use "
            f"-{k}..{k - 1})"
        )
    return query % k


def received_from_query(row: torch.Tensor, query: int) -> torch.Tensor:
    """``[layer, k]`` weights that query token ``query`` gives each token.

    The tokens after it get NaN.
    """
    out = row.clone()
    out[:, query_index(query, row.shape[-1]) + 1 :] = float("nan")
    return out


def received(weights: torch.Tensor, query: int | None = None) -> torch.Tensor:
    """Attention each token receives.

    ``weights`` [layer, query, key] over the same k tokens -> [layer, k].


    With ``query=None`` the mean over the *later* query tokens (the last token has none: NaN);
    with an index (e.g. -1), the weight that one query token gives each token (tokens after
    that query cannot receive any: NaN).
    """
    k = weights.shape[-1]
    if query is not None:
        return received_from_query(weights[:, query_index(query, k)], query)
    later = torch.ones(k, k, dtype=weights.dtype).tril(-1)  # query i > key j
    out = (weights * later).sum(1) / later.sum(0).clamp(min=1)
    out[:, -1] = float("nan")
    return out


def normalise_layers(x: torch.Tensor) -> torch.Tensor:
    """Min-max scale each layer (row) of ``[layer, token]`` to 0-1, ignoring NaN (kept as NaN).

    A constant row becomes 0.
    """
    finite = ~torch.isnan(x)
    lo = torch.where(finite, x, torch.full_like(x, float("inf"))).min(dim=-1, keepdim=True).values
    hi = torch.where(finite, x, torch.full_like(x, float("-inf"))).max(dim=-1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (x - lo) / span.clamp(min=1e-12), torch.zeros_like(x))
    return torch.where(finite, out, x)


def to_question(
    tokenizer: Any, prompt: Sequence[int], question: str, sums: torch.Tensor, n_resp: int
) -> dict[str, Any]:
    """The question's tokens as keys: ``sums`` [block, key] over the answer's query tokens.

    Returns ``question_tokens`` and ``question_attention`` [block, question token] (the mean
    weight an answer token gives each question token, 0-1 per block); nothing when the question's
    text is not found in the decoded prompt.
    """
    from halluscan.engine.decode import token_starts
    from halluscan.scan.scoring import token_labels

    starts, text = token_starts(tokenizer, list(prompt))
    c = text.rfind(question.strip())
    if c < 0 or not starts:
        return {}
    ends = [*starts[1:], len(text)]
    end = c + len(question.strip())
    toks = [j for j in range(len(starts)) if starts[j] < end and ends[j] > c]
    lo, hi = toks[0], toks[-1] + 1
    mean = sums[:, lo:hi].to(torch.float32) / max(n_resp, 1)
    labels = token_labels(text, starts)[lo:hi]
    return {"question_tokens": labels, "question_attention": normalise_layers(mean).numpy()}
