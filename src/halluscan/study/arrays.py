"""From a study's stores to the pure maths: features, sweeps and banks read one position at a time.

The probes and the analyses take arrays (:class:`~halluscan.probes.features.Features`); this
module is the thin layer that reads them out of an :class:`~halluscan.store.ActivationStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from halluscan import progress
from halluscan.errors import HalluscanError
from halluscan.probes.bank import ProbeBank
from halluscan.probes.features import Features
from halluscan.probes.sweep import SweepResult, sweep
from halluscan.provenance import model_identity
from halluscan.records import CV, JsonObject
from halluscan.store import ActivationStore

if TYPE_CHECKING:
    from halluscan.study.context import StudyContext


def store_features(store: ActivationStore, site: str | None = None) -> Features:
    """``site``'s activations in ``store`` (None: its one site), read one position at a time."""
    site = store.site_name(site)
    return Features(
        tuple(store.layers(site)),
        tuple(store.positions),
        store.valid(),
        lambda p: store.position(p, site),
    )


def sweep_store(
    store: ActivationStore,
    y: np.ndarray,
    groups: Sequence[str],
    cv: CV,
    *,
    site: str | None = None,
    device: str = "cpu",
    desc: str = "probe sweep",
    quiet: bool = False,
) -> SweepResult:
    """The sweep of every layer and position of ``store``'s ``site``, with a progress bar."""
    with progress.bar(len(store.positions), desc, "pos", quiet) as bar:
        features = store_features(store, site)
        return sweep(
            features,
            y,
            groups,
            folds=cv.folds,
            seed=cv.seed,
            c=cv.c,
            progress=bar.update,
            device=device,
        )


def study_sweep(
    ctx: StudyContext,
    store: ActivationStore,
    y: np.ndarray,
    groups: Sequence[str],
    site: str,
    desc: str,
) -> SweepResult:
    """A study's sweep of ``store``.

    One Ray task per position with ``--ray``, else in this process.
    """
    if ctx.config.ray:
        from halluscan.cluster.sweep import sweep_on_ray

        return sweep_on_ray(ctx.ray_plan(), store, site, y, groups, ctx.config.cv)
    return sweep_store(
        store,
        y,
        groups,
        ctx.config.cv,
        site=site,
        device=ctx.probe_device,
        desc=desc,
        quiet=ctx.config.quiet,
    )


def fit_bank(
    store: ActivationStore,
    y: np.ndarray,
    position: str,
    site: str,
    cv: CV,
    meta: JsonObject,
    device: str = "cpu",
    keep: np.ndarray | None = None,
) -> ProbeBank | None:
    """A probe per layer at ``position`` on the examples that have it (and ``keep`` selects).

    None: one class only.
    """
    if position not in store.positions:
        return None
    rows = store.valid()[:, store.positions.index(position)]
    rows = rows if keep is None else rows & keep
    if len(set(y[rows].tolist())) < 2:
        return None
    x = store.position(position, site)[torch.from_numpy(rows)]
    return ProbeBank.fit(x, y[rows], store.layers(site), position, c=cv.c, meta=meta, device=device)


def check_same_model(train: ActivationStore, test: ActivationStore, site: str) -> None:
    """Refuse stores whose features differ in shape or come from different models (provenance).

    Stores without a model provenance record (made through the Python API) are compared by shape
    only.
    """
    # a one-line error, naming the store, when either lacks the site
    (train.layers(site), test.layers(site))
    dims_a, dims_b = (st.layout.site(site).dims for st in (train, test))
    if dims_a != dims_b:
        raise HalluscanError(
            f"{test.root}: its {site} features have dims {list(dims_b)} but {train.root}'s have "
            f"{list(dims_a)}; train and test runs need the same model"
        )
    a, b = (st.provenance.get("model") for st in (train, test))
    if isinstance(a, dict) and isinstance(b, dict) and model_identity(a) != model_identity(b):
        raise HalluscanError(
            f"{test.root} was made with model {_describe(b)} but {train.root} with {_describe(a)}; "
            "probes transfer only between runs of the same model: give runs made with one model"
        )


def _describe(model: JsonObject) -> str:
    return f"{model.get('model_id')} ({str(model.get('revision') or 'no revision')[:23]})"
