"""What a study's numbers say: accuracy, locator coverage, controls, best cells, and the finding.

Pure functions of the graded examples and the sweep result, each returning a frozen record;
nothing here reads or writes files (the study's metrics owner writes them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from halluscan.grade import spans_overlap
from halluscan.positions import EXACT
from halluscan.probes.sweep import AUC_BOUNDS, SweepResult, fold_interval, metadata_prior_auc
from halluscan.records import Example

Interval = tuple[float, float]
# Field metadata for the metrics writer: leave the field out of the JSON while it is None.
OMIT = {"omit": True}


def mean_ci(
    per_fold: np.ndarray, bounds: tuple[float, float] = AUC_BOUNDS
) -> tuple[float | None, Interval | None]:
    """Mean over the finite folds, and its 95 % t-interval inside ``bounds`` (None: < 2 folds)."""
    per_fold = per_fold[np.isfinite(per_fold)]
    if per_fold.size < 2:
        return (float(per_fold.mean()) if per_fold.size else None), None
    lo, hi = fold_interval(per_fold[:, None], bounds=bounds)
    return float(per_fold.mean()), (float(lo[0]), float(hi[0]))


@dataclass(frozen=True)
class Summary:
    """Accuracy (overall, by relation), exact-answer coverage, how answers were found and ended."""

    n_graded: int
    accuracy: float
    accuracy_by_relation: dict[str, float]
    n_by_relation: dict[str, int]
    # class ("correct", "wrong") -> share with a located answer
    exact_answer_found: dict[str, float]
    exact_answer_missing: int
    locator_agreement_correct: float
    locator_rules: dict[str, int]
    stopped_by: dict[str, int]
    # answers with no located exact answer, read at their last answer token instead (per class)
    read_at_fallback: dict[str, int] | None = field(default=None, metadata=OMIT)
    # why a grade is unsure -> {"correct": n, "wrong": n}; left out of the probes by default
    ambiguous: dict[str, dict[str, int]] | None = field(default=None, metadata=OMIT)
    ambiguous_in_probes: bool | None = field(default=None, metadata=OMIT)
    # what the dataset's build left out
    dataset_notes: list[str] | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True)
class Heatmap:
    """The sweep as ``metrics.json`` keeps it.

    AUC rounded to 4 places, None where a cell had no data.
    """

    site: str
    layers: list[int]
    positions: list[str]
    folds: int
    auc: list[list[float | None]]
    auc_std: list[list[float | None]]
    n_per_position: list[int]


@dataclass(frozen=True)
class BestCell:
    """A position's best layer.

    Its mean AUC, fold std, 95 % interval, and whether it clears the controls.
    """

    layer: int
    auc: float | None
    std: float | None
    ci95: Interval | None
    informative: bool


@dataclass(frozen=True)
class Controls:
    """What cheap signals give: the relation alone, and layer 0 (token identity)."""

    relation_prior_auc: float
    layer0_exact_auc: float
    layer0_last_q_auc: float


@dataclass(frozen=True)
class Finding:
    """The best exact-answer cell, and whether it beats last_q and both controls."""

    best_exact_position: str
    best_exact_layer: int
    best_exact_auc: float
    exact_beats_last_q: bool
    exact_beats_layer0: bool
    exact_beats_relation_prior: bool
    # Against the strongest cheap control, on the headline's examples (None: no nested cell).
    strongest_control: str | None = field(default=None, metadata=OMIT)
    gain_over_strongest: float | None = field(default=None, metadata=OMIT)
    gain_ci95: Interval | None = field(default=None, metadata=OMIT)
    beats_strongest: bool | None = field(default=None, metadata=OMIT)
    warnings: list[str] = field(default_factory=list)


def class_counts(examples: Sequence[Example]) -> dict[str, int]:
    """How many of ``examples`` are correct and wrong."""
    right = sum(e.correct for e in examples)
    return {"correct": right, "wrong": len(examples) - right}


def summarise(
    examples: list[Example], keep_ambiguous: bool = False, notes: Sequence[str] = ()
) -> Summary:
    """Accuracy (overall, by relation), exact-answer coverage and locator agreement."""
    rel = Counter(e.relation for e in examples)
    corr = [e for e in examples if e.correct]
    wrong = [e for e in examples if not e.correct]

    def found(xs: list[Example]) -> float:
        return float(np.mean([e.exact_span is not None for e in xs])) if xs else 0.0

    agree = [spans_overlap(e.exact_span, e.alias_span) for e in corr]
    return Summary(
        n_graded=len(examples),
        accuracy=float(np.mean([e.correct for e in examples])),
        accuracy_by_relation={
            r: float(np.mean([e.correct for e in examples if e.relation == r])) for r in sorted(rel)
        },
        n_by_relation=dict(sorted(rel.items())),
        exact_answer_found={"correct": found(corr), "wrong": found(wrong)},
        exact_answer_missing=sum(e.exact_span is None for e in examples),
        locator_agreement_correct=float(np.mean(agree)) if agree else 0.0,
        locator_rules=dict(Counter(e.locator for e in examples)),
        stopped_by=dict(Counter(e.stopped_by for e in examples)),
        read_at_fallback=class_counts([e for e in examples if e.exact_fallback]),
        ambiguous={
            why: class_counts([e for e in examples if e.ambiguous == why])
            for why in sorted({e.ambiguous for e in examples if e.ambiguous})
        },
        ambiguous_in_probes=keep_ambiguous,
        dataset_notes=list(notes),
    )


def controls(
    sweep: SweepResult, examples: list[Example], y: np.ndarray, folds: int, seed: int
) -> Controls:
    """The two controls.

    The relation alone, and layer 0 (token identity) at last_q and the exact answer.
    """
    exact = [p for p in sweep.positions if p in EXACT]
    l0 = sweep.auc[0, [sweep.positions.index(p) for p in exact]] if exact else np.array([np.nan])
    groups = [e.qid for e in examples]
    has_last_q = "last_q" in sweep.positions
    return Controls(
        relation_prior_auc=metadata_prior_auc(
            [e.relation for e in examples], y, groups, folds, seed
        ),
        layer0_exact_auc=float(np.nanmax(l0)) if not np.all(np.isnan(l0)) else float("nan"),
        layer0_last_q_auc=float(sweep.auc[0, sweep.positions.index("last_q")])
        if has_last_q
        else float("nan"),
    )


def finding(sweep: SweepResult, ctrl: Controls) -> Finding:
    """Check whether the best exact-answer cell beats last_q and both controls."""
    exact = [(p, *sweep.best(p)) for p in sweep.positions if p in EXACT]
    nan = float("nan")
    pos, layer, auc = (
        max(exact, key=lambda t: -1 if np.isnan(t[2]) else t[2]) if exact else ("", -1, nan)
    )
    last_q = sweep.best("last_q")[1] if "last_q" in sweep.positions else nan
    return Finding(
        best_exact_position=pos,
        best_exact_layer=layer,
        best_exact_auc=auc,
        exact_beats_last_q=bool(auc > last_q),
        exact_beats_layer0=bool(auc > ctrl.layer0_exact_auc),
        exact_beats_relation_prior=bool(auc > ctrl.relation_prior_auc),
    )


def best_cells(sweep: SweepResult, ctrl: Controls) -> dict[str, BestCell]:
    """Position -> best layer, its mean AUC, fold std, 95 % interval, and whether it is informative.

    A cell is informative when its interval's lower end clears both controls: the relation-only
    AUC and the embedding layer (token identity) at the same position.
    """
    out: dict[str, BestCell] = {}
    for j, p in enumerate(sweep.positions):
        layer, auc = sweep.best(p)
        if layer < 0:
            out[p] = BestCell(layer, None, None, None, False)
            continue
        lo, hi = sweep.interval(layer, p)
        layer0 = float(sweep.auc[0, j]) if sweep.layers[0] == 0 else float("nan")
        bar = max(ctrl.relation_prior_auc, layer0 if not np.isnan(layer0) else 0.5)
        std = float(sweep.auc_std[sweep.layers.index(layer), j])
        out[p] = BestCell(layer, auc, std, (lo, hi), bool(lo > bar))
    return out


def heatmap(sweep: SweepResult, site: str) -> Heatmap:
    """The sweep as ``metrics.json`` keeps it (AUC to 4 places, None where a cell had no data)."""
    return Heatmap(
        site,
        sweep.layers,
        sweep.positions,
        sweep.folds,
        _nan_to_none(sweep.auc),
        _nan_to_none(sweep.auc_std),
        sweep.n,
    )


def _nan_to_none(a: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in a]


def same_question(examples: list[Example]) -> Example | None:
    """A question the model got wrong with a located answer of its own, unlike the gold.

    Its gold answer and the model's own wrong answer, given to the same question, make a pair
    that differs in the answer alone. Prefers ``capital_of_country``; first in store order.
    """
    pool = [
        e
        for e in examples
        if not e.correct
        and e.ambiguous is None
        and e.exact_span is not None
        and e.exact_text
        and e.exact_text.strip().lower() != e.gold.strip().lower()
    ]
    pool.sort(key=lambda e: e.relation != "capital_of_country")  # stable: store order within
    return pool[0] if pool else None


def pick_pair(examples: list[Example]) -> list[Example]:
    """A hallucinated and a correct response to questions of one relation (first in store order).

    Prefers ``capital_of_country``; only responses whose exact answer was located qualify.
    """
    rels = sorted({e.relation for e in examples}, key=lambda r: (r != "capital_of_country", r))
    for rel in rels:
        pool = [e for e in examples if e.relation == rel and e.exact_span]
        wrong = next((e for e in pool if not e.correct), None)
        right = next((e for e in pool if e.correct), None)
        if wrong and right:
            return [wrong, right]
    return []
