"""A store chunk's files: written under their final names with atomic renames, one CRC-32 each.

The store's own appends and a Ray worker writing into a shared store folder
(:mod:`halluscan.cluster`) write a chunk the same way; only the store's manifest makes a chunk
exist, so files that no manifest names (a killed run, a retried worker) are never read, and
:func:`remove_orphans` deletes them when a writer opens the store.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from halluscan.atomic import write_bytes
from halluscan.records import JsonObject
from halluscan.store.arrays import to_numpy, write_npy


@dataclass(frozen=True)
class ChunkEntry:
    """A written chunk to list in the manifest: its name, its example ids, each file's CRC-32."""

    name: str
    ids: list[str]
    crc: dict[str, int]


def encode(arrays: dict[str, torch.Tensor], valid: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """A chunk's arrays as the store writes them: one per site (``dtype``) and the validity mask."""
    files = {site: to_numpy(a, dtype) for site, a in sorted(arrays.items())}
    files["valid"] = valid.astype(bool)
    return files


def records_bytes(records: list[JsonObject]) -> bytes:
    """A chunk's example records as its ``.jsonl`` file holds them."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def chunk_path(root: Path, sub: str, name: str) -> Path:
    """Where chunk ``name``'s file in folder ``sub`` lives (records ``.jsonl``, arrays ``.npy``)."""
    return root / sub / f"{name}.{'jsonl' if sub == 'examples' else 'npy'}"


def write_chunk(
    root: Path, name: str, files: dict[str, np.ndarray], records: list[JsonObject]
) -> dict[str, int]:
    """Write chunk ``name``: ``files[sub]`` -> ``sub/name.npy``, records -> ``examples/name.jsonl``.

    Returns the CRC-32 of each file, keyed by its folder, as the manifest records them.
    """
    crc = {sub: write_npy(root / sub / f"{name}.npy", arr) for sub, arr in files.items()}
    lines = records_bytes(records)
    crc["examples"] = zlib.crc32(lines)
    write_bytes(root / "examples" / f"{name}.jsonl", lines)
    return crc


def remove_orphans(root: Path, subs: list[str], committed: set[str]) -> int:
    """Delete chunk files (and temporary files) in ``subs`` that belong to no committed chunk.

    How many.
    """
    gone = 0
    for sub in subs:
        folder = root / sub
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            stem = f.name.split(".")[0] if not f.name.startswith(".") else ""
            if f.is_file() and stem not in committed:
                f.unlink(missing_ok=True)
                gone += 1
    return gone
