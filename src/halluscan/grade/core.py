"""Grade a response against gold aliases and locate its exact answer.

Correctness: a gold alias occurs in the response as whole words, after folding case,
accents, punctuation and articles (so "Niger" does not match "Nigeria").

Exact-answer location is *class-blind* by default: the same rule runs on every response,
right or wrong, so that a probe at the exact-answer tokens cannot learn the locator
instead of the model's knowledge. The rule, in order:

1. the earliest span naming an entity of the question's answer type (the relation
   vocabulary, case-insensitive: currencies are often written in lower case);
2. else the earliest capitalised span naming any known entity (places, countries,
   currencies, continents);
3. else the first capitalised phrase that is not in the question.

Spans that repeat words of the question are skipped. ``asymmetric`` mode (alias span for
correct answers, the rule for wrong ones, as the published study did) is kept as an option.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from halluscan.records import Dataset, Generation, Grade, Question, Span
from halluscan.text import normalize, normalized_words_with_spans

# A capitalised word, a title ("Dr.") or an initial ("B.", "J.K."), so "Michael B. Jackson" stays
# whole.
_CAP_WORD = r"(?:(?:Dr|Mr|Mrs|Ms|St|Mt|Jr|Sr)\.|(?:[A-Z]\.)+(?=\s*[A-Z])|[A-Z][\w'’\-]*)"
_CAP_PHRASE = re.compile(
    rf"{_CAP_WORD}(?:\s*(?<=[\s.])(?:(?:of|de|del|la|le|du|da|and|the)\s+)?{_CAP_WORD})*"
)
_FALLBACK_STOP = set(
    "the it its this that there they he she i a an in on as yes no answer capital city country "
    "currency continent however sorry".split()
)

Words = list[tuple[str, int, int]]


@dataclass
class Matcher:
    """Whole-word phrase matcher over normalised words (fast: indexed by first word)."""

    phrases: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)

    @classmethod
    def of(cls, names: Iterable[str]) -> Matcher:
        """Index ``names`` by their first normalised word, longest phrases first."""
        m = cls()
        for name in names:
            words = tuple(normalize(name).split())
            if words:
                m.phrases.setdefault(words[0], []).append(words)
        for lst in m.phrases.values():
            lst.sort(key=len, reverse=True)
        return m

    def find(
        self, words: Words, skip: set[str] | None = None, text: str | None = None
    ) -> list[Span]:
        """All matches, earliest first (longest at each start).

        ``text`` given = capitalised only.
        """
        out = []
        for i, (w, start, _) in enumerate(words):
            for phrase in self.phrases.get(w, ()):
                n = len(phrase)
                if tuple(x[0] for x in words[i : i + n]) != phrase:
                    continue
                if skip and " ".join(phrase) in skip:
                    continue
                if text is not None and not text[start].isupper():
                    continue
                out.append(Span(start, words[i + n - 1][2]))
                break
        return out


def _question_phrases(question: str) -> set[str]:
    """Every contiguous word sequence of the question, normalised (to skip echoes)."""
    w = normalize(question).split()
    return {" ".join(w[i:j]) for i in range(len(w)) for j in range(i + 1, min(len(w), i + 6) + 1)}


class Grader:
    """Grades responses and locates exact answers for one dataset."""

    def __init__(
        self,
        relation_vocab: dict[str, tuple[str, ...]],
        entity_vocab: Iterable[str],
        mode: str = "class-blind",
    ):
        self.relation = {r: Matcher.of(v) for r, v in relation_vocab.items()}
        self.entities = Matcher.of(entity_vocab)
        self.mode = mode

    @classmethod
    def for_dataset(cls, ds: Dataset, mode: str = "class-blind") -> Grader:
        """The grader of dataset ``ds``: its relation and entity vocabularies."""
        return cls(ds.relation_vocab, ds.entity_vocab, mode)

    def alias_span(self, q: Question, response: str) -> Span | None:
        """Earliest whole-word match of a gold alias.

        Aliases that occur in the question are dropped (an echo of the question is not an
        answer), unless every alias does, in which case all are used.
        """
        qn = f" {normalize(q.question)} "
        aliases = [a for a in q.aliases if f" {normalize(a)} " not in qn] or list(q.aliases)
        hits = Matcher.of(aliases).find(normalized_words_with_spans(response))
        return hits[0] if hits else None

    def locate(self, q: Question, response: str) -> tuple[Span | None, str]:
        """The class-blind exact-answer span and which rule found it."""
        words = normalized_words_with_spans(response)
        skip = _question_phrases(q.question)
        rel = self.relation.get(q.relation)
        if rel is not None:
            hits = rel.find(words, skip)
            if hits:
                return hits[0], "relation"
        hits = self.entities.find(words, skip, text=response)
        if hits:
            return hits[0], "entity"
        for m in _CAP_PHRASE.finditer(response):
            phrase = normalize(m.group(0))
            if phrase and phrase not in skip and phrase not in _FALLBACK_STOP:
                return Span(m.start(), m.end()), "fallback"
        return None, "none"

    def grade(self, q: Question, g: Generation) -> Grade:
        """Correctness plus the exact answer located by this grader's mode."""
        alias = self.alias_span(q, g.response)
        correct = alias is not None
        if self.mode == "asymmetric" and correct:
            span, how = alias, "alias"
        else:
            span, how = self.locate(q, g.response)
        text = g.response[span.start : span.end] if span else None
        return Grade(
            qid=q.qid,
            correct=correct,
            alias_span=alias,
            exact_span=span,
            exact_text=text,
            locator=how,
        )


def spans_overlap(a: Span | None, b: Span | None) -> bool:
    """True when two character spans share at least one character."""
    return a is not None and b is not None and a.start < b.end and b.start < a.end
