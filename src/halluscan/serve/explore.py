"""What the page's study explorer reads: the runs, a run's heatmap, one cell's answers.

A cell's answers are ranked by out-of-fold scores: each answer is scored by a probe at that
(position, layer) fitted on the other folds' questions (the sweep's own split), so no answer is
ranked by a probe that saw it.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import stats

from halluscan.errors import HalluscanError
from halluscan.models.sites import RESIDUAL
from halluscan.probes.bank import ProbeBank
from halluscan.probes.sweep import folds_for
from halluscan.records import JsonObject
from halluscan.study import metrics as metrics_io
from halluscan.study.runs import RunDir
from halluscan.study.transfer import Side

SHOWN = 6  # answers listed at each end of a cell's ranking


def list_runs(runs_dir: Path) -> list[JsonObject]:
    """The finished studies under ``runs_dir`` (two levels deep: suites hold theirs), and grids."""
    out: list[JsonObject] = []
    for folder in sorted([*runs_dir.glob("*"), *runs_dir.glob("*/*/*")]):
        if folder.is_dir() and RunDir(folder).has_metrics():
            out.append({"name": str(folder.relative_to(runs_dir)), "kind": "study"})
    for grid in sorted(runs_dir.glob("*/grid.html")):
        out.append({"name": str(grid.parent.relative_to(runs_dir)), "kind": "grid"})
    return out


def run_dir(runs_dir: Path, name: str) -> RunDir:
    """A finished study under ``runs_dir`` by its name (nothing outside it is reachable)."""
    root = (runs_dir / name).resolve()
    if runs_dir.resolve() not in root.parents or not RunDir(root).has_metrics():
        raise HalluscanError(f"no finished study named {name!r} under {runs_dir}")
    return RunDir(root)


def heatmap(run: RunDir) -> JsonObject:
    """The run's probe heatmap, its headline cell, and what the study compared it with."""
    m = metrics_io.read(run)
    if m.heatmap is None:
        raise HalluscanError(f"{run.root}: the study has no heatmap (too few answers of a class)")
    head = m.headline
    return {
        "layers": m.heatmap.layers,
        "positions": m.heatmap.positions,
        "auc": m.heatmap.auc,
        "headline": None
        if head is None
        else {"position": head.position, "layer": head.layer, "auc": head.auc},
        "strongest": None if head is None else head.strongest,
        "strongest_auc": None if head is None else head.strongest_auc,
    }


def _interval(mean: float | None, std: float | None, folds: int) -> list[float] | None:
    if mean is None or std is None or folds < 2:
        return None
    half = float(stats.t.ppf(0.975, folds - 1)) * std / math.sqrt(folds)
    return [max(0.0, mean - half), min(1.0, mean + half)]


def cell(run: RunDir, position: str, layer: int) -> JsonObject:
    """One cell: its AUC and interval, layer 0 at its position, and its top and bottom answers."""
    m = metrics_io.read(run)
    hm = m.heatmap
    if hm is None or position not in hm.positions or layer not in hm.layers:
        raise HalluscanError(f"{run.root}: no cell {position} layer {layer} in its heatmap")
    j, i = hm.positions.index(position), hm.layers.index(layer)
    auc, std = hm.auc[i][j], hm.auc_std[i][j]
    layer0 = hm.auc[hm.layers.index(0)][j] if 0 in hm.layers else None
    scores, rows = out_of_fold(str(run.root), position, layer, hm.folds)
    side = side_of(str(run.root))
    order = rows[np.argsort(-scores[rows])]
    pick = lambda idx: [_answer(side, int(k), float(scores[k])) for k in idx]  # noqa: E731
    return {
        "position": position,
        "layer": layer,
        "auc": auc,
        "ci95": _interval(auc, std, hm.folds),
        "layer0_auc": layer0,
        "headline_controls": None
        if m.headline is None
        else {
            "cell": [m.headline.position, m.headline.layer],
            "strongest": m.headline.strongest,
            "strongest_auc": m.headline.strongest_auc,
        },
        "most_wrong": pick(order[:SHOWN]),
        "least_wrong": pick(order[::-1][:SHOWN]),
        "n": int(len(rows)),
    }


@lru_cache(maxsize=4)
def side_of(root: str) -> Side:
    """A finished study's answers, labels and features (read once per study, then kept)."""
    return Side.open(root, RESIDUAL)


@lru_cache(maxsize=32)
def out_of_fold(root: str, position: str, layer: int, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Each answer's log-odds of wrong from a probe at the cell fitted without its question."""
    side = side_of(root)
    f = side.features
    rows = np.flatnonzero(f.has(position))
    x = f.at(position)[rows][:, f.layers.index(layer)][:, None]  # [n, 1, d]
    y = side.y[rows]
    groups = [side.examples[k].qid for k in rows]
    scores = np.full(len(side.y), np.nan)
    for tr, te in folds_for(y, groups, folds, 0):
        bank = ProbeBank.fit(x[tr], y[tr], [layer], position)
        scores[rows[te]] = bank.decision_function(x[te])[:, 0].numpy()
    return scores, rows


def _answer(side: Side, k: int, score: float) -> JsonObject:
    e = side.examples[k]
    return {
        "qid": e.qid,
        "question": e.question,
        "response": e.response,
        "exact_answer": e.exact_text,
        "gold": e.gold,
        "grade": "correct" if e.correct else "wrong",
        "p_wrong": float(1 / (1 + np.exp(-score))),
    }
