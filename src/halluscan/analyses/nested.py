"""The headline cell, chosen without the test data: nested cross-validation over the cells.

The heatmap's best cell is the best of many cells scored on the same folds, so its AUC is
optimistic. Here the outer folds split every example by question; inside each outer training
set, inner folds score every candidate (position, layer) cell and pick the best; only then is
the picked cell fitted on the outer training set and scored on the outer test fold. The mean of
those outer scores is an honest estimate of "the best cell, found by this procedure".

Each outer fold's (training rows, test rows) is kept: every control is scored on exactly those.
Pure maths on :class:`~halluscan.probes.features.Features`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from halluscan.analyses.summary import Interval, mean_ci
from halluscan.positions import Cell
from halluscan.probes.features import Features
from halluscan.probes.sweep import cv_auc, fits, folds_for
from halluscan.records import CV

Split = tuple[np.ndarray, np.ndarray]
INNER_FOLDS = 2
INNER_TOL = 1e-2  # the inner fits only rank cells: a looser stop than the sweep's 1e-4


@dataclass(frozen=True)
class Nested:
    """The nested estimate: per outer fold its pick and AUC, their mean and interval."""

    auc: float | None
    ci95: Interval | None
    n: int  # test rows scored over all outer folds
    n_wrong: int  # of which wrong answers
    per_fold: list[float]
    picks: list[Cell]
    cell: Cell  # the cell picked most often
    n_cells: int  # how many cells each fold chose among
    inner_folds: int


@dataclass(frozen=True)
class NestedRun:
    """The estimate, and each outer fold's (training rows, test rows) for the paired controls."""

    result: Nested
    splits: list[Split]


def pick(
    x_by_pos: dict[str, torch.Tensor],
    valid: dict[str, np.ndarray],
    layers: Sequence[int],
    y: np.ndarray,
    groups: np.ndarray,
    train: np.ndarray,
    cv: CV,
    device: str,
) -> Cell | None:
    """The best cell by inner cross-validation on the rows ``train`` alone (None: too few rows).

    The inner folds use the training rows that have every candidate position, so that all
    cells are fitted in one batched problem on the same rows and compared on the same folds.
    """
    every = np.logical_and.reduce([valid[p] for p in x_by_pos])
    rows = train[every[train]]
    if not fits(np.ones(len(rows), bool), y[rows], INNER_FOLDS):
        return None
    idx = torch.from_numpy(rows)
    x = torch.cat([x_by_pos[p][idx] for p in x_by_pos], dim=1)  # [n, position x layer, d]
    splits = folds_for(y[rows], list(groups[rows]), INNER_FOLDS, cv.seed)
    mean = np.nanmean(cv_auc(x.to(device), y[rows], splits, cv.c, tol=INNER_TOL), axis=0)
    best = int(np.nanargmax(mean))
    return Cell(list(x_by_pos)[best // len(layers)], int(layers[best % len(layers)]))


def score_cell(x: torch.Tensor, li: int, y: np.ndarray, split: Split, cv: CV, device: str) -> float:
    """Test AUC of a probe at layer index ``li`` of ``x`` [n, layer, d], fitted on the split."""
    tr, te = split
    rows = np.concatenate([tr, te])
    local = (np.arange(len(tr)), np.arange(len(tr), len(rows)))
    sub = x[torch.from_numpy(rows)][:, [li]].to(device)
    return float(cv_auc(sub, y[rows], [local], cv.c)[0, 0])


def nested(
    features: Features,
    y: np.ndarray,
    groups: Sequence[str],
    candidates: Sequence[str],
    cv: CV,
    device: str = "cpu",
) -> NestedRun | None:
    """Nested cross-validation over the cells at ``candidates`` (positions) x every layer.

    None when no outer fold can fill its inner folds at any candidate.
    """
    g = np.asarray(groups)
    # positions with too few answers of a class for the folds are no candidates
    held = [p for p in candidates if p in features.positions and fits(features.has(p), y, cv.folds)]
    x_by_pos = {p: features.at(p) for p in held}
    if not x_by_pos:
        return None
    valid = {p: features.has(p) for p in x_by_pos}
    layers = list(features.layers)
    picks, aucs, splits = [], [], []
    for tr, te in folds_for(y, list(g), cv.folds, cv.seed):
        cell = pick(x_by_pos, valid, layers, y, g, tr, cv, device)
        if cell is None:
            return None
        keep = valid[cell.position]
        split = (tr[keep[tr]], te[keep[te]])
        aucs.append(
            score_cell(x_by_pos[cell.position], layers.index(cell.layer), y, split, cv, device)
        )
        picks.append(cell)
        splits.append(split)
    auc, ci = mean_ci(np.array(aucs))
    n_test = int(sum(len(te) for _, te in splits))
    n_wrong = int(sum(y[te].sum() for _, te in splits))
    n_cells = len(x_by_pos) * len(layers)
    common = Counter(picks).most_common(1)[0][0]
    result = Nested(auc, ci, n_test, n_wrong, aucs, picks, common, n_cells, INNER_FOLDS)
    return NestedRun(result, splits)
