"""The engine: model inputs, decoding, generation, extraction, and the activation store."""

from halluscan.engine.extract import Item, extract_positions, extract_to_store, forward_capture
from halluscan.engine.full import extract_full_to_store, full_layout, pool_tokens
from halluscan.engine.store import ActivationStore
from halluscan.engine.writer import ChunkWriter

__all__ = [
    "ActivationStore",
    "ChunkWriter",
    "Item",
    "extract_full_to_store",
    "extract_positions",
    "extract_to_store",
    "forward_capture",
    "full_layout",
    "pool_tokens",
]
