"""Given answers for the given-answer probe bank.

Each question's gold answer and false ones: a random one of its type, a plausible one, and the
model's own wrong answer.


The own-answer bank reads the model's confidence in what it wrote itself; an answer forced on the
model is another distribution. So each study also teacher-forces, per question, the gold answer
(true) and a *distractor* (false): a user CSV's ``wrong_answer``, else a name drawn with the seed
from the relation's answers (capitals for a capital question, currencies for a currency
question: the gold answers of the relation's other questions), never an alias of the gold
answer nor a name the question itself contains. Labels are truth, not the model's greedy
correctness. Both answers of a question carry its id, the cross-validation group, so they
always fall in the same fold.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from halluscan.records import OWN, PLAUSIBLE, RANDOM, TRUE, Dataset, Question
from halluscan.text import normalize

# the response that is teacher-forced: the bare answer, as a short answer reads
TEMPLATE = "{answer}."


@dataclass(frozen=True)
class GivenAnswer:
    """One teacher-forced answer.

    ``qid`` is its question's (the CV group); ``false`` is the label.
    """

    qid: str
    question: str
    relation: str
    answer: str  # the entity itself
    false: bool
    kind: str = ""  # TRUE, RANDOM, PLAUSIBLE or OWN ("": by ``false``, TRUE or RANDOM)

    @property
    def response(self) -> str:
        """The response text that is scored (the answer in :data:`TEMPLATE`)."""
        return TEMPLATE.format(answer=self.answer)

    @property
    def what(self) -> str:
        """Which kind of answer it is: the truth, or which kind of false answer."""
        return self.kind or (RANDOM if self.false else TRUE)

    @property
    def item_id(self) -> str:
        """The id of this answer in the store: the question's id and which answer it is."""
        return f"{self.qid}#{self.what}"


def _words(text: str) -> str:
    return f" {normalize(text)} "


@lru_cache(maxsize=64)
def _normalised(pool: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((v, _words(v)) for v in pool if normalize(v))


def is_alias(candidate: str, q: Question) -> bool:
    """Whether ``candidate`` names the gold answer.

    Equal to, inside, or containing one of its aliases (whole words).
    """
    c = _words(candidate)
    return any(c in g or g in c for g in _gold(q))


def _gold(q: Question) -> list[str]:
    return [_words(a) for a in (*q.aliases, q.answer) if normalize(a)]


def distractor(q: Question, pool: Sequence[str], seed: int, echo_ok: bool = False) -> str | None:
    """A false answer to ``q``.

    Its ``wrong_answer``, else one drawn from ``pool`` (None: none fits).


    ``pool`` is the relation's gold answers, one per question (so a common answer is drawn as
    often as it is the truth, and the answer's identity alone does not tell true from false).
    The draw depends only on the seed, the question's id and the pool: the same on every run
    of the same question set. ``echo_ok``: names in the question
    may be drawn (an NLI question lists the three labels).
    """
    if q.wrong_answer:
        return q.wrong_answer
    question, gold = ("", _gold(q)) if echo_ok else (_words(q.question), _gold(q))
    fits = [
        v
        for v, w in _normalised(tuple(pool))
        if w not in question and not any(w in g or g in w for g in gold)
    ]
    return random.Random(f"{seed}:{q.qid}").choice(fits) if fits else None


def answer_pools(ds: Dataset) -> dict[str, tuple[str, ...]]:
    """Per relation, the gold answer of each question (by id).

    The relation's vocabulary when that has one name.


    Questions without a relation (``custom``: a user file without a ``relation`` column) have no
    type to draw from; they need a ``wrong_answer``.
    """
    pools: dict[str, list[tuple[str, str]]] = {}
    for q in ds.questions:
        if q.relation != "custom":
            pools.setdefault(q.relation, []).append((q.qid, q.answer))
    out = {r: tuple(a for _, a in sorted(p)) for r, p in pools.items()}
    for r, vocab in ds.relation_vocab.items():
        if r != "custom" and len(set(out.get(r, ()))) < 2:
            out[r] = tuple(sorted(vocab))
    return out


def given_answers(qs: Sequence[Question], ds: Dataset, seed: int) -> list[GivenAnswer]:
    """The gold answer and a distractor per question (questions with no distractor are left out)."""
    pools = answer_pools(ds)
    echo_ok = ds.kind != "alias"  # a label or candidate question lists the answers it accepts
    out = []
    for q in qs:
        wrong = distractor(q, pools.get(q.relation, ()), seed, echo_ok)
        if wrong is None:
            continue
        out.append(GivenAnswer(q.qid, q.question, q.relation, q.answer, False))
        out.append(GivenAnswer(q.qid, q.question, q.relation, wrong, True))
        near = q.plausible
        if near and not is_alias(near, q) and _words(near) not in _words(q.question):
            out.append(GivenAnswer(q.qid, q.question, q.relation, near, True, PLAUSIBLE))
    return out


def own_wrong(
    qs: Sequence[Question], answered: dict[str, tuple[bool, str | None]]
) -> list[GivenAnswer]:
    """The model's own wrong answers as given answers: hard negatives it actually believed.

    ``answered``: question id -> (graded correct, its exact answer). A wrong answer counts when
    its exact answer was located and does not name the gold answer (a grader's miss).
    """
    out = []
    for q in qs:
        correct, text = answered.get(q.qid, (True, None))
        if not correct and text and normalize(text) and not is_alias(text, q):
            out.append(GivenAnswer(q.qid, q.question, q.relation, text, True, OWN))
    return out
