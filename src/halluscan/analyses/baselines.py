"""The cheap signals a probe must beat, scored on the probe's own cross-validation folds.

Each baseline is a score per example, higher meaning "more likely wrong":

- **log-probability** (from the generation pass, no second forward): the mean, min and max
  log-probability of the greedy tokens, and their mean entropy, over the whole response and over
  the located exact-answer tokens (8 scores; LLMsKnow's ``logprob_detection.py`` reads the same
  quantities). A low probability or a high entropy means "likely wrong", so the score is minus
  the log-probability, and the entropy itself;
- **p(True)** (:mod:`halluscan.engine.ptrue`): one minus the probability the model gives to
  "the proposed answer is true", for each order of the options and their mean;
- **sampling consistency**: one minus the share of K answers sampled at temperature 1 whose
  exact answer agrees with the greedy one.

Every baseline's AUC is computed on the test folds of the best probe cell's position (the same
examples, the same question-grouped splits), so the probe's gain over it is a paired difference
per fold, with the same Student-t interval as the cells. The headline is the best cell's gain
over layer 0 at the same position: which answer was given (token identity) already predicts
correctness, and the probe must add to that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from halluscan.analyses.summary import Interval, mean_ci
from halluscan.positions import Cell, token_span
from halluscan.probes.sweep import GAIN_BOUNDS, SweepResult, auc_rows, folds_for
from halluscan.records import Example
from halluscan.text import normalize

SPANS = ("response", "exact_answer")
# baseline name -> a score per example, higher = more likely wrong (NaN: none)
Scores = dict[str, np.ndarray]


@dataclass(frozen=True)
class Headline:
    """The best exact-answer cell and its gain over layer 0 there, paired over folds."""

    position: str
    layer: int
    auc: float
    ci95: Interval | None
    layer0_auc: float
    layer0_ci95: Interval | None
    gain_over_layer0: float | None
    gain_ci95: Interval | None
    clear: bool
    n: int


@dataclass(frozen=True)
class Baseline:
    """One baseline on the probe cell's test folds, and the probe's paired gain over it."""

    auc: float | None
    ci95: Interval | None
    n: int
    gain: float | None
    gain_ci95: Interval | None
    probe_clear: bool


@dataclass(frozen=True)
class Comparison:
    """The headline and every baseline, scored on the same examples and folds as the probe cell."""

    headline: Headline
    baselines: dict[str, Baseline] = field(default_factory=dict)


STATS = ("logprob_mean", "logprob_min", "logprob_max", "entropy_mean")


def _tokens(e: Example, span: str) -> slice | None:
    """The response tokens a baseline reads.

    All, or the exact answer's (None when it was not located).
    """
    if span == "response":
        return slice(0, len(e.token_logprobs))
    if e.exact_span is None or not e.token_starts:
        return None
    hit = token_span(e.exact_span, e.token_starts, len(e.response))
    return slice(hit[0], hit[1] + 1) if hit else None


def logprob_scores(examples: Sequence[Example]) -> Scores:
    """The 8 log-probability baselines per example; higher = more likely wrong (NaN: undefined)."""
    out = {f"{stat}_{span}": np.full(len(examples), np.nan) for span in SPANS for stat in STATS}
    for i, e in enumerate(examples):
        for span in SPANS:
            sl = _tokens(e, span)
            lp, ent = (
                np.asarray(e.token_logprobs[sl] if sl else ()),
                np.asarray(e.token_entropies[sl] if sl else ()),
            )
            if lp.size == 0:
                continue
            out[f"logprob_mean_{span}"][i] = -lp.mean()
            out[f"logprob_min_{span}"][i] = -lp.min()
            out[f"logprob_max_{span}"][i] = -lp.max()
            out[f"entropy_mean_{span}"][i] = ent.mean()
    return out


def consistency_scores(
    examples: Sequence[Example], samples: dict[tuple[str, int], str | None], k: int
) -> np.ndarray:
    """1 - the share of the ``k`` samples whose exact answer agrees with the greedy one.

    ``samples[(qid, i)]`` is sample i's located exact answer (None: none located, which agrees
    with nothing). A greedy answer without a located exact answer is compared by its whole text.
    """
    out = np.full(len(examples), np.nan)
    for j, e in enumerate(examples):
        greedy = normalize(e.exact_text or e.response)
        agree = [samples.get((e.qid, i)) for i in range(k)]
        out[j] = 1.0 - float(np.mean([a is not None and normalize(a) == greedy for a in agree]))
    return out


def fold_aucs(
    score: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """A fixed score's AUC on each test fold (unscored rows left out; NaN: a class is missing)."""
    out = []
    for _, te in splits:
        te = te[np.isfinite(score[te])]
        out.append(auc_rows(score[te][None], y[te])[0] if te.size else np.nan)
    return np.array(out)


def compare(
    sweep: SweepResult,
    examples: Sequence[Example],
    y: np.ndarray,
    scores: Scores,
    cell: Cell,
    seed: int,
) -> Comparison | None:
    """Each baseline against the probe cell ``(position, layer)`` on its folds.

    And that cell's gain over layer 0.


    None when the sweep has no per-fold AUCs at that position.
    """
    position, layer = cell.position, cell.layer
    if sweep.per_fold is None or position not in sweep.positions:
        return None
    j, li = sweep.positions.index(position), sweep.layers.index(layer)
    keep = np.array([e.positions.get(position) is not None for e in examples])
    groups = np.asarray([e.qid for e in examples])[keep]
    splits = folds_for(y[keep], list(groups), sweep.folds, seed)
    probe, layer0 = sweep.per_fold[:, li, j], sweep.per_fold[:, 0, j]
    head_gain, head_ci = mean_ci(probe - layer0, GAIN_BOUNDS)
    headline = Headline(
        position=position,
        layer=layer,
        auc=float(np.nanmean(probe)),
        ci95=mean_ci(probe)[1],
        layer0_auc=float(np.nanmean(layer0)),
        layer0_ci95=mean_ci(layer0)[1],
        gain_over_layer0=head_gain,
        gain_ci95=head_ci,
        clear=bool(head_ci is not None and head_ci[0] > 0),
        n=int(keep.sum()),
    )
    rows = {}
    for name, score in scores.items():
        s = score[keep]
        per_fold = fold_aucs(s, y[keep], splits)
        auc, ci = mean_ci(per_fold)
        gain, gain_ci = mean_ci(probe - per_fold, GAIN_BOUNDS)
        ok = bool(gain_ci is not None and gain_ci[0] > 0)
        rows[name] = Baseline(auc, ci, int(np.isfinite(s).sum()), gain, gain_ci, ok)
    return Comparison(headline, rows)
