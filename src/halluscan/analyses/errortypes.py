"""Types of error (the paper's section 5).

How a question's sampled answers spread, and whether the probe sees it.


With K sampled answers per question (``--samples K``), each question gets counts: the samples
graded correct, and the wrong ones grouped into clusters of the same exact answer (one answer
inside the other after normalisation joins a cluster; a sample with no located answer joins the
"no answer" cluster). The types follow the thresholds of LLMsKnow's ``get_types_of_mistakes``
(half, a third and a sixth of K); they may overlap:

- ``consistently_correct``: every sample right; ``right_is_largest``: most right, some wrong;
- ``consistently_wrong``: the largest wrong answer holds half the samples and none is right;
  ``wrong_is_largest``: the same while the right answer does appear;
- ``many_different_answers`` (with or without the right one among them);
- ``closely_competing``: the right answer and the largest wrong one within a sixth of K;
- ``no_answer``: "no answer" is the largest cluster and larger than the right one.

For each type with enough questions, a probe at the study's best cell is cross-validated to
tell that type from the rest (question-grouped folds, the mean AUC with its t-interval).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from halluscan.analyses.summary import Interval
from halluscan.positions import Cell
from halluscan.probes.features import Features
from halluscan.probes.sweep import cv_auc, fold_interval, folds_for
from halluscan.records import Example, Grade
from halluscan.text import normalize

NO_ANSWER = ""  # the cluster of samples with no located exact answer


@dataclass(frozen=True)
class Spread:
    """One question's K samples.

    How many are right, and the sizes of the clusters of its wrong answers.
    """

    correct: int
    clusters: dict[str, int]


@dataclass(frozen=True)
class TypeProbe:
    """One type of error.

    How many questions have it, and a probe's AUC telling them from the rest.
    """

    count: int
    auc: float | None
    ci95: Interval | None


@dataclass(frozen=True)
class ErrorTypes:
    """The types of error of a study's ``samples`` answers per question, each with its probe."""

    samples: int
    types: dict[str, TypeProbe]


def spread(correct: Sequence[bool], answers: Sequence[str | None]) -> Spread:
    """One question's K samples: how many are right, and the clusters of its wrong exact answers."""
    clusters: dict[str, int] = {}
    for ok, ans in zip(correct, answers, strict=True):
        if ok:
            continue
        key = normalize(ans) if ans else NO_ANSWER
        home = next(
            (
                c
                for c in clusters
                if key and c and (f" {key} " in f" {c} " or f" {c} " in f" {key} ")
            ),
            key,
        )
        clusters[home] = clusters.get(home, 0) + 1
    return Spread(sum(correct), clusters)


def types_of(s: Spread, k: int) -> dict[str, bool]:
    """The error types of one question's spread (``spread``) of ``k`` samples."""
    half, third, sixth = k // 2, k // 3, k // 6
    right, clusters = s.correct, s.clusters
    largest = max(clusters.values(), default=0)
    n_wrong = len(clusters)
    no_answer = clusters.get(NO_ANSWER, 0) == largest > right and NO_ANSWER in clusters
    return {
        "consistently_correct": right == k,
        "right_is_largest": right >= half and n_wrong > 0,
        "consistently_wrong": largest >= half and not no_answer and right == 0,
        "wrong_is_largest": largest >= half and not no_answer and right > 0,
        "many_different_answers_right_appears": n_wrong >= third - 1 and right > 0,
        "many_different_answers": n_wrong >= third and right == 0,
        "closely_competing": abs(right - largest) <= sixth and right > sixth and largest > sixth,
        "no_answer": no_answer,
    }


def question_types(
    examples: Sequence[Example], sampled: dict[tuple[str, int], Grade], k: int
) -> dict[str, np.ndarray]:
    """Per type, which questions (in ``examples``' order) have it, from ``k`` graded samples."""
    per_q = [
        types_of(
            spread(
                [sampled[(e.qid, i)].correct for i in range(k)],
                [sampled[(e.qid, i)].exact_text for i in range(k)],
            ),
            k,
        )
        for e in examples
    ]
    return {name: np.array([t[name] for t in per_q]) for name in per_q[0]} if per_q else {}


def probe_types(
    features: Features,
    examples: Sequence[Example],
    types: dict[str, np.ndarray],
    cell: Cell,
    folds: int,
    seed: int,
    c: float,
) -> dict[str, TypeProbe]:
    """Per type.

    Its count, and a probe's CV AUC (with interval) telling it from the rest at ``cell``.
    """
    position, layer = cell.position, cell.layer
    keep = features.has(position)
    x = features.cell(position, layer)[:, None]
    groups = [e.qid for e, k in zip(examples, keep, strict=True) if k]
    out: dict[str, TypeProbe] = {}
    for name, member in types.items():
        y = member[keep].astype(np.int64)
        auc, ci = None, None
        if min(y.sum(), len(y) - y.sum()) >= folds:
            per_fold = cv_auc(x, y, folds_for(y, groups, folds, seed), c)[:, 0]
            lo, hi = fold_interval(per_fold[:, None])
            auc, ci = float(per_fold.mean()), (float(lo[0]), float(hi[0]))
        out[name] = TypeProbe(int(member.sum()), auc, ci)
    return out
