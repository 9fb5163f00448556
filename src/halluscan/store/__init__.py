"""The activation store.

Chunked, resumable, provenance-stamped arrays on disk (persistence only).
"""

from halluscan.store.store import ActivationStore, ChunkEntry
from halluscan.store.writer import ChunkSink, ChunkWriter, NewChunk

__all__ = ["ActivationStore", "ChunkEntry", "ChunkSink", "ChunkWriter", "NewChunk"]
