"""The engine.

Model execution. Inputs, decoding, generation, given answers, extraction, p(True), sampling.
"""

from halluscan.engine.extract import Item, extract_positions, extract_to_store, forward_capture
from halluscan.engine.full import extract_full_to_store, full_layout, pool_tokens

__all__ = [
    "Item",
    "extract_full_to_store",
    "extract_positions",
    "extract_to_store",
    "forward_capture",
    "full_layout",
    "pool_tokens",
]
