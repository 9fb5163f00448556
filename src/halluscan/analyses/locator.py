"""The locator, audited: which rule found each exact answer, by class, and the same-rule control.

A locator can be one rule in code and still split by class: when its first rule looks answers up
in the gold vocabulary, every correct answer passes it and most wrong ones fall to fallbacks,
so the rule alone predicts the label and a probe at the exact answer can learn the rule. The
audit tabulates rule x class, counts the answers with no located exact answer, and re-runs
the probe on the answers found by rules that occur in both classes (the same-rule control).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from halluscan.analyses.summary import OMIT, Interval
from halluscan.probes.features import Features
from halluscan.probes.sweep import fits, sweep
from halluscan.records import CV, Example

NOT_LOCATED = "none"  # the rule name of an answer with no exact answer
RULE_WARNING = 0.6  # the rule alone predicts the label when its interval's low end passes this


@dataclass(frozen=True)
class CellAUC:
    """A probe cell's cross-validated AUC and interval."""

    layer: int
    auc: float | None
    ci95: Interval | None


@dataclass(frozen=True)
class SameRule:
    """The probe on the answers whose rule occurs in both classes, at one position."""

    position: str
    rules: list[str]
    n: int
    n_wrong: int
    best: CellAUC  # the best layer there (the maximum over layers: optimistic)
    layer0: CellAUC  # token identity on the same answers


@dataclass(frozen=True)
class SelfExtraction:
    """How well the model extracts its own exact answers, and whether they located the study's.

    Measured on a pilot sample before the study (``pilot``), or on every answer when it was the
    locator.
    """

    n: int
    extracted: dict[str, float]  # class -> share whose extraction is a span of the response
    agreement: float | None  # of those, the share that overlaps the rule locator's span
    used: bool  # whether it located the study's exact answers
    pilot: bool
    threshold: float  # the share it needs, over all answers, to be the study's locator


@dataclass(frozen=True)
class LocatorAudit:
    """Rule x class counts, the share of each class not located, and more."""

    rules: dict[str, dict[str, int]]  # rule -> {"correct": n, "wrong": n}
    # class -> share with no located exact answer (read at the fallback position instead)
    not_located: dict[str, float]
    shared_rules: list[str]  # rules that located answers of both classes
    same_rule: SameRule | None = field(default=None, metadata=OMIT)


def by_class(examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    """Rule -> how many correct and wrong answers it located (``none``: not located)."""
    counts = Counter(
        (e.locator if e.exact_span is not None else NOT_LOCATED, e.correct) for e in examples
    )
    rules = sorted({rule for rule, _ in counts})
    return {r: {"correct": counts[(r, True)], "wrong": counts[(r, False)]} for r in rules}


def audit(
    examples: Sequence[Example],
    features: Features,
    y: np.ndarray,
    position: str,
    cv: CV,
    device: str = "cpu",
) -> LocatorAudit:
    """The locator's audit: the table, the drops, and the same-rule probe at ``position``."""
    table = by_class(examples)
    left = {
        cls: float(np.mean([e.exact_span is None for e in examples if e.correct == ok]))
        for cls, ok in (("correct", True), ("wrong", False))
        if any(e.correct == ok for e in examples)
    }
    # a rule "occurs in both classes" when each class has enough answers there for the folds
    shared = [
        r
        for r, c in table.items()
        if r != NOT_LOCATED and min(c["correct"], c["wrong"]) >= cv.folds
    ]
    return LocatorAudit(
        table, left, shared, same_rule(examples, features, y, position, shared, cv, device)
    )


def same_rule(
    examples: Sequence[Example],
    features: Features,
    y: np.ndarray,
    position: str,
    rules: list[str],
    cv: CV,
    device: str,
) -> SameRule | None:
    """The sweep at ``position`` restricted to answers located by ``rules`` (None: too few)."""
    subset = np.array([e.exact_span is not None and e.locator in rules for e in examples])
    if position not in features.positions:
        return None
    keep = features.has(position) & subset
    if not fits(keep, y, cv.folds):
        return None
    only = features.restrict(keep, [position])
    result = sweep(
        only, y, [e.qid for e in examples], folds=cv.folds, seed=cv.seed, c=cv.c, device=device
    )
    layer, auc = result.best(position)
    first = result.layers[0]
    best = CellAUC(layer, auc, result.interval(layer, position))
    zero = CellAUC(first, float(result.auc[0, 0]), result.interval(first, position))
    return SameRule(position, rules, int(keep.sum()), int(y[keep].sum()), best, zero)
