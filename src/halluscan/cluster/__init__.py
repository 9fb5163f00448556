"""A study across a Ray cluster: generation in shards on worker actors, the probe sweep as tasks.

Ray runs the work; halluscan only cuts it into shards and commits what comes back. The driver is
the store's one writer of the manifest, so the store's commit point and resume work the same
on one machine and on a cluster (:mod:`halluscan.cluster.driver`). Ray is an optional extra:
``pip install 'halluscan[ray]'``. The scan and score paths stay in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from halluscan.errors import HalluscanError

WRITE_MODES = ("object", "shared")


@dataclass(frozen=True)
class RayPlan:
    """Where and how a study runs on Ray.

    The cluster, its workers and what each reserves, how chunks come back.
    """

    address: str  # a cluster's address, or "local" for a new local instance
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    # "object": through Ray's object store; "shared": workers write into the store
    write: str = "object"
    threads: int = 0  # torch threads per worker (0: its CPUs)
    quiet: bool = False

    @property
    def worker_threads(self) -> int:
        """Torch threads of each worker: as asked, else the CPUs it reserves."""
        return self.threads or max(1, int(self.cpus_per_worker))


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise HalluscanError(
            "--ray needs Ray, which is not installed: run `pip install 'halluscan[ray]'` (or `pip "
            "install ray`)"
        ) from e
    return ray


def init_ray(plan: RayPlan) -> Any:
    """Connect to ``plan.address``; the ``ray`` module.

    ``local`` starts a local instance sized for the workers.

    """
    import os

    ray = require_ray()
    if ray.is_initialized():
        return ray
    try:
        # a new instance, even where $RAY_ADDRESS or `ray start` names another
        if plan.address == "local":
            cpus = max(os.cpu_count() or 1, int(plan.workers * plan.cpus_per_worker + 0.999))
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                logging_level="ERROR",
                log_to_driver=False,
            )
        else:
            ray.init(
                address=plan.address,
                include_dashboard=False,
                logging_level="ERROR",
                log_to_driver=False,
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise HalluscanError(
            f"could not reach the Ray cluster at {plan.address!r} ({str(e).splitlines()[0]}); "
            "start it with `ray start --head` and give its address, or use a bare --ray for a "
            "local instance"
        ) from e
    return ray
