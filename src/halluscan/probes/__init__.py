"""Linear probes, pure maths on arrays.

The solver, the (layer, position) sweep, an sklearn estimator, the probe bank, cross-fitting
and transfer. Nothing here reads a store, a run folder or a model.

The names below load on first use (torch and scikit-learn are not imported with the package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from halluscan.lazy import exports
from halluscan.probes.cv import CV, DEFAULT_C

_LAZY = {
    "Features": "halluscan.probes.features",
    "LinearProbe": "halluscan.probes.estimator",
    "ProbeBank": "halluscan.probes.bank",
    "SweepResult": "halluscan.probes.sweep",
    "auc_rows": "halluscan.probes.sweep",
    "cv_auc": "halluscan.probes.sweep",
    "folds_for": "halluscan.probes.sweep",
    "sweep": "halluscan.probes.sweep",
    "wrong_labels": "halluscan.probes.sweep",
}

if TYPE_CHECKING:
    from halluscan.probes.bank import ProbeBank
    from halluscan.probes.estimator import LinearProbe
    from halluscan.probes.features import Features
    from halluscan.probes.sweep import SweepResult, auc_rows, cv_auc, folds_for, sweep, wrong_labels


__getattr__ = exports(__name__, _LAZY)


__all__ = [
    "CV",
    "DEFAULT_C",
    "Features",
    "LinearProbe",
    "ProbeBank",
    "SweepResult",
    "auc_rows",
    "cv_auc",
    "folds_for",
    "sweep",
    "wrong_labels",
]
