"""How two store layouts differ, as short text for the error that refuses a resume with another layout."""

from __future__ import annotations

import json
from typing import Any


def layout_diff(made: dict[str, Any], asked: dict[str, Any]) -> tuple[str, str]:
    """The parts of two layouts that differ, as short text: ``dtype=bfloat16, residual.layers=0..30``."""

    def show(key: str, v: Any) -> str:
        if key.endswith("layers") and isinstance(v, list) and len(v) > 2 and v == list(range(v[0], v[0] + len(v))):
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
    return (", ".join(f"{k}={show(k, a)}" for k, a, _ in diff), ", ".join(f"{k}={show(k, b)}" for k, _, b in diff))
