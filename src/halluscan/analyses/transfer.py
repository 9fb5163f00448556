"""Transfer judged at a cell fixed before the test run is seen, against the test run's logits.

A probe that "transfers" to a new dataset must do so at the cell chosen on its training run: the
best of a test heatmap's cells is chosen on the test data and is optimistic. And it counts only
when it beats what the model's own token probabilities already say on the new data (the
published study's framing). So, for a training run A and a test run B:

- fit one probe at A's cell on all of A, score every answer of B that has the position;
- orient each of B's log-probability scores by its sign on A (never on B), and take the one
  with the best AUC on B: the strongest logit baseline (chosen on B, which only favours it);
- the probe's AUC, the baseline's, and the paired gain, each with a 95 % interval from a
  bootstrap over B's questions.

Pure maths on :class:`~halluscan.probes.features.Features` and score arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from halluscan.analyses.summary import Interval
from halluscan.positions import Cell
from halluscan.probes.bank import ProbeBank
from halluscan.probes.features import Features
from halluscan.probes.sweep import AUC_BOUNDS, GAIN_BOUNDS, auc_rows, group_resamples
from halluscan.records import DEFAULT_C

N_BOOT = 2000


@dataclass(frozen=True)
class Paired:
    """Two scores of the same answers: each one's AUC and the difference, with intervals."""

    auc_a: float
    ci_a: Interval | None
    auc_b: float
    ci_b: Interval | None
    gain: float  # auc_a - auc_b
    gain_ci: Interval | None


@dataclass(frozen=True)
class FixedCell:
    """A probe fitted on a training run, scored on a test run at the training run's cell."""

    train: str
    test: str
    cell: Cell
    chosen_by: str  # how the cell was chosen on the training run
    train_auc: float | None  # the cell's cross-validated AUC on the training run
    auc: float | None  # on the test run
    ci95: Interval | None  # bootstrap over the test run's questions
    n: int  # test answers scored (those with the cell's position, new questions only)
    n_wrong: int
    baseline: str | None  # the test run's strongest logit baseline, oriented on the training run
    baseline_orientation: str | None
    baseline_auc: float | None
    baseline_ci95: Interval | None
    gain: float | None  # probe AUC minus the baseline's, paired over the same answers
    gain_ci95: Interval | None
    max_auc: float | None  # the best of the test heatmap's cells: chosen on the test, optimistic
    max_cell: Cell | None
    n_cells: int
    shared_questions: int  # test questions also in the training run (left out of every number)


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    y: np.ndarray,
    groups: Sequence[str],
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Paired:
    """AUCs of scores ``a`` and ``b`` for ``y``, and of their difference, resampling groups."""
    both = np.stack([a, b])
    auc = auc_rows(both, y)
    draws = []
    for rows in group_resamples(groups, n_boot, seed):
        d = auc_rows(both[:, rows], y[rows])
        if not np.isnan(d).any():
            draws.append(d)
    if not draws or np.isnan(auc).any():
        return Paired(float(auc[0]), None, float(auc[1]), None, float(auc[0] - auc[1]), None)
    d = np.array(draws)

    def ci(v: np.ndarray, bounds: tuple[float, float]) -> Interval:
        lo, hi = np.percentile(v, [2.5, 97.5])
        return (float(max(lo, bounds[0])), float(min(hi, bounds[1])))

    return Paired(
        float(auc[0]),
        ci(d[:, 0], AUC_BOUNDS),
        float(auc[1]),
        ci(d[:, 1], AUC_BOUNDS),
        float(auc[0] - auc[1]),
        ci(d[:, 0] - d[:, 1], GAIN_BOUNDS),
    )


def cell_scores(
    train: Features,
    y_train: np.ndarray,
    test: Features,
    cell: Cell,
    c: float = DEFAULT_C,
    device: str = "cpu",
) -> np.ndarray:
    """Log-odds of wrong on every test example of a probe fitted at ``cell`` on all of ``train``.

    NaN where a test example lacks the position.
    """
    a, b = train.has(cell.position), test.has(cell.position)
    x = train.cell(cell.position, cell.layer)[:, None]  # [n, 1, d]
    bank = ProbeBank.fit(x, y_train[a], [cell.layer], cell.position, c=c, device=device)
    out = np.full(len(b), np.nan)
    out[b] = bank.decision_function(test.cell(cell.position, cell.layer)[:, None])[:, 0].numpy()
    return out


def orientation(train_score: np.ndarray, y_train: np.ndarray) -> float:
    """+1 when higher ``train_score`` means wrong on the training answers, else -1."""
    ok = np.isfinite(train_score)
    if not ok.any():
        return 1.0
    return -1.0 if auc_rows(train_score[ok][None], y_train[ok])[0] < 0.5 else 1.0


def strongest_logit(
    train: Mapping[str, np.ndarray],
    y_train: np.ndarray,
    test: Mapping[str, np.ndarray],
    y_test: np.ndarray,
    rows: np.ndarray,
) -> tuple[str, float] | None:
    """The baseline with the best AUC on the test ``rows``, each oriented on the training run.

    Returns its name and sign; None when no baseline scores both classes there.
    """
    best: tuple[float, str, float] | None = None
    for name, score in test.items():
        sign = orientation(train[name], y_train)
        s = sign * score[rows]
        ok = np.isfinite(s)
        if not ok.any():
            continue
        auc = float(auc_rows(s[ok][None], y_test[rows][ok])[0])
        if not np.isnan(auc) and (best is None or auc > best[0]):
            best = (auc, name, sign)
    return None if best is None else (best[1], best[2])
