"""The pieces every report page is made of: numbers, tables, inlined images, and the style sheet."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from halluscan.errors import HalluscanError


def num(v: Any, spec: str = ".3f") -> str:
    """``v`` formatted with ``spec``, or "n/a" when it is missing (None) or not a number (NaN)."""
    if v is None or (isinstance(v, int | float | np.floating) and math.isnan(v)):
        return "n/a"
    return format(v, spec)


def interval(ci: Sequence[float] | None) -> str:
    """A 95 % interval as ``lo – hi`` (a dash when there is none)."""
    return " – ".join(num(v) for v in ci) if ci else "—"


def table(rows: Sequence[Sequence[Any]], head: Sequence[str]) -> str:
    """An HTML table; every cell is escaped (user text shows as written)."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def b64(path: str | Path, what: str) -> str:
    """A file's bytes as base64 (to inline an image).

    A one-line error naming ``what`` when it cannot be read.
    """
    try:
        return base64.b64encode(Path(path).read_bytes()).decode()
    except OSError as e:
        raise HalluscanError(
            f"could not read {what} {path}: {e.strerror or e}; run the study again"
        ) from e


def img(path: str | Path, alt: str) -> str:
    """An inlined PNG."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64(path, "the figure")}">'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
  margin:24px auto;
  padding:0 16px;color:#1b1f24}
h1{font-size:1.6em;margin-bottom:4px}
h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.finding{background:#eef5fc;border-left:4px solid #2a6fb0;padding:10px 14px;margin:14px 0}
.ok{color:#1a7f37;font-weight:600} .no{color:#b42318;font-weight:600}
table{border-collapse:collapse;margin:8px 0;font-size:0.92em}
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} mark{background:#ffe58f} .ex td:nth-child(5){max-width:420px}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:0.85em}
.muted{color:#57606a;font-size:0.9em}
img{max-width:100%}
.pair{display:flex;gap:8px;align-items:flex-start} .pair img{width:50%}
"""
