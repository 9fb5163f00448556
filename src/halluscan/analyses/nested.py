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
from collections.abc import Iterator, Mapping, Sequence
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
INNER_TOL = 2e-2  # the inner fits only rank cells: a looser stop than the sweep's 1e-4


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


class Positions(Mapping[str, torch.Tensor]):
    """Position -> ``[example, layer, d]`` of some positions of features, read when asked for.

    So a nested selection holds one position's activations at a time, as the sweep does.
    """

    def __init__(self, features: Features, positions: Sequence[str]) -> None:
        self.features, self.positions = features, list(positions)

    def __getitem__(self, position: str) -> torch.Tensor:
        if position not in self.positions:
            raise KeyError(position)
        return self.features.at(position)

    def __iter__(self) -> Iterator[str]:
        return iter(self.positions)

    def __len__(self) -> int:
        return len(self.positions)


def choose(
    x_by_pos: Mapping[str, torch.Tensor],
    valid: dict[str, np.ndarray],
    layers: Sequence[int],
    y: np.ndarray,
    groups: np.ndarray,
    trains: Sequence[np.ndarray],
    cv: CV,
    device: str,
) -> list[Cell | None]:
    """For each set of training rows in ``trains``, the best cell by inner cross-validation on it.

    Each training set is split into inner folds by question. One position at a time, every
    training set's inner folds are fitted in one batched problem on the rows that have the
    position (as the sweep does), so the activations are read once per position. None for a
    training set whose inner folds could score no cell.
    """
    inner = [
        [(tr[a], tr[b]) for a, b in folds_for(y[tr], list(groups[tr]), INNER_FOLDS, cv.seed)]
        if fits(np.ones(len(tr), bool), y[tr], INNER_FOLDS)
        else []
        for tr in trains
    ]
    scores = np.full((len(trains), len(x_by_pos), len(layers)), np.nan)
    for j, (p, x) in enumerate(x_by_pos.items()):
        scores[:, j] = inner_scores(x, valid[p], y, inner, cv.c, device, len(layers))
    out: list[Cell | None] = []
    for per in scores.reshape(len(trains), -1):
        if np.all(np.isnan(per)):
            out.append(None)
            continue
        best = int(np.nanargmax(per))
        out.append(Cell(list(x_by_pos)[best // len(layers)], int(layers[best % len(layers)])))
    return out


def inner_scores(
    x: torch.Tensor,
    valid: np.ndarray,
    y: np.ndarray,
    inner: Sequence[Sequence[Split]],
    c: float,
    device: str,
    n_layers: int,
) -> np.ndarray:
    """``[training set, layer]`` mean inner-fold AUC at one position (NaN: no usable fold)."""
    rows = np.flatnonzero(valid)
    local = np.full(len(y), -1)
    local[rows] = np.arange(len(rows))
    splits, owner = [], []
    for k, folds in enumerate(inner):
        for tr, te in folds:
            a, b = local[tr], local[te]
            a, b = a[a >= 0], b[b >= 0]
            if len(a) >= 2 and len(b) > 0:
                splits.append((a, b))
                owner.append(k)
    out = np.full((len(inner), n_layers), np.nan)
    if not splits:
        return out
    auc = cv_auc(x[torch.from_numpy(rows)].to(device), y[rows], splits, c, tol=INNER_TOL)
    for k in set(owner):
        mine = auc[[i for i, o in enumerate(owner) if o == k]]
        if not np.all(np.isnan(mine)):
            out[k] = np.nanmean(mine, axis=0)
    return out


def pick(
    x_by_pos: Mapping[str, torch.Tensor],
    valid: dict[str, np.ndarray],
    layers: Sequence[int],
    y: np.ndarray,
    groups: np.ndarray,
    train: np.ndarray,
    cv: CV,
    device: str,
) -> Cell | None:
    """The best cell by inner cross-validation on the rows ``train`` alone (None: too few rows)."""
    return choose(x_by_pos, valid, layers, y, groups, [train], cv, device)[0]


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
    x_by_pos = Positions(features, held)  # read from the source one position at a time
    if not x_by_pos:
        return None
    valid = {p: features.has(p) for p in x_by_pos}
    layers = list(features.layers)
    picks, aucs, splits = [], [], []
    outer = folds_for(y, list(g), cv.folds, cv.seed)
    chosen = choose(x_by_pos, valid, layers, y, g, [tr for tr, _ in outer], cv, device)
    for (tr, te), cell in zip(outer, chosen, strict=True):
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
