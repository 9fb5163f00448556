"""Graders of the paper's other datasets: two candidates, three labels, or a number (or a refusal).

Each has one class-blind locator, the same rule for right and wrong answers:

- ``choice`` (winobias, winogrande): the earliest of the two candidates the answer names. It is
  right only when it names the gold candidate and not the other; naming both or neither is
  wrong, and ambiguous: ``two candidates``, or ``no choice`` (a restatement or an evasion).
- ``label`` (mnli): the label the answer says (entailment, contradiction, neutral, in any word
  form). Saying more than one label is wrong and ambiguous (``two candidates``), as is saying
  none (``no choice``).
- ``number`` (math): the last number the answer gives (digits, "1,000", "21.0", "3/4",
  "2 million", or words: "twenty-one"), unless a refusal comes after it. Right when it is
  within a relative tolerance of a gold number; for an unanswerable question, right when it
  refuses. A number that the question itself gives is ambiguous (``echoes the question``).
"""

from __future__ import annotations

import re

from halluscan.grade.core import Grader, Matcher
from halluscan.records import Dataset, Generation, Grade, Question, Span
from halluscan.text import normalize, normalized_words_with_spans

TOLERANCE = 1e-4  # relative, with a floor of 1e-4 absolute


class ChoiceGrader(Grader):
    """Which of two candidates (``answer``, ``wrong_answer``) the answer names."""

    def named(self, q: Question, response: str) -> dict[str, Span]:
        """Each candidate the response names, with its earliest span."""
        words = normalized_words_with_spans(response)
        out = {}
        for cand in (q.answer, q.wrong_answer):
            hits = Matcher.of([cand]).find(words) if normalize(cand) else []
            if hits:
                out[cand] = hits[0]
        return out

    def locate(self, q: Question, response: str) -> tuple[Span | None, str]:
        """The earliest candidate named, and ``candidate``, ``both`` or ``neither``."""
        named = self.named(q, response)
        if not named:
            return None, "neither"
        how = "both" if len(named) == 2 else "candidate"
        return min(named.values(), key=lambda s: s.start), how

    def grade(
        self, q: Question, g: Generation, located: tuple[Span | None, str] | None = None
    ) -> Grade:
        """Right when the gold candidate, and only it, is named."""
        named = self.named(q, g.response)
        span, how = located if located is not None else self.locate(q, g.response)
        correct = set(named) == {q.answer}
        text = g.response[span.start : span.end] if span else None
        unsure = "two candidates" if len(named) > 1 else None if named else "no choice"
        return Grade(q.qid, correct, named.get(q.answer), span, text, how, unsure)


_LABELS = {
    "entailment": re.compile(r"\bentail\w*", re.I),
    "contradiction": re.compile(r"\bcontradict\w*", re.I),
    "neutral": re.compile(r"\bneutral\w*", re.I),
}


class LabelGrader(Grader):
    """Which of the three NLI labels the answer says."""

    def said(self, response: str) -> dict[str, Span]:
        """Each label the response says, with its earliest span."""
        out = {}
        for label, rx in _LABELS.items():
            m = rx.search(response)
            if m:
                out[label] = Span(m.start(), m.end())
        return out

    def locate(self, q: Question, response: str) -> tuple[Span | None, str]:
        """The first label said, and ``label``, ``ambiguous`` (several) or ``none``."""
        said = self.said(response)
        if not said:
            return None, "none"
        return min(said.values(), key=lambda s: s.start), "ambiguous" if len(said) > 1 else "label"

    def grade(
        self, q: Question, g: Generation, located: tuple[Span | None, str] | None = None
    ) -> Grade:
        """Right when the one label said is the gold label."""
        said = self.said(g.response)
        span, how = located if located is not None else self.locate(q, g.response)
        gold = next((lab for lab in _LABELS if normalize(q.answer).startswith(lab[:7])), q.answer)
        correct = set(said) == {gold}
        text = g.response[span.start : span.end] if span else None
        unsure = "two candidates" if len(said) > 1 else None if said else "no choice"
        return Grade(q.qid, correct, said.get(gold) if correct else None, span, text, how, unsure)


_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
_UNITS += "fifteen sixteen seventeen eighteen nineteen"
_WORD = {w: i for i, w in enumerate(_UNITS.split())}
_WORD |= {
    w: 10 * (i + 2)
    for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())
}
_SCALE = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_SCALES = "hundred|thousand|million|billion"
_DIGITS = re.compile(
    r"(?<![\w./])(?P<frac>\d+/\d+)(?![\w/])"
    r"|(?<![\w.])(?P<num>-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    rf"(?:\s+(?P<scale>{_SCALES})\b)?",
    re.I,
)
_NUMBER_WORDS = "|".join(sorted([*_WORD, *_SCALE], key=len, reverse=True))
_WORDS = re.compile(rf"\b(?:{_NUMBER_WORDS})\b(?:[\s-]+(?:and[\s-]+)?(?:{_NUMBER_WORDS})\b)*", re.I)
_REFUSAL = re.compile(
    r"\b(?:cannot|can ?not|can['’]t|unable to|impossible|not (?:possible|enough|sufficient|able)|"
    r"insufficient|unanswerable|no way to|(?:don['’]t|do not) know|"
    r"(?:does not|doesn['’]t) (?:say|specify|provide|give)|not "
    r"(?:given|specified|provided|stated|mentioned))\b",
    re.I,
)


def _word_value(text: str) -> float | None:
    total, cur = 0, 0
    for w in re.split(r"[\s-]+", text.lower()):
        if w in _WORD:
            cur += _WORD[w]
        elif w == "hundred":
            cur = max(cur, 1) * 100
        elif w in _SCALE:
            total, cur = total + max(cur, 1) * _SCALE[w], 0
        elif w not in ("", "and"):
            return None
    return float(total + cur)


_PIECE = re.compile(
    r"\S+(?:[\s-]+\S+)*?(?=(?<!hundred)(?<!thousand)(?<!million)(?<!billion)[\s-]+and[\s-]|$)", re.I
)


def _word_phrases(text: str) -> list[tuple[float, Span]]:
    """Number words.

    "and" joins only after a scale ("a hundred and five"), so "five and six" are two numbers.
    """
    out = []
    for m in _WORDS.finditer(text):
        start = m.start()
        for piece in _PIECE.finditer(m.group()):
            phrase = piece.group().strip(" -")
            phrase = re.sub(r"^and[\s-]+", "", phrase, flags=re.I)
            value = _word_value(phrase) if phrase else None
            if value is not None:
                begin = start + piece.start() + piece.group().find(phrase)
                out.append((value, Span(begin, begin + len(phrase))))
    return out


def numbers(text: str) -> list[tuple[float, Span]]:
    """Every number in ``text``.

    Digits (commas, decimals, exponents, fractions, "2 million") or words.
    """
    found = []
    for m in _DIGITS.finditer(text):
        if m.group("frac"):
            a, b = m.group("frac").split("/")
            if float(b):
                found.append((float(a) / float(b), Span(m.start(), m.end())))
            continue
        value = float(m.group("num").replace(",", ""))
        if m.group("scale"):
            value *= _SCALE[m.group("scale").lower()]
        found.append((value, Span(m.start(), m.end())))
    # a number word inside a digit phrase ("2 hundred") is part of it
    inside = lambda sp: any(d.start <= sp.start and sp.end <= d.end for _, d in found)  # noqa: E731
    return sorted(
        found + [w for w in _word_phrases(text) if not inside(w[1])], key=lambda t: t[1].start
    )


def gold_numbers(answer: str) -> list[float]:
    """The gold numbers of a math answer such as ``[9.0]`` or ``21``."""
    return [v for v, _ in numbers(answer)]


class NumberGrader(Grader):
    """The number the answer gives (or its refusal, for a question that has no answer)."""

    def locate(self, q: Question, response: str) -> tuple[Span | None, str]:
        """A refusal if the answer refuses, else its last number: the same rule for every answer."""
        refusal = _REFUSAL.search(response)
        found = numbers(response)
        # a number after it is the answer
        if refusal and not (found and found[-1][1].start >= refusal.end()):
            return Span(refusal.start(), refusal.end()), "refusal"
        return (found[-1][1], "number") if found else (None, "none")

    def grade(
        self, q: Question, g: Generation, located: tuple[Span | None, str] | None = None
    ) -> Grade:
        """Right.

        A refusal for an unanswerable question, else the located number within tolerance of a gold
        one.
        """
        # correctness reads the number the rule finds, whoever locates the exact answer
        found, kind = self.locate(q, g.response)
        span, how = located if located is not None else (found, kind)
        value = (
            numbers(g.response[found.start : found.end])[0][0]
            if kind == "number" and found is not None
            else None
        )
        if not q.answerable:
            correct = kind == "refusal"
        elif value is None:
            correct = False
        else:
            golds = [x for a in (q.answer, *q.aliases) for x in gold_numbers(a)]
            correct = any(abs(value - x) <= max(TOLERANCE, TOLERANCE * abs(x)) for x in golds)
        text = g.response[span.start : span.end] if span else None
        # the answer's number is one the question gave
        unsure = "echoes the question" if value in {v for v, _ in numbers(q.question)} else None
        return Grade(q.qid, correct, found if correct else None, span, text, how, unsure)


def grader_for(ds: Dataset, mode: str = "class-blind") -> Grader:
    """The grader of dataset ``ds`` (by its kind), with its vocabularies."""
    cls = {"alias": Grader, "choice": ChoiceGrader, "label": LabelGrader, "number": NumberGrader}[
        ds.kind
    ]
    return cls(ds.relation_vocab, ds.entity_vocab, mode)
