"""Compare two finished run folders: metrics.json (less timings, dates and the schema version),
the stores' chunk checksums, and the probe banks' bytes. Used to show a refactor changed no result.

    python benchmarks/compare_runs.py runs/demo /elsewhere/runs/demo
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

VOLATILE = {"timings_s", "schema_version"}


def _strip(m: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in m.items() if k not in VOLATILE}
    prov = dict(out.get("provenance") or {})
    prov.pop("created", None)
    out["provenance"] = prov
    return out


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [
            d
            for k in keys
            for d in _diff(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{path}.{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _diff(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _crcs(store: Path) -> list[dict[str, int]]:
    from halluscan.store.store import MANIFEST

    m = json.loads((store / MANIFEST).read_text())
    return sorted((c["crc32"] for c in m["chunks"]), key=lambda c: json.dumps(c, sort_keys=True))


def _sha(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.glob("*"))}


def compare(a: Path, b: Path) -> list[str]:
    """Every difference between two run folders that a refactor must not make."""
    from halluscan.study.runs import RunDir

    ra, rb = RunDir(a), RunDir(b)
    metrics = [_strip(json.loads(r.metrics.read_text())) for r in (ra, rb)]
    diffs = _diff(*metrics, "metrics")
    for store in ("store", "store_given"):
        if _crcs(getattr(ra, store)) != _crcs(getattr(rb, store)):
            diffs.append(f"{store}: chunk checksums differ")
    for bank in ("probes", "probes_given"):
        sa, sb = _sha(getattr(ra, bank)), _sha(getattr(rb, bank))
        keys = sorted(set(sa) | set(sb))
        diffs += [f"{bank}/{k}: bytes differ" for k in keys if sa.get(k) != sb.get(k)]
    return diffs


if __name__ == "__main__":
    found = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print(
        "\n".join(found)
        if found
        else "same: metrics (less timings, dates, schema), chunk CRCs, bank bytes"
    )
    sys.exit(1 if found else 0)
