"""A store's layout: its positions, its dtype on disk, and per site its layers and trailing dims."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from halluscan.errors import HalluscanError
from halluscan.records import JsonObject

DTYPES = ("bfloat16", "float32")


@dataclass(frozen=True)
class SiteLayout:
    """One site of a store: which layers it keeps, and each cell's trailing dims.

    ``dims`` is ``[hidden]`` for a vector per cell, ``[heads, keys]`` for attention weights,
    ``[tokens, hidden]`` for pooled full tensors.
    """

    layers: tuple[int, ...]
    dims: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """What every chunk of a store holds: ``[example, layer, position, *dims]`` per site."""

    positions: tuple[str, ...]
    dtype: str
    sites: dict[str, SiteLayout] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise HalluscanError(
                f"store layout: dtype {self.dtype!r}; give one of {', '.join(DTYPES)}"
            )
        if not self.sites:
            raise HalluscanError(
                "store layout: no sites; give at least one site with its layers and dims"
            )

    @classmethod
    def of(cls, layout: Layout | JsonObject) -> Layout:
        """A layout as given: a :class:`Layout`, or its JSON form (what the manifest keeps)."""
        if isinstance(layout, Layout):
            return layout
        try:
            sites = {
                str(s): SiteLayout(
                    tuple(int(x) for x in v["layers"]), tuple(int(x) for x in v["dims"])
                )
                for s, v in layout["sites"].items()
            }
            return cls(tuple(str(p) for p in layout["positions"]), str(layout["dtype"]), sites)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise HalluscanError(
                f"store layout {layout!r} is malformed ({type(e).__name__}: {e}); give "
                '{"positions": [...], "dtype": "bfloat16", "sites": {SITE: {"layers": [...], '
                '"dims": [H]}}}'
            ) from None

    def to_json(self) -> JsonObject:
        """The manifest's form: lists, in the key order the manifest has always used."""
        sites = {s: {"layers": list(v.layers), "dims": list(v.dims)} for s, v in self.sites.items()}
        return {"positions": list(self.positions), "dtype": self.dtype, "sites": sites}

    def site(self, name: str) -> SiteLayout:
        """The layout of site ``name``; a one-line error naming the sites there are."""
        if name not in self.sites:
            raise HalluscanError(f"no site {name!r} in this store (it has {', '.join(self.sites)})")
        return self.sites[name]


def layout_diff(made: JsonObject, asked: JsonObject) -> tuple[str, str]:
    """The parts of two layouts (JSON form) that differ, as short text.

    ``dtype=bfloat16, residual.layers=0..30``.
    """

    def show(key: str, v: Any) -> str:
        if (
            key.endswith("layers")
            and isinstance(v, list)
            and len(v) > 2
            and v == list(range(v[0], v[0] + len(v)))
        ):
            return f"{v[0]}..{v[-1]}"
        return v if isinstance(v, str) else json.dumps(v)

    ms, asks = made.get("sites") or {}, asked.get("sites") or {}
    parts = [(k, made.get(k), asked.get(k)) for k in ("dtype", "positions")]
    parts.append(("sites", sorted(ms), sorted(asks)))
    for site in sorted(set(ms) & set(asks)):
        parts += [(f"{site}.{k}", ms[site].get(k), asks[site].get(k)) for k in ("layers", "dims")]
    diff = [(k, a, b) for k, a, b in parts if a != b]
    if not diff:  # a field outside the usual ones
        return json.dumps(made, sort_keys=True), json.dumps(asked, sort_keys=True)
    return (
        ", ".join(f"{k}={show(k, a)}" for k, a, _ in diff),
        ", ".join(f"{k}={show(k, b)}" for k, _, b in diff),
    )
