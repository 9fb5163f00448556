"""Linear probes: the solver, the (layer, position) sweep, an sklearn estimator, the probe bank, transfer."""

from halluscan.probes.bank import ProbeBank
from halluscan.probes.estimator import LinearProbe
from halluscan.probes.sweep import SweepResult, auc_rows, cv_auc, folds_for, sweep, wrong_labels

__all__ = ["LinearProbe", "ProbeBank", "SweepResult", "auc_rows", "cv_auc", "folds_for", "sweep", "wrong_labels"]
