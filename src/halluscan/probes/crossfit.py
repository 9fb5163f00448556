"""Each bank on each kind of answer, held out: cross-fitted AUCs over one question-level split.

The two banks are trained on different data (the model's own answers; given true and false
answers) and scored on either. To keep every score held out, the questions are split into
folds once, and for each fold a probe is fitted on one kind of answer to the *other* folds'
questions and scored on the other kind of answer to this fold's questions. The mean AUC over
folds has the same Student-t interval as the sweep's cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from halluscan.probes.bank import ProbeBank
from halluscan.probes.sweep import auc_rows, fold_interval, folds_for


def question_folds(y: np.ndarray, groups: Sequence[str], k: int, seed: int) -> dict[str, int]:
    """The fold of each question id: the sweep's own split of ``y`` grouped by ``groups``."""
    g = np.asarray(groups)
    return {str(q): f for f, (_, te) in enumerate(folds_for(y, groups, k, seed)) for q in g[te]}


def cross_auc(
    train: tuple[torch.Tensor, np.ndarray, Sequence[str]],
    test: tuple[torch.Tensor, np.ndarray, Sequence[str]],
    folds: dict[str, int],
    c: float,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """AUC of probes fitted on ``train`` = (x [n, d], y, question ids), scored on ``test``, fold by fold.

    Rows whose question has no fold are left out. Returns ``auc`` (mean over folds), ``ci95``,
    ``n`` (test rows scored) and ``per_fold``.
    """
    (x_tr, y_tr, q_tr), (x_te, y_te, q_te) = train, test
    f_tr = np.array([folds.get(str(q), -1) for q in q_tr])
    f_te = np.array([folds.get(str(q), -1) for q in q_te])
    per_fold = []
    for f in sorted(set(folds.values())):
        fit, score = (f_tr != f) & (f_tr >= 0), f_te == f
        if len(set(y_tr[fit].tolist())) < 2 or len(set(y_te[score].tolist())) < 2:
            continue
        bank = ProbeBank.fit(x_tr[torch.from_numpy(fit)][:, None], y_tr[fit], [0], "", c=c, device=device)
        z = bank.decision_function(x_te[torch.from_numpy(score)][:, None])[:, 0].numpy()
        per_fold.append(float(auc_rows(z[None], y_te[score])[0]))
    if len(per_fold) < 2:
        return {"auc": None, "ci95": None, "n": int((f_te >= 0).sum()), "per_fold": per_fold}
    lo, hi = fold_interval(np.array(per_fold)[:, None])
    return {
        "auc": float(np.mean(per_fold)),
        "ci95": [float(lo[0]), float(hi[0])],
        "n": int((f_te >= 0).sum()),
        "per_fold": per_fold,
    }
