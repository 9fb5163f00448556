"""Write-behind for the store.

Chunks are appended on a background thread while the next batch is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from halluscan.errors import HalluscanError
from halluscan.records import JsonObject
from halluscan.store.store import ActivationStore


@dataclass(frozen=True)
class NewChunk:
    """One chunk on its way to a store: arrays per site, the validity mask, the records.

    ``arrays[site]`` is ``[example, layer, position, *dims]``, ``valid`` ``[example, position]``;
    ``ready`` (a CUDA event, optional) marks when the arrays' copy to the host is complete.
    """

    arrays: dict[str, torch.Tensor]
    valid: np.ndarray
    records: list[JsonObject]
    ready: Any = None

    def on_host(self) -> NewChunk:
        """The chunk once its arrays are on the host (waits for their copy)."""
        if self.ready is not None:
            self.ready.synchronize()
        return self


class ChunkSink(Protocol):
    """Where chunks go: the store's :class:`ChunkWriter`, or what a Ray worker sends back."""

    def put(self, chunk: NewChunk) -> None:
        """Take one chunk."""

    def ready(self) -> None:
        """Raise now, before the next batch is generated, when the next chunk cannot be taken."""


class ChunkWriter:
    """Appends chunks to a store on a background thread, so disk writes overlap the next batch.

    At most one chunk waits in the queue (bounded memory). ``progress`` runs after a chunk is
    committed. An error while writing (a full disk) is raised in the caller at the next
    ``put`` or on exit; chunks committed before it stay intact.
    """

    def __init__(self, store: ActivationStore, progress: Callable[[int], None] | None = None):
        import queue
        import threading

        self.store, self.progress = store, progress
        self.q: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.last_bytes = 0  # the last chunk's arrays: the next one's size, about
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChunkWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        while (chunk := self.q.get()) is not None:
            if self.error is None:
                try:
                    chunk.on_host()  # the device-to-host copy of this chunk has finished
                    self.store.append(chunk.arrays, chunk.valid, chunk.records)
                    if self.progress is not None:
                        self.progress(len(chunk.records))
                except BaseException as e:  # re-raised in the caller's thread
                    self.error = e

    def put(self, chunk: NewChunk) -> None:
        """Queue one chunk (blocks while the previous one is still being written)."""
        if self.error is not None:
            raise self.error
        self.last_bytes = sum(int(a.nbytes) for a in chunk.arrays.values())
        self.q.put(chunk)

    def ready(self) -> None:
        """Before a batch is generated: a write that failed, or a disk too full for one more chunk.

        The last chunk's size is the estimate (the chunk being written and the next one must
        both fit), so a full disk stops the run before a batch is generated in vain.
        """
        import shutil

        if self.error is not None:
            raise self.error
        free = shutil.disk_usage(self.store.root).free
        if self.last_bytes and free < 2 * self.last_bytes:
            raise HalluscanError(
                f"{self.store.root}: {free / 2**20:,.1f} MB free, and a chunk takes about "
                f"{self.last_bytes / 2**20:,.1f} MB; free disk space and run again (it resumes)"
            )

    def __exit__(self, *exc: object) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error
