"""The Ray driver's commits.

Every chunk that arrived, into its store, with one manifest write per store.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from halluscan.analyses.results import RayReport
from halluscan.cluster.worker import Chunk
from halluscan.errors import HalluscanError
from halluscan.store import ActivationStore, ChunkEntry
from halluscan.store.chunks import chunk_path

# A file another node has just renamed into place can look missing or stale through a network
# file system's attribute cache for a moment (NFS: up to its actimeo, 3-60 s): look again before
# giving up.
SHARED_WAIT_S = (0.1, 0.5, 1, 2, 4, 8, 15, 30)


def arrived(path: Path, size: int) -> None:
    """Wait until ``path`` (written by a worker on a shared file system) has ``size`` bytes."""
    for pause in (0.0, *SHARED_WAIT_S):
        time.sleep(pause)
        try:
            if path.stat().st_size == size:
                return
        except OSError:
            pass
    raise HalluscanError(
        f"{path} is missing or not the size its worker wrote, as the driver sees it: --ray-write "
        "shared needs a file system every worker and the driver mount at the same path; use "
        "--ray-write object otherwise"
    )


@dataclass
class RayStats:
    """What a Ray collection did.

    Per worker its questions and busy seconds, and the driver's commit cost.
    """

    workers: int
    questions: dict[str, int] = field(default_factory=dict)
    busy_s: dict[str, float] = field(default_factory=dict)
    chunks: int = 0
    commit_s: float = 0.0
    bytes_moved: int = 0
    wall_s: float = 0.0
    reassigned: int = 0
    commits: int = 0  # manifest writes (a group commit writes several chunks at once)

    def report(self) -> RayReport:
        """The record that goes into the study's metrics (``ray``)."""
        return RayReport(
            workers=self.workers,
            questions_per_worker=dict(self.questions),
            questions_per_s_per_worker={
                w: round(n / max(self.busy_s[w], 1e-9), 3) for w, n in self.questions.items()
            },
            chunks=self.chunks,
            driver_commit_s_per_chunk=round(self.commit_s / max(self.chunks, 1), 5),
            manifest_writes=self.commits,
            object_store_MB=round(self.bytes_moved / 1e6, 2),
            wall_s=round(self.wall_s, 2),
            shards_reassigned=self.reassigned,
        )


class Committer:
    """Commits chunks into the study's store and its given answers' store, timing each commit.

    The chunks that arrived together are committed with one manifest write per store (a group
    commit), so the manifest's rewrite, which grows with the store, is paid once per group.
    """

    def __init__(self, stores: dict[str, ActivationStore | None], stats: RayStats):
        self.stores, self.stats = stores, stats

    def __call__(self, chunks: list[Chunk]) -> None:
        """Commit ``chunks``.

        ``object`` mode: write their files first; ``shared``: check the files the workers wrote.

        """
        t = time.perf_counter()
        entries: dict[str, list[ChunkEntry]] = {}
        for chunk in chunks:
            store = self.stores[chunk.store]
            if store is None:
                raise HalluscanError(
                    f"a worker sent a chunk for the {chunk.store!r} store, which this study lacks"
                )
            if chunk.files is not None:
                assert chunk.records is not None
                name = f"chunk_r{uuid.uuid4().hex[:12]}"
                crc = store.write_encoded(name, chunk.files, chunk.records, chunk.crc)
                entries.setdefault(chunk.store, []).append(ChunkEntry(name, chunk.ids, crc))
                continue
            assert chunk.name is not None
            # a stat, not a read: the driver never reads the data
            for sub, size in chunk.sizes.items():
                arrived(chunk_path(store.root, sub, chunk.name), size)
            entries.setdefault(chunk.store, []).append(ChunkEntry(chunk.name, chunk.ids, chunk.crc))
        for key, group in entries.items():
            store = self.stores[key]
            assert store is not None
            store.commit(group)
        self.stats.commit_s += time.perf_counter() - t
        self.stats.chunks += len(chunks)
        self.stats.commits += len(entries)
        self.stats.bytes_moved += sum(c.nbytes for c in chunks)
