"""Linear probes, pure maths on arrays.

The solver, the (layer, position) sweep, an sklearn estimator, the probe bank, cross-fitting
and transfer. Nothing here reads a store, a run folder or a model.
"""

from halluscan.probes.bank import ProbeBank
from halluscan.probes.estimator import LinearProbe
from halluscan.probes.features import Features
from halluscan.probes.sweep import SweepResult, auc_rows, cv_auc, folds_for, sweep, wrong_labels
from halluscan.records import CV, DEFAULT_C

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
