"""Frozen records passed between stages. Stages talk only through these and the store."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Question:
    """One question with its gold answer; ``aliases`` includes the answer itself."""

    qid: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    relation: str = "custom"


@dataclass(frozen=True)
class Dataset:
    """A named question set with the hash of its content, for provenance."""

    name: str
    questions: tuple[Question, ...]
    sha256: str
    # Entity names of the answer type of each relation (for class-blind answer location).
    relation_vocab: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Further entity names of any kind that an answer may name.
    entity_vocab: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    """A generated response: prompt and response token ids and the response text."""

    qid: str
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    response: str
    # Character offset where each response token starts in ``response`` (len = n tokens).
    token_starts: tuple[int, ...]
    stopped_by: str  # "sentence", "line", "eos" or "length"


@dataclass(frozen=True)
class Span:
    """A character span ``[start, end)`` in a response."""

    start: int
    end: int


@dataclass(frozen=True)
class Grade:
    """Correctness and the located exact answer of one response."""

    qid: str
    correct: bool
    alias_span: Span | None  # where a gold alias matched (correct responses only)
    exact_span: Span | None  # the located exact answer used for probing
    exact_text: str | None
    locator: str  # which rule found exact_span ("relation", "entity", "fallback", "alias", "none")
