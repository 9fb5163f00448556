"""The Ray worker: an actor that loads the model once and turns shards into store chunks.

A shard is whole batches, each generated, graded, located and captured exactly as one
process does it (:func:`~halluscan.engine.collect.batch_chunk`), with the batch's given answers
forked off its prompts' cache. Each batch becomes one :class:`Chunk`: in ``object`` mode its
encoded arrays and records travel back through Ray's object store; in ``shared`` mode the worker
writes the files into the store folder itself (atomic renames, a name of its own) and sends back
only their names, ids and checksums. Either way only the driver commits.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from halluscan.engine.collect import CollectJob
from halluscan.engine.given import Forced
from halluscan.records import JsonObject, Question
from halluscan.store import NewChunk


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the study's model.

    What, on which device, in which dtype, with which seed.
    """

    model: str
    device: str
    dtype: str
    seed: int
    threads: int
    revision: str = ""
    chat_template: str = "auto"


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker holds for the whole run: how to load the model and how to collect."""

    spec: ModelSpec
    job: CollectJob
    store_dtype: str


@dataclass
class Shard:
    """Work for one worker call.

    ``batches`` of questions, their given answers, and where chunks go.
    """

    index: int
    batches: list[list[Question]]
    given: list[Forced] = field(default_factory=list)
    # or "shared": the files go to ``roots`` ({"own": store, "given": given store})
    write: str = "object"
    roots: dict[str, str] = field(default_factory=dict)


@dataclass
class Chunk:
    """One batch's store chunk as a worker sends it back.

    ``store``: "own" or "given". ``files`` and ``records`` are None in shared mode (the files are
    already at ``name`` in the store folder); ``crc`` is each file's CRC-32 either way.
    """

    store: str
    ids: list[str]
    crc: dict[str, int]
    files: dict[str, np.ndarray] | None = None
    records: list[JsonObject] | None = None
    name: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # shared mode: each file's size in bytes

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays it carries (0 in shared mode)."""
        return sum(a.nbytes for a in (self.files or {}).values())


@dataclass
class ShardDone:
    """What a worker sends back for a shard: its chunks, who ran it, and how long it took."""

    chunks: list[Chunk]
    worker: str  # host:pid
    seconds: float


class _Collected:
    """A chunk sink that keeps what it is given, on the host, to send back."""

    def __init__(self) -> None:
        self.items: list[NewChunk] = []

    def put(self, chunk: NewChunk) -> None:
        """Keep one chunk (the arrays are copied to the host first)."""
        self.items.append(chunk.on_host())

    def ready(self) -> None:
        """Always ready: the driver, which writes the store, checks the disk."""


class Worker:
    """Loads the study's model (on ``cuda`` when Ray gave it a GPU, else the CPU) once.

    The setup comes as ``[ref]``, a list holding its object ref, to :meth:`load` and :meth:`run`,
    not to the constructor: the constructor's arguments stay small (Ray keeps them to restart
    the actor), and a restarted worker loads on its first retried shard.
    """

    def __init__(self) -> None:
        self.setup: WorkerSetup | None = None
        self.lm: Any = None
        self.host = f"{socket.gethostname()}:{os.getpid()}"

    def whoami(self) -> str:
        """``host:pid`` of this worker's process."""
        return self.host

    def load(self, box: list[Any]) -> str:
        """Take the setup (``box[0]``: its object ref, or itself) and load the model, once."""
        if self.lm is None:
            import torch

            from halluscan.models.loading import load_as

            setup = box[0]
            if not isinstance(setup, WorkerSetup):
                import ray

                setup = ray.get(setup)
            if setup.spec.threads > 0:
                torch.set_num_threads(setup.spec.threads)
            torch.manual_seed(setup.spec.seed)
            self.lm = load_as(setup.spec)
            self.setup = setup
        return self.host

    def run(self, shard: Shard, box: list[Any]) -> ShardDone:
        """Every batch of ``shard`` as chunks (its own, then its given answers'), and the timing.

        The batches go through the same collection loop as one process
        (:func:`~halluscan.engine.collect.collect`).
        """
        from halluscan.engine.collect import collect
        from halluscan.engine.given import GivenFeed

        t0 = time.perf_counter()
        self.load(box)
        assert self.setup is not None
        own, given = _Collected(), _Collected()
        collect(
            self.lm,
            self.setup.job,
            shard.batches,
            own,
            GivenFeed(shard.given, given) if shard.given else None,
        )
        out = [self._pack(shard, "own", c) for c in own.items]
        out += [self._pack(shard, "given", c) for c in given.items]
        return ShardDone(out, self.host, time.perf_counter() - t0)

    def _pack(self, shard: Shard, store: str, chunk: NewChunk) -> Chunk:
        """A collected chunk, encoded as the store writes it: to send back, or written in place."""
        from halluscan.store.arrays import npy_crc32
        from halluscan.store.chunks import chunk_path, encode, records_bytes, write_chunk

        assert self.setup is not None
        files, records = encode(chunk.arrays, chunk.valid, self.setup.store_dtype), chunk.records
        ids = [str(r["qid"]) for r in records]
        if shard.write == "shared":
            # unique per attempt: a retry never collides
            name = f"chunk_s{shard.index:06d}_{uuid.uuid4().hex[:10]}"
            root = Path(shard.roots[store])
            crc = write_chunk(root, name, files, records)
            sizes = {sub: chunk_path(root, sub, name).stat().st_size for sub in crc}
            return Chunk(store, ids, crc, name=name, sizes=sizes)
        import zlib

        crc = {sub: npy_crc32(arr) for sub, arr in files.items()}
        crc["examples"] = zlib.crc32(records_bytes(records))
        return Chunk(store, ids, crc, files=files, records=records)
