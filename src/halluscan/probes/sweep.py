"""The probe sweep: cross-validated AUC of a linear probe for every (layer, position) cell.

Every probe is an L2-regularised logistic regression on standardised features fitted by
:func:`halluscan.probes.logreg.fit_logreg` (sklearn's objective, so the solutions match
``LogisticRegression(C=C)``); all layers and folds of a position are one batched fit.
Cross-validation folds are stratified by label and grouped by question.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.model_selection import StratifiedGroupKFold

from halluscan.errors import HalluscanError
from halluscan.probes.features import Features
from halluscan.probes.logreg import fit_logreg
from halluscan.records import DEFAULT_C, Example


def wrong_labels(examples: Sequence[Example]) -> np.ndarray:
    """The probe target: 1 = the answer was graded wrong, 0 = right."""
    return np.array([0 if e.correct else 1 for e in examples], dtype=np.int64)


def auc_rows(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of ``scores`` [cell, n] against labels ``y`` [n] (ties averaged)."""
    pos = y.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[0], np.nan)
    ranks = rankdata(scores, axis=1)
    return (ranks[:, pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_auc(
    scores: np.ndarray, y: np.ndarray, groups: Sequence[str], n_boot: int = 2000, seed: int = 0
) -> tuple[float, list[float] | None]:
    """AUC of ``scores`` for ``y`` and its 95 % interval, resampling whole groups (questions).

    The interval is None when a class is missing.
    """
    auc = float(auc_rows(scores[None], y)[0])
    if np.isnan(auc):
        return auc, None
    draws = []
    for rows in group_resamples(groups, n_boot, seed):
        a = auc_rows(scores[rows][None], y[rows])[0]
        if not np.isnan(a):
            draws.append(a)
    return auc, [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def group_resamples(groups: Sequence[str], n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """``n_boot`` bootstrap draws of row indices that resample whole groups with replacement."""
    g = np.unique(np.asarray(groups), return_inverse=True)[1]
    members = [np.flatnonzero(g == k) for k in range(g.max() + 1)]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])


def folds_for(
    y: np.ndarray, groups: Sequence[str], k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, question-grouped k-fold splits; a clear error when a class is too small."""
    n_min = int(min(y.sum(), len(y) - y.sum()))
    if n_min < k:
        raise HalluscanError(
            f"only {n_min} examples in the smaller class, fewer than {k} folds; use more questions "
            "or fewer --folds"
        )
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), y, groups))


def cv_auc(
    x: torch.Tensor,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    c: float,
    max_iter: int = 500,
    tol: float = 1e-4,
) -> np.ndarray:
    """Per-fold test AUC of a probe per cell: ``x`` [n, cell, d] -> [fold, cell].

    All folds of all cells are one :func:`fit_logreg` problem that reads ``x`` twice per step.
    """
    xc = x.transpose(0, 1).to(torch.float32)  # [cell, n, d], on x's device
    xc = xc - xc.mean(dim=1, keepdim=True)  # exact (each fold re-centres), and kinder to float32
    train = torch.zeros(xc.shape[1], len(splits), device=xc.device)
    for f, (tr, _) in enumerate(splits):
        train[torch.as_tensor(tr, device=xc.device), f] = 1.0
    # [cell, fold, n]
    z = fit_logreg(xc, y, c, train, max_iter=max_iter, tol=tol).logits.cpu().numpy()
    return np.stack([auc_rows(z[:, f, te], y[te]) for f, (_, te) in enumerate(splits)])


@dataclass
class SweepResult:
    """AUC per (layer, position): mean and std over folds, and examples per position."""

    layers: list[int]
    positions: list[str]
    auc: np.ndarray  # [layer, position] mean over folds (NaN where a position had no data)
    auc_std: np.ndarray  # [layer, position] sample std (ddof 1) of the fold AUCs
    n: list[int]  # examples per position
    folds: int
    auc_lo: np.ndarray | None = None  # [layer, position] 95 % interval of the mean over folds (t)
    auc_hi: np.ndarray | None = None
    # [fold, layer, position] each test fold's AUC (paired comparisons)
    per_fold: np.ndarray | None = None

    def interval(self, layer: int, pos: str) -> tuple[float, float]:
        """95 % interval of a cell's mean AUC over folds (Student t on the fold AUCs)."""
        i, j = self.layers.index(layer), self.positions.index(pos)
        if self.auc_lo is None or self.auc_hi is None:
            return float("nan"), float("nan")
        return float(self.auc_lo[i, j]), float(self.auc_hi[i, j])

    def best(self, pos: str) -> tuple[int, float]:
        """(layer, mean AUC) of the best layer at ``pos``."""
        j = self.positions.index(pos)
        col = self.auc[:, j]
        if np.all(np.isnan(col)):
            return -1, float("nan")
        i = int(np.nanargmax(col))
        return self.layers[i], float(col[i])


def sweep(
    features: Features,
    y: np.ndarray,
    groups: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
    c: float = DEFAULT_C,
    progress: Callable[[int], None] | None = None,
    device: str | torch.device = "cpu",
) -> SweepResult:
    """Cross-validated probe AUC for every (layer, position) cell of ``features``.

    The probes are fitted on ``device``; one position's activations are there at a time.
    """
    g = np.asarray(groups)
    per_pos: dict[int, np.ndarray] = {}
    for j, pos in enumerate(features.positions):
        keep = features.valid[:, j]
        if fits(keep, y, folds):
            x = features.at(pos)[torch.from_numpy(keep)].to(device)
            per_pos[j] = position_folds(x, y[keep], g[keep], folds, seed, c)
        if progress is not None:
            progress(1)
    return assemble(list(features.layers), list(features.positions), features.valid, folds, per_pos)


def fits(keep: np.ndarray, y: np.ndarray, folds: int) -> bool:
    """Whether a position with examples ``keep`` has enough of each class for ``folds`` folds."""
    yk = y[keep]
    return int(keep.sum()) >= 2 * folds and min(int(yk.sum()), len(yk) - int(yk.sum())) >= folds


def position_folds(
    x: torch.Tensor, y: np.ndarray, groups: np.ndarray, folds: int, seed: int, c: float
) -> np.ndarray:
    """``[fold, layer]`` test AUCs of one position's probes (``x``: [example, layer, hidden])."""
    return cv_auc(x, y, folds_for(y, list(groups), folds, seed), c)


def assemble(
    layers: list[int],
    positions: list[str],
    valid: np.ndarray,
    folds: int,
    per_pos: dict[int, np.ndarray],
) -> SweepResult:
    """The sweep's result from each fitted position's ``[fold, layer]`` AUCs (the rest stay NaN)."""
    auc = np.full((len(layers), len(positions)), np.nan)
    sd, lo, hi = np.full_like(auc, np.nan), np.full_like(auc, np.nan), np.full_like(auc, np.nan)
    every = np.full((folds, *auc.shape), np.nan)
    for j, per_fold in per_pos.items():
        auc[:, j], sd[:, j], every[:, :, j] = per_fold.mean(0), per_fold.std(0, ddof=1), per_fold
        lo[:, j], hi[:, j] = fold_interval(per_fold)
    ns = [int(valid[:, j].sum()) for j in range(len(positions))]
    return SweepResult(layers, positions, auc, sd, ns, folds, lo, hi, every)


AUC_BOUNDS = (0.0, 1.0)  # an AUC's interval stays inside them
GAIN_BOUNDS = (-1.0, 1.0)  # and a difference of two AUCs inside these


def fold_interval(
    per_fold: np.ndarray, level: float = 0.95, bounds: tuple[float, float] = AUC_BOUNDS
) -> tuple[np.ndarray, np.ndarray]:
    """Interval of the mean over folds (rows), Student t with k - 1 degrees of freedom.

    Clipped to ``bounds``: an AUC's interval never passes 1 (or 0), however few the folds.
    """
    from scipy.stats import t

    k = per_fold.shape[0]
    half = t.ppf(0.5 + level / 2, k - 1) * per_fold.std(0, ddof=1) / np.sqrt(k)
    m = per_fold.mean(0)
    return np.clip(m - half, *bounds), np.clip(m + half, *bounds)


def metadata_prior_auc(
    categories: Sequence[str], y: np.ndarray, groups: Sequence[str], folds: int, seed: int
) -> float:
    """AUC of predicting ``y`` from a category alone (train-fold rate of the category)."""
    cats = np.asarray(categories)
    aucs = []
    for tr, te in folds_for(y, groups, folds, seed):
        rate = {cat: y[tr][cats[tr] == cat].mean() for cat in np.unique(cats[tr])}
        prior = y[tr].mean()
        scores = np.array([rate.get(cat, prior) for cat in cats[te]])
        aucs.append(auc_rows(scores[None], y[te])[0])
    return float(np.mean(aucs))
