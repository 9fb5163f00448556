"""The sceptic's stage: the headline cell by nested selection, every control, the locator audit.

It reads the activations the checks need from the store and hands arrays to the maths in
:mod:`halluscan.analyses` (:mod:`~halluscan.analyses.nested`, :mod:`~halluscan.analyses.controls`,
:mod:`~halluscan.analyses.locator`, :mod:`~halluscan.analyses.verdict`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch

from halluscan.analyses import controls as ctl
from halluscan.analyses.baselines import Scores
from halluscan.analyses.locator import LocatorAudit, audit
from halluscan.analyses.nested import Nested, NestedRun, Positions, choose, nested, score_cell
from halluscan.analyses.summary import mean_ci
from halluscan.analyses.verdict import LAST_Q, Headline, headline, warnings
from halluscan.positions import EXACT, Cell
from halluscan.probes.features import Features
from halluscan.probes.sweep import SweepResult
from halluscan.records import CV, Example
from halluscan.store import ActivationStore
from halluscan.study.arrays import store_features
from halluscan.study.context import StudyContext

SAME_POSITION, EVERY_EXACT = (
    "layer 0 at the same position",
    "layer 0 at every exact-answer position",
)


@dataclass(frozen=True)
class Checks:
    """What the checks found: the nested cell, the comparisons, the headline, the locator audit."""

    nested: Nested
    versus: dict[str, ctl.Compared]
    headline: Headline
    audit: LocatorAudit
    warnings: list[str]
    located: Nested | None = None  # the same selection without the answers read at the fallback


def heat_max(sweep: SweepResult) -> tuple[float | None, Cell | None]:
    """The heatmap's best exact-answer cell and its AUC (the optimistic maximum over cells)."""
    best: tuple[float | None, Cell | None] = (None, None)
    for p in sweep.positions:
        layer, auc = sweep.best(p)
        if p in EXACT and layer >= 0 and (best[0] is None or auc > best[0]):
            best = (auc, Cell(p, layer))
    return best


def identity(
    features: Features, y: np.ndarray, run: NestedRun, cv: CV, device: str
) -> dict[str, np.ndarray]:
    """Token identity per fold: layer 0 at each fold's picked position, and at every exact one."""
    layer0 = features.layers.index(0) if 0 in features.layers else 0
    exact = [p for p in EXACT if p in features.positions]
    every = torch.cat([features.at(p)[:, layer0] for p in exact], dim=-1)[:, None]  # [n, 1, 4d]
    same, together = [], []
    for cell, split in zip(run.result.picks, run.splits, strict=True):
        same.append(score_cell(features.at(cell.position), layer0, y, split, cv, device))
        together.append(score_cell(every, 0, y, split, cv, device))
    return {SAME_POSITION: np.array(same), EVERY_EXACT: np.array(together)}


def last_q(
    features: Features, y: np.ndarray, groups: np.ndarray, run: NestedRun, cv: CV, device: str
) -> np.ndarray:
    """The last_q probe on each fold's rows, its layer picked on the training rows alone."""
    x = Positions(features, ["last_q"])
    valid = {"last_q": features.has("last_q")}
    layers = list(features.layers)
    trains = [tr for tr, _ in run.splits]
    out = []
    for cell, split in zip(
        choose(x, valid, layers, y, groups, trains, cv, device), run.splits, strict=True
    ):
        out.append(
            np.nan
            if cell is None
            else score_cell(x["last_q"], layers.index(cell.layer), y, split, cv, device)
        )
    return np.array(out)


def cheap(examples: list[Example], y: np.ndarray, run: NestedRun) -> dict[str, np.ndarray]:
    """The text, the locator's rule, the relation, and all three together, fitted per fold."""
    texts = [e.response for e in examples]
    rules = [e.locator if e.exact_span is not None else "none" for e in examples]
    rels = [e.relation for e in examples]
    models = {
        ctl.TEXT_ONLY: ctl.text_model(texts, y),
        ctl.RULE: ctl.category_model([(r,) for r in rules], y),
        ctl.RULE_RELATION: ctl.category_model(list(zip(rules, rels, strict=True)), y),
        ctl.CHEAP: ctl.text_model(texts, y, list(zip(rules, rels, strict=True))),
        "relation": ctl.category_model([(r,) for r in rels], y),
    }
    return {name: ctl.fitted(m, y, run.splits) for name, m in models.items()}


Clock = Callable[[str], AbstractContextManager[None]]  # times a named stage (the study's Timer)


def untimed(_stage: str) -> AbstractContextManager[None]:
    """A clock that times nothing."""
    return nullcontext()


def run_checks(
    ctx: StudyContext,
    store: ActivationStore,
    examples: list[Example],
    sweep: SweepResult,
    scores: Scores,
    clock: Clock = untimed,
) -> Checks | None:
    """Every check of a study (None when no exact-answer cell can be nested)."""
    features = store_features(store, ctx.site)
    return check(features, examples, sweep, scores, ctx.config.cv, ctx.probe_device, clock)


def check(
    features: Features,
    examples: list[Example],
    sweep: SweepResult,
    scores: Scores,
    cv: CV,
    device: str = "cpu",
    clock: Clock = untimed,
) -> Checks | None:
    """Every check on ``features`` of ``examples`` (None when no exact-answer cell can be nested).

    ``sweep`` gives the heatmap's maximum; ``scores`` are the model's own signals per example.
    ``clock`` times the nested selection and the controls (stages ``nested_selection`` and
    ``controls``).
    """
    y = np.array([0 if e.correct else 1 for e in examples], dtype=np.int64)
    groups = np.array([e.qid for e in examples])
    exact = [p for p in EXACT if p in features.positions]
    with clock("nested_selection"):
        run = nested(features, y, list(groups), exact, cv, device)
    if run is None:
        return None
    with clock("controls"):
        versus = controls(features, examples, y, groups, run, scores, cv, device)
        valid = np.asarray(features.valid, dtype=bool)
        probed = [bool(valid[i].any()) for i in range(len(valid))]  # not the ambiguous grades
        scored = [int(i) for _, te in run.splits for i in te]
        head = headline(run.result, versus, examples, heat_max(sweep), probed, scored)
        found = audit(examples, features, y, head.position, cv, device)
    with clock("controls"):
        located = without_fallback(features, examples, y, run, cv, device)
    return Checks(run.result, versus, head, found, warnings(versus, head), located)


def without_fallback(
    features: Features,
    examples: list[Example],
    y: np.ndarray,
    run: NestedRun,
    cv: CV,
    device: str,
) -> Nested | None:
    """The headline's own picks, fitted and scored again without the answers read at the fallback.

    Those are the answers with no located exact answer. None when there were none, or when a
    fold has too few left.
    """
    located = np.array([not e.exact_fallback for e in examples])
    if located.all():
        return None
    aucs, splits = [], []
    for cell, (tr, te) in zip(run.result.picks, run.splits, strict=True):
        split = (tr[located[tr]], te[located[te]])
        if len(set(y[split[0]].tolist())) < 2 or len(set(y[split[1]].tolist())) < 2:
            return None
        li = features.layers.index(cell.layer)
        aucs.append(score_cell(features.at(cell.position), li, y, split, cv, device))
        splits.append(split)
    auc, ci = mean_ci(np.array(aucs))
    n = int(sum(len(te) for _, te in splits))
    wrong = int(sum(y[te].sum() for _, te in splits))
    r = run.result
    return replace(r, auc=auc, ci95=ci, n=n, n_wrong=wrong, per_fold=aucs)


def controls(
    features: Features,
    examples: list[Example],
    y: np.ndarray,
    groups: np.ndarray,
    run: NestedRun,
    scores: Scores,
    cv: CV,
    device: str,
) -> dict[str, ctl.Compared]:
    """Every control and baseline against the nested probe, on its folds."""
    probe = np.array(run.result.per_fold)
    n = run.result.n
    per_fold = {**identity(features, y, run, cv, device), **cheap(examples, y, run)}
    versus = {name: ctl.compare(probe, aucs, n, "control") for name, aucs in per_fold.items()}
    if "last_q" in features.positions:
        versus[LAST_Q] = ctl.compare(
            probe, last_q(features, y, groups, run, cv, device), n, "probe"
        )
    for name, score in scores.items():
        aucs, orientation = ctl.oriented(score, y, run.splits)
        rows = sum(int(np.isfinite(score[te]).sum()) for _, te in run.splits)
        versus[name] = ctl.compare(probe, aucs, rows, "baseline", orientation)
    return versus
