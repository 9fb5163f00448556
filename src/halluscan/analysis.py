"""What a study's numbers say: accuracy, locator coverage, controls, best cells, and the finding.

Pure functions of the graded examples and the sweep result; nothing here reads or writes files.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from halluscan.grade import spans_overlap
from halluscan.positions import EXACT
from halluscan.probes.sweep import SweepResult, metadata_prior_auc
from halluscan.records import Example


def summarise(examples: list[Example]) -> dict[str, Any]:
    """Accuracy (overall, by relation), exact-answer coverage and locator agreement."""
    rel = Counter(e.relation for e in examples)
    corr = [e for e in examples if e.correct]
    wrong = [e for e in examples if not e.correct]
    found = lambda xs: float(np.mean([e.exact_span is not None for e in xs])) if xs else 0.0  # noqa: E731
    agree = [spans_overlap(e.exact_span, e.alias_span) for e in corr]
    return {
        "n_graded": len(examples),
        "accuracy": float(np.mean([e.correct for e in examples])),
        "accuracy_by_relation": {
            r: float(np.mean([e.correct for e in examples if e.relation == r])) for r in sorted(rel)
        },
        "n_by_relation": dict(sorted(rel.items())),
        "exact_answer_found": {"correct": found(corr), "wrong": found(wrong)},
        "exact_answer_missing": sum(e.exact_span is None for e in examples),
        "locator_agreement_correct": float(np.mean(agree)) if agree else 0.0,
        "locator_rules": dict(Counter(e.locator for e in examples)),
        "stopped_by": dict(Counter(e.stopped_by for e in examples)),
    }


def controls(sweep: SweepResult, examples: list[Example], y: np.ndarray, folds: int, seed: int) -> dict[str, float]:
    """The two controls: the relation alone, and layer 0 (token identity) at last_q and the exact answer."""
    exact = [p for p in sweep.positions if p in EXACT]
    l0 = sweep.auc[0, [sweep.positions.index(p) for p in exact]] if exact else np.array([np.nan])
    groups = [e.qid for e in examples]
    has_last_q = "last_q" in sweep.positions
    return {
        "relation_prior_auc": metadata_prior_auc([e.relation for e in examples], y, groups, folds, seed),
        "layer0_exact_auc": float(np.nanmax(l0)) if not np.all(np.isnan(l0)) else float("nan"),
        "layer0_last_q_auc": float(sweep.auc[0, sweep.positions.index("last_q")]) if has_last_q else float("nan"),
    }


def finding(sweep: SweepResult, ctrl: dict[str, float]) -> dict[str, Any]:
    """Check whether the best exact-answer cell beats last_q and both controls."""
    exact = [(p, *sweep.best(p)) for p in sweep.positions if p in EXACT]
    nan = float("nan")
    pos, layer, auc = max(exact, key=lambda t: -1 if np.isnan(t[2]) else t[2]) if exact else ("", -1, nan)
    last_q = sweep.best("last_q")[1] if "last_q" in sweep.positions else nan
    return {
        "best_exact_position": pos,
        "best_exact_layer": layer,
        "best_exact_auc": auc,
        "exact_beats_last_q": bool(auc > last_q),
        "exact_beats_layer0": bool(auc > ctrl["layer0_exact_auc"]),
        "exact_beats_relation_prior": bool(auc > ctrl["relation_prior_auc"]),
    }


def best_cells(sweep: SweepResult, ctrl: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Position -> best layer, its mean AUC, fold std, 95 % interval, and whether it is informative.

    A cell is informative when its interval's lower end clears both controls: the relation-only
    AUC and the embedding layer (token identity) at the same position.
    """
    out: dict[str, dict[str, Any]] = {}
    for j, p in enumerate(sweep.positions):
        layer, auc = sweep.best(p)
        if layer < 0:
            out[p] = {"layer": layer, "auc": None, "std": None, "ci95": None, "informative": False}
            continue
        lo, hi = sweep.interval(layer, p)
        layer0 = float(sweep.auc[0, j]) if sweep.layers[0] == 0 else float("nan")
        bar = max(ctrl["relation_prior_auc"], layer0 if not np.isnan(layer0) else 0.5)
        std = float(sweep.auc_std[sweep.layers.index(layer), j])
        out[p] = {"layer": layer, "auc": auc, "std": std, "ci95": [lo, hi], "informative": bool(lo > bar)}
    return out


def study_metrics(
    name: str, examples: list[Example], sweep: SweepResult, ctrl: dict[str, float], site: str
) -> dict[str, Any]:
    """The numbers of ``metrics.json`` that come from the examples and the sweep (in the file's key order)."""
    return {
        "name": name,
        **summarise(examples),
        "heatmap": heatmap(sweep, site),
        "best_cells": best_cells(sweep, ctrl),
        "controls": ctrl,
        "finding": finding(sweep, ctrl),
    }


def heatmap(sweep: SweepResult, site: str) -> dict[str, Any]:
    """The sweep as ``metrics.json`` keeps it (AUC rounded to 4 places, null where a cell had no data)."""
    return {
        "site": site,
        "layers": sweep.layers,
        "positions": sweep.positions,
        "folds": sweep.folds,
        "auc": _nan_to_none(sweep.auc),
        "auc_std": _nan_to_none(sweep.auc_std),
        "n_per_position": sweep.n,
    }


def _nan_to_none(a: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in a]


def pick_pair(examples: list[Example]) -> list[Example]:
    """A hallucinated and a correct response to questions of one relation (the first in store order).

    Prefers ``capital_of_country``; only responses whose exact answer was located qualify.
    """
    rels = sorted({e.relation for e in examples}, key=lambda r: (r != "capital_of_country", r))
    for rel in rels:
        pool = [e for e in examples if e.relation == rel and e.exact_span]
        wrong = next((e for e in pool if not e.correct), None)
        right = next((e for e in pool if e.correct), None)
        if wrong and right:
            return [wrong, right]
    return []
