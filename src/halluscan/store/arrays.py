"""How the store's arrays go to and from disk.

Bfloat16 as uint16 bits, ``.npy`` files with their CRC-32.
"""

from __future__ import annotations

import functools
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from halluscan.atomic import write_with


def to_numpy(x: torch.Tensor, dtype: str) -> np.ndarray:
    """A CPU tensor as the array the store writes (bfloat16: its bits as uint16, no copy)."""
    if dtype == "bfloat16":
        return x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return x.to(torch.float32).numpy()


def from_numpy(a: np.ndarray, dtype: str) -> torch.Tensor:
    """A stored array back as a float32 tensor."""
    if dtype == "bfloat16":
        return torch.from_numpy(np.array(a, copy=True).view(np.int16)).view(torch.bfloat16).float()
    # a copy: chunks are read-only mmaps
    return torch.from_numpy(np.array(a, dtype=np.float32, copy=True))


def file_crc32(path: Path, block: int = 1 << 24) -> int:
    """CRC-32 of a file, read in blocks."""
    crc = 0
    with open(path, "rb") as f:
        while data := f.read(block):
            crc = zlib.crc32(data, crc)
    return crc


def npy_parts(arr: np.ndarray) -> tuple[bytes, memoryview]:
    """The ``.npy`` file of ``arr``.

    Its header bytes and a view of its data (no copy if contiguous).
    """
    import io

    arr = np.ascontiguousarray(arr)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(arr))
    return head.getvalue(), memoryview(arr.reshape(-1).view(np.uint8).data)


def npy_crc32(arr: np.ndarray) -> int:
    """The CRC-32 of ``arr``'s ``.npy`` file as :func:`write_npy` returns it, without writing."""
    header, body = npy_parts(arr)
    return zlib.crc32(body, zlib.crc32(header))


def write_npy(path: Path, arr: np.ndarray) -> int:
    """Write ``arr`` as a ``.npy`` file atomically, straight from its memory.

    Returns the file's CRC-32.


    The CRC is computed on a second thread while the bytes go to the disk (zlib and file writes
    both release the GIL), so checksumming adds no time when the disk is the slower of the two.
    """
    header, body = npy_parts(arr)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(body)

    crc = _checksummer().submit(lambda: zlib.crc32(body, zlib.crc32(header)))
    write_with(path, write)
    return crc.result()


@functools.cache
def _checksummer() -> Any:
    """The one thread that computes CRCs beside the writes (made once, not per file)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(1, thread_name_prefix="halluscan-crc")
