"""Generalisation: probes fitted on one set of activations, scored on another.

``transfer_auc`` fits one probe per (layer, position) on every training example and gives the
test set's AUC per cell. It takes :class:`~halluscan.probes.features.Features`; reading run
folders is the study's job.
"""

from __future__ import annotations

import numpy as np
import torch

from halluscan.probes.bank import ProbeBank
from halluscan.probes.features import Features
from halluscan.probes.sweep import auc_rows
from halluscan.records import DEFAULT_C


def transfer_auc(
    train: Features,
    y_train: np.ndarray,
    test: Features,
    y_test: np.ndarray,
    c: float = DEFAULT_C,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """``[layer, position]`` AUC on ``test`` of probes fitted (on ``device``) on all of ``train``.

    A cell whose training or test examples lack a class is NaN. Both sides must hold the same
    layers and positions.
    """
    layers, positions = list(train.layers), list(train.positions)
    auc = np.full((len(layers), len(positions)), np.nan)
    for j, pos in enumerate(positions):
        a, b = train.has(pos), test.has(pos)
        if len(set(y_train[a].tolist())) < 2 or len(set(y_test[b].tolist())) < 2:
            continue
        bank = ProbeBank.fit(
            train.at(pos)[torch.from_numpy(a)], y_train[a], layers, pos, c=c, device=device
        )
        scores = bank.decision_function(test.at(pos)[torch.from_numpy(b)])  # [n, layer]
        auc[:, j] = auc_rows(scores.T.numpy(), y_test[b])
    return auc


def best(auc: np.ndarray) -> float:
    """Best cell of a heatmap (NaN-safe)."""
    return float(np.nanmax(auc)) if not np.all(np.isnan(auc)) else float("nan")
