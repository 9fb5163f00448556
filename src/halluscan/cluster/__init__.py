"""A study across a Ray cluster: generation in shards on worker actors, the probe sweep as tasks.

Ray runs the work; halluscan only cuts it into shards and commits what comes back. The driver is
the store's one writer of the manifest, so the store's commit point and resume work the same
on one machine and on a cluster (:mod:`halluscan.cluster.driver`). Ray is an optional extra:
``pip install 'halluscan[ray]'``. The scan and score paths stay in one process.
"""

from __future__ import annotations

from typing import Any

from halluscan.config import StudyConfig
from halluscan.errors import HalluscanError


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise HalluscanError(
            "--ray needs Ray, which is not installed: run `pip install 'halluscan[ray]'` (or `pip install ray`)"
        ) from e
    return ray


def init_ray(cfg: StudyConfig) -> Any:
    """Connect to ``cfg.ray`` (``local``: start a local instance sized for the workers); the ``ray`` module."""
    import os

    ray = require_ray()
    if ray.is_initialized():
        return ray
    try:
        if cfg.ray == "local":
            cpus = max(os.cpu_count() or 1, int(cfg.workers * cfg.cpus_per_worker + 0.999))
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        else:
            ray.init(address=cfg.ray, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise HalluscanError(
            f"could not reach the Ray cluster at {cfg.ray!r} ({str(e).splitlines()[0]}); start it with "
            "`ray start --head` and give its address, or use a bare --ray for a local instance"
        ) from e
    return ray
