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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from halluscan.engine.given import Forced
from halluscan.records import Question
from halluscan.settings import StudySettings


@dataclass
class Shard:
    """Work for one worker call: ``batches`` of questions, their given answers, and where chunks go."""

    index: int
    batches: list[list[Question]]
    given: list[Forced] = field(default_factory=list)
    write: str = "object"  # or "shared": the files go to ``roots`` ({"own": store, "given": given store})
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
    records: list[dict[str, Any]] | None = None
    name: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # shared mode: each file's size in bytes

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays it carries (0 in shared mode)."""
        return sum(a.nbytes for a in (self.files or {}).values())


class _Collected:
    """A stand-in for the store's writer: keeps what the given-answer fork puts, to send back."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []

    def put(self, arrays: Any, valid: np.ndarray, records: list[dict[str, Any]], ready: Any = None) -> None:
        """Keep one chunk (the arrays are copied to the host first)."""
        if ready is not None:
            ready.synchronize()
        self.items.append((arrays, valid, records))


class Worker:
    """Loads the study's model on its device (``cuda`` when Ray gave it a GPU, else ``cpu``) once.

    The settings come as ``[ref]``, a list holding their object ref, to :meth:`load` and
    :meth:`run`, not to the constructor: the constructor's arguments stay small (Ray keeps them
    to restart the actor), and a restarted worker loads on its first retried shard.
    """

    def __init__(self, device: str, threads: int):
        self.device, self.threads = device, threads
        self.settings: StudySettings | None = None
        self.lm: Any = None
        self.host = f"{socket.gethostname()}:{os.getpid()}"

    def whoami(self) -> str:
        """``host:pid`` of this worker's process."""
        return self.host

    def load(self, box: list[Any]) -> str:
        """Take the settings (``box[0]``: their object ref, or the settings) and load the model, once."""
        if self.lm is None:
            import torch

            from halluscan.models import load_model

            settings = box[0]
            if not isinstance(settings, StudySettings):
                import ray

                settings = ray.get(settings)
            if self.threads > 0:
                torch.set_num_threads(self.threads)
            torch.manual_seed(settings.config.seed)
            self.lm = load_model(settings.config.model, device=self.device, dtype=settings.config.dtype)
            self.settings = settings
        return self.host

    def run(self, shard: Shard, box: list[Any]) -> tuple[list[Chunk], dict[str, Any]]:
        """Every batch of ``shard`` as chunks (its own, then its given answers'), and the worker's timing."""
        import torch

        from halluscan.engine.collect import batch_chunk
        from halluscan.engine.generate import generate
        from halluscan.engine.given import collect_during

        t0 = time.perf_counter()
        self.load(box)
        assert self.settings is not None
        settings, lm = self.settings, self.lm
        cfg = settings.config
        dtype = getattr(torch, cfg.store_dtype)
        layers = list(range(lm.n_layers + 1))
        out: list[Chunk] = []
        for batch in shard.batches:
            opts = replace(settings.generation, capture_dtype=cfg.store_dtype, batch_size=len(batch))
            given = _Collected()
            hook = collect_during(lm, shard.given, given, dtype) if shard.given else None
            by_id = {q.qid: q for q in batch}
            for gens, states, tail in generate(lm, batch, opts, layers, on_prefill=hook):
                acts, valid, examples, ready = batch_chunk(settings, by_id, gens, states, tail)
                if ready is not None:
                    ready.synchronize()
                out.append(self._pack(shard, "own", {cfg.site: acts}, valid, [e.to_json() for e in examples]))
            out += [self._pack(shard, "given", a, v, r) for a, v, r in given.items]
        return out, {"worker": self.host, "seconds": time.perf_counter() - t0}

    def _pack(
        self, shard: Shard, store: str, arrays: dict[str, Any], valid: np.ndarray, records: list[dict[str, Any]]
    ) -> Chunk:
        from halluscan.engine.arrays import npy_crc32
        from halluscan.engine.chunks import chunk_path, encode, records_bytes, write_chunk

        assert self.settings is not None
        files = encode(arrays, valid, self.settings.config.store_dtype)
        ids = [str(r["qid"]) for r in records]
        if shard.write == "shared":
            name = f"chunk_s{shard.index:06d}_{uuid.uuid4().hex[:10]}"  # unique per attempt: a retry never collides
            root = Path(shard.roots[store])
            crc = write_chunk(root, name, files, records)
            sizes = {sub: chunk_path(root, sub, name).stat().st_size for sub in crc}
            return Chunk(store, ids, crc, name=name, sizes=sizes)
        import zlib

        crc = {sub: npy_crc32(arr) for sub, arr in files.items()}
        crc["examples"] = zlib.crc32(records_bytes(records))
        return Chunk(store, ids, crc, files=files, records=records)
