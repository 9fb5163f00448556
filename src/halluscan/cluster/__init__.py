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
        if cfg.ray == "local":  # a new instance, even where $RAY_ADDRESS or `ray start` names another
            cpus = max(os.cpu_count() or 1, int(cfg.workers * cfg.cpus_per_worker + 0.999))
            ray.init(
                address="local", num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False
            )
        else:
            ray.init(address=cfg.ray, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise HalluscanError(
            f"could not reach the Ray cluster at {cfg.ray!r} ({str(e).splitlines()[0]}); start it with "
            "`ray start --head` and give its address, or use a bare --ray for a local instance"
        ) from e
    return ray


def worker_device(cfg: StudyConfig) -> str:
    """Where a worker puts the model: ``cuda`` (the GPU Ray gave it) when it reserves one, else ``cpu``."""
    return "cuda" if cfg.gpus_per_worker > 0 else "cpu"


def worker_provenance(driver: dict[str, Any], cfg: StudyConfig) -> dict[str, Any]:
    """The model provenance of the workers' copies (their device and dtype), from the driver's.

    The stored activations are the workers', so the store key and the provenance name their
    device and dtype (``auto``: bfloat16 on a GPU, float32 on the CPU), not the driver's.
    """
    device = worker_device(cfg)
    auto = "bfloat16" if device == "cuda" else "float32"
    return {**driver, "device": device, "dtype": f"torch.{auto if cfg.dtype == 'auto' else cfg.dtype}"}
