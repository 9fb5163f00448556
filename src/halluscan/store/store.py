"""A chunked, resumable, provenance-stamped activation store.

Layout of a store folder::

    manifest.json               provenance, layout, and one entry per chunk (rows, CRC-32 per file)
    <site>/chunk_000000.npy     [example, layer, position, *dims]; bfloat16 kept as uint16 bits
    valid/chunk_000000.npy      [example, position] bool: does the position exist for the example
    examples/chunk_000000.jsonl one JSON record per example (question, response, grade, indices)

Files are written under temporary names and renamed; the manifest is rewritten (atomically) only
after a chunk's files are in place, so a killed run leaves a store whose manifest lists only
complete chunks; a chunk file no manifest names (a killed run's, a retried Ray worker's) is never
read, and is deleted when a writer opens the store. Reads memory-map the chunks: one position or
one layer never loads the rest. An id is stored at most once. Resuming verifies every committed
chunk's CRC-32 (several GB/s) and refuses a damaged one by name.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from halluscan.atomic import write_json
from halluscan.errors import HalluscanError
from halluscan.records import JsonObject
from halluscan.store.arrays import file_crc32, from_numpy
from halluscan.store.chunks import ChunkEntry, encode, remove_orphans, write_chunk
from halluscan.store.layout import Layout, layout_diff

MANIFEST = "manifest.json"
FORMAT = 3  # 3: CRC-32 per file (2: one SHA-256 per chunk, still verified when read)
T = TypeVar("T")


class ActivationStore:
    """Append-only activation store: one array per site, at named positions.

    ``layout`` (a :class:`~halluscan.store.layout.Layout`, or its JSON form ``{"positions": [...],
    "dtype": "bfloat16"|"float32", "sites": {site: {"layers": [...], "dims": [...]}}}``): site ``s``
    is stored as ``[example, layer, position, *dims]`` (dims: ``[hidden]``, or ``[heads, keys]``
    for attention weights, or ``[tokens, hidden]`` for pooled full tensors).
    """

    def __init__(self, root: str | Path, manifest: JsonObject):
        self.root = Path(root)
        self._manifest = manifest  # what manifest.json says; replaced (never edited) by each commit
        # stored ids, read on first need and kept up to date by append
        self._ids: set[str] | None = None
        self._keep: np.ndarray | None = None  # a read view's rows (see ``only``)

    @classmethod
    def open_or_create(
        cls,
        root: str | Path,
        *,
        key: str,
        layout: Layout | JsonObject,
        provenance: JsonObject,
    ) -> ActivationStore:
        """Open a store made with the same ``key`` (to resume), or create an empty one.

        A store made with another key (model, dataset or config) is refused, never overwritten.
        """
        root = Path(root)
        mpath = root / MANIFEST
        lay = Layout.of(layout).to_json()
        if mpath.is_file():
            m = json.loads(mpath.read_text())
            if m.get("format") != FORMAT:
                raise HalluscanError(
                    f"{root}: this store has format {m.get('format')} but this halluscan writes "
                    f"format {FORMAT}; use another --name, or delete the folder to extract again"
                )
            if m.get("key") != key:
                raise HalluscanError(
                    f"{root}: this store was made with another model, dataset or config; use "
                    "another --name, or delete the folder to start again"
                )
            if m.get("layout") != lay:
                made, want = layout_diff(m.get("layout") or {}, lay)
                raise HalluscanError(
                    f"{root}: this store was made with layout {made}, but {want} was asked; use "
                    "another --name, or delete the folder to start again"
                )
            store = cls(root, m)
            store.check()  # a resume reads every committed chunk again: never reuse a damaged one
            store.remove_orphans()  # files of chunks a killed run wrote but never committed
            return store
        try:
            for sub in (*lay["sites"], "valid", "examples"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HalluscanError(
                f"could not create the store at {root}: {e.strerror or e}; choose a writable folder"
            ) from e
        m = {"format": FORMAT, "key": key, "layout": lay, "provenance": provenance, "chunks": []}
        write_json(mpath, m)
        return cls(root, m)

    @classmethod
    def open(cls, root: str | Path) -> ActivationStore:
        """Open an existing store for reading."""
        mpath = Path(root) / MANIFEST
        if not mpath.is_file():
            raise HalluscanError(
                f"{root}: no activation store here ({MANIFEST} missing); run `halluscan run` first"
            )
        return cls(root, json.loads(mpath.read_text()))

    @property
    def layout(self) -> Layout:
        """Positions, dtype, and per site its layers and trailing dims."""
        return Layout.of(self._manifest["layout"])

    @property
    def provenance(self) -> JsonObject:
        """What made this store (model, dataset, config, versions); empty when none was recorded."""
        return dict(self._manifest.get("provenance") or {})

    @property
    def key(self) -> str:
        """The key the store was made with: a resume must give the same one."""
        return str(self._manifest["key"])

    @property
    def chunk_names(self) -> list[str]:
        """Committed chunks, in order."""
        return [c["name"] for c in self._manifest["chunks"]]

    @property
    def positions(self) -> list[str]:
        """Named positions, in store order."""
        return list(self._manifest["layout"]["positions"])

    @property
    def sites(self) -> list[str]:
        """Sites stored, in layout order."""
        return list(self._manifest["layout"]["sites"])

    def layers(self, site: str | None = None) -> list[int]:
        """Layers stored for ``site`` (None: the store's one site)."""
        return list(self._site(site)["layers"])

    def _site(self, site: str | None) -> JsonObject:
        sites = self._manifest["layout"]["sites"]
        if site is None and len(sites) == 1:
            return dict(next(iter(sites.values())))
        if site is None:
            raise HalluscanError(
                f"{self.root}: this store has several sites ({', '.join(sites)}); name one"
            )
        if site not in sites:
            raise HalluscanError(
                f"{self.root}: no site {site!r} in this store (it has {', '.join(sites)})"
            )
        return dict(sites[site])

    def site_name(self, site: str | None) -> str:
        """``site`` checked against the store, or the store's one site when None."""
        self._site(site)
        return site if site is not None else self.sites[0]

    @property
    def n_examples(self) -> int:
        """Examples in complete chunks."""
        return sum(c["rows"] for c in self._manifest["chunks"])

    def stored_ids(self) -> set[str]:
        """Example ids already stored."""
        return set(self._stored())

    def left_to_do(self, items: Sequence[T], key: Callable[[T], str]) -> list[T]:
        """The ``items`` whose id (``key(item)``) is not stored yet, in order.

        What a resumed run still does.
        """
        done = self._stored()
        return [it for it in items if key(it) not in done]

    def _stored(self) -> set[str]:
        """The live set of stored ids (read once, then kept up to date by ``append``)."""
        if self._ids is None:
            self._ids = {r["qid"] for r in self.examples()}
        return self._ids

    def append(
        self, arrays: dict[str, torch.Tensor], valid: np.ndarray, records: list[JsonObject]
    ) -> None:
        """Append one chunk.

        ``arrays[site]`` is [example, layer, position, *dims]; ``valid`` [example, position].
        """
        lay = self.layout
        n_pos = len(lay.positions)
        if set(arrays) != set(lay.sites) or valid.shape != (len(records), n_pos):
            raise ValueError(
                f"chunk sites {sorted(arrays)} / valid {valid.shape} do not match layout"
            )
        for site, acts in arrays.items():
            spec = lay.sites[site]
            expect = (len(records), len(spec.layers), n_pos, *spec.dims)
            if tuple(acts.shape) != expect:
                raise ValueError(
                    f"chunk shape {tuple(acts.shape)} of {site} does not match layout {expect}"
                )
        self.append_encoded(
            encode(arrays, valid, lay.dtype), [str(r["qid"]) for r in records], records
        )

    def _check_new(self, ids: list[str]) -> set[str]:
        """The live stored ids, after refusing ``ids`` that are stored already or repeated."""
        if self._keep is not None:
            raise HalluscanError(f"{self.root}: a view of some rows is read-only")
        from collections import Counter

        stored = self._stored()
        again = sorted(
            {i for i in ids if i in stored} | {i for i, n in Counter(ids).items() if n > 1}
        )
        if again:
            raise ValueError(
                f"{self.root}: id(s) {', '.join(again[:5])} are already stored; an id is stored "
                "once"
            )
        return stored

    def append_encoded(
        self,
        files: dict[str, np.ndarray],
        ids: list[str],
        records: list[JsonObject],
        crc: dict[str, int] | None = None,
    ) -> None:
        """Append a chunk encoded by :func:`~halluscan.store.chunks.encode`.

        ``crc``: what its sender computed.
        """
        self._check_new(ids)
        name = f"chunk_{len(self._manifest['chunks']):06d}"
        self.commit([ChunkEntry(name, ids, self.write_encoded(name, files, records, crc))])

    def write_encoded(
        self,
        name: str,
        files: dict[str, np.ndarray],
        records: list[JsonObject],
        crc: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """Write chunk ``name``'s files, not yet committed; their checksums.

        Files that do not match the sender's checksums ``crc`` are refused (a one-line error).
        """
        got = write_chunk(self.root, name, files, records)
        if crc is not None and got != crc:
            bad = sorted(k for k in got if got[k] != crc.get(k))
            raise HalluscanError(
                f"{self.root}: chunk {name} arrived damaged ({', '.join(bad)}); run again to redo "
                "it"
            )
        return got

    def commit(self, entries: list[ChunkEntry]) -> None:
        """List chunks (their files already in place) in the manifest, in one write.

        The manifest is the commit point: a chunk exists once it is listed here. The in-memory
        manifest changes only after the new one is on disk, so a failed write leaves both equal.
        Committing several chunks at once costs one manifest write (the Ray driver's group commit).
        """
        stored = self._check_new([i for e in entries for i in e.ids])
        names = [e.name for e in entries]
        again = (set(names) & set(self.chunk_names)) | {n for n in names if names.count(n) > 1}
        if again:
            raise ValueError(
                f"{self.root}: chunk(s) {', '.join(sorted(again))} are already committed"
            )
        added = [{"name": e.name, "rows": len(e.ids), "crc32": e.crc} for e in entries]
        new = {**self._manifest, "chunks": [*self._manifest["chunks"], *added]}
        write_json(self.root / MANIFEST, new)
        self._manifest = new
        for e in entries:
            stored.update(e.ids)

    def remove_orphans(self) -> int:
        """Delete chunk files no committed chunk names (a killed run's, a retried worker's).

        How many.
        """
        subs = [*self._manifest["layout"]["sites"], "valid", "examples"]
        return remove_orphans(self.root, subs, set(self.chunk_names))

    def _files(self, name: str) -> list[tuple[str, Path]]:
        subs = [*sorted(self._manifest["layout"]["sites"]), "valid"]
        return [(sub, self.root / sub / f"{name}.npy") for sub in subs] + [
            ("examples", self.root / "examples" / f"{name}.jsonl")
        ]

    def _intact(self, chunk: JsonObject) -> str | None:
        """None when the chunk's files match their checksums, else the first file that does not."""
        files = self._files(chunk["name"])
        if "crc32" not in chunk:  # format 2: one SHA-256 over the chunk's files
            digest = hashlib.sha256()
            for _, path in files:
                if not path.is_file():
                    return str(path)
                digest.update(path.read_bytes())
            return (
                None
                if digest.hexdigest() == chunk["sha256"]
                else str(files[0][1].parent.parent / chunk["name"])
            )
        for sub, path in files:
            if not path.is_file() or file_crc32(path) != chunk["crc32"].get(sub):
                return str(path)
        return None

    def verify(self) -> list[str]:
        """Names of chunks whose files are missing or no longer match their checksums."""
        return [c["name"] for c in self._manifest["chunks"] if self._intact(c) is not None]

    def check(self) -> None:
        """Raise a one-line error naming the first chunk file that is missing or damaged."""
        for c in self._manifest["chunks"]:
            bad = self._intact(c)
            if bad is not None:
                raise HalluscanError(
                    f"{self.root}: chunk {c['name']} is damaged ({bad} is missing or does not "
                    "match its checksum); delete the store folder to extract again"
                )

    def examples(self) -> list[JsonObject]:
        """All example records, in store order."""
        out: list[JsonObject] = []
        for c in self._manifest["chunks"]:
            with open(self.root / "examples" / f"{c['name']}.jsonl", encoding="utf-8") as f:
                out.extend(json.loads(line) for line in f)
        return out

    def _chunks(self, sub: str) -> Iterator[np.ndarray]:
        for c in self._manifest["chunks"]:
            yield np.load(self.root / sub / f"{c['name']}.npy", mmap_mode="r")

    def valid(self) -> np.ndarray:
        """``[example, position]`` bool (in a view from ``only``, False outside its rows)."""
        valid = np.concatenate(list(self._chunks("valid")), axis=0)
        return valid if self._keep is None else valid & self._keep[:, None]

    def only(self, keep: np.ndarray) -> ActivationStore:
        """A read-only view in which only the examples ``keep`` selects are valid.

        Every row stays in place (examples, positions), so row ``i`` is the same answer in both;
        whatever reads ``valid`` (sweeps, banks, checks) leaves the others out.
        """
        view = copy.copy(self)
        view._keep = np.asarray(keep, dtype=bool)
        return view

    def ordered(self, key: Callable[[JsonObject], Any]) -> ActivationStore:
        """A read-only view, its chunks sorted by ``key`` of each one's first example record."""
        ex = self.root / "examples"
        first = [
            (ex / f"{c['name']}.jsonl").read_text("utf-8").split("\n")[0]
            for c in self._manifest["chunks"]
        ]
        view = copy.copy(self)
        order = sorted(range(len(first)), key=lambda i: key(json.loads(first[i])))
        chunks = [self._manifest["chunks"][i] for i in order]
        view._manifest = {**self._manifest, "chunks": chunks}
        return view

    def position(self, pos: str, site: str | None = None) -> torch.Tensor:
        """``[example, layer, *dims]`` float32 at one named position (reads only that slice).

        ``site`` may be left out when the store has one site.
        """
        site = self.site_name(site)
        if pos not in self.positions:
            raise HalluscanError(
                f"{self.root}: position {pos!r} is not stored (stored: {', '.join(self.positions)})"
            )
        j = self.positions.index(pos)
        parts = [
            from_numpy(a[:, :, j], self._manifest["layout"]["dtype"]) for a in self._chunks(site)
        ]
        return torch.cat(parts, dim=0)

    def layer(self, layer: int, site: str | None = None) -> torch.Tensor:
        """``[example, position, *dims]`` float32 at one layer (reads only that slice)."""
        site = self.site_name(site)
        li = self.layers(site).index(layer)
        parts = [
            from_numpy(a[:, li], self._manifest["layout"]["dtype"]) for a in self._chunks(site)
        ]
        return torch.cat(parts, dim=0)
