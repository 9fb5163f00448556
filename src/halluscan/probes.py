"""Linear probes: a batched sweep over (layer, position) cells, and an sklearn-style probe.

Every probe here is an L2-regularised logistic regression on standardised features fitted by
:func:`halluscan.logreg.fit_logreg` (sklearn's objective, so the solutions match
``LogisticRegression(C=C)``). Cross-validation folds are stratified by label and grouped by
question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedGroupKFold

from halluscan.errors import HalluscanError
from halluscan.logreg import fit_logreg


def wrong_labels(examples: Sequence[dict[str, Any]]) -> np.ndarray:
    """The probe target of stored example records: 1 = the answer was graded wrong, 0 = right."""
    return np.array([0 if e["correct"] else 1 for e in examples], dtype=np.int64)


def auc_rows(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of ``scores`` [cell, n] against labels ``y`` [n] (ties averaged)."""
    pos = y.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[0], np.nan)
    ranks = rankdata(scores, axis=1)
    return (ranks[:, pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def folds_for(y: np.ndarray, groups: Sequence[str], k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, question-grouped k-fold splits; a clear error when a class is too small."""
    n_min = int(min(y.sum(), len(y) - y.sum()))
    if n_min < k:
        raise HalluscanError(
            f"only {n_min} examples in the smaller class, fewer than {k} folds; use more questions or fewer --folds"
        )
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), y, groups))


def cv_auc(x: torch.Tensor, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], c: float,
           max_iter: int = 500, tol: float = 1e-4) -> np.ndarray:  # fmt: skip
    """Per-fold test AUC of a probe per cell: ``x`` [n, cell, d] -> [fold, cell].

    All folds of all cells are one :func:`fit_logreg` problem that reads ``x`` twice per step.
    """
    xc = x.transpose(0, 1).to(torch.float32)  # [cell, n, d]
    xc = xc - xc.mean(dim=1, keepdim=True)  # exact (each fold re-centres), and kinder to float32
    train = torch.zeros(xc.shape[1], len(splits))
    for f, (tr, _) in enumerate(splits):
        train[tr, f] = 1.0
    z = fit_logreg(xc, y, c, train, max_iter=max_iter, tol=tol).logits.numpy()  # [cell, fold, n]
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
    get_position: Callable[[str], torch.Tensor],
    valid: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    layers: list[int],
    positions: list[str],
    *,
    folds: int = 5,
    seed: int = 0,
    c: float = 1.0,
    progress: Callable[[int], None] | None = None,
) -> SweepResult:
    """Cross-validated probe AUC for every (layer, position) cell.

    ``get_position(pos)`` returns ``[example, layer, hidden]``; ``valid`` is [example, position].
    """
    auc = np.full((len(layers), len(positions)), np.nan)
    sd, lo, hi = np.full_like(auc, np.nan), np.full_like(auc, np.nan), np.full_like(auc, np.nan)
    ns = []
    g = np.asarray(groups)
    for j, pos in enumerate(positions):
        keep = valid[:, j]
        ns.append(int(keep.sum()))
        yk = y[keep]
        if ns[-1] >= 2 * folds and min(yk.sum(), len(yk) - yk.sum()) >= folds:
            x = get_position(pos)[torch.from_numpy(keep)]
            per_fold = cv_auc(x, yk, folds_for(yk, g[keep], folds, seed), c)
            auc[:, j], sd[:, j] = per_fold.mean(0), per_fold.std(0, ddof=1)
            lo[:, j], hi[:, j] = fold_interval(per_fold)
        if progress is not None:
            progress(1)
    return SweepResult(layers, positions, auc, sd, ns, folds, lo, hi)


def fold_interval(per_fold: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Interval of the mean over folds (rows), Student t with k - 1 degrees of freedom."""
    from scipy.stats import t

    k = per_fold.shape[0]
    half = t.ppf(0.5 + level / 2, k - 1) * per_fold.std(0, ddof=1) / np.sqrt(k)
    m = per_fold.mean(0)
    return m - half, m + half


def metadata_prior_auc(categories: Sequence[str], y: np.ndarray, groups: Sequence[str], folds: int, seed: int) -> float:
    """AUC of predicting ``y`` from a category alone (train-fold rate of the category)."""
    cats = np.asarray(categories)
    aucs = []
    for tr, te in folds_for(y, groups, folds, seed):
        rate = {cat: y[tr][cats[tr] == cat].mean() for cat in np.unique(cats[tr])}
        prior = y[tr].mean()
        scores = np.array([rate.get(cat, prior) for cat in cats[te]])
        aucs.append(auc_rows(scores[None], y[te])[0])
    return float(np.mean(aucs))


class LinearProbe(ClassifierMixin, BaseEstimator):
    """An L2 logistic-regression probe on standardised features (sklearn estimator contract)."""

    def __init__(self, C: float = 1.0, max_iter: int = 500):  # noqa: N803 (sklearn's name)
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:  # noqa: N803
        """Standardise ``X`` and fit the probe."""
        from sklearn.utils.multiclass import type_of_target, unique_labels
        from sklearn.utils.validation import check_X_y

        X, y = check_X_y(X, y)
        self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            raise ValueError(f"LinearProbe needs two classes in y; got {len(self.classes_)} class")
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {y_type}.")
        x = torch.from_numpy(np.array(X, dtype=np.float64, copy=True))
        yy = torch.from_numpy((y == self.classes_[1]).astype(np.float64))
        fit = fit_logreg(x[None], yy, self.C, max_iter=self.max_iter)
        self.mean_, self.scale_ = fit.mean[0, 0].numpy(), fit.scale[0, 0].numpy()
        w, b = fit.raw()
        self.coef_ = w[0].numpy()
        self.intercept_ = b[0].numpy()
        self.n_iter_ = np.array([fit.n_iter])
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Log-odds of the second class."""
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return np.asarray(X, dtype=np.float64) @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Class probabilities, columns ordered as ``classes_``."""
        p = 1 / (1 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """The more likely class."""
        z = self.decision_function(X)
        return self.classes_[(z > 0).astype(int)]

    def __sklearn_tags__(self) -> Any:
        """A binary classifier (a probe predicts *wrong* vs *right*)."""
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


@dataclass
class ProbeBank:
    """One probe per layer at one position (with its scaler): what per-response scoring uses.

    Saved as ``probes.safetensors`` (coef, intercept, mean, scale; one row per layer) plus
    ``probes.json`` (layers, position, site, C, training size, provenance).
    """

    layers: list[int]
    position: str
    coef: torch.Tensor  # [layer, d] on standardised features
    intercept: torch.Tensor  # [layer]
    mean: torch.Tensor  # [layer, d]
    scale: torch.Tensor  # [layer, d]
    meta: dict[str, Any] = field(default_factory=dict)
    score_mean: torch.Tensor | None = None  # [layer] mean log-odds on the training set
    score_std: torch.Tensor | None = None  # [layer] their std (to standardise activity maps)

    @classmethod
    def fit(cls, x: torch.Tensor, y: np.ndarray, layers: list[int], position: str, c: float = 0.05,
            meta: dict[str, Any] | None = None) -> ProbeBank:  # fmt: skip
        """Fit on ``x`` [example, layer, d] (all examples: the bank is for new responses)."""
        xc = x.transpose(0, 1).to(torch.float32)  # [layer, n, d]
        centre = xc.mean(1, keepdim=True)
        fit = fit_logreg(xc - centre, y, c)
        info = {"c": c, "n_train": int(len(y)), "n_wrong": int(y.sum()), "hidden": int(x.shape[-1]), **(meta or {})}
        mean = centre[:, 0] + fit.mean[:, 0]
        z = fit.logits[:, 0]  # [layer, n] training-set log-odds
        return cls(list(layers), position, fit.coef[:, 0], fit.intercept[:, 0], mean, fit.scale[:, 0], info,
                   z.mean(1), z.std(1).clamp(min=1e-6))  # fmt: skip

    @classmethod
    def from_store(cls, store: Any, keep: np.ndarray, position: str, c: float, site: str = "residual",
                   meta: dict[str, Any] | None = None) -> ProbeBank:  # fmt: skip
        """Fit on the examples of an activation store selected by ``keep`` (bool per example)."""
        y = wrong_labels(store.examples())[keep]
        x = store.position(position, site)[torch.from_numpy(keep)]
        return cls.fit(x, y, store.layers(site), position, c=c, meta=meta)

    def decision_function(self, x: torch.Tensor) -> torch.Tensor:
        """Log-odds of *wrong* per layer: ``x`` [..., layer, d] -> [..., layer]."""
        z = (x.to(torch.float32) - self.mean) / self.scale
        return (z * self.coef).sum(-1) + self.intercept

    def save(self, folder: str | Path) -> Path:
        """Write ``probes.safetensors`` and ``probes.json`` into ``folder``."""
        from safetensors.torch import save_file

        from halluscan.store import atomic_write_json

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"coef": self.coef, "intercept": self.intercept, "mean": self.mean, "scale": self.scale}
        if self.score_mean is not None and self.score_std is not None:
            tensors |= {"score_mean": self.score_mean, "score_std": self.score_std}
        tmp = out / "probes.safetensors.tmp"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        tmp.replace(out / "probes.safetensors")
        atomic_write_json(out / "probes.json", {"layers": self.layers, "position": self.position, **self.meta})
        return out

    @classmethod
    def load(cls, folder: str | Path) -> ProbeBank:
        """Read a bank written by :meth:`save`."""
        import json

        from safetensors.torch import load_file

        p = Path(folder)
        if not (p / "probes.json").is_file() or not (p / "probes.safetensors").is_file():
            raise HalluscanError(
                f"{p}: no probe bank here (probes.json, probes.safetensors); run `halluscan run` first"
            )
        meta = json.loads((p / "probes.json").read_text())
        t = load_file(str(p / "probes.safetensors"))
        layers, position = meta.pop("layers"), meta.pop("position")
        return cls(layers, position, t["coef"], t["intercept"], t["mean"], t["scale"], meta,
                   t.get("score_mean"), t.get("score_std"))  # fmt: skip
