"""Grade a response against gold aliases and locate its exact answer.

The exact answer is located first, *class-blind*: the same rule runs on every response, right
or wrong, and never looks at the gold, so that a probe at the exact-answer tokens cannot learn
the locator instead of the model's knowledge. With a vocabulary of the relation's answer type
(any country, any city, any currency: never the dataset's list of gold answers) the exact answer
is the earliest name of that type; nothing else counts. Without one, the earliest known entity,
else the first capitalised name that does not repeat the question. ``asymmetric`` mode (alias
span for correct answers, the rule for wrong ones, as the published study did) is kept as an
option.

Then correctness: a gold alias occurs in the response as whole words, after folding case,
accents, punctuation and articles (so "Niger" does not match "Nigeria"), and names the answer:
not inside a longer name ("China" in "South China Sea"), not an echo of the question's own
names, and, for an alias of one or two characters ("In", "US"), only as the located answer.
A grade is marked ambiguous when the response negates a candidate or names a second one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from halluscan.records import Dataset, Generation, Grade, Question, Span
from halluscan.text import (
    CAP_PHRASE,
    capitalised_names,
    inside_longer_name,
    normalize,
    normalized_words_with_spans,
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


def question_names(question: str) -> set[str]:
    """The capitalised names of the question, normalised: an answer that repeats one echoes it."""
    return {normalize(question[a:b]) for a, b in capitalised_names(question)}


def _question_phrases(question: str) -> set[str]:
    """Every contiguous word sequence of the question, normalised (to skip echoes)."""
    w = normalize(question).split()
    return {" ".join(w[i:j]) for i in range(len(w)) for j in range(i + 1, min(len(w), i + 6) + 1)}


SHORT = 2  # an alias this short (normalised) counts only as the located answer itself
NEGATION = {"not", "never", "nor", "neither", "instead", "rather", "nt"}


class Grader:
    """Grades responses and locates exact answers for one dataset.

    A relation with a vocabulary of its answer type (any country, any city, any currency) is
    located by type alone; other relations fall back to any known entity, then to the first
    capitalised name that does not repeat the question.
    """

    def __init__(
        self,
        relation_vocab: dict[str, tuple[str, ...]],
        entity_vocab: Iterable[str],
        mode: str = "class-blind",
    ):
        self.relation = {r: Matcher.of(v) for r, v in relation_vocab.items()}
        self.type_names = {r: {normalize(n) for n in v} for r, v in relation_vocab.items()}
        self.entities = Matcher.of(entity_vocab)
        # every name the grader knows: a longer name among them names something else
        self.known = {normalize(n) for n in entity_vocab} | {
            n for names in self.type_names.values() for n in names
        }
        self.mode = mode

    @classmethod
    def for_dataset(cls, ds: Dataset, mode: str = "class-blind") -> Grader:
        """The grader of dataset ``ds``: its relation and entity vocabularies."""
        return cls(ds.relation_vocab, ds.entity_vocab, mode)

    def alias_span(self, q: Question, response: str, exact: Span | None = None) -> Span | None:
        """Earliest whole-word match of a gold alias that names the answer.

        Not counted: a match inside a longer capitalised name ("China" in "South China Sea",
        "Guatemala" in "Guatemala City"); an alias that is one of the question's own names (an
        echo), unless every alias is; and an alias of one or two characters ("In", "US") unless
        it is the located exact answer ``exact`` itself.
        """
        echo = question_names(q.question)
        aliases = [a for a in q.aliases if normalize(a) not in echo] or list(q.aliases)
        names = capitalised_names(response)
        allowed = {normalize(a) for a in aliases}
        located = normalize(response[exact.start : exact.end]) if exact else None
        for hit in Matcher.of(aliases).find(normalized_words_with_spans(response)):
            text = normalize(response[hit.start : hit.end])
            if inside_longer_name(response, hit.start, hit.end, names, allowed, self.known):
                continue
            if len(text.replace(" ", "")) <= SHORT and text != located:
                continue
            return hit
        return None

    def candidates(self, q: Question, response: str) -> list[Span]:
        """Every name of the asked type in ``response``, earliest first.

        Echoes of the question and parts of longer names are left out. Empty for a relation
        without a type vocabulary.
        """
        rel = self.relation.get(q.relation)
        if rel is None:
            return []
        names = capitalised_names(response)
        echo, allowed = question_names(q.question), self.type_names[q.relation]
        out: list[Span] = []
        for h in rel.find(normalized_words_with_spans(response)):
            if out and h.start < out[-1].end:
                continue  # inside the previous, longer match ("Dollar" in "Australian Dollar")
            if normalize(response[h.start : h.end]) in echo or inside_longer_name(
                response, h.start, h.end, names, allowed, self.known
            ):
                continue
            out.append(h)
        return out

    def locate(self, q: Question, response: str) -> tuple[Span | None, str]:
        """The class-blind exact-answer span and which rule found it.

        ``type``: the earliest name of the asked type; with a type vocabulary nothing else
        counts (``none``). Without one: ``entity`` (any known name), else ``fallback``.
        """
        if q.relation in self.relation:
            found = self.candidates(q, response)
            return (found[0], "type") if found else (None, "none")
        words = normalized_words_with_spans(response)
        skip = _question_phrases(q.question)
        hits = self.entities.find(words, skip, text=response)
        if hits:
            return hits[0], "entity"
        for m in CAP_PHRASE.finditer(response):
            phrase = normalize(m.group(0))
            before = response[: m.start()].rstrip()
            opens = not before or before[-1] in ".!?:"
            # a stop word capitalised mid-sentence is a name ("Its symbol is In.")
            if phrase and phrase not in skip and not (opens and phrase in _FALLBACK_STOP):
                return Span(m.start(), m.end()), "fallback"
        return None, "none"

    def ambiguity(self, q: Question, response: str, correct: bool) -> str | None:
        """Why the grade is unsure, or None.

        ``negated candidate``: a name of the asked type comes right after a negation ("not in
        Germany"); ``two candidates``: a right answer also names another of the asked type.
        """
        found = self.candidates(q, response)
        words = normalized_words_with_spans(response)
        for hit in found:
            before = [w for w, _, end in words if end <= hit.start][-3:]
            if NEGATION & set(before):
                return "negated candidate"
        aliases = {normalize(a) for a in q.aliases}
        named = {normalize(response[h.start : h.end]) for h in found}
        if correct and len(named) > 1 and named - aliases:
            return "two candidates"
        return None

    def grade(
        self, q: Question, g: Generation, located: tuple[Span | None, str] | None = None
    ) -> Grade:
        """Locate the exact answer (class-blind), then grade; and say when the grade is unsure.

        ``located``: the exact answer and its method when another locator found it (the model's
        own extraction); else this grader's rule locates it.
        """
        span, how = located if located is not None else self.locate(q, g.response)
        alias = self.alias_span(q, g.response, span)
        correct = alias is not None
        if self.mode == "asymmetric" and correct:
            span, how = alias, "alias"
        text = g.response[span.start : span.end] if span else None
        return Grade(
            qid=q.qid,
            correct=correct,
            alias_span=alias,
            exact_span=span,
            exact_text=text,
            locator=how,
            ambiguous=self.ambiguity(q, g.response, correct),
        )


def spans_overlap(a: Span | None, b: Span | None) -> bool:
    """True when two character spans share at least one character."""
    return a is not None and b is not None and a.start < b.end and b.start < a.end
