"""The given-answer bank's numbers.

Its sweep's best cell, and each bank held out on each kind of answer.


The own-answer bank is trained on the model's greedy answers, labelled by their grade; the
given-answer bank on given true and false answers, labelled by truth. :func:`cross_banks`
scores each bank on each kind of answer, with both cross-fitted over one question-level split
(:mod:`halluscan.probes.crossfit`). Pure maths on arrays; the study's given-answer stage reads
the stores and saves the bank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from halluscan.analyses.summary import OMIT, Interval
from halluscan.probes.crossfit import Answers, CrossFit, cross_auc, question_folds
from halluscan.probes.sweep import SweepResult
from halluscan.records import OWN, PLAUSIBLE, RANDOM, TRUE


@dataclass(frozen=True)
class HeldOut:
    """A bank's AUC on one kind of answer at one layer.

    Mean over folds, 95 % interval, rows scored.
    """

    auc: float | None
    ci95: Interval | None
    n: int
    layer: int
    per_fold: list[float] | None = field(default=None, metadata=OMIT)  # cross-fitted cells only

    @classmethod
    def of_sweep(cls, sweep: SweepResult, position: str, layer: int, n: int) -> HeldOut:
        """The cross-validated cell ``(position, layer)`` of a sweep."""
        lo, hi = sweep.interval(layer, position)
        auc = float(sweep.auc[sweep.layers.index(layer), sweep.positions.index(position)])
        return cls(auc, (lo, hi), n, layer)

    @classmethod
    def of_fit(cls, fit: CrossFit, layer: int) -> HeldOut:
        """A cross-fitted AUC read at ``layer``."""
        return cls(fit.auc, fit.ci95, fit.n, layer, fit.per_fold)


@dataclass(frozen=True)
class OwnAnswers:
    """The own-answer bank's data at its best layer, and its cross-validated cell there."""

    answers: Answers
    layer: int
    cell: HeldOut


@dataclass(frozen=True)
class CrossBanks:
    """Each bank on each kind of answer (``own_answers``, ``given_pairs``), held out by question."""

    given_bank: dict[str, HeldOut | None]
    own_bank: dict[str, HeldOut] = field(default_factory=dict)


@dataclass(frozen=True)
class GivenBank:
    """The given-answer bank of a study, or why there is none (``skipped``)."""

    n_answers: int
    n_questions: int
    skipped: str | None = field(default=None, metadata=OMIT)
    template: str | None = field(default=None, metadata=OMIT)
    best: HeldOut | None = field(default=None, metadata=OMIT)
    layer0: HeldOut | None = field(default=None, metadata=OMIT)  # the answer's identity alone
    probe_bank: str | None = field(default=None, metadata=OMIT)
    cross: CrossBanks | None = field(default=None, metadata=OMIT)
    # the bank, held out by question, on the truth against each kind of false answer
    by_kind: dict[str, HeldOut] | None = field(default=None, metadata=OMIT)


def cross_banks(
    given: Answers,
    given_layer: int,
    own: OwnAnswers | None,
    folds: int,
    seed: int,
    c: float,
    device: str | torch.device = "cpu",
) -> CrossBanks:
    """Each bank (at its best layer) on own greedy answers and on given pairs, held out by question.

    The folds are the given answers' own split; without an own-answer cell only the given pairs
    are counted.
    """
    split = question_folds(given.y, list(given.groups), folds, seed)
    if own is None:
        return CrossBanks(
            {"given_pairs": HeldOut(None, None, len(given.y), given_layer), "own_answers": None}
        )
    own_bank = {
        "own_answers": own.cell,
        "given_pairs": HeldOut.of_fit(cross_auc(own.answers, given, split, c, device), own.layer),
    }
    given_bank: dict[str, HeldOut | None] = {
        "given_pairs": HeldOut.of_fit(cross_auc(given, given, split, c, device), given_layer),
        "own_answers": HeldOut.of_fit(cross_auc(given, own.answers, split, c, device), given_layer),
    }
    return CrossBanks(given_bank, own_bank)


MODEL_RIGHT = "plausible, where the model answers right"


def by_kind(
    given: Answers,
    kinds: np.ndarray,
    right: set[str],
    layer: int,
    folds: int,
    seed: int,
    c: float,
    device: str | torch.device = "cpu",
) -> dict[str, HeldOut]:
    """The bank held out by question on the true answers against each kind of false answer.

    Fitted on every kind (one question-level split, as the sweep's); scored on the truth and
    one kind at a time. ``right``: the questions the model itself answers right, where a
    plausible distractor is a fact the model knows and a bank that reads knowledge must see it.
    """
    split = question_folds(given.y, list(given.groups), folds, seed)
    g = np.asarray(given.groups)
    tests = {k: (kinds == TRUE) | (kinds == k) for k in (RANDOM, PLAUSIBLE, OWN)}
    tests[MODEL_RIGHT] = tests[PLAUSIBLE] & np.isin(g, sorted(right))
    out = {}
    for name, mask in tests.items():
        if not (kinds[mask] != TRUE).any():
            continue
        rows = torch.from_numpy(mask)
        sub = Answers(given.x[rows], given.y[mask], list(g[mask]))
        out[name] = HeldOut.of_fit(cross_auc(given, sub, split, c, device), layer)
    return out
