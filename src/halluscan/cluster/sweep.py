"""The probe sweep on Ray: one task per position, gathered in position order.

Each task fits every layer's probe at its position over the same question-grouped folds as the
sweep in one process (:func:`~halluscan.probes.sweep.position_folds`). It reads its position
from the store folder when the file system is shared (``--ray-write shared``), else the driver
reads the position once and passes it through Ray's object store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from halluscan import progress
from halluscan.cluster import RayPlan, init_ray
from halluscan.cluster.driver import cause_of
from halluscan.errors import HalluscanError
from halluscan.probes.sweep import SweepResult, assemble, fits, position_folds
from halluscan.records import CV
from halluscan.store import ActivationStore


def fit_position(
    source: Any, pos: str, site: str, keep: np.ndarray, y: np.ndarray, groups: np.ndarray, cv: CV
) -> Any:
    """``[fold, layer]`` AUCs at ``pos``.

    ``source`` is the store folder (a path) or the position's array.
    """
    import torch

    x = (
        ActivationStore.open(source).position(pos, site)
        if isinstance(source, str)
        else torch.from_numpy(source)
    )
    return position_folds(x[torch.from_numpy(keep)], y[keep], groups[keep], cv.folds, cv.seed, cv.c)


def sweep_on_ray(
    plan: RayPlan, store: ActivationStore, site: str, y: np.ndarray, groups: Sequence[str], cv: CV
) -> SweepResult:
    """The sweep of ``store``'s ``site`` with each position's fit as a Ray task."""
    ray = init_ray(plan)
    task = ray.remote(num_cpus=plan.cpus_per_worker, max_retries=2)(fit_position)
    valid, g = store.valid(), np.asarray(groups)
    todo = [j for j in range(len(store.positions)) if fits(valid[:, j], y, cv.folds)]
    running: dict[Any, int] = {}
    per_pos: dict[int, np.ndarray] = {}
    with progress.bar(len(todo), "probe sweep on Ray", "pos", plan.quiet) as bar:
        # -1: no more to start, drain the last ones
        for k, j in enumerate(todo + [-1] * plan.workers):
            if j >= 0:  # at most one position per worker in flight: bounded object-store memory
                pos = store.positions[j]
                # an absolute path: the task may run on another node
                shared = plan.write == "shared"
                source = (
                    str(store.root.resolve())
                    if shared
                    else ray.put(store.position(pos, site).numpy())
                )
                running[task.remote(source, pos, site, valid[:, j], y, g, cv)] = j
            if running and (len(running) >= plan.workers or k >= len(todo)):
                [ref], _ = ray.wait(list(running), num_returns=1)
                j = running.pop(ref)
                try:
                    per_pos[j] = ray.get(ref)
                except ray.exceptions.RayError as e:
                    raise HalluscanError(
                        f"the probe sweep at {store.positions[j]!r} failed on Ray: {cause_of(e)}"
                    ) from None
                bar.update(1)
    # in position order
    return assemble(store.layers(site), store.positions, valid, cv.folds, per_pos)
