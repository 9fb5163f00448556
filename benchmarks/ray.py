"""A study on Ray against one process, on this machine, in one run.

And the per-chunk costs behind the scaling model.


On the bundled model and ``--n`` world-facts questions (the default study's settings: every
residual layer at the 15 positions, bfloat16, the given answers forked in generation, the CPU's
default batch of 64):

- ``ray_vs_single_throughput``: the generate + extract stage in one process with 2 torch threads,
  against 2 Ray workers x 1 CPU x 1 thread on a local Ray instance (worker start-up included;
  ``..._after_startup`` leaves out the time until both workers answer), in both transfer modes;
- ``transfer_MBps``: a chunk-sized array (one batch's activations) from a worker to the driver
  through the object store (one machine: shared memory; between machines it is the network);
- ``driver_commit_s_per_chunk``: the driver's time per committed chunk in each mode (``object``:
  write the files and the manifest; ``shared``: check the files' sizes and write the manifest),
  and the manifest rewrite alone when the store already lists 100, 1,000 and 10,000 chunks.

Writes ``benchmarks/results/ray.json``.

    python benchmarks/ray.py [--n 384]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named ray.py: leave its folder off the path so that `import ray` finds Ray itself.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from halluscan.cluster.driver import collect_on_ray, start_workers  # noqa: E402
from halluscan.models import load_model  # noqa: E402
from halluscan.store import ActivationStore  # noqa: E402
from halluscan.study.config import StudyConfig  # noqa: E402
from halluscan.study.context import StudyContext, StudyPlan  # noqa: E402
from halluscan.study.metrics import to_json  # noqa: E402
from halluscan.study.pipeline import (  # noqa: E402
    Stores,
    Timer,
    collect_stage,
    open_stores,
    study_provenance,
)

ROOT = Path(__file__).resolve().parents[1]


def study(cfg: StudyConfig, lm: Any) -> tuple[StudyContext, Stores]:
    """A fresh study's context and stores (its own, its given answers'), as ``run`` opens them."""
    ctx = StudyContext(StudyPlan.of(cfg), lm, cfg, cfg.generate_options())
    return ctx, open_stores(ctx, study_provenance(ctx))


def transfer_mbps(ray: Any, shape: tuple[int, ...], repeats: int = 5) -> tuple[float, float]:
    """(MB/s, MB) of getting a uint16 array of ``shape`` from an actor through the object store."""

    class Producer:
        def __init__(self) -> None:
            self.a = np.random.default_rng(0).integers(0, 2**16, size=shape, dtype=np.uint16)

        def chunk(self) -> np.ndarray:
            return self.a

    p = ray.remote(num_cpus=1)(Producer).remote()
    ray.get(p.chunk.remote())  # warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a = ray.get(p.chunk.remote())
        int(a[-1].sum())  # touch it on the driver's side
        times.append(time.perf_counter() - t)
        del a
    ray.kill(p)
    mb = float(np.prod(shape)) * 2 / 1e6
    return mb / float(np.median(times)), mb


def manifest_commit_s(root: Path, listed: int, repeats: int = 20) -> float:
    """The manifest rewrite (the commit point) when the store already lists ``listed`` chunks."""
    from halluscan.store.store import FORMAT, MANIFEST

    lay = {
        "positions": ["-1"],
        "dtype": "float32",
        "sites": {"residual": {"layers": [0], "dims": [1]}},
    }
    folder = root / f"m{listed}"
    (folder / "examples").mkdir(parents=True)
    crc = {"residual": 1, "valid": 2, "examples": 0}
    chunks = [
        {"name": f"chunk_s{i:06d}_0123456789", "rows": 64, "crc32": crc} for i in range(listed)
    ]
    for c in chunks:  # as if they had been committed (the records are not needed here)
        (folder / "examples" / f"{c['name']}.jsonl").write_bytes(b"")
    manifest = {"format": FORMAT, "key": "k", "layout": lay, "provenance": {}, "chunks": chunks}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    store = ActivationStore.open(folder)
    store.stored_ids()  # read once, as a run does when it starts
    t = time.perf_counter()
    for i in range(repeats):
        store.commit([(f"new{i}", [f"id{i}"], crc)])
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=384)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ray.json"))
    args = ap.parse_args()
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="halluscan-ray-"))
    base = StudyConfig(n_questions=args.n, runs_dir=str(tmp), quiet=True, batch_size=64)
    lm = load_model(base.model)
    torch.set_num_threads(2)
    ctx, st = study(replace(base, name="single"), lm)
    qs = list(ctx.questions)
    t = time.perf_counter()
    collect_stage(ctx, st, Timer())
    single_s = time.perf_counter() - t

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    on_ray: dict[str, Any] = {}
    for mode in ("object", "shared"):
        cfg = replace(
            base, name=f"ray_{mode}", ray="local", workers=2, cpus_per_worker=1.0, ray_write=mode
        )
        ctx, st = study(cfg, lm)
        store = st.own
        t = time.perf_counter()
        # until both have the model
        workers, box = start_workers(ray, ctx.ray_plan(), ctx.worker_setup())
        ray.get([w.load.remote(box) for w in workers])
        startup = time.perf_counter() - t
        for w in workers:
            ray.kill(w)
        t = time.perf_counter()
        stats = collect_on_ray(ctx.ray_plan(), ctx.worker_setup(), lm, qs, store, st.given)
        wall = time.perf_counter() - t
        assert store.n_examples == len(qs) and len(store.stored_ids()) == len(qs)
        on_ray[mode] = {
            "stage_s": round(wall, 2),
            "worker_startup_s": round(startup, 2),
            "ray_vs_single_throughput": round(single_s / wall, 3),
            "ray_vs_single_throughput_after_startup": round(
                single_s / max(wall - startup, 1e-9), 3
            ),
            **to_json(stats.report()),
        }
    n_pos, layers, hidden = len(base.positions), lm.n_layers + 1, lm.hidden_size
    mbps, mb = transfer_mbps(ray, (64, layers, n_pos, hidden))
    ray.shutdown()
    manifest = {str(k): round(manifest_commit_s(tmp, k), 5) for k in (100, 1000, 10000)}
    res = {
        "n_questions": len(qs),
        "batch_size": base.batch_size,
        "single_process_threads": 2,
        "single_stage_s": round(single_s, 2),
        "ray_vs_single_throughput": on_ray["object"]["ray_vs_single_throughput"],
        "transfer_MBps": round(mbps, 1),
        "transfer_chunk_MB": round(mb, 1),
        "driver_commit_s_per_chunk": on_ray["object"]["driver_commit_s_per_chunk"],
        "driver_commit_s_per_chunk_shared": on_ray["shared"]["driver_commit_s_per_chunk"],
        "manifest_commit_s_by_chunks_listed": manifest,
        "modes": on_ray,
        "ray": ray.__version__,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
