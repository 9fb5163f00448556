"""Scoring maths: a probe bank's per-layer log-odds of *wrong* as an activity map, and the verdict.

``activity[..., l]`` is layer ``l``'s probe log-odds for the residual stream at a token
(optionally standardised per layer against the bank's training set, so that layers are
comparable); the verdict is the probability from one chosen layer's probe.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from halluscan.positions import fallback_token
from halluscan.probes.bank import ProbeBank

WRONG, RIGHT = "hallucinated", "correct"


def activity(bank: ProbeBank, acts: torch.Tensor, standardise: bool = False) -> torch.Tensor:
    """``acts`` [..., layer, d] -> log-odds (or z-scores) [..., layer]."""
    return scaled(bank, bank.decision_function(acts), standardise)


def scaled(bank: ProbeBank, z: torch.Tensor, standardise: bool) -> torch.Tensor:
    """Log-odds ``z`` [..., layer] as they are, or as z-scores per layer (bank's training set)."""
    if standardise and bank.score_mean is not None and bank.score_std is not None:
        z = (z - bank.score_mean) / bank.score_std
    return z


def p_wrong(bank: ProbeBank, acts: torch.Tensor, layer: int) -> float:
    """Probability of *wrong* from ``layer``'s probe for one token's ``acts`` [layer, d]."""
    return float(torch.sigmoid(bank.decision_function(acts)[..., bank.layers.index(layer)]))


def answer_start(text: str, starts: Sequence[int], exact: tuple[int, int] | None) -> int:
    """The token the token-level bank reads from: the exact answer's first, else the last word's."""
    if exact is not None:
        return exact[0]
    last = fallback_token(text, starts)
    return last[0] if last is not None else 0


def from_answer(
    tokens: ProbeBank, z: torch.Tensor, start: int, standardise: bool = False
) -> torch.Tensor:
    """The token-level bank's map ``z`` [layer, token], NaN (grey: not read) before ``start``."""
    act = scaled(tokens, z.T, standardise).T.clone()
    act[:, :start] = float("nan")
    return act


def verdict(p: float) -> str:
    """``hallucinated`` at p(wrong) >= 0.5, else ``correct``."""
    return WRONG if p >= 0.5 else RIGHT


def token_labels(text: str, starts: Sequence[int]) -> list[str]:
    """Readable label per token: its exact slice of ``text``, trimmed, newlines as ``⏎``.

    Slicing the decoded text (instead of ``convert_ids_to_tokens``) means no tokenizer
    markers (``Ġ``, ``▁``, ``Ċ``) reach a figure; a token that is only whitespace shows ``␣``.
    """
    ends = list(starts[1:]) + [len(text)]
    out = []
    for s, e in zip(starts, ends, strict=True):
        piece = text[s:e].replace("\n", "⏎").strip()
        out.append(piece if piece else "␣")
    return out
