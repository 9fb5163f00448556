"""Generalisation: train probes on one study's store, test them on another's.

``halluscan probe --train A --test B`` fits one probe per (layer, position) on every example
of run A and scores run B, giving B's heatmap; with several runs it gives the matrix of
best-cell AUCs (train on row, test on column; the diagonal is each run's own CV sweep).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from halluscan.config import StudyConfig
from halluscan.engine.store import ActivationStore
from halluscan.errors import HalluscanError
from halluscan.models.loading import model_identity
from halluscan.probes.bank import ProbeBank
from halluscan.probes.sweep import auc_rows, wrong_labels
from halluscan.runs import RunDir, study_examples


def transfer_auc(
    train: ActivationStore,
    test: ActivationStore,
    site: str = "residual",
    c: float = StudyConfig.probe_c,
    device: str = "cpu",
) -> dict[str, Any]:
    """AUC on ``test`` of probes fitted (on ``device``) on all of ``train``: ``{"layers", "positions", "auc"}``."""
    layers, positions = train.layers(site), train.positions
    check_same_model(train, test, site)
    if test.layers(site) != layers or test.positions != positions:
        raise HalluscanError(
            f"{test.root}: its layers or positions differ from {train.root}'s; train and test runs need the same "
            "model and positions"
        )
    ytr, yte = wrong_labels(study_examples(train)), wrong_labels(study_examples(test))
    vtr, vte = train.valid(), test.valid()
    auc = np.full((len(layers), len(positions)), np.nan)
    for j, pos in enumerate(positions):
        a, b = vtr[:, j], vte[:, j]
        if len(set(ytr[a].tolist())) < 2 or len(set(yte[b].tolist())) < 2:
            continue
        bank = ProbeBank.fit(train.position(pos, site)[torch.from_numpy(a)], ytr[a], layers, pos, c=c, device=device)
        scores = bank.decision_function(test.position(pos, site)[torch.from_numpy(b)])  # [n, layer]
        auc[:, j] = auc_rows(scores.T.numpy(), yte[b])
    return {"layers": layers, "positions": positions, "auc": auc}


def _describe(model: dict[str, Any]) -> str:
    return f"{model.get('model_id')} ({str(model.get('revision') or 'no revision')[:23]})"


def check_same_model(train: ActivationStore, test: ActivationStore, site: str = "residual") -> None:
    """Refuse runs whose features differ in shape or that come from different models (per their provenance).

    Stores without a model provenance record (made through the Python API) are compared by shape only.
    """
    train.layers(site), test.layers(site)  # a clear error when either lacks the site
    dims_a, dims_b = train.layout["sites"][site]["dims"], test.layout["sites"][site]["dims"]
    if dims_a != dims_b:
        raise HalluscanError(
            f"{test.root}: its {site} features have dims {dims_b} but {train.root}'s have {dims_a}; "
            "train and test runs need the same model"
        )
    a, b = (st.provenance.get("model") for st in (train, test))
    if isinstance(a, dict) and isinstance(b, dict) and model_identity(a) != model_identity(b):
        raise HalluscanError(
            f"{test.root} was made with model {_describe(b)} but {train.root} with {_describe(a)}; "
            "probes transfer only between runs of the same model: give runs made with one model"
        )


def best(auc: np.ndarray) -> float:
    """Best cell of a heatmap (NaN-safe)."""
    return float(np.nanmax(auc)) if not np.all(np.isnan(auc)) else float("nan")


def transfer_matrix(
    runs: list[str], site: str = "residual", c: float = StudyConfig.probe_c, device: str = "cpu"
) -> dict[str, Any]:
    """Best-cell AUC for every (train run, test run) pair; the diagonal is the run's own CV sweep."""
    dirs = [RunDir(Path(r)) for r in runs]
    stores = [d.open_store() for d in dirs]
    m = np.full((len(runs), len(runs)), np.nan)
    for i, a in enumerate(stores):
        for j, b in enumerate(stores):
            if i != j:
                m[i, j] = best(transfer_auc(a, b, site, c, device)["auc"])
            elif dirs[i].has_metrics():
                m[i, j] = best(np.array(dirs[i].read_metrics()["heatmap"]["auc"], dtype=float))
    return {"runs": runs, "best_auc": m}
