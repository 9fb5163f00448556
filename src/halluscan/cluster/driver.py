"""The driver of a study on Ray: cut the questions into shards, hand them to worker actors, commit.

The shards are the batches one process would make (:func:`~halluscan.engine.collect.batches`),
one batch each, so a study gives the same batches, and so the same greedy answers, on Ray as in
one process. Each worker keeps two shards in flight. The driver alone writes the manifests: it
commits each chunk as it arrives (``object`` mode: it writes the files too, and refuses them
unless they match the worker's checksums; ``shared`` mode: it checks that the files the worker
wrote are there at their sizes, without reading them; a resume verifies every checksum). A
store only ever holds whole committed chunks, and an id is committed once, so a killed driver
resumes at the first shard not committed and nothing is lost or stored twice.

Faults are Ray's to handle: a worker that dies is restarted by Ray and its shards retried
(``max_restarts``, ``max_task_retries``). A worker that is gone for good has its shards given to
the others; when none is left the run stops with an error and resumes on the next run.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from halluscan.cluster import init_ray
from halluscan.cluster.worker import Chunk, Shard, Worker
from halluscan.engine.chunks import chunk_path
from halluscan.engine.collect import batches
from halluscan.engine.given import Forced
from halluscan.engine.store import ActivationStore
from halluscan.errors import HalluscanError
from halluscan.models.loading import LoadedModel
from halluscan.records import Question
from halluscan.settings import StudySettings

IN_FLIGHT = 2  # shards queued per worker: one runs while the next waits, so a worker never idles
RESTARTS = 2  # Ray restarts a dead worker this often, and retries its shards as often


@dataclass
class RayStats:
    """What a Ray collection did: per worker its questions and busy seconds, and the driver's commit cost."""

    workers: int
    questions: dict[str, int] = field(default_factory=dict)
    busy_s: dict[str, float] = field(default_factory=dict)
    chunks: int = 0
    commit_s: float = 0.0
    bytes_moved: int = 0
    wall_s: float = 0.0
    reassigned: int = 0
    commits: int = 0  # manifest writes (a group commit writes several chunks at once)

    def to_json(self) -> dict[str, Any]:
        """The record that goes into ``metrics["ray"]``."""
        return {
            "workers": self.workers,
            "questions_per_worker": self.questions,
            "questions_per_s_per_worker": {
                w: round(n / max(self.busy_s[w], 1e-9), 3) for w, n in self.questions.items()
            },  # noqa: E501
            "chunks": self.chunks,
            "driver_commit_s_per_chunk": round(self.commit_s / max(self.chunks, 1), 5),
            "manifest_writes": self.commits,
            "object_store_MB": round(self.bytes_moved / 1e6, 2),
            "wall_s": round(self.wall_s, 2),
            "shards_reassigned": self.reassigned,
        }


def shards_for(
    lm: LoadedModel, settings: StudySettings, todo: list[Question], given: list[Forced], roots: dict[str, str]
) -> list[Shard]:
    """One shard per batch of ``todo``, each with the given answers of its questions."""
    by_q: dict[str, list[Forced]] = {}
    for f in given:
        by_q.setdefault(f.answer.qid, []).append(f)
    mode = settings.config.ray_write
    out = []
    for i, batch in enumerate(batches(lm, todo, settings.generation)):
        mine = [f for q in batch for f in by_q.get(q.qid, [])]
        out.append(Shard(i, [batch], mine, mode, roots))
    return out


def start_workers(ray: Any, settings: StudySettings) -> tuple[list[Any], list[Any]]:
    """The worker actors, each reserving its CPUs and GPUs and loading the model; Ray restarts one that dies.

    Returns the actors and the box (``[ref]`` of the settings) that their calls take.
    """
    from dataclasses import replace
    from pathlib import Path

    cfg = settings.config
    if Path(cfg.model).exists():  # a local model folder or file: the same absolute path on every worker
        settings = replace(settings, config=replace(cfg, model=str(Path(cfg.model).resolve())))
    actor = ray.remote(Worker).options(
        num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker, max_restarts=RESTARTS, max_task_retries=RESTARTS
    )
    device = "cuda" if cfg.gpus_per_worker > 0 else "cpu"
    threads = cfg.threads or max(1, int(cfg.cpus_per_worker))
    box = [ray.put(settings)]
    workers = [actor.remote(device, threads) for _ in range(cfg.workers)]
    for w in workers:
        w.load.remote(box)  # starts loading now; their first shard waits for it
    return workers, box


class Committer:
    """Commits chunks into the study's store and its given answers' store, timing each commit.

    The chunks that arrived together are committed with one manifest write per store (a group
    commit), so the manifest's rewrite, which grows with the store, is paid once per group.
    """

    def __init__(self, stores: dict[str, ActivationStore | None], stats: RayStats):
        self.stores, self.stats = stores, stats

    def __call__(self, chunks: list[Chunk]) -> None:
        """Commit ``chunks`` (``object``: write their files first; ``shared``: check the files the workers wrote)."""
        t = time.perf_counter()
        entries: dict[str, list[tuple[str, list[str], dict[str, int]]]] = {}
        for chunk in chunks:
            store = self.stores[chunk.store]
            if store is None:
                raise HalluscanError(f"a worker sent a chunk for the {chunk.store!r} store, which this study lacks")
            if chunk.files is not None:
                assert chunk.records is not None
                name = f"chunk_r{uuid.uuid4().hex[:12]}"
                entries.setdefault(chunk.store, []).append(
                    (name, chunk.ids, store.write_encoded(name, chunk.files, chunk.records, chunk.crc))
                )
                continue
            assert chunk.name is not None
            for sub, size in chunk.sizes.items():  # a stat, not a read: the driver never reads the data
                path = chunk_path(store.root, sub, chunk.name)
                if not path.is_file() or path.stat().st_size != size:
                    raise HalluscanError(
                        f"{path} is missing or not the size its worker wrote on the driver's side: --ray-write "
                        "shared needs a file system shared by every worker and the driver; use --ray-write object"
                    )
            entries.setdefault(chunk.store, []).append((chunk.name, chunk.ids, chunk.crc))
        for key, group in entries.items():
            store = self.stores[key]
            assert store is not None
            store.commit(group)
        self.stats.commit_s += time.perf_counter() - t
        self.stats.chunks += len(chunks)
        self.stats.commits += len(entries)
        self.stats.bytes_moved += sum(c.nbytes for c in chunks)


def collect_on_ray(
    settings: StudySettings,
    lm: LoadedModel,
    qs: list[Question],
    store: ActivationStore,
    given: tuple[list[Forced], ActivationStore] | None = None,
    on_commit: Callable[[list[Any], int], None] | None = None,
) -> RayStats:
    """Generate, grade, locate and store the questions not yet in ``store``, on Ray workers.

    ``on_commit(workers, n)`` runs after each group commit (``n`` chunks committed so far); tests
    use it to kill a worker mid-run.
    """
    cfg = settings.config
    ray = init_ray(cfg)
    t0 = time.perf_counter()
    done = store.stored_ids()
    todo = [q for q in qs if q.qid not in done]
    gstore = given[1] if given else None
    forced = [f for f in given[0] if f.answer.item_id not in gstore.stored_ids()] if given and gstore else []
    roots = {"own": str(store.root), "given": str(gstore.root) if gstore else ""}
    queue = deque(shards_for(lm, settings, todo, forced, roots))
    stats = RayStats(cfg.workers)
    if not queue:
        return stats
    workers, box = start_workers(ray, settings)
    try:
        _dispatch(ray, workers, box, queue, Committer({"own": store, "given": gstore}, stats), on_commit, cfg.quiet,
                  (len(qs), len(qs) - len(todo), t0))  # fmt: skip
    finally:  # on success and on error alike: no actor outlives the run
        for a in workers:
            ray.kill(a)
    for s in (store, gstore):
        if s is not None:
            s.remove_orphans()  # files of attempts that died before they were committed
    stats.wall_s = time.perf_counter() - t0
    return stats


def _dispatch(
    ray: Any,
    workers: list[Any],
    box: list[Any],
    queue: deque[Shard],
    commit: Committer,
    on_commit: Callable[[list[Any], int], None] | None,
    quiet: bool,
    counts: tuple[int, int, float],
) -> None:
    """Keep every live worker ``IN_FLIGHT`` shards deep and commit what arrives, until the queue is done.

    ``counts``: questions in the study, already stored, and the start time (for the progress bar).
    """
    from halluscan.cluster.progress import Progress

    stats, (total, initial, t0) = commit.stats, counts
    alive = set(range(len(workers)))
    pending: dict[Any, tuple[Shard, int]] = {}

    def submit(w: int) -> None:
        shard = queue.popleft()
        pending[workers[w].run.remote(shard, box)] = (shard, w)

    for _ in range(IN_FLIGHT):
        for w in range(len(workers)):
            if queue:
                submit(w)
    with Progress(total, initial, quiet) as bar:
        while pending:
            ray.wait(list(pending), num_returns=1)  # at least one is done; take every one that is
            done_now, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            arrived: list[tuple[Shard, int, list[Chunk], dict[str, Any]]] = []
            for ref in done_now:
                shard, w = pending.pop(ref)
                try:
                    chunks, timing = ray.get(ref)
                except ray.exceptions.RayActorError:  # gone for good, after Ray's restarts: others take its shards
                    alive.discard(w)
                    if not alive:
                        raise HalluscanError(
                            "every Ray worker died (see the Ray logs: out of memory?); committed shards are kept, "
                            "so run the same command again to resume"
                        ) from None
                    queue.appendleft(shard)
                    stats.reassigned += 1
                    submit(min(alive, key=lambda a: sum(1 for _, x in pending.values() if x == a)))
                    continue
                except ray.exceptions.RayTaskError as e:  # the shard itself failed: the same error on any worker
                    raise _task_error(shard, e) from None
                arrived.append((shard, w, chunks, timing))
            commit([c for _, _, chunks, _ in arrived for c in chunks])
            for shard, w, _, timing in arrived:
                n, who = sum(len(b) for b in shard.batches), timing["worker"]
                stats.questions[who] = stats.questions.get(who, 0) + n
                stats.busy_s[who] = stats.busy_s.get(who, 0.0) + timing["seconds"]
                bar.advance(n, who, stats.questions[who] / max(time.perf_counter() - t0, 1e-9))
                if queue and w in alive:
                    submit(w)
            if on_commit is not None and arrived:
                on_commit(workers, stats.chunks)


def _task_error(shard: Shard, e: Any) -> HalluscanError:
    """A one-line error for a shard that raised on its worker (the worker's own message when it is halluscan's)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, HalluscanError):
        return HalluscanError(f"on a Ray worker: {cause}")
    what = f"{type(cause).__name__}: {cause}" if cause is not None else str(e).strip().splitlines()[-1]
    return HalluscanError(
        f"a Ray worker failed on shard {shard.index} ({what.splitlines()[0] if what else 'no message'}); "
        "committed shards are kept: fix the cause (see the Ray logs) and run the same command again to resume"
    )
