"""Write-behind for the store.

Chunks are appended on a background thread while the next batch is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from halluscan.records import JsonObject
from halluscan.store.store import ActivationStore


class ChunkSink(Protocol):
    """Where chunks go: the store's :class:`ChunkWriter`, or what a Ray worker sends back."""

    def put(
        self,
        arrays: dict[str, torch.Tensor],
        valid: np.ndarray,
        records: list[JsonObject],
        ready: Any = None,
    ) -> None:
        """Take one chunk.

        Its arrays, validity mask, records and (on a GPU) the event its copy is ready at.
        """


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
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChunkWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        while (job := self.q.get()) is not None:
            if self.error is None:
                try:
                    arrays, valid, records, ready = job
                    if ready is not None:
                        ready.synchronize()  # the device-to-host copy of this chunk has finished
                    self.store.append(arrays, valid, records)
                    if self.progress is not None:
                        self.progress(len(job[2]))
                except BaseException as e:  # re-raised in the caller's thread
                    self.error = e

    def put(
        self,
        arrays: dict[str, torch.Tensor],
        valid: np.ndarray,
        records: list[JsonObject],
        ready: Any = None,
    ) -> None:
        """Queue one chunk (blocks while the previous one is still being written).

        ``ready`` (a CUDA event, optional) marks when ``arrays``' copy to the host is complete.
        """
        if self.error is not None:
            raise self.error
        self.q.put((arrays, valid, records, ready))

    def __exit__(self, *exc: object) -> None:
        self.q.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error
