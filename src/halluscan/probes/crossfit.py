"""Each bank on each kind of answer, held out: cross-fitted AUCs over one question-level split.

The two banks are trained on different data (the model's own answers; given true and false
answers) and scored on either. To keep every score held out, the questions are split into
folds once, and for each fold a probe is fitted on one kind of answer to the *other* folds'
questions and scored on the other kind of answer to this fold's questions. The mean AUC over
folds has the same Student-t interval as the sweep's cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from halluscan.probes.bank import ProbeBank
from halluscan.probes.sweep import auc_rows, fold_interval, folds_for


@dataclass(frozen=True)
class Answers:
    """Answers read at one cell.

    Activations ``x`` [n, d], labels ``y`` (1 = wrong or false), question ids.
    """

    x: torch.Tensor
    y: np.ndarray
    groups: Sequence[str]


@dataclass(frozen=True)
class CrossFit:
    """A cross-fitted AUC.

    Mean over folds, its 95 % interval, test rows scored, and each fold's AUC.
    """

    auc: float | None
    ci95: tuple[float, float] | None
    n: int
    per_fold: list[float] = field(default_factory=list)


def question_folds(y: np.ndarray, groups: Sequence[str], k: int, seed: int) -> dict[str, int]:
    """The fold of each question id: the sweep's own split of ``y`` grouped by ``groups``."""
    g = np.asarray(groups)
    return {str(q): f for f, (_, te) in enumerate(folds_for(y, groups, k, seed)) for q in g[te]}


def cross_auc(
    train: Answers,
    test: Answers,
    folds: dict[str, int],
    c: float,
    device: str | torch.device = "cpu",
) -> CrossFit:
    """AUC of probes fitted on ``train``, scored on ``test``, fold by fold.

    ``folds`` maps a question id to its fold. Rows whose question has no fold are left out.
    """
    f_tr = np.array([folds.get(str(q), -1) for q in train.groups])
    f_te = np.array([folds.get(str(q), -1) for q in test.groups])
    per_fold = []
    for f in sorted(set(folds.values())):
        fit, score = (f_tr != f) & (f_tr >= 0), f_te == f
        if len(set(train.y[fit].tolist())) < 2 or len(set(test.y[score].tolist())) < 2:
            continue
        x_fit = train.x[torch.from_numpy(fit)][:, None]
        bank = ProbeBank.fit(x_fit, train.y[fit], [0], "", c=c, device=device)
        z = bank.decision_function(test.x[torch.from_numpy(score)][:, None])[:, 0].numpy()
        per_fold.append(float(auc_rows(z[None], test.y[score])[0]))
    n = int((f_te >= 0).sum())
    if len(per_fold) < 2:
        return CrossFit(None, None, n, per_fold)
    lo, hi = fold_interval(np.array(per_fold)[:, None])
    return CrossFit(float(np.mean(per_fold)), (float(lo[0]), float(hi[0])), n, per_fold)
