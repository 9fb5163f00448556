"""A chunked, resumable, provenance-stamped activation store.

Layout of a store folder::

    manifest.json               provenance, layout, and one entry per chunk (rows, sha256)
    <site>/chunk_000000.npy     [example, layer, position, hidden]; bfloat16 kept as uint16 bits
    valid/chunk_000000.npy      [example, position] bool: does the position exist for the example
    examples/chunk_000000.jsonl one JSON record per example (question, response, grade, indices)

Every file is written under a temporary name and renamed, and the manifest is rewritten
(atomically) only after a chunk's files are in place, so a killed run leaves a store whose
manifest lists only complete chunks. Reading memory-maps the chunks: one position or one
layer for all examples never loads the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from halluscan.errors import HalluscanError

MANIFEST = "manifest.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise HalluscanError(
            f"could not write {path}: {e.strerror or e}; free disk space or choose another folder"
        ) from e


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON variant of :func:`atomic_write_bytes`; NaN and infinities become null (strict JSON)."""
    atomic_write_bytes(path, json.dumps(_finite(obj), indent=2, ensure_ascii=False, allow_nan=False).encode())


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


def _to_numpy(x: torch.Tensor, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return x.to(torch.float32).numpy()


def _from_numpy(a: np.ndarray, dtype: str) -> torch.Tensor:
    if dtype == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16).float()
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


class ActivationStore:
    """Append-only activation store for one site at named positions."""

    def __init__(self, root: str | Path, manifest: dict[str, Any]):
        self.root = Path(root)
        self.m = manifest

    @classmethod
    def open_or_create(
        cls, root: str | Path, *, key: str, layout: dict[str, Any], provenance: dict[str, Any]
    ) -> ActivationStore:
        """Open a store made with the same ``key`` (to resume), or create an empty one.

        A store made with another key (model, dataset or config) is refused, never overwritten.
        """
        root = Path(root)
        mpath = root / MANIFEST
        if mpath.is_file():
            m = json.loads(mpath.read_text())
            if m.get("key") != key:
                raise HalluscanError(
                    f"{root}: this store was made with another model, dataset or config; "
                    "use another --name, or delete the folder to start again"
                )
            return cls(root, m)
        try:
            for sub in (layout["site"], "valid", "examples"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HalluscanError(
                f"could not create the store at {root}: {e.strerror or e}; choose a writable folder"
            ) from e
        m = {"format": 1, "key": key, "layout": layout, "provenance": provenance, "chunks": []}
        atomic_write_json(mpath, m)
        return cls(root, m)

    @classmethod
    def open(cls, root: str | Path) -> ActivationStore:
        """Open an existing store for reading."""
        mpath = Path(root) / MANIFEST
        if not mpath.is_file():
            raise HalluscanError(f"{root}: no activation store here ({MANIFEST} missing); run `halluscan run` first")
        return cls(root, json.loads(mpath.read_text()))

    @property
    def layout(self) -> dict[str, Any]:
        """Site, layers, positions, hidden size and dtype."""
        return dict(self.m["layout"])

    @property
    def n_examples(self) -> int:
        """Examples in complete chunks."""
        return sum(c["rows"] for c in self.m["chunks"])

    def stored_ids(self) -> set[str]:
        """Example ids already stored (to skip them on resume)."""
        return {r["qid"] for r in self.examples()}

    def append(self, acts: torch.Tensor, valid: np.ndarray, records: list[dict[str, Any]]) -> None:
        """Append one chunk: ``acts`` [example, layer, position, hidden], ``valid`` [example, position]."""
        lay = self.layout
        expect = (len(records), len(lay["layers"]), len(lay["positions"]), lay["hidden"])
        if tuple(acts.shape) != expect or valid.shape != expect[:1] + expect[2:3]:
            raise ValueError(f"chunk shape {tuple(acts.shape)} / {valid.shape} does not match layout {expect}")
        i = len(self.m["chunks"])
        name = f"chunk_{i:06d}"
        digest = hashlib.sha256()
        for sub, arr in ((lay["site"], _to_numpy(acts, lay["dtype"])), ("valid", valid.astype(bool))):
            data = _npy_bytes(arr)
            digest.update(data)
            atomic_write_bytes(self.root / sub / f"{name}.npy", data)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        digest.update(lines)
        atomic_write_bytes(self.root / "examples" / f"{name}.jsonl", lines)
        self.m["chunks"].append({"name": name, "rows": len(records), "sha256": digest.hexdigest()})
        atomic_write_json(self.root / MANIFEST, self.m)

    def examples(self) -> list[dict[str, Any]]:
        """All example records, in store order."""
        out: list[dict[str, Any]] = []
        for c in self.m["chunks"]:
            with open(self.root / "examples" / f"{c['name']}.jsonl", encoding="utf-8") as f:
                out.extend(json.loads(line) for line in f)
        return out

    def _chunks(self, sub: str) -> Iterator[np.ndarray]:
        for c in self.m["chunks"]:
            yield np.load(self.root / sub / f"{c['name']}.npy", mmap_mode="r")

    def valid(self) -> np.ndarray:
        """``[example, position]`` bool."""
        return np.concatenate(list(self._chunks("valid")), axis=0)

    def position(self, pos: str) -> torch.Tensor:
        """``[example, layer, hidden]`` float32 at one named position (reads only that slice)."""
        j = self.layout["positions"].index(pos)
        parts = [_from_numpy(a[:, :, j, :], self.layout["dtype"]) for a in self._chunks(self.layout["site"])]
        return torch.cat(parts, dim=0)

    def layer(self, layer: int) -> torch.Tensor:
        """``[example, position, hidden]`` float32 at one layer."""
        li = self.layout["layers"].index(layer)
        parts = [_from_numpy(a[:, li], self.layout["dtype"]) for a in self._chunks(self.layout["site"])]
        return torch.cat(parts, dim=0)


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr))
    return buf.getvalue()
