"""Named token positions -> indices into the full sequence (prompt + response).

``last_q`` is the last prompt token (the one that predicts the first answer token).
``-k`` counts from the end of the full sequence, as the reference study does, so a short
response reaches back into the prompt. Exact-answer positions need a located answer span; a
study reads an answer without one at its last answer token instead (:func:`fallback_token`)
and flags it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from halluscan.errors import HalluscanError
from halluscan.records import Span

NAMED = (
    "last_q",
    "first_answer",
    "second_answer",
    "exact_answer_before_first",
    "exact_answer_first",
    "exact_answer_last",
    "exact_answer_after_last",
)
NEGATIVE = tuple(str(-k) for k in range(8, 0, -1))
VALID = NAMED + NEGATIVE
EXACT = tuple(p for p in NAMED if p.startswith("exact_answer"))
_ORDINAL = {"2": "nd", "3": "rd"}
MEANING = {
    "last_q": "the last prompt token, which predicts the answer's first token (before any answer)",
    "first_answer": "the answer's first token",
    "second_answer": "the answer's second token",
    "exact_answer_before_first": "the token just before the exact answer",
    "exact_answer_first": "the exact answer's first token",
    "exact_answer_last": "the exact answer's last token (where the probe banks read)",
    "exact_answer_after_last": "the token just after the exact answer (often its full stop)",
    **{
        p: f"the {p[1:]}{_ORDINAL.get(p[1:], 'th')}-from-last token of prompt + answer"
        for p in NEGATIVE
    },
    "-1": "the last token of prompt + answer (a short answer's -k reach into the prompt)",
}
# Where every probe bank is trained and read: the last token of the located exact answer.
BANK_POSITION = "exact_answer_last"
# Where the given-answer bank reads a given answer: inside the answer (the prompt is the same for
# both answers of a question, so a prompt position cannot tell them apart).
GIVEN_POSITIONS = ("exact_answer_first", BANK_POSITION)


@dataclass(frozen=True)
class Cell:
    """One (position, layer) cell of a probe heatmap."""

    position: str
    layer: int


def check_position_names(names: Sequence[str]) -> None:
    """Raise a clear error for an unknown position name."""
    for n in names:
        if n not in VALID:
            raise HalluscanError(f"unknown position {n!r}; valid positions: {', '.join(VALID)}")
    if not names:
        raise HalluscanError(f"no positions given; choose from: {', '.join(VALID)}")


def token_span(span: Span, starts: Sequence[int], text_len: int) -> tuple[int, int] | None:
    """First and last response-token index overlapping a character span."""
    ends = list(starts[1:]) + [text_len]
    hit = [
        i
        for i, (s, e) in enumerate(zip(starts, ends, strict=True))
        if s < span.end and e > span.start
    ]
    return (hit[0], hit[-1]) if hit else None


def fallback_token(response: str, starts: Sequence[int]) -> tuple[int, int] | None:
    """Where an answer with no located exact answer is read: its last answer token.

    That is the last token holding a letter or digit, before any closing punctuation. None for an
    empty answer.
    """
    ends = list(starts[1:]) + [len(response)]
    for i in range(len(starts) - 1, -1, -1):
        if any(ch.isalnum() for ch in response[starts[i] : ends[i]]):
            return (i, i)
    return None


def resolve(name: str, n_prompt: int, n_resp: int, exact: tuple[int, int] | None) -> int | None:
    """Index of position ``name`` in the full sequence, or None when it does not exist."""
    rules: dict[str, Callable[[], int | None]] = {
        "last_q": lambda: n_prompt - 1,
        "first_answer": lambda: n_prompt if n_resp >= 1 else None,
        "second_answer": lambda: n_prompt + 1 if n_resp >= 2 else None,
        "exact_answer_before_first": lambda: n_prompt + exact[0] - 1 if exact else None,
        "exact_answer_first": lambda: n_prompt + exact[0] if exact else None,
        "exact_answer_last": lambda: n_prompt + exact[1] if exact else None,
        "exact_answer_after_last": lambda: (
            n_prompt + exact[1] + 1 if exact and exact[1] + 1 < n_resp else None
        ),
    }
    if name in rules:
        return rules[name]()
    if name in NEGATIVE:
        return max(n_prompt + n_resp + int(name), 0)
    check_position_names([name])
    return None
