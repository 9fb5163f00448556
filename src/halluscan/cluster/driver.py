"""The driver of a study on Ray: cut the questions into shards, hand them to worker actors, commit.

The shards are the batches one process would make (:func:`~halluscan.engine.collect.batches`),
one batch each, so a study gives the same batches, and so the same greedy answers, on Ray as in
one process. Each worker keeps two shards in flight. The driver alone writes the manifests: it
commits chunks as they arrive, all that arrived together in one manifest write per store
(``object`` mode: it writes the files too, and refuses them unless they match the worker's
checksums; ``shared`` mode: it checks that the files the worker wrote are there at their
sizes, without reading them; a resume verifies every checksum). A store only ever holds whole
committed chunks, and an id is committed once, so a killed driver
resumes at the first shard not committed and nothing is lost or stored twice.

Faults are Ray's to handle: a worker that dies is restarted by Ray and its shards retried
(``max_restarts``, ``max_task_retries``). A worker that is gone for good has its shards given to
the others; when none is left the run stops with an error and resumes on the next run.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from halluscan import progress
from halluscan.cluster import RayPlan, init_ray
from halluscan.cluster.commit import Committer, RayStats
from halluscan.cluster.worker import Shard, ShardDone, Worker, WorkerSetup
from halluscan.engine.collect import batches
from halluscan.engine.given import Forced, GivenWork
from halluscan.errors import HalluscanError
from halluscan.models.loading import LoadedModel
from halluscan.records import Question
from halluscan.store import ActivationStore


@dataclass(frozen=True)
class Counts:
    """For the progress bar: questions in the study, already stored, and when the run started."""

    total: int
    stored: int
    start: float


IN_FLIGHT = 2  # shards queued per worker: one runs while the next waits, so a worker never idles
RESTARTS = 2  # Ray restarts a dead worker this often, and retries its shards as often


def shards_for(
    lm: LoadedModel,
    setup: WorkerSetup,
    todo: list[Question],
    given: list[Forced],
    plan: RayPlan,
    roots: dict[str, str],
) -> list[Shard]:
    """One shard per batch of ``todo``, each with the given answers of its questions."""
    by_q: dict[str, list[Forced]] = {}
    for f in given:
        by_q.setdefault(f.answer.qid, []).append(f)
    mode = plan.write
    out = []
    for i, batch in enumerate(batches(lm, todo, setup.job.generation)):
        mine = [f for q in batch for f in by_q.get(q.qid, [])]
        out.append(Shard(i, [batch], mine, mode, roots))
    return out


def start_workers(ray: Any, plan: RayPlan, setup: WorkerSetup) -> tuple[list[Any], list[Any]]:
    """The worker actors, each reserving its CPUs and GPUs and loading the model.

    Ray restarts one that dies.


    Returns the actors and the box (``[ref]`` of the setup) that their calls take.
    """
    from dataclasses import replace
    from pathlib import Path

    model = setup.spec.model
    if Path(model).exists():  # a local model folder or file: the same absolute path on every worker
        setup = replace(setup, spec=replace(setup.spec, model=str(Path(model).resolve())))
    actor = ray.remote(Worker).options(
        num_cpus=plan.cpus_per_worker,
        num_gpus=plan.gpus_per_worker,
        max_restarts=RESTARTS,
        max_task_retries=RESTARTS,
    )
    box = [ray.put(setup)]
    workers = [actor.remote() for _ in range(plan.workers)]
    loading = [w.load.remote(box) for w in workers]
    # every worker has the model before any shard goes out: a failed load is one error, not a hang
    try:
        with progress.bar(
            len(loading), "loading the model on Ray workers", "worker", plan.quiet
        ) as bar:
            for ref in loading:
                ray.get(ref)
                bar.update(1)
    except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as e:
        for w in workers:
            ray.kill(w)
        raise HalluscanError(f"loading the model on a Ray worker failed: {cause_of(e)}") from None
    return workers, box


def check_room(ray: Any, plan: RayPlan) -> None:
    """Refuse workers the cluster cannot place (they, and their shards, would wait for ever)."""
    have = ray.cluster_resources()
    need = {"CPU": plan.workers * plan.cpus_per_worker, "GPU": plan.workers * plan.gpus_per_worker}
    short = {k: (v, have.get(k, 0.0)) for k, v in need.items() if v > have.get(k, 0.0) + 1e-9}
    if short:
        what = ", ".join(
            f"{need:g} {k} (the cluster has {got:g})" for k, (need, got) in short.items()
        )
        raise HalluscanError(
            f"{plan.workers} Ray workers need {what}; use fewer --workers, fewer --cpus-per-worker "
            "or --gpus-per-worker, or add nodes to the cluster"
        )


def cause_of(e: Any) -> str:
    """The first line of what made a Ray call fail (the worker's own exception if it has one)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, HalluscanError):
        return str(cause)
    text = (
        f"{type(cause).__name__}: {cause}"
        if cause is not None
        else (str(e).strip() or type(e).__name__)
    )
    lines = [x for x in text.splitlines() if x.strip()]
    return lines[0] if lines else type(e).__name__


def collect_on_ray(
    plan: RayPlan,
    setup: WorkerSetup,
    lm: LoadedModel,
    qs: list[Question],
    store: ActivationStore,
    given: GivenWork | None = None,
    on_commit: Callable[[list[Any], RayStats], None] | None = None,
) -> RayStats:
    """Generate, grade, locate and store the questions not yet in ``store``, on Ray workers.

    ``on_commit(workers, stats)`` runs after each group commit; tests use it to kill a worker
    mid-run.
    """
    ray = init_ray(plan)
    t0 = time.perf_counter()
    todo = store.left_to_do(qs, key=lambda q: q.qid)
    gstore = given.store if given else None
    forced = given.left() if given else []
    # absolute: a worker on another node resolves a relative path against its own working folder
    roots = {
        "own": str(store.root.resolve()),
        "given": str(gstore.root.resolve()) if gstore else "",
    }
    queue = deque(shards_for(lm, setup, todo, forced, plan, roots))
    stats = RayStats(plan.workers)
    if not queue:
        return stats
    check_room(ray, plan)
    workers, box = start_workers(ray, plan, setup)
    counts = Counts(len(qs), len(qs) - len(todo), t0)
    try:
        commit = Committer({"own": store, "given": gstore}, stats)
        _Dispatch(ray, workers, box, queue, commit).run(on_commit, plan.quiet, counts)
    finally:  # on success and on error alike: no actor outlives the run
        for a in workers:
            ray.kill(a)
    for s in (store, gstore):
        if s is not None:
            s.remove_orphans()  # files of attempts that died before they were committed
    stats.wall_s = time.perf_counter() - t0
    return stats


@dataclass(frozen=True)
class Arrival:
    """A shard that came back: the shard, the index of the worker that ran it, and what it sent."""

    shard: Shard
    worker: int
    done: ShardDone


class _Dispatch:
    """Keeps every live worker ``IN_FLIGHT`` shards deep and commits what arrives, until done."""

    def __init__(
        self, ray: Any, workers: list[Any], box: list[Any], queue: deque[Shard], commit: Committer
    ):
        self.ray, self.workers, self.box, self.queue, self.commit = ray, workers, box, queue, commit
        self.alive = set(range(len(workers)))
        self.pending: dict[Any, tuple[Shard, int]] = {}

    def submit(self, w: int) -> None:
        """Send the next shard to worker ``w``."""
        shard = self.queue.popleft()
        self.pending[self.workers[w].run.remote(shard, self.box)] = (shard, w)

    def gather(self) -> tuple[list[Arrival], HalluscanError | None]:
        """Wait for a shard, then take every one done; and the error that stops the run, if any."""
        ray, stats = self.ray, self.commit.stats
        ray.wait(list(self.pending), num_returns=1)
        done_now, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        arrived: list[Arrival] = []
        for ref in done_now:
            shard, w = self.pending.pop(ref)
            try:
                done = ray.get(ref)
            except ray.exceptions.RayActorError as e:  # gone for good, after Ray's restarts
                self.alive.discard(w)
                if not self.alive:
                    return arrived, HalluscanError(
                        f"every Ray worker died, the last with: {cause_of(e)} (see the Ray logs); "
                        "committed shards are kept, so run the same command again to resume"
                    )
                self.queue.appendleft(shard)  # the others take it
                stats.reassigned += 1
                self.submit(
                    min(self.alive, key=lambda a: sum(x == a for _, x in self.pending.values()))
                )
                continue
            except ray.exceptions.RayError as e:  # the shard itself failed: it would on any worker
                return arrived, _task_error(shard, e)
            arrived.append(Arrival(shard, w, done))
        return arrived, None

    def run(
        self, on_commit: Callable[[list[Any], RayStats], None] | None, quiet: bool, counts: Counts
    ) -> None:
        """Dispatch every shard, committing each group that arrives (before any error is raised)."""
        from halluscan.cluster.progress import Progress

        stats = self.commit.stats
        for _ in range(IN_FLIGHT):
            for w in range(len(self.workers)):
                if self.queue:
                    self.submit(w)
        with Progress(counts.total, counts.stored, quiet) as bar:
            while self.pending:
                arrived, failed = self.gather()
                self.commit([c for a in arrived for c in a.done.chunks])  # kept, error or not
                if failed is not None:
                    raise failed
                for a in arrived:
                    n, who = sum(len(b) for b in a.shard.batches), a.done.worker
                    stats.questions[who] = stats.questions.get(who, 0) + n
                    stats.busy_s[who] = stats.busy_s.get(who, 0.0) + a.done.seconds
                    rate = stats.questions[who] / max(time.perf_counter() - counts.start, 1e-9)
                    bar.advance(n, who, rate)
                    if self.queue and a.worker in self.alive:
                        self.submit(a.worker)
                if on_commit is not None and arrived:
                    on_commit(self.workers, stats)
                del arrived  # the results' objects are freed before the next wait


def _task_error(shard: Shard, e: Any) -> HalluscanError:
    """A one-line error for a shard that raised on its worker (its own message if halluscan's)."""
    if isinstance(getattr(e, "cause", None), HalluscanError):
        return HalluscanError(f"on a Ray worker: {e.cause}")
    return HalluscanError(
        f"a Ray worker failed on shard {shard.index} ({cause_of(e)}); committed shards are kept: "
        "fix the cause (see the Ray logs) and run the same command again to resume"
    )
