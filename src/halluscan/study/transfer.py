"""Transfer between studies: probes fitted on one run folder's store, scored on another's.

``halluscan probe --train A --test B`` gives B's heatmap under A's probes; with several runs it
gives the matrix of best-cell AUCs (train on row, test on column; the diagonal is each run's
own cross-validated sweep). The maths is :mod:`halluscan.probes.transfer`; this module reads
the stores and checks that they can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from halluscan.errors import HalluscanError
from halluscan.probes.sweep import wrong_labels
from halluscan.probes.transfer import best, transfer_auc
from halluscan.records import DEFAULT_C
from halluscan.store import ActivationStore
from halluscan.study import metrics as metrics_io
from halluscan.study.arrays import check_same_model, store_features
from halluscan.study.runs import RunDir, study_examples


@dataclass(frozen=True)
class TransferHeatmap:
    """AUC per (layer, position) on a test run of probes fitted on a training run."""

    layers: list[int]
    positions: list[str]
    auc: np.ndarray  # [layer, position]


def transfer_stores(
    train: ActivationStore,
    test: ActivationStore,
    site: str,
    c: float = DEFAULT_C,
    device: str = "cpu",
) -> TransferHeatmap:
    """Fit on every example of ``train``, score ``test``.

    Refuses stores of other models, layers or positions.
    """
    check_same_model(train, test, site)
    if test.layers(site) != train.layers(site) or test.positions != train.positions:
        raise HalluscanError(
            f"{test.root}: its layers or positions differ from {train.root}'s; train and test runs "
            "need the same model and positions"
        )
    ytr, yte = wrong_labels(study_examples(train)), wrong_labels(study_examples(test))
    auc = transfer_auc(store_features(train, site), ytr, store_features(test, site), yte, c, device)
    return TransferHeatmap(train.layers(site), train.positions, auc)


def transfer_matrix(
    runs: list[Path], site: str, c: float = DEFAULT_C, device: str = "cpu"
) -> np.ndarray:
    """Best-cell AUC for every (train run, test run) pair.

    The diagonal is the run's own CV sweep.
    """
    dirs = [RunDir(Path(r)) for r in runs]
    stores = [d.open_store() for d in dirs]
    m = np.full((len(runs), len(runs)), np.nan)
    for i, a in enumerate(stores):
        for j, b in enumerate(stores):
            if i != j:
                m[i, j] = best(transfer_stores(a, b, site, c, device).auc)
            elif dirs[i].has_metrics():
                heat = metrics_io.read(dirs[i]).heatmap
                m[i, j] = best(np.array(heat.auc, dtype=float)) if heat is not None else np.nan
    return m
