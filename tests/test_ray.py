"""A study on a local Ray instance (2 workers x 1 CPU, a tiny model).

Same results as one process, faults.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import peru_france, tiny_flags

pytestmark = pytest.mark.slow  # a Ray instance, and processes killed on purpose
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module (2 CPUs, no dashboard); its address."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model and 72 questions of several prompt lengths, each with a wrong answer to give."""
    return peru_france(tmp_path_factory.mktemp("ray"), 36, vary=True)


RAY_AUC_TOLERANCE = 0.01  # what the README states for a heatmap cell, Ray vs one process


def _study(tiny: Path, name: str, **over):
    """The context and stores (its own, and its given answers') of a fresh study ``name``."""
    from halluscan.study.config import StudyConfig
    from halluscan.study.context import StudyContext, StudyPlan
    from halluscan.study.pipeline import open_stores, study_provenance

    settings = dict(
        model=str(tiny / "model"),
        dataset=str(tiny / "q.csv"),
        runs_dir=str(tiny / "runs"),
        name=name,
        batch_size=4,
        stop="none",
        max_new_tokens=3,
        store_dtype="float32",
        folds=3,
        quiet=True,
        ray="local",
        workers=2,
    )
    cfg = StudyConfig(**{**settings, **over})
    ctx = StudyContext.build(StudyPlan.of(cfg))
    return ctx, open_stores(ctx, study_provenance(ctx))


def _on_ray(ctx, stores, **kw):
    from halluscan.cluster.driver import collect_on_ray

    questions = list(ctx.questions)
    return collect_on_ray(
        ctx.ray_plan(), ctx.worker_setup(), ctx.lm, questions, stores.own, stores.given, **kw
    )


def _by_id(store) -> dict[str, tuple[dict, np.ndarray]]:
    """Each stored example's record and activations, by id (checks that no id is stored twice)."""
    recs = store.examples()
    ids = [r["qid"] for r in recs]
    assert len(ids) == len(set(ids)), "an id was stored twice"
    acts = np.concatenate([store.layer(layer).numpy()[:, None] for layer in store.layers()], axis=1)
    return {r["qid"]: (r, acts[i]) for i, r in enumerate(recs)}


def _same(a, b) -> None:
    """Two stores hold the same examples.

    Equal records (greedy answers, grades, positions), close activations.
    """
    x, y = _by_id(a), _by_id(b)
    assert set(x) == set(y)
    for qid, (rec, act) in x.items():
        other, act2 = y[qid]
        assert {k: v for k, v in rec.items() if k not in ("token_logprobs", "token_entropies")} == {
            k: v for k, v in other.items() if k not in ("token_logprobs", "token_entropies")
        }
        np.testing.assert_allclose(
            rec.get("token_logprobs", []), other.get("token_logprobs", []), atol=1e-4
        )
        np.testing.assert_allclose(act, act2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("write", ["object", "shared"])
def test_a_ray_study_stores_what_one_process_stores(cluster, tiny, write):
    from halluscan.cluster.sweep import sweep_on_ray
    from halluscan.probes.sweep import wrong_labels
    from halluscan.study.arrays import sweep_store
    from halluscan.study.pipeline import Timer, collect_stage, in_batch_order
    from halluscan.study.runs import study_examples

    ctx, one = _study(tiny, f"one_{write}", ray="")
    collect_stage(ctx, one, Timer())
    ctx, on_ray = _study(tiny, f"ray_{write}", ray_write=write)
    stats = _on_ray(ctx, on_ray)
    n = len(ctx.questions)
    assert stats.chunks == 2 * n // 4  # a chunk per batch, and one of given answers per batch
    assert len(stats.questions) == 2 and sum(stats.questions.values()) == n  # both took shards
    _same(one.own, on_ray.own)
    _same(one.given.store, on_ray.given.store)
    files = {p.name for p in on_ray.own.root.rglob("*") if p.is_file()} - {"manifest.json"}
    names = {f"{c}.{e}" for c in on_ray.own.chunk_names for e in ("npy", "jsonl")}
    assert files <= names  # nothing left that no manifest names
    # the sweep on Ray: one task per position, the same AUCs as in one process
    examples = study_examples(on_ray.own)
    y, groups = wrong_labels(examples), [e.qid for e in examples]
    here = sweep_store(on_ray.own, y, groups, ctx.config.cv, quiet=True)
    there = sweep_on_ray(ctx.ray_plan(), on_ray.own, ctx.site, y, groups, ctx.config.cv)
    assert np.isfinite(here.auc).sum() > 0
    np.testing.assert_allclose(there.auc, here.auc, atol=1e-6)
    np.testing.assert_allclose(there.per_fold, here.per_fold, atol=1e-6)
    # read in batch order, the Ray store feeds the probes the one-process rows in the same order:
    # the same heatmap, to the README's tolerance, whatever order its chunks were committed in
    ours, theirs = in_batch_order(ctx, one.own), in_batch_order(ctx, on_ray.own)
    ex = study_examples(ours)
    assert [e.qid for e in ex] == [e.qid for e in study_examples(theirs)]
    assert [r["qid"] for r in one.own.examples()] == [e.qid for e in ex]  # one process: as written
    y, groups = wrong_labels(ex), [e.qid for e in ex]
    a = sweep_store(ours, y, groups, ctx.config.cv, quiet=True).auc
    b = sweep_store(theirs, y, groups, ctx.config.cv, quiet=True).auc
    np.testing.assert_allclose(a, b, atol=RAY_AUC_TOLERANCE)
    assert np.array_equal(a[0], b[0], equal_nan=True)  # layer 0 (the tokens' embeddings) is equal


def _complete(store, want: list[str]) -> None:
    ids = [r["qid"] for r in store.examples()]
    assert sorted(ids) == sorted(want)  # none lost, none twice


@pytest.mark.parametrize("restart", [True, False], ids=["restarted", "gone-for-good"])
def test_a_worker_killed_mid_run_loses_and_repeats_nothing(cluster, tiny, restart):
    """A crash (Ray restarts the actor and retries its shards), or a worker gone for good."""
    import signal

    from halluscan.cluster.driver import IN_FLIGHT

    ctx, stores = _study(tiny, f"kill_{restart}")
    killed = []

    def kill_one(workers, stats):
        if killed:
            return
        host = next(iter(stats.questions))  # its shard was just committed: it has more in flight
        killed.append(host)
        if restart:  # the process dies at once: Ray restarts it and retries its shards
            os.kill(int(host.split(":")[1]), signal.SIGKILL)
        else:  # gone for good: its shards in flight fail, and the other worker takes them
            ray.kill(workers[0], no_restart=True)

    stats = _on_ray(ctx, stores, on_commit=kill_one)
    _complete(stores.own, [q.qid for q in ctx.questions])
    _complete(stores.given.store, [f.id() for f in stores.given.items])
    if restart:  # the restarted worker (a new pid) ran the shards it had in flight, retried by Ray
        assert len(stats.questions) == 3 and killed[0] in stats.questions and stats.reassigned == 0
    else:
        assert 1 <= stats.reassigned <= IN_FLIGHT  # its shards in flight went to the other worker


DRIVER = """
import os, signal, sys
from halluscan import cli
from halluscan.cluster import driver
run = driver.collect_on_ray
def killed_after_three(*a, **k):
    def die(_w, s):
        return os.kill(os.getpid(), signal.SIGKILL) if s.chunks >= 3 else None

    return run(*a, on_commit=die, **k)
driver.collect_on_ray = killed_after_three
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_driver_killed_with_sigkill_resumes_at_the_first_uncommitted_shard(cluster, tiny):
    from halluscan.cli import main
    from halluscan.store import ActivationStore
    from halluscan.study import metrics as metrics_io
    from halluscan.study.runs import RunDir

    settings = "--stop none --max-new-tokens 3 --batch-size 4 --folds 3 --quiet --no-p-true"
    args = ["run", "--name", "sigkill", *tiny_flags(tiny), *settings.split()]
    args += ["--ray", cluster, "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, *args], env=env, capture_output=True, timeout=240
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    store = tiny / "runs" / "sigkill" / "store"
    before = ActivationStore.open(store).chunk_names
    assert 1 <= len(before) < 18  # killed mid-run, with some shards committed
    assert main(args) == 0
    after = ActivationStore.open(store)
    assert after.chunk_names[: len(before)] == before
    ids = [r["qid"] for r in after.examples()]
    assert len(ids) == len(set(ids)) == 72
    given = ActivationStore.open(tiny / "runs" / "sigkill" / "store_given")
    gids = [r["qid"] for r in given.examples()]
    # a gold and a false answer per question, and the model's own wrong answers, once each
    assert len(gids) == len(set(gids))
    assert len([g for g in gids if not g.endswith("#own")]) == 144
    for st in (after, given):  # no file that no manifest names is left behind
        files = {p.name for p in st.root.rglob("*") if p.is_file()} - {"manifest.json"}
        assert files <= {f"{c}.{e}" for c in st.chunk_names for e in ("npy", "jsonl")}
    metrics = metrics_io.read(RunDir.named("sigkill", tiny / "runs"))
    assert metrics.ray.workers == 2 and metrics.summary.n_graded == 72


def test_ray_flags_and_their_checks():
    import argparse

    from halluscan.errors import HalluscanError
    from halluscan.study.config import StudyConfig
    from halluscan.study.flags import add_config_flags, config_from_args

    p = argparse.ArgumentParser()
    add_config_flags(p)
    assert config_from_args(p.parse_args(["--ray"])).ray == "local"
    cfg = config_from_args(
        p.parse_args(
            [
                "--ray",
                "ray://head:10001",
                "--workers",
                "8",
                "--gpus-per-worker",
                "1",
                "--batch-size",
                "256",
            ]
        )
    )
    assert (cfg.ray, cfg.workers, cfg.gpus_per_worker) == ("ray://head:10001", 8, 1.0)
    assert config_from_args(p.parse_args([])).ray == ""
    bad_ones = (
        {"workers": 0},
        {"cpus_per_worker": 0.0},
        {"ray_write": "nfs"},
        {"ray": "local", "gpus_per_worker": 1},
    )
    # the last: the driver cannot size a GPU worker's batch, so it must be given
    for bad in bad_ones:
        with pytest.raises(HalluscanError):
            replace(StudyConfig(), **bad).validate()


def test_workers_the_cluster_cannot_place_are_refused_and_workers_use_the_device_policy(cluster):
    from halluscan.cluster import RayPlan
    from halluscan.cluster.driver import check_room
    from halluscan.errors import HalluscanError
    from halluscan.models.placement import worker_placement

    check_room(ray, RayPlan("local", workers=2))  # 2 x 1 CPU: fits the 2-CPU instance
    for too_many in ({"workers": 3}, {"workers": 1, "gpus_per_worker": 1.0}):
        with pytest.raises(HalluscanError, match="use fewer --workers"):
            check_room(ray, RayPlan("local", **too_many))
    # a worker that reserves a GPU runs on it, with the same auto dtype as one process there
    assert worker_placement(1.0) == ("cuda", "bfloat16")
    assert worker_placement(1.0, "float16") == ("cuda", "float16")
    assert worker_placement(0.0) == ("cpu", "float32")
    with pytest.raises(HalluscanError, match="--dtype 'half'"):
        worker_placement(0.0, "half")


def test_a_shard_that_fails_on_its_worker_is_a_one_line_error():
    from halluscan.cluster.driver import _task_error
    from halluscan.cluster.worker import Shard
    from halluscan.errors import HalluscanError

    class Failed:  # what ray.get raises: a RayTaskError with the worker's exception as its cause
        cause = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nTraceback ...")

    msg = str(_task_error(Shard(3, []), Failed()))
    assert "shard 3" in msg and "CUDA out of memory" in msg and "run the same command again" in msg
    assert "\n" not in msg
    # halluscan's own: its message as is
    Failed.cause = HalluscanError("models/x: no model here; check --model")
    assert (
        str(_task_error(Shard(0, []), Failed()))
        == "on a Ray worker: models/x: no model here; check --model"
    )
