"""The one atomic writer.

Every file halluscan writes goes to a temporary name, is synced, then renamed.


A reader (or a re-run after a crash) therefore sees either the old file or the new one, never
half of one. A failed write removes its temporary file and becomes a one-line
:class:`~halluscan.errors.HalluscanError` that names the path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from halluscan.errors import HalluscanError


def write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Let ``write(tmp)`` fill a temporary file beside ``path``, sync it, and rename it to ``path``.

    The parent folder is created when missing. Callers render into memory first and write
    bytes (:func:`write_bytes`), so that every disk error is an ``OSError`` raised here.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise HalluscanError(
            f"could not write {path}: {e.strerror or e}; free disk space or choose another folder"
        ) from e
    return path


def write_png(path: str | Path, fig: Any, dpi: int) -> Path:
    """Render a matplotlib figure to PNG in memory, write it atomically, and close the figure."""
    import io

    import matplotlib.pyplot as plt

    try:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return write_bytes(path, buf.getvalue())


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON (NaN and infinities become null) atomically."""
    return write_bytes(
        path, json.dumps(jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False).encode()
    )


def jsonable(obj: Any) -> Any:
    """``obj`` with tuples as lists, numpy scalars as Python numbers, non-finite floats as None."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    return obj
